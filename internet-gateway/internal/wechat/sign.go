package wechat

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// requestMessage is what the merchant signs.
func requestMessage(method, uri, timestamp, nonce string, body []byte) []byte {
	b := make([]byte, 0, len(method)+len(uri)+len(timestamp)+len(nonce)+len(body)+5)
	for _, s := range []string{method, uri, timestamp, nonce} {
		b = append(b, s...)
		b = append(b, '\n')
	}
	b = append(b, body...)
	return append(b, '\n')
}

// responseMessage is what the platform signs.
func responseMessage(timestamp, nonce string, body []byte) []byte {
	b := make([]byte, 0, len(timestamp)+len(nonce)+len(body)+3)
	b = append(b, timestamp...)
	b = append(b, '\n')
	b = append(b, nonce...)
	b = append(b, '\n')
	b = append(b, body...)
	return append(b, '\n')
}

const nonceAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// nonce returns 32 random characters from nonceAlphabet (rejection sampling, no bias).
func nonce(r io.Reader) (string, error) {
	out := make([]byte, 0, 32)
	buf := make([]byte, 48)
	limit := byte(256 - 256%len(nonceAlphabet))
	for len(out) < 32 {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("wechat: nonce: %w", err)
		}
		for _, c := range buf {
			if c < limit && len(out) < 32 {
				out = append(out, nonceAlphabet[int(c)%len(nonceAlphabet)])
			}
		}
	}
	return string(out), nil
}

// signer makes the merchant's Authorization header.
type signer struct {
	mchID  string
	serial string
	key    *rsa.PrivateKey
	now    func() time.Time
	rand   io.Reader
}

func (s signer) authorization(method, uri string, body []byte) (string, error) {
	n, err := nonce(s.rand)
	if err != nil {
		return "", err
	}
	ts := strconv.FormatInt(s.now().Unix(), 10)
	digest := sha256.Sum256(requestMessage(method, uri, ts, n, body))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("wechat: sign request: %w", err)
	}
	return fmt.Sprintf(`%s mchid="%s",nonce_str="%s",timestamp="%s",serial_no="%s",signature="%s"`,
		AuthScheme, s.mchID, n, ts, s.serial, base64.StdEncoding.EncodeToString(sig)), nil
}

// Verifier checks platform signatures of responses and notifications.
type Verifier struct {
	certs map[string]*rsa.PublicKey
	now   func() time.Time
}

// NewVerifier returns a verifier trusting the platform keys in certs (by serial), on clock now
// (time.Now when nil).
func NewVerifier(certs map[string]*rsa.PublicKey, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{certs: certs, now: now}
}

// Verify checks the Wechatpay-* headers of h against the raw body: a known serial, a
// timestamp within Window of the clock, and a SHA256withRSA signature over
// "timestamp\nnonce\nbody\n". Failures wrap ErrSerial, ErrTimestamp or ErrSignature.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	serial := h.Get(HeaderSerial)
	pub, ok := v.certs[serial]
	if !ok {
		return fmt.Errorf("%w: %.64q", ErrSerial, serial)
	}
	tsText := h.Get(HeaderTimestamp)
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %.32q is not Unix seconds", ErrTimestamp, tsText)
	}
	if d := v.now().Sub(time.Unix(ts, 0)); d > Window || d < -Window {
		return fmt.Errorf("%w: %s from now", ErrTimestamp, d.Round(time.Second))
	}
	sig, err := base64.StdEncoding.DecodeString(h.Get(HeaderSignature))
	if err != nil || len(sig) == 0 {
		return fmt.Errorf("%w: signature is not base64", ErrSignature)
	}
	digest := sha256.Sum256(responseMessage(tsText, h.Get(HeaderNonce), body))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return ErrSignature
	}
	return nil
}
