// Package partner speaks the signed-JSON envelope of docs/partners.md with the finance and
// police systems: it signs each request with the core's SM2 key, sends it with a few quick
// retries (go-retryablehttp) that all carry the same request ID, and accepts an answer only
// when the partner's SM2 signature over it verifies.
//
// A request is signed over
//
//	APP "\n" REQUEST_ID "\n" TIMESTAMP "\n" METHOD "\n" PATH "\n" hex(SM3(BODY))
//
// and a response over
//
//	APP "\n" REQUEST_ID "\n" TIMESTAMP "\n" STATUS "\n" "" "\n" hex(SM3(BODY))
//
// The per-partner packages (nontax, ereceipt, window) hold the message shapes; a real
// interface document replaces one of them, not this package.
package partner

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"finepay/shared/bizdate"
	"finepay/shared/gm"
)

// Header names of the envelope.
const (
	HeaderApp       = "X-FP-App"
	HeaderRequestID = "X-FP-Request-Id"
	HeaderTimestamp = "X-FP-Timestamp"
	HeaderSignature = "X-FP-Signature"
)

// ClockWindow is how far a response timestamp may be from our clock.
const ClockWindow = 300 * time.Second

// maxResponse bounds a partner's answer.
const maxResponse = 1 << 20

// Errors of a call. Every error returned by Do wraps one of them or is an *Error.
var (
	// ErrBadSignature: the answer is not signed by the partner (or not for this request). The
	// call counts as failed and is retried.
	ErrBadSignature = errors.New("partner: response signature invalid")
	// ErrTransport: no answer (connection refused, timeout, cancelled).
	ErrTransport = errors.New("partner: no response")
)

// Error is a non-2xx answer with a valid signature.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("partner: status %d %s: %s", e.Status, e.Code, e.Message)
}

// Final reports whether retrying cannot help: a 4xx other than 408, 409 and 429.
func (e *Error) Final() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout &&
		e.Status != http.StatusConflict && e.Status != http.StatusTooManyRequests
}

// IsFinal reports whether err is a partner answer that must not be retried.
func IsFinal(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Final()
}

var reRequestID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidRequestID reports whether id is 1–64 characters of [A-Za-z0-9_-].
func ValidRequestID(id string) bool { return reRequestID.MatchString(id) }

