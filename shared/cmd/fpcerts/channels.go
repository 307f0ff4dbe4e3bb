package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"finepay/shared/gm"
)

// UnionPaySignerCN is the common name of the development UnionPay signing certificate. ACP
// clients take the third @-separated field as the certificate owner and accept only
// 中国银联股份有限公司 there.
const UnionPaySignerCN = "041@Z20250101@中国银联股份有限公司@00000001"

// channelGroup is a set of key material besides the node certificates and WeChat Pay's: a
// payment channel's keys, or the issuing unit's e-receipt signing key. Each group is written by
// a full run and, on its own, added to an existing PKI that lacks it (a PKI made before the
// group was supported), without touching anything else. make gets the CA, for groups whose
// certificates the development CA issues.
type channelGroup struct {
	name  string
	files []string
	make  func(r io.Reader, ca *gm.Issued, now, notAfter time.Time) ([]file, error)
	ca    bool // make needs the CA
}

var channelGroups = []channelGroup{
	{"alipay", []string{"alipay-app.key", "alipay-app.pem", "alipay-platform.key", "alipay-platform.pem"}, alipayFiles, false},
	{"unionpay", []string{"unionpay-root.pem", "unionpay-middle.pem", "unionpay-sign.key", "unionpay-sign.pem",
		"unionpay-merchant.key", "unionpay-merchant.pem"}, unionpayFiles, false},
	{"unit", []string{UnitSignKey, UnitSignCert}, unitFiles, true},
	{"lookup", []string{LookupKeyFile}, lookupFiles, false},
}

// UnitSignKey and UnitSignCert are the issuing unit's (执收单位) SM2 e-receipt signing key and
// its certificate, issued by the development CA: the core signs receipt data with it, and the
// e-receipt platform verifies that signature before it adds the finance supervision seal.
const (
	UnitSignKey  = "unit-sign.key"
	UnitSignCert = "unit-sign.pem"
	// UnitCN is the common name of the development unit certificate.
	UnitCN = "FinePay Dev Issuing Unit"
)

// unitFiles is the issuing unit's SM2 signing key and certificate, issued by ca.
func unitFiles(r io.Reader, ca *gm.Issued, _, notAfter time.Time) ([]file, error) {
	is, err := ca.IssueNode(r, UnitCN, gm.UsageSign, nil, nil, notAfter)
	if err != nil {
		return nil, err
	}
	key, err := is.Key.MarshalPKCS8PEM()
	if err != nil {
		return nil, err
	}
	return []file{{UnitSignKey, key, keyMode}, {UnitSignCert, is.Cert.PEM(), certMode}}, nil
}

// loadCA reads the development CA of an existing PKI, to issue a group's certificates.
func loadCA(dir string) (*gm.Issued, error) {
	cert, err := gm.LoadCertificate(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	key, err := gm.LoadPrivateKey(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, err
	}
	if !cert.PublicKey().Equal(key.Public()) {
		return nil, errors.New("ca.key does not match ca.pem")
	}
	return &gm.Issued{Cert: cert, Key: key}, nil
}

// joinNames lists names as "a", "a and b", "a, b and c".
func joinNames(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// complete adds the channel groups missing from the PKI in dir; when none is missing it says
// that dir holds a PKI and changes nothing.
func complete(dir string, out io.Writer) error {
	var add []file
	var names []string
	var ca *gm.Issued
	now := time.Now()
	for _, g := range channelGroups {
		missing := false
		for _, f := range g.files {
			if _, err := os.Stat(filepath.Join(dir, f)); errors.Is(err, fs.ErrNotExist) {
				missing = true
			} else if err != nil {
				return err
			}
		}
		if !missing {
			continue
		}
		if g.ca && ca == nil {
			var err error
			if ca, err = loadCA(dir); err != nil {
				return fmt.Errorf("%s: loading the CA: %w", g.name, err)
			}
		}
		files, err := g.make(rand.Reader, ca, now, now.AddDate(validity, 0, 0))
		if err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		add = append(add, files...)
		names = append(names, g.name)
	}
	if len(add) == 0 {
		fmt.Fprintf(out, "certs: %s already holds a PKI\n", dir)
		return nil
	}
	if err := install(dir, add); err != nil {
		return err
	}
	fmt.Fprintf(out, "certs: added the %s keys to the PKI in %s\n", joinNames(names), dir)
	return nil
}

// alipayFiles are the Alipay open-platform keys: the merchant application's RSA key (signs
// requests; its certificate stands for the application public key uploaded to Alipay) and
// Alipay's own (signs answers and notifications; its certificate is "the Alipay public key").
func alipayFiles(r io.Reader, _ *gm.Issued, now, notAfter time.Time) ([]file, error) {
	var out []file
	for _, w := range []struct{ base, cn string }{
		{"alipay-app", "FinePay Dev Alipay Application"},
		{"alipay-platform", "Alipay Dev Platform"},
	} {
		certPEM, keyPEM, _, err := rsaSelfSigned(r, w.cn, now, notAfter)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.base, err)
		}
		out = append(out, file{w.base + ".key", keyPEM, keyMode}, file{w.base + ".pem", certPEM, certMode})
	}
	return out, nil
}

