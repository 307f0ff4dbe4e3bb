package unionpay

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
	"strings"
	"time"
)

// digest is what signMethod 01 signs: SHA-256 over the lowercase hex SHA-256 of the text.
func digest(text string) []byte {
	inner := sha256.Sum256([]byte(text))
	outer := sha256.Sum256([]byte(hex.EncodeToString(inner[:])))
	return outer[:]
}

// sign adds signMethod, certId and signature to fields.
func sign(key *rsa.PrivateKey, certID string, fields map[string]string) error {
	fields["signMethod"] = SignMethod
	fields["certId"] = certID
	delete(fields, "signature")
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest(SigningText(fields)))
	if err != nil {
		return fmt.Errorf("unionpay: sign: %w", err)
	}
	fields["signature"] = base64.StdEncoding.EncodeToString(sig)
	return nil
}

// Keys are the merchant's signing key and the UnionPay certificates the gateway trusts.
type Keys struct {
	MerchantKey *rsa.PrivateKey
	CertID      string // the merchant certificate's serial number in decimal
	Roots       *x509.CertPool
	Middles     *x509.CertPool
}

// KeyFiles names the files LoadKeys reads.
type KeyFiles struct {
	MerchantKey  string // RSA private key, PKCS#8 (or PKCS#1) PEM
	MerchantCert string // its certificate, PEM
	RootCert     string // UnionPay root certificate(s), PEM
	MiddleCert   string // UnionPay middle certificate(s), PEM
}

// LoadKeys reads and checks the key files: the merchant key must match its certificate.
func LoadKeys(f KeyFiles) (Keys, error) {
	var k Keys
	raw, err := os.ReadFile(f.MerchantKey)
	if err != nil {
		return k, fmt.Errorf("unionpay: merchant key: %w", err)
	}
	if k.MerchantKey, err = parsePrivateKey(raw); err != nil {
		return k, fmt.Errorf("unionpay: merchant key %s: %w", f.MerchantKey, err)
	}
	certs, err := readCerts(f.MerchantCert)
	if err != nil {
		return k, err
	}
	if pub, ok := certs[0].PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(k.MerchantKey.Public()) {
		return k, fmt.Errorf("unionpay: %s does not certify the merchant key", f.MerchantCert)
	}
	k.CertID = certs[0].SerialNumber.String()
	k.Roots, k.Middles = x509.NewCertPool(), x509.NewCertPool()
	for _, p := range []struct {
		path string
		pool *x509.CertPool
	}{{f.RootCert, k.Roots}, {f.MiddleCert, k.Middles}} {
		certs, err := readCerts(p.path)
		if err != nil {
			return k, err
		}
		for _, c := range certs {
			p.pool.AddCert(c)
		}
	}
	return k, nil
}

func parsePrivateKey(raw []byte) (*rsa.PrivateKey, error) {
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("no PRIVATE KEY block")
		}
		switch b.Type {
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
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		}
	}
}

func readCerts(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("unionpay: certificate: %w", err)
	}
	var out []*x509.Certificate
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("unionpay: %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("unionpay: %s: no CERTIFICATE block", path)
	}
	return out, nil
}

// Verifier checks UnionPay's signatures of answers and notifications.
type Verifier struct {
	roots, middles *x509.CertPool
	now            func() time.Time
}

// NewVerifier returns a verifier trusting signing certificates that chain to roots through
// middles, on clock now (time.Now when nil).
func NewVerifier(roots, middles *x509.CertPool, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{roots: roots, middles: middles, now: now}
}

// Verify checks fields: signMethod 01 (ErrSignature); signPubKeyCert a certificate that is valid
// now, chains to a root through a middle certificate and names UnionPay as its owner
// (ErrCertificate); signature over the other fields by its key (ErrSignature).
func (v *Verifier) Verify(fields map[string]string) error {
	if m := fields["signMethod"]; m != SignMethod {
		return fmt.Errorf("%w: signMethod %.8q", ErrSignature, m)
	}
	b, _ := pem.Decode([]byte(fields["signPubKeyCert"]))
	if b == nil || b.Type != "CERTIFICATE" {
		return fmt.Errorf("%w: signPubKeyCert is not a PEM certificate", ErrCertificate)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Errorf("%w: signPubKeyCert: %w", ErrCertificate, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: v.middles, CurrentTime: v.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	if parts := strings.Split(cert.Subject.CommonName, "@"); len(parts) < 3 || parts[2] != Owner {
		return fmt.Errorf("%w: certificate of %.64q, not of %s", ErrCertificate, cert.Subject.CommonName, Owner)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: not an RSA certificate", ErrCertificate)
	}
	sig, err := base64.StdEncoding.DecodeString(fields["signature"])
	if err != nil || len(sig) == 0 {
		return fmt.Errorf("%w: signature is not base64", ErrSignature)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest(SigningText(fields)), sig); err != nil {
		return ErrSignature
	}
	return nil
}
