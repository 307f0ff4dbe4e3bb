package wechatsim

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// AuthScheme is the scheme of the merchant's Authorization header.
const AuthScheme = "WECHATPAY2-SHA256-RSA2048"

// SignatureWindow is how far a request's or response's timestamp may be from the clock.
const SignatureWindow = 5 * time.Minute

// Headers of platform-signed responses and notifications.
const (
	HeaderSignature     = "Wechatpay-Signature"
	HeaderTimestamp     = "Wechatpay-Timestamp"
	HeaderNonce         = "Wechatpay-Nonce"
	HeaderSerial        = "Wechatpay-Serial"
	HeaderSignatureType = "Wechatpay-Signature-Type"
	HeaderRequestID     = "Request-ID"
)

// Keys are the merchant's and the platform's keys as the WeChat side holds them.
type Keys struct {
	// MerchantCert is the merchant's API certificate: it verifies the merchant's requests, and
	// its serial number (uppercase hex) is the serial_no of the Authorization header.
	MerchantCert *x509.Certificate
	// PlatformKey signs responses and notifications.
	PlatformKey *rsa.PrivateKey
	// PlatformCert is the platform certificate the merchant verifies with.
	PlatformCert *x509.Certificate
	// APIv3Key is the 32-byte key of AEAD_AES_256_GCM notification resources.
	APIv3Key []byte
}

// Files read by LoadKeys from the certificates directory.
const (
	FileMerchantCert = "wechat-merchant.pem"
	FilePlatformKey  = "wechat-platform.key"
	FilePlatformCert = "wechat-platform.pem"
	FileAPIv3Key     = "wechat-apiv3.key"
)

// LoadKeys reads the WeChat keys from dir: wechat-merchant.pem, wechat-platform.key,
// wechat-platform.pem and wechat-apiv3.key.
func LoadKeys(dir string) (Keys, error) {
	var k Keys
	var err error
	if k.MerchantCert, err = loadCert(filepath.Join(dir, FileMerchantCert)); err != nil {
		return k, err
	}
	if k.PlatformCert, err = loadCert(filepath.Join(dir, FilePlatformCert)); err != nil {
		return k, err
	}
	if k.PlatformKey, err = loadRSAKey(filepath.Join(dir, FilePlatformKey)); err != nil {
		return k, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, FileAPIv3Key))
	if err != nil {
		return k, fmt.Errorf("wechatsim: %w", err)
	}
	k.APIv3Key = []byte(strings.TrimRight(string(raw), "\r\n"))
	return k, k.check()
}

func (k Keys) check() error {
	if k.MerchantCert == nil || k.PlatformCert == nil || k.PlatformKey == nil {
		return errors.New("wechatsim: the merchant certificate and the platform key and certificate are required")
	}
	if _, ok := k.MerchantCert.PublicKey.(*rsa.PublicKey); !ok {
		return errors.New("wechatsim: the merchant certificate does not hold an RSA key")
	}
	pub, ok := k.PlatformCert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(k.PlatformKey.Public()) {
		return errors.New("wechatsim: the platform key does not match the platform certificate")
	}
	if len(k.APIv3Key) != 32 {
		return fmt.Errorf("wechatsim: the APIv3 key must be 32 bytes, not %d", len(k.APIv3Key))
	}
	return nil
}

// Serial is a certificate's serial number as WeChat writes it: uppercase hex.
func Serial(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber) }

func loadCert(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wechatsim: %w", err)
	}
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, fmt.Errorf("wechatsim: %s: no CERTIFICATE block", path)
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("wechatsim: %s: %w", path, err)
			}
			return c, nil
		}
	}
}

// ParseRSAPrivateKeyPEM reads a PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY" PEM block.
func ParseRSAPrivateKeyPEM(raw []byte) (*rsa.PrivateKey, error) {
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("no PRIVATE KEY or RSA PRIVATE KEY block")
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

func loadRSAKey(path string) (*rsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wechatsim: %w", err)
	}
	k, err := ParseRSAPrivateKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("wechatsim: %s: %w", path, err)
	}
	return k, nil
}

// RequestMessage is what the merchant signs: METHOD\nPATH?QUERY\ntimestamp\nnonce\nbody\n.
func RequestMessage(method, uri, timestamp, nonce string, body []byte) []byte {
	return []byte(method + "\n" + uri + "\n" + timestamp + "\n" + nonce + "\n" + string(body) + "\n")
}

// ResponseMessage is what the platform signs: timestamp\nnonce\nbody\n.
func ResponseMessage(timestamp, nonce string, body []byte) []byte {
	return []byte(timestamp + "\n" + nonce + "\n" + string(body) + "\n")
}

