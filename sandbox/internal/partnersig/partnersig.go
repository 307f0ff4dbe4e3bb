// Package partnersig is the sandbox's own implementation of the signed-JSON envelope of
// docs/partners.md: the signing strings of requests and responses, and the headers that carry
// them. It is written independently of the core's client, so that a mistake on one side shows up
// as a failed signature on the other.
//
// A request is signed by the caller over
//
//	APP "\n" REQUEST_ID "\n" TIMESTAMP "\n" METHOD "\n" PATH "\n" hex(SM3(BODY))
//
// and a response by the partner over
//
//	APP "\n" REQUEST_ID "\n" TIMESTAMP "\n" STATUS "\n" "" "\n" hex(SM3(BODY))
//
// with SM2 (SM3 digest, user ID 1234567812345678, DER), base64 in X-FP-Signature.
package partnersig

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"finepay/shared/gm"
)

// Header names of the envelope.
const (
	HeaderApp       = "X-FP-App"
	HeaderRequestID = "X-FP-Request-Id"
	HeaderTimestamp = "X-FP-Timestamp"
	HeaderSignature = "X-FP-Signature"
)

// Window is how far a timestamp may be from the receiver's clock.
const Window = 300 * time.Second

// Errors of verification. Each verification error wraps exactly one of them.
var (
	ErrMissing   = errors.New("partnersig: missing envelope header")
	ErrRequestID = errors.New("partnersig: malformed request ID")
	ErrTimestamp = errors.New("partnersig: timestamp outside the window")
	ErrSignature = errors.New("partnersig: signature does not verify")
)

// Signer signs with SM2 (SM3, default user ID, DER); *gm.PrivateKey is one.
type Signer interface {
	Sign(rand io.Reader, msg []byte) ([]byte, error)
}

// Verifier checks an SM2 signature; *gm.PublicKey is one.
type Verifier interface {
	Verify(msg, sig []byte) error
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidRequestID reports whether id is 1–64 characters of [A-Za-z0-9_-].
func ValidRequestID(id string) bool { return requestIDPattern.MatchString(id) }

func bodyDigest(body []byte) string {
	d := gm.SM3(body)
	return hex.EncodeToString(d[:])
}

// RequestString is the signing string of a request. pathQuery is the URL path with its raw query.
func RequestString(app, requestID string, timestamp int64, method, pathQuery string, body []byte) []byte {
	return []byte(strings.Join([]string{
		app, requestID, strconv.FormatInt(timestamp, 10), method, pathQuery, bodyDigest(body),
	}, "\n"))
}

// ResponseString is the signing string of a response.
func ResponseString(app, requestID string, timestamp int64, status int, body []byte) []byte {
	return []byte(strings.Join([]string{
		app, requestID, strconv.FormatInt(timestamp, 10), strconv.Itoa(status), "", bodyDigest(body),
	}, "\n"))
}

// Envelope is the parsed envelope headers of a request or response.
type Envelope struct {
	App       string
	RequestID string
	Timestamp int64
	Signature []byte
}

// Parse reads the envelope headers. It fails with ErrMissing, ErrRequestID, ErrTimestamp (for a
// timestamp that is not a number) or ErrSignature (for a signature that is not base64).
func Parse(h http.Header) (Envelope, error) {
	var e Envelope
	app, rid, ts, sig := h.Get(HeaderApp), h.Get(HeaderRequestID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	for _, f := range []struct{ name, value string }{
		{HeaderApp, app}, {HeaderRequestID, rid}, {HeaderTimestamp, ts}, {HeaderSignature, sig},
	} {
		if f.value == "" {
			return e, fmt.Errorf("%w: %s", ErrMissing, f.name)
		}
	}
	if !ValidRequestID(rid) {
		return e, fmt.Errorf("%w: %q", ErrRequestID, rid)
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return e, fmt.Errorf("%w: %s is not Unix seconds: %q", ErrTimestamp, HeaderTimestamp, ts)
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return e, fmt.Errorf("%w: %s is not base64", ErrSignature, HeaderSignature)
	}
	return Envelope{App: app, RequestID: rid, Timestamp: n, Signature: raw}, nil
}

// CheckTime fails with ErrTimestamp when ts is more than Window away from now.
func CheckTime(ts int64, now time.Time) error {
	d := now.Sub(time.Unix(ts, 0))
	if d > Window || d < -Window {
		return fmt.Errorf("%w: %d is %s from now", ErrTimestamp, ts, d.Round(time.Second))
	}
	return nil
}

// VerifyRequest checks a parsed request envelope against the caller's key and the clock.
func VerifyRequest(e Envelope, method, pathQuery string, body []byte, now time.Time, key Verifier) error {
	if err := CheckTime(e.Timestamp, now); err != nil {
		return err
	}
	msg := RequestString(e.App, e.RequestID, e.Timestamp, method, pathQuery, body)
	if err := key.Verify(msg, e.Signature); err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return nil
}

// VerifyResponse checks a response's envelope: the partner's app name, the echoed request ID,
// the clock and the signature by the partner's key.
func VerifyResponse(h http.Header, app, requestID string, status int, body []byte, now time.Time, key Verifier) error {
	e, err := Parse(h)
	if err != nil {
		return err
	}
	if e.App != app {
		return fmt.Errorf("%w: response from %q, want %q", ErrSignature, e.App, app)
	}
	if e.RequestID != requestID {
		return fmt.Errorf("%w: response for request %q, want %q", ErrSignature, e.RequestID, requestID)
	}
	if err := CheckTime(e.Timestamp, now); err != nil {
		return err
	}
	if err := key.Verify(ResponseString(e.App, e.RequestID, e.Timestamp, status, body), e.Signature); err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return nil
}

// SignRequest sets the envelope headers of req, whose body is body.
func SignRequest(req *http.Request, body []byte, app, requestID string, now time.Time, key Signer, rand io.Reader) error {
	ts := now.Unix()
	sig, err := key.Sign(rand, RequestString(app, requestID, ts, req.Method, req.URL.RequestURI(), body))
	if err != nil {
		return fmt.Errorf("partnersig: sign request: %w", err)
	}
	setHeaders(req.Header, app, requestID, ts, sig)
	return nil
}

// SignResponse sets the envelope headers of a response with the given status and body.
func SignResponse(h http.Header, app, requestID string, status int, body []byte, now time.Time, key Signer, rand io.Reader) error {
	ts := now.Unix()
	sig, err := key.Sign(rand, ResponseString(app, requestID, ts, status, body))
	if err != nil {
		return fmt.Errorf("partnersig: sign response: %w", err)
	}
	setHeaders(h, app, requestID, ts, sig)
	return nil
}

func setHeaders(h http.Header, app, requestID string, ts int64, sig []byte) {
	h.Set(HeaderApp, app)
	h.Set(HeaderRequestID, requestID)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
}