// NewRequestID returns a random request ID (128 bits, base64url).
func NewRequestID(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("partner: request id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// StableRequestID returns a request ID fixed by a business fact, so that every attempt of a
// durable task carries the same one: prefix "-" key when that is a valid ID, otherwise prefix
// "-" and the first 40 hex digits of SM3(key).
func StableRequestID(prefix, key string) string {
	if id := prefix + "-" + key; ValidRequestID(id) {
		return id
	}
	d := gm.SM3([]byte(key))
	id := prefix + "-" + hex.EncodeToString(d[:])[:40]
	if len(id) > 64 {
		id = id[:64]
	}
	return id
}

func digestHex(body []byte) string {
	d := gm.SM3(body)
	return hex.EncodeToString(d[:])
}

// RequestSigningString is the string a caller signs.
func RequestSigningString(app, requestID string, ts int64, method, pathQuery string, body []byte) []byte {
	return []byte(app + "\n" + requestID + "\n" + strconv.FormatInt(ts, 10) + "\n" + method + "\n" + pathQuery + "\n" + digestHex(body))
}

// ResponseSigningString is the string a partner signs over its answer.
func ResponseSigningString(app, requestID string, ts int64, status int, body []byte) []byte {
	return []byte(app + "\n" + requestID + "\n" + strconv.FormatInt(ts, 10) + "\n" + strconv.Itoa(status) + "\n\n" + digestHex(body))
}

// Config configures a Client.
type Config struct {
	BaseURL    string        // e.g. http://127.0.0.1:8070
	App        string        // our node name, sent as X-FP-App ("core")
	Signer     gm.Signer     // our signing key
	PartnerKey *gm.PublicKey // the partner's signing key, from its certificate
	PartnerApp string        // expected X-FP-App of answers; empty accepts any name
	HTTPClient *http.Client  // nil: a client with a 30 s timeout
	// Retries is how many quick retries one call makes after a failed HTTP exchange
	// (no answer, 408, 429, 5xx); 0 means none. The durable task around the call retries
	// with backoff beyond that.
	Retries      int
	RetryWaitMin time.Duration // 200 ms when zero
	RetryWaitMax time.Duration // 2 s when zero
	Now          func() time.Time
	Logger       *slog.Logger
}

// Client calls one partner.
type Client struct {
	cfg  Config
	http *retryablehttp.Client
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.Signer == nil || cfg.PartnerKey == nil {
		return nil, errors.New("partner: signer and partner key are required")
	}
	if _, err := http.NewRequest(http.MethodGet, cfg.BaseURL, nil); err != nil || !strings.HasPrefix(cfg.BaseURL, "http") {
		return nil, fmt.Errorf("partner: base URL %q", cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.App == "" {
		cfg.App = "core"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryWaitMin <= 0 {
		cfg.RetryWaitMin = 200 * time.Millisecond
	}
	if cfg.RetryWaitMax <= 0 {
		cfg.RetryWaitMax = 2 * time.Second
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	rc := &retryablehttp.Client{
		HTTPClient:   hc,
		Logger:       nil,
		RetryWaitMin: cfg.RetryWaitMin,
		RetryWaitMax: cfg.RetryWaitMax,
		RetryMax:     max(cfg.Retries, 0),
		CheckRetry:   checkRetry,
		Backoff:      retryablehttp.DefaultBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	c := &Client{cfg: cfg, http: rc}
	rc.PrepareRetry = c.resign
	return c, nil
}

// checkRetry retries a lost exchange, 408, 429 and 5xx; the answer itself is checked later.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	s := resp.StatusCode
	return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500, nil
}

// sign sets the envelope headers of req for body.
func (c *Client) sign(req *http.Request, body []byte) error {
	ts := c.cfg.Now().Unix()
	rid := req.Header.Get(HeaderRequestID)
	msg := RequestSigningString(c.cfg.App, rid, ts, req.Method, req.URL.RequestURI(), body)
	sig, err := c.cfg.Signer.Sign(rand.Reader, msg)
	if err != nil {
		return fmt.Errorf("partner: sign: %w", err)
	}
	req.Header.Set(HeaderApp, c.cfg.App)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	return nil
}

// resign refreshes the timestamp and signature before a quick retry; the request ID stays.
func (c *Client) resign(req *http.Request) error {
	var body []byte
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return err
		}
		body, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return c.sign(req, body)
}

// Response is a verified 2xx answer.
type Response struct {
	Status int
	Body   []byte
}

// Do sends a signed request and returns the verified 2xx answer. A signed non-2xx answer is an
// *Error; an answer without a valid signature is ErrBadSignature; no answer is ErrTransport.
func (c *Client) Do(ctx context.Context, method, pathQuery, requestID string, body []byte) (*Response, error) {
	if !ValidRequestID(requestID) {
		return nil, fmt.Errorf("partner: invalid request id %q", requestID)
	}
	var rb any
	if len(body) > 0 {
		rb = body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.cfg.BaseURL+pathQuery, rb)
	if err != nil {
		return nil, fmt.Errorf("partner: %w", err)
	}
	req.Header.Set(HeaderRequestID, requestID)
	req.Header.Set("Accept", "application/json")
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if err := c.sign(req.Request, body); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrTransport, method, pathQuery, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: reading answer: %w", ErrTransport, method, pathQuery, err)
	}
	if len(got) > maxResponse {
		return nil, fmt.Errorf("%w: answer larger than %d bytes", ErrBadSignature, maxResponse)
	}
	if err := c.verify(resp, requestID, got); err != nil {
		c.cfg.Logger.Warn("partner answer refused", "path", pathQuery, "request_id", requestID, "status", resp.StatusCode, "err", err)
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		pe := &Error{Status: resp.StatusCode}
		var eb struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(got, &eb) == nil {
			pe.Code, pe.Message = eb.Code, eb.Message
		}
		return nil, pe
	}
	return &Response{Status: resp.StatusCode, Body: got}, nil
}

// verify checks the answer's envelope: the echoed request ID, the partner's name, the clock and
// the signature.
func (c *Client) verify(resp *http.Response, requestID string, body []byte) error {
	h := resp.Header
	app, rid, tss, sigs := h.Get(HeaderApp), h.Get(HeaderRequestID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if app == "" || rid == "" || tss == "" || sigs == "" {
		return fmt.Errorf("%w: envelope headers missing (status %d)", ErrBadSignature, resp.StatusCode)
	}
	if rid != requestID {
		return fmt.Errorf("%w: answer is for request %q, not %q", ErrBadSignature, rid, requestID)
	}
	if c.cfg.PartnerApp != "" && app != c.cfg.PartnerApp {
		return fmt.Errorf("%w: answer from %q, want %q", ErrBadSignature, app, c.cfg.PartnerApp)
	}
	ts, err := strconv.ParseInt(tss, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrBadSignature, tss)
	}
	if d := c.cfg.Now().Sub(time.Unix(ts, 0)); d > ClockWindow || d < -ClockWindow {
		return fmt.Errorf("%w: timestamp %d is %s from our clock", ErrBadSignature, ts, d.Round(time.Second))
	}
	sig, err := base64.StdEncoding.DecodeString(sigs)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", ErrBadSignature)
	}
	if err := c.cfg.PartnerKey.Verify(ResponseSigningString(app, rid, ts, resp.StatusCode, body), sig); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return nil
}

// PostJSON sends in as JSON and decodes the verified answer into out (when not nil). Unknown
// fields in the answer are ignored: partners add fields over time.
func (c *Client) PostJSON(ctx context.Context, path, requestID string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("partner: encode: %w", err)
	}
	return c.PostRaw(ctx, path, requestID, body, out)
}

// PostRaw is PostJSON with a body already encoded, for durable tasks that must send the same
// bytes on every attempt.
func (c *Client) PostRaw(ctx context.Context, path, requestID string, body []byte, out any) error {
	resp, err := c.Do(ctx, http.MethodPost, path, requestID, body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(bytes.NewReader(resp.Body)).Decode(out); err != nil {
		return fmt.Errorf("partner: %s: decoding answer: %w", path, err)
	}
	return nil
}

// EncryptName returns payer_name_enc: base64 of the SM2 encryption (C1C3C2, ASN.1) of the UTF-8
// name to the partner's encryption key.
func EncryptName(encKey *gm.PublicKey, rnd io.Reader, name string) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	ct, err := encKey.Encrypt(rnd, []byte(name))
	if err != nil {
		return "", fmt.Errorf("partner: encrypt name: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// FormatTime renders t as RFC 3339 in Asia/Shanghai (+08:00), as the partners expect.
func FormatTime(t time.Time) string { return t.In(bizdate.Location).Format(time.RFC3339) }
