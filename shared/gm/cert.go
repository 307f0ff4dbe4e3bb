package gm

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// Certificate is an X.509 certificate holding an SM2 public key.
type Certificate struct {
	c   *smx509.Certificate
	pub *PublicKey
}

// ParseCertificatePEM parses the first CERTIFICATE block of pemBytes.
func ParseCertificatePEM(pemBytes []byte) (*Certificate, error) {
	rest := pemBytes
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%w: want CERTIFICATE", ErrPEM)
		}
		if b.Type == "CERTIFICATE" {
			return ParseCertificateDER(b.Bytes)
		}
	}
}

// ParseCertificateDER parses a DER certificate. The subject key must be SM2.
func ParseCertificateDER(der []byte) (*Certificate, error) {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("gm: parse certificate: %w", err)
	}
	pub, err := publicKeyFrom(c.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("gm: certificate %q: %w", c.Subject.CommonName, err)
	}
	return &Certificate{c: c, pub: pub}, nil
}

// LoadCertificate reads the first certificate of a PEM file.
func LoadCertificate(path string) (*Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gm: %w", err)
	}
	c, err := ParseCertificatePEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// PublicKey returns the certified SM2 public key.
func (c *Certificate) PublicKey() *PublicKey { return c.pub }

// Fingerprint returns "sm3:" and the lowercase hex SM3 digest of the DER
// certificate. This is the identity used by peer allow-lists.
func (c *Certificate) Fingerprint() string { return FingerprintDER(c.c.Raw) }

// FingerprintDER returns the Fingerprint of a DER certificate without parsing
// it.
func FingerprintDER(der []byte) string {
	d := SM3(der)
	return "sm3:" + hex.EncodeToString(d[:])
}

// CommonName returns the subject common name.
func (c *Certificate) CommonName() string { return c.c.Subject.CommonName }

// Raw returns the DER encoding. The caller must not modify it.
func (c *Certificate) Raw() []byte { return c.c.Raw }

// PEM returns the certificate as a CERTIFICATE PEM block.
func (c *Certificate) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.c.Raw})
}

// X509 returns the parsed certificate for fields this type does not expose.
// The caller must not modify it.
func (c *Certificate) X509() *smx509.Certificate { return c.c }

// CheckUsage checks that c's key usage allows u: digitalSignature for a signing certificate;
// keyEncipherment, dataEncipherment or keyAgreement for an encryption one. A node's two
// certificates come from one CA under one name, so whoever verifies a signature must check
// this: the encryption key (often held in escrow) must not pass for the signing key.
func (c *Certificate) CheckUsage(u Usage) error {
	const enc = x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement
	switch {
	case u == UsageSign && c.c.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return fmt.Errorf("%w: %q (%s) is not a signing certificate: its key usage lacks digitalSignature", ErrUsage, c.CommonName(), c.Fingerprint())
	case u == UsageEncrypt && c.c.KeyUsage&enc == 0:
		return fmt.Errorf("%w: %q (%s) is not an encryption certificate: its key usage lacks the encipherment usages", ErrUsage, c.CommonName(), c.Fingerprint())
	case u != UsageSign && u != UsageEncrypt:
		return fmt.Errorf("%w: unknown usage %d", ErrUsage, int(u))
	}
	return nil
}

// VerifySignedBy checks a chain of one: c is signed by ca, ca is a CA
// certificate, and both are within their validity period now. A bad
// signature gives an error wrapping ErrVerify; an expired or not yet valid
// certificate one wrapping ErrExpired.
func (c *Certificate) VerifySignedBy(ca *Certificate) error {
	return c.verifySignedByAt(ca, time.Now())
}

func (c *Certificate) verifySignedByAt(ca *Certificate, now time.Time) error {
	if err := c.c.CheckSignatureFrom(ca.c); err != nil {
		return fmt.Errorf("%w: %q not signed by %q: %v", ErrVerify, c.CommonName(), ca.CommonName(), err)
	}
	for _, x := range []*Certificate{c, ca} {
		if now.Before(x.c.NotBefore) || now.After(x.c.NotAfter) {
			return fmt.Errorf("%w: %q valid %s to %s", ErrExpired, x.CommonName(),
				x.c.NotBefore.UTC().Format(time.RFC3339), x.c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
