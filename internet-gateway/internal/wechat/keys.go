package wechat

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Keys are the merchant's keys and the platform certificates the gateway trusts.
type Keys struct {
	MerchantKey    *rsa.PrivateKey
	MerchantSerial string                    // serial_no of the merchant certificate, uppercase hex
	Platform       map[string]*rsa.PublicKey // platform certificate keys by serial (uppercase hex)
	APIv3Key       []byte                    // 32 bytes
}

// KeyFiles names the files LoadKeys reads.
type KeyFiles struct {
	MerchantKey  string // RSA private key, PKCS#8 (or PKCS#1) PEM
	MerchantCert string // the merchant's API certificate, PEM
	PlatformCert string // one or more platform certificates, PEM
	APIv3Key     string // 32 ASCII characters; a trailing newline is ignored
}

// Serial is a certificate's serial number as WeChat writes it: uppercase hex.
func Serial(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber) }

// LoadKeys reads and checks the key files: the merchant key must match its certificate, the
// platform certificates must hold RSA keys, the APIv3 key must be 32 bytes.
func LoadKeys(f KeyFiles) (Keys, error) {
	var k Keys
	raw, err := os.ReadFile(f.MerchantKey)
	if err != nil {
		return k, fmt.Errorf("wechat: merchant key: %w", err)
	}
	if k.MerchantKey, err = ParsePrivateKey(raw); err != nil {
		return k, fmt.Errorf("wechat: merchant key %s: %w", f.MerchantKey, err)
	}
	certs, err := readCerts(f.MerchantCert)
	if err != nil {
		return k, err
	}
	if pub, ok := certs[0].PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(k.MerchantKey.Public()) {
		return k, fmt.Errorf("wechat: %s does not certify the merchant key", f.MerchantCert)
	}
	k.MerchantSerial = Serial(certs[0])
	if certs, err = readCerts(f.PlatformCert); err != nil {
		return k, err
	}
	k.Platform = map[string]*rsa.PublicKey{}
	for _, c := range certs {
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			return k, fmt.Errorf("wechat: %s: platform certificate %s holds no RSA key", f.PlatformCert, Serial(c))
		}
		k.Platform[Serial(c)] = pub
	}
	if raw, err = os.ReadFile(f.APIv3Key); err != nil {
		return k, fmt.Errorf("wechat: APIv3 key: %w", err)
	}
	k.APIv3Key = []byte(strings.TrimRight(string(raw), "\r\n"))
	if len(k.APIv3Key) != 32 {
		return k, fmt.Errorf("wechat: APIv3 key %s must be 32 bytes, not %d", f.APIv3Key, len(k.APIv3Key))
	}
	return k, nil
}

// ParsePrivateKey reads an RSA private key from a PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE
// KEY" PEM block.
func ParsePrivateKey(raw []byte) (*rsa.PrivateKey, error) {
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
		return nil, fmt.Errorf("wechat: certificate: %w", err)
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
			return nil, fmt.Errorf("wechat: %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("wechat: %s: no CERTIFICATE block", path)
	}
	return out, nil
}
