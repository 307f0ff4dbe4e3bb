// Package testpki makes, for tests, the key material the sandbox reads from its certificates
// directory: the SM2 development PKI of shared/cmd/fpcerts (a CA; signing and encryption
// certificates for core and sandbox); the WeChat RSA merchant and platform keys with their
// self-signed certificates and the APIv3 key; the Alipay application and platform keys; and a
// UnionPay root and middle CA with UnionPay's signing certificate and the merchant's. Keys are
// generated once per test binary and written into a fresh directory per test. It is imported by
// tests only.
package testpki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"finepay/shared/gm"
)

// Node is a node's pair of certificates.
type Node struct {
	Sign *gm.Issued
	Enc  *gm.Issued
}

// RSAPair is an RSA key with its self-signed certificate.
type RSAPair struct {
	Key  *rsa.PrivateKey
	Cert *x509.Certificate
}

// Serial is the WeChat serial_no of the pair's certificate: uppercase hex.
func (p RSAPair) Serial() string { return fmt.Sprintf("%X", p.Cert.SerialNumber) }

// PKI is the generated material.
type PKI struct {
	CA    *gm.Issued
	Core  Node
	Box   Node // the sandbox
	Rogue Node // a "core" issued by another CA, which the sandbox must refuse
	// Unit is the e-receipt issuing unit's signing key (unit-sign.key/.pem).
	Unit *gm.Issued

	Merchant RSAPair
	Platform RSAPair
	APIv3Key []byte

	AlipayApp      RSAPair
	AlipayPlatform RSAPair

	// UnionPayRoot and UnionPayMiddle are the CA chain; UnionPaySign signs for UnionPay;
	// UnionPayMerchant signs the merchant's requests.
	UnionPayRoot, UnionPayMiddle   RSAPair
	UnionPaySign, UnionPayMerchant RSAPair
}

// UnionPaySignerCN is the common name of UnionPay's signing certificate in the tests.
const UnionPaySignerCN = "041@Z20250101@中国银联股份有限公司@00000001"

var (
	once   sync.Once
	shared *PKI
	genErr error
)

// Get returns the material, generating it on first use.
func Get(t testing.TB) *PKI {
	t.Helper()
	once.Do(func() { shared, genErr = generate() })
	if genErr != nil {
		t.Fatalf("testpki: %v", genErr)
	}
	return shared
}

// Dir writes the material into a new temporary directory with the file names of fpcerts and
// returns the PKI and the directory.
func Dir(t testing.TB) (*PKI, string) {
	t.Helper()
	p := Get(t)
	dir := t.TempDir()
	if err := p.Write(dir); err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return p, dir
}

func generate() (*PKI, error) {
	notAfter := time.Now().Add(24 * time.Hour)
	ca, err := gm.NewCA(rand.Reader, "FinePay test CA", notAfter)
	if err != nil {
		return nil, err
	}
	other, err := gm.NewCA(rand.Reader, "Rogue CA", notAfter)
	if err != nil {
		return nil, err
	}
	p := &PKI{CA: ca}
	for _, n := range []struct {
		ca   *gm.Issued
		name string
		dst  *Node
	}{{ca, "core", &p.Core}, {ca, "sandbox", &p.Box}, {other, "core", &p.Rogue}} {
		if n.dst.Sign, err = n.ca.IssueNode(rand.Reader, n.name, gm.UsageSign, []string{"localhost"}, nil, notAfter); err != nil {
			return nil, err
		}
		if n.dst.Enc, err = n.ca.IssueNode(rand.Reader, n.name, gm.UsageEncrypt, []string{"localhost"}, nil, notAfter); err != nil {
			return nil, err
		}
	}
	if p.Unit, err = ca.IssueNode(rand.Reader, "FinePay test issuing unit", gm.UsageSign, nil, nil, notAfter); err != nil {
		return nil, err
	}
	if p.Merchant, err = selfSigned("1900000001 merchant", notAfter); err != nil {
		return nil, err
	}
	if p.Platform, err = selfSigned("WeChat Pay platform", notAfter); err != nil {
		return nil, err
	}
	if p.AlipayApp, err = selfSigned("FinePay test Alipay application", notAfter); err != nil {
		return nil, err
	}
	if p.AlipayPlatform, err = selfSigned("Alipay test platform", notAfter); err != nil {
		return nil, err
	}
	if p.UnionPayRoot, err = issued("UnionPay test root", nil, true, notAfter); err != nil {
		return nil, err
	}
	if p.UnionPayMiddle, err = issued("UnionPay test middle", &p.UnionPayRoot, true, notAfter); err != nil {
		return nil, err
	}
	if p.UnionPaySign, err = issued(UnionPaySignerCN, &p.UnionPayMiddle, false, notAfter); err != nil {
		return nil, err
	}
	if p.UnionPayMerchant, err = issued("041@Z20250101@FinePay test@777290058110048", &p.UnionPayMiddle, false, notAfter); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	for i := range key {
		key[i] = alphabet[int(key[i])%len(alphabet)]
	}
	p.APIv3Key = key
	return p, nil
}

func selfSigned(cn string, notAfter time.Time) (RSAPair, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return RSAPair{}, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return RSAPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn.Add(sn, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"FinePay test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return RSAPair{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return RSAPair{}, err
	}
	return RSAPair{Key: key, Cert: cert}, nil
}

// issued makes an RSA key and a certificate for it signed by parent (self-signed when nil).
func issued(cn string, parent *RSAPair, ca bool, notAfter time.Time) (RSAPair, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return RSAPair{}, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return RSAPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn.Add(sn, big.NewInt(1)), Subject: pkix.Name{CommonName: cn, Organization: []string{"FinePay test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: ca,
	}
	if ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return RSAPair{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return RSAPair{}, err
	}
	return RSAPair{Key: key, Cert: cert}, nil
}

// Write writes the files the sandbox reads into dir.
func (p *PKI) Write(dir string) error {
	files := map[string][]byte{
		"ca.pem":           p.CA.Cert.PEM(),
		"wechat-apiv3.key": p.APIv3Key,
	}
	unitKey, err := p.Unit.Key.MarshalPKCS8PEM()
	if err != nil {
		return err
	}
	files["unit-sign.key"], files["unit-sign.pem"] = unitKey, p.Unit.Cert.PEM()
	for name, n := range map[string]Node{"core": p.Core, "sandbox": p.Box} {
		for usage, is := range map[string]*gm.Issued{"sign": n.Sign, "enc": n.Enc} {
			k, err := is.Key.MarshalPKCS8PEM()
			if err != nil {
				return err
			}
			files[name+"-"+usage+".pem"] = is.Cert.PEM()
			files[name+"-"+usage+".key"] = k
		}
	}
	for name, pair := range map[string]RSAPair{"wechat-merchant": p.Merchant, "wechat-platform": p.Platform,
		"alipay-app": p.AlipayApp, "alipay-platform": p.AlipayPlatform, "unionpay-root": p.UnionPayRoot,
		"unionpay-middle": p.UnionPayMiddle, "unionpay-sign": p.UnionPaySign, "unionpay-merchant": p.UnionPayMerchant} {
		k, err := x509.MarshalPKCS8PrivateKey(pair.Key)
		if err != nil {
			return err
		}
		files[name+".key"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
		files[name+".pem"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Cert.Raw})
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
