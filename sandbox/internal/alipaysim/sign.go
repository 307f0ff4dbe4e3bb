package alipaysim

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
	"path/filepath"
	"sort"
	"strings"
)

// Keys are what the Alipay side holds: the merchant application's public key (from its
// certificate) and Alipay's own key pair.
type Keys struct {
	// AppCert is the application's certificate: its public key verifies the merchant's requests.
	AppCert *x509.Certificate
	// PlatformKey signs answers and notifications; PlatformCert is what the merchant verifies
	// with ("the Alipay public key").
	PlatformKey  *rsa.PrivateKey
	PlatformCert *x509.Certificate
}

// Files read by LoadKeys from the certificates directory.
const (
	FileAppCert      = "alipay-app.pem"
	FilePlatformKey  = "alipay-platform.key"
	FilePlatformCert = "alipay-platform.pem"
)

// LoadKeys reads alipay-app.pem, alipay-platform.key and alipay-platform.pem from dir.
func LoadKeys(dir string) (Keys, error) {
	var k Keys
	var err error
	if k.AppCert, err = loadCert(filepath.Join(dir, FileAppCert)); err != nil {
		return k, err
	}
	if k.PlatformCert, err = loadCert(filepath.Join(dir, FilePlatformCert)); err != nil {
		return k, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, FilePlatformKey))
	if err != nil {
		return k, fmt.Errorf("alipaysim: %w", err)
	}
	if k.PlatformKey, err = parseKey(raw); err != nil {
		return k, fmt.Errorf("alipaysim: %s: %w", FilePlatformKey, err)
	}
	return k, k.check()
}

func (k Keys) check() error {
	if k.AppCert == nil || k.PlatformKey == nil || k.PlatformCert == nil {
		return errors.New("alipaysim: the application certificate and the platform key and certificate are required")
	}
	if _, ok := k.AppCert.PublicKey.(*rsa.PublicKey); !ok {
		return errors.New("alipaysim: the application certificate does not hold an RSA key")
	}
	if pub, ok := k.PlatformCert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(k.PlatformKey.Public()) {
		return errors.New("alipaysim: the platform key does not match the platform certificate")
	}
	return nil
}

func loadCert(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("alipaysim: %w", err)
	}
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, fmt.Errorf("alipaysim: %s: no CERTIFICATE block", path)
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("alipaysim: %s: %w", path, err)
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

// SignString is the text RSA2 covers: every parameter with a non-empty value, except the names
// in omit, sorted by name, as name=value joined with &.
func SignString(params map[string]string, omit ...string) string {
	var names []string
	for name, v := range params {
		if v == "" {
			continue
		}
		skip := false
		for _, o := range omit {
			skip = skip || o == name
		}
		if !skip {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	pairs := make([]string, 0, len(names))
	for _, name := range names {
		pairs = append(pairs, name+"="+params[name])
	}
	return strings.Join(pairs, "&")
}

// rsa2 signs text SHA256withRSA and returns it base64.
func rsa2(key *rsa.PrivateKey, text string) (string, error) {
	h := sha256.Sum256([]byte(text))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	if err != nil {
		return "", fmt.Errorf("alipaysim: sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// rsa2Verify checks a base64 SHA256withRSA signature.
func rsa2Verify(pub *rsa.PublicKey, text, sig string) error {
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return errors.New("sign is not base64")
	}
	h := sha256.Sum256([]byte(text))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], raw); err != nil {
		return errors.New("sign does not verify with the application's public key")
	}
	return nil
}
