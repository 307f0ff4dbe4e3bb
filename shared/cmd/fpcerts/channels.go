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
)

// UnionPaySignerCN is the common name of the development UnionPay signing certificate. ACP
// clients take the third @-separated field as the certificate owner and accept only
// 中国银联股份有限公司 there.
const UnionPaySignerCN = "041@Z20250101@中国银联股份有限公司@00000001"

// channelGroup is the key material of one payment channel besides WeChat Pay. Each group is
// written by a full run and, on its own, added to an existing PKI that lacks it (a PKI made
// before the channel was supported), without touching anything else.
type channelGroup struct {
	name  string
	files []string
	make  func(r io.Reader, now, notAfter time.Time) ([]file, error)
}

var channelGroups = []channelGroup{
	{"alipay", []string{"alipay-app.key", "alipay-app.pem", "alipay-platform.key", "alipay-platform.pem"}, alipayFiles},
	{"unionpay", []string{"unionpay-root.pem", "unionpay-middle.pem", "unionpay-sign.key", "unionpay-sign.pem",
		"unionpay-merchant.key", "unionpay-merchant.pem"}, unionpayFiles},
}

// complete adds the channel groups missing from the PKI in dir; when none is missing it says
// that dir holds a PKI and changes nothing.
func complete(dir string, out io.Writer) error {
	var add []file
	var names []string
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
		files, err := g.make(rand.Reader, now, now.AddDate(validity, 0, 0))
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
	fmt.Fprintf(out, "certs: added the %s keys to the PKI in %s\n", strings.Join(names, " and "), dir)
	return nil
}

// alipayFiles are the Alipay open-platform keys: the merchant application's RSA key (signs
// requests; its certificate stands for the application public key uploaded to Alipay) and
// Alipay's own (signs answers and notifications; its certificate is "the Alipay public key").
func alipayFiles(r io.Reader, now, notAfter time.Time) ([]file, error) {
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
func unionpayFiles(r io.Reader, now, notAfter time.Time) ([]file, error) {
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
`
