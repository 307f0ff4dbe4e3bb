package unionpaysim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Keys are what the UnionPay side holds: the merchant's signing certificate (to verify its
// requests, named by certId) and UnionPay's own signing key and certificate.
type Keys struct {
	MerchantCert *x509.Certificate
	SignKey      *rsa.PrivateKey
	SignCert     *x509.Certificate
	signCertPEM  string
}

// Files read by LoadKeys from the certificates directory.
const (
	FileMerchantCert = "unionpay-merchant.pem"
	FileSignKey      = "unionpay-sign.key"
	FileSignCert     = "unionpay-sign.pem"
)

// LoadKeys reads unionpay-merchant.pem, unionpay-sign.key and unionpay-sign.pem from dir.
func LoadKeys(dir string) (Keys, error) {
	var k Keys
	var err error
	if k.MerchantCert, err = loadCert(filepath.Join(dir, FileMerchantCert)); err != nil {
		return k, err
	}
	if k.SignCert, err = loadCert(filepath.Join(dir, FileSignCert)); err != nil {
		return k, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, FileSignKey))
	if err != nil {
		return k, fmt.Errorf("unionpaysim: %w", err)
	}
	if k.SignKey, err = parseKey(raw); err != nil {
		return k, fmt.Errorf("unionpaysim: %s: %w", FileSignKey, err)
	}
	return k, k.check()
}

func (k *Keys) check() error {
	if k.MerchantCert == nil || k.SignKey == nil || k.SignCert == nil {
		return errors.New("unionpaysim: the merchant certificate and UnionPay's signing key and certificate are required")
	}
	if _, ok := k.MerchantCert.PublicKey.(*rsa.PublicKey); !ok {
		return errors.New("unionpaysim: the merchant certificate does not hold an RSA key")
	}
	if pub, ok := k.SignCert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(k.SignKey.Public()) {
		return errors.New("unionpaysim: the signing key does not match its certificate")
	}
	k.signCertPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.SignCert.Raw}))
	return nil
}

// CertID is the certId the merchant's requests carry: its certificate's serial in decimal.
func (k Keys) CertID() string { return k.MerchantCert.SerialNumber.String() }

func loadCert(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("unionpaysim: %w", err)
	}
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, fmt.Errorf("unionpaysim: %s: no CERTIFICATE block", path)
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("unionpaysim: %s: %w", path, err)
			}
			return c, nil
		}
	}
}

func parseKey(raw []byte) (*rsa.PrivateKey, error) {
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("no PRIVATE KEY block")
		}
		switch b.Type {
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("a %T, not an RSA key", k)
			}
			return rk, nil
		}
	}
}

// DataString is what signMethod 01 covers: every field but signature, sorted by name, as
// name=value joined with &, empty values included, nothing encoded.
func DataString(f map[string]string) string {
	names := make([]string, 0, len(f))
	for k := range f {
		if k != "signature" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteString("&")
		}
		b.WriteString(k + "=" + f[k])
	}
	return b.String()
}

// signed is what is signed: the SHA-256 of the lowercase hex SHA-256 of the data string.
func signed(f map[string]string) []byte {
	first := sha256.Sum256([]byte(DataString(f)))
	second := sha256.Sum256([]byte(hex.EncodeToString(first[:])))
	return second[:]
}

// sign adds signMethod, signPubKeyCert and signature to f.
func (k Keys) sign(f map[string]string) error {
	f["signMethod"], f["signPubKeyCert"] = "01", k.signCertPEM
	delete(f, "signature")
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.SignKey, crypto.SHA256, signed(f))
	if err != nil {
		return fmt.Errorf("unionpaysim: sign: %w", err)
	}
	f["signature"] = base64.StdEncoding.EncodeToString(sig)
	return nil
}

// verifyMerchant checks a request's signMethod, certId and signature.
func (k Keys) verifyMerchant(f map[string]string) error {
	switch {
	case f["signMethod"] != "01":
		return fmt.Errorf("signMethod %q: the sandbox takes 01 (RSA certificates)", f["signMethod"])
	case f["certId"] != k.CertID():
		return fmt.Errorf("certId %q names no certificate of this merchant", f["certId"])
	}
	sig, err := base64.StdEncoding.DecodeString(f["signature"])
	if err != nil || len(sig) == 0 {
		return errors.New("signature is not base64")
	}
	if err := rsa.VerifyPKCS1v15(k.MerchantCert.PublicKey.(*rsa.PublicKey), crypto.SHA256, signed(f), sig); err != nil {
		return errors.New("signature does not verify with the merchant's certificate")
	}
	return nil
}