// unionpayFiles are the UnionPay ACP keys: a root and a middle CA (the chain a merchant checks
// signPubKeyCert against), UnionPay's signing key and certificate issued by the middle CA, and
// the merchant's signing key and certificate (its serial number in decimal is the certId of
// requests), issued by the middle CA too.
func unionpayFiles(r io.Reader, _ *gm.Issued, now, notAfter time.Time) ([]file, error) {
	root, rootKey, err := rsaIssue(r, nil, nil, pkix.Name{CommonName: "UnionPay Dev Root CA", Organization: []string{"China UnionPay"}}, true, now, notAfter)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	middle, middleKey, err := rsaIssue(r, root, rootKey, pkix.Name{CommonName: "UnionPay Dev Middle CA", Organization: []string{"China UnionPay"}}, true, now, notAfter)
	if err != nil {
		return nil, fmt.Errorf("middle: %w", err)
	}
	sign, signKey, err := rsaIssue(r, middle, middleKey, pkix.Name{CommonName: UnionPaySignerCN, OrganizationalUnit: []string{"00040000:SIGN"},
		Organization: []string{"China UnionPay"}, Country: []string{"CN"}}, false, now, notAfter)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	merchant, merchantKey, err := rsaIssue(r, middle, middleKey, pkix.Name{CommonName: "041@Z20250101@FinePay Dev Merchant@777290058110048",
		Organization: []string{"FinePay development"}, Country: []string{"CN"}}, false, now, notAfter)
	if err != nil {
		return nil, fmt.Errorf("merchant: %w", err)
	}
	signKeyPEM, err := pkcs8PEM(signKey)
	if err != nil {
		return nil, err
	}
	merchantKeyPEM, err := pkcs8PEM(merchantKey)
	if err != nil {
		return nil, err
	}
	return []file{
		{"unionpay-root.pem", certPEM(root), certMode},
		{"unionpay-middle.pem", certPEM(middle), certMode},
		{"unionpay-sign.key", signKeyPEM, keyMode},
		{"unionpay-sign.pem", certPEM(sign), certMode},
		{"unionpay-merchant.key", merchantKeyPEM, keyMode},
		{"unionpay-merchant.pem", certPEM(merchant), certMode},
	}, nil
}

// rsaIssue makes an RSA 2048 key and a certificate for it, signed by parent (self-signed when
// parent is nil), with a 64-bit random serial number whose top bit is set.
func rsaIssue(r io.Reader, parent *x509.Certificate, parentKey *rsa.PrivateKey, subject pkix.Name, isCA bool, now, notAfter time.Time) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(r, 2048)
	if err != nil {
		return nil, nil, err
	}
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, nil, err
	}
	b[0] |= 0x80
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(b[:]),
		Subject:               subject,
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(r, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return c, key, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func pkcs8PEM(k *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

const channelReadme = `
Alipay development files (RSA 2048, PKCS#8 keys, self-signed certificates; the
open platform's RSA2 signatures are SHA256withRSA):

  alipay-app.key          the merchant application's private key: signs our
                          requests to Alipay (sign_type RSA2).
  alipay-app.pem          its certificate: stands for the application public
                          key uploaded to Alipay; the sandbox verifies with it.
  alipay-platform.key     Alipay's private key. Only the sandbox (the fake
                          Alipay) uses it, to sign answers and notifications.
  alipay-platform.pem     the "Alipay public key", as a certificate: verifies
                          answers and notifications.

UnionPay ACP development files (RSA 2048, PKCS#8 keys):

  unionpay-root.pem       the UnionPay root CA certificate, and
  unionpay-middle.pem     the middle CA it issued: the chain that UnionPay's
                          signing certificate (signPubKeyCert) must verify to.
  unionpay-sign.key       UnionPay's signing key. Only the sandbox (the fake
                          UnionPay) uses it, to sign answers and notifications.
  unionpay-sign.pem       its certificate, issued by the middle CA, sent in
                          signPubKeyCert; its common name names 中国银联股份有限公司
                          in the third @-separated field.
  unionpay-merchant.key   the merchant's signing key: signs our requests.
  unionpay-merchant.pem   its certificate, issued by the middle CA; its serial
                          number in decimal is the certId of our requests.

E-receipt issuing unit (SM2, issued by the development CA):

  unit-sign.key           the issuing unit's (执收单位) SM2 signing key: the core
                          signs the data of every e-receipt with it.
  unit-sign.pem           its certificate (CN "FinePay Dev Issuing Unit"): the
                          e-receipt platform (the sandbox) and anyone checking a
                          receipt verify the unit's signature with it.
`