// Authorization is a parsed Authorization header.
type Authorization struct {
	MchID     string
	NonceStr  string
	Timestamp string
	SerialNo  string
	Signature string
}

var errAuth = errors.New("wechatsim: bad Authorization")

// ParseAuthorization parses `WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",...`.
func ParseAuthorization(h string) (Authorization, error) {
	var a Authorization
	scheme, params, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || scheme != AuthScheme {
		return a, fmt.Errorf("%w: the scheme must be %s", errAuth, AuthScheme)
	}
	seen := map[string]bool{}
	for rest := strings.TrimSpace(params); rest != ""; {
		key, after, ok := strings.Cut(rest, "=")
		if !ok || !strings.HasPrefix(after, `"`) {
			return a, fmt.Errorf("%w: parameters must be key=\"value\"", errAuth)
		}
		value, tail, ok := strings.Cut(after[1:], `"`)
		if !ok {
			return a, fmt.Errorf("%w: unterminated value of %s", errAuth, key)
		}
		key = strings.TrimSpace(key)
		if seen[key] {
			return a, fmt.Errorf("%w: %s given twice", errAuth, key)
		}
		seen[key] = true
		switch key {
		case "mchid":
			a.MchID = value
		case "nonce_str":
			a.NonceStr = value
		case "timestamp":
			a.Timestamp = value
		case "serial_no":
			a.SerialNo = value
		case "signature":
			a.Signature = value
		}
		tail = strings.TrimSpace(tail)
		if tail != "" && !strings.HasPrefix(tail, ",") {
			return a, fmt.Errorf("%w: parameters must be separated by commas", errAuth)
		}
		rest = strings.TrimSpace(strings.TrimPrefix(tail, ","))
	}
	for k, v := range map[string]string{"mchid": a.MchID, "nonce_str": a.NonceStr, "timestamp": a.Timestamp,
		"serial_no": a.SerialNo, "signature": a.Signature} {
		if v == "" {
			return a, fmt.Errorf("%w: %s is missing", errAuth, k)
		}
	}
	return a, nil
}

// verifyRequest checks the merchant's signature of a request.
func (s *Sim) verifyRequest(r *http.Request, body []byte) error {
	a, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	if a.MchID != s.cfg.MchID {
		return fmt.Errorf("%w: mchid %q is not the merchant %s", errAuth, a.MchID, s.cfg.MchID)
	}
	if !strings.EqualFold(a.SerialNo, s.merchantSerial) {
		return fmt.Errorf("%w: serial_no %s is not the merchant certificate's (%s)", errAuth, a.SerialNo, s.merchantSerial)
	}
	ts, err := strconv.ParseInt(a.Timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", errAuth, a.Timestamp)
	}
	if d := s.now().Sub(time.Unix(ts, 0)); d > SignatureWindow || d < -SignatureWindow {
		return fmt.Errorf("%w: timestamp is %s from now", errAuth, d.Round(time.Second))
	}
	sig, err := base64.StdEncoding.DecodeString(a.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", errAuth)
	}
	digest := sha256.Sum256(RequestMessage(r.Method, r.RequestURI, a.Timestamp, a.NonceStr, body))
	if err := rsa.VerifyPKCS1v15(s.merchantKey, crypto.SHA256, digest[:], sig); err != nil {
		return fmt.Errorf("%w: signature does not verify with the merchant certificate", errAuth)
	}
	return nil
}

// platformHeaders signs body with the platform key and returns the Wechatpay-* headers.
func (s *Sim) platformHeaders(body []byte) (http.Header, error) {
	ts := strconv.FormatInt(s.now().Unix(), 10)
	nonce, err := randomString(s.cfg.Rand, 32, alnumUpper)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(ResponseMessage(ts, nonce, body))
	sig, err := rsa.SignPKCS1v15(nil, s.cfg.Keys.PlatformKey, crypto.SHA256, digest[:])
	if err != nil {
		return nil, fmt.Errorf("wechatsim: platform signature: %w", err)
	}
	rid, err := randomString(s.cfg.Rand, 32, hexUpper)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	h.Set(HeaderSerial, s.platformSerial)
	h.Set(HeaderRequestID, rid)
	return h, nil
}

const (
	alnum      = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	alnumUpper = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	hexUpper   = "0123456789ABCDEF"
	digits     = "0123456789"
	openidSet  = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
)

// randomString draws n characters from alphabet without modulo bias.
func randomString(r io.Reader, n int, alphabet string) (string, error) {
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, n)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("wechatsim: random: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}
