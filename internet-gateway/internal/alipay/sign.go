package alipay

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Content is the signed text of a parameter set: every parameter with a non-empty value except
// those in skip, sorted by name, joined as name=value with &.
func Content(params map[string]string, skip ...string) string {
	keys := make([]string, 0, len(params))
	for k, v := range params {
		if v == "" || k == "" || contains(skip, k) {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sign returns base64(SHA256withRSA(key, text)).
func sign(key *rsa.PrivateKey, text string) (string, error) {
	digest := sha256.Sum256([]byte(text))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("alipay: sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// verify checks a base64 SHA256withRSA signature over text; failures wrap ErrSignature.
func verify(pub *rsa.PublicKey, text []byte, signature string) error {
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(sig) == 0 {
		return fmt.Errorf("%w: sign is not base64", ErrSignature)
	}
	digest := sha256.Sum256(text)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return ErrSignature
	}
	return nil
}

// Keys are the application's private key and Alipay's public key.
type Keys struct {
	AppKey    *rsa.PrivateKey
	AlipayKey *rsa.PublicKey
}

// KeyFiles names the files LoadKeys reads.
type KeyFiles struct {
	AppKey    string // the application's RSA private key, PKCS#8 (or PKCS#1) PEM
	AlipayKey string // Alipay's public key: a CERTIFICATE or PUBLIC KEY PEM block
}

// LoadKeys reads the key files.
func LoadKeys(f KeyFiles) (Keys, error) {
	var k Keys
	raw, err := os.ReadFile(f.AppKey)
	if err != nil {
		return k, fmt.Errorf("alipay: application key: %w", err)
	}
	if k.AppKey, err = parsePrivateKey(raw); err != nil {
		return k, fmt.Errorf("alipay: application key %s: %w", f.AppKey, err)
	}
	if raw, err = os.ReadFile(f.AlipayKey); err != nil {
		return k, fmt.Errorf("alipay: Alipay public key: %w", err)
	}
	if k.AlipayKey, err = parsePublicKey(raw); err != nil {
		return k, fmt.Errorf("alipay: Alipay public key %s: %w", f.AlipayKey, err)
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

func parsePublicKey(raw []byte) (*rsa.PublicKey, error) {
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("no CERTIFICATE or PUBLIC KEY block")
		}
		var pub any
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, err
			}
			pub = c.PublicKey
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			pub = k
		default:
			continue
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("a %T, not an RSA key", pub)
		}
		return rk, nil
	}
}
