// Package adaptersim simulates the finance adapter (适配器) of flow P3: the agency banks'
// non-tax systems reach the traffic police front system (the core) through it. It forwards the
// bank's query, payment result and end-of-day file to the core's partner API
// (/partner/v1/bank/..., docs/partners.md "Core partner API: bank adapter") as caller
// bankadapter, signing each request with the sandbox's key and accepting an answer only when the
// core's signature over it verifies. A payment result that got no answer is sent again with the
// same request ID (the core answers a repeated ID with its first answer).
//
// For flow R4 the core calls the adapter (/adapter/v1/refunds, behind the sandbox's partner
// guard, which verifies the core's signature): a refund instruction is forwarded to the bank,
// which refunds once per refund number and pushes its result back through the adapter to the
// core (POST /partner/v1/bank/refund-results).
//
// The banks reach the adapter in-process (package banksim): the bank-adapter leg is not part of
// what FinePay speaks.
package adaptersim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"finepay/sandbox/internal/partnersig"
)

// App is the adapter's node name at the core (X-FP-App).
const App = "bankadapter"

// Config configures the adapter.
type Config struct {
	// CoreURL is the core's base URL (http://127.0.0.1:8090).
	CoreURL string
	// Key signs requests (sandbox-sign.key); CoreKey verifies answers (core-sign.pem).
	Key     partnersig.Signer
	CoreKey partnersig.Verifier
	// CoreApp is the core's node name in answers ("core").
	CoreApp string
	Client  *http.Client
	Now     func() time.Time
	Rand    io.Reader
	Log     *slog.Logger
}

// Adapter forwards the banks' messages to the core, and the core's refund instructions (flow
// R4) to the bank.
type Adapter struct {
	cfg  Config
	bank Bank
}

// New returns an adapter.
func New(cfg Config) *Adapter {
	cfg.CoreURL = strings.TrimRight(cfg.CoreURL, "/")
	if cfg.CoreApp == "" {
		cfg.CoreApp = "core"
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Adapter{cfg: cfg}
}

// Answer is the core's verified answer.
type Answer struct {
	Status    int             `json:"status"`
	RequestID string          `json:"request_id"`
	Replayed  bool            `json:"replayed"`
	Body      json.RawMessage `json:"body"`
}

// Code is the error code of a non-2xx answer.
func (a Answer) Code() string {
	var e struct {
		Code string `json:"code"`
	}
	json.Unmarshal(a.Body, &e)
	return e.Code
}

// ErrUnverified: the answer's signature did not verify (or there was no answer).
var ErrUnverified = errors.New("adaptersim: no verified answer from the core")

// NewRequestID returns a random request ID.
func (a *Adapter) NewRequestID() string {
	b := make([]byte, 12)
	io.ReadFull(a.cfg.Rand, b)
	return "ad" + hex.EncodeToString(b)
}

// Query forwards a bank's query.
func (a *Adapter) Query(ctx context.Context, requestID string, body any) (Answer, error) {
	return a.post(ctx, "/partner/v1/bank/query", requestID, body)
}

// Pay forwards a bank's payment result.
func (a *Adapter) Pay(ctx context.Context, requestID string, body any) (Answer, error) {
	return a.post(ctx, "/partner/v1/bank/payments", requestID, body)
}

// Reconcile forwards a bank's end-of-day file.
func (a *Adapter) Reconcile(ctx context.Context, requestID string, body any) (Answer, error) {
	return a.post(ctx, "/partner/v1/bank/reconciliations", requestID, body)
}

// post sends one request, again with the same ID when no verified answer came (three tries).
func (a *Adapter) post(ctx context.Context, path, requestID string, in any) (Answer, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return Answer{}, err
	}
	var last error
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return Answer{}, ctx.Err()
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		ans, err := a.once(ctx, path, requestID, body)
		if err == nil {
			return ans, nil // verified, whatever its status: the bank decides
		}
		last = err
		a.cfg.Log.Warn("adapter: core answer not verified; retrying", "path", path, "request_id", requestID, "err", err)
	}
	return Answer{}, last
}

func (a *Adapter) once(ctx context.Context, path, requestID string, body []byte) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.CoreURL+path, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if err := partnersig.SignRequest(req, body, App, requestID, a.cfg.Now(), a.cfg.Key, a.cfg.Rand); err != nil {
		return Answer{}, err
	}
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("%w: %v", ErrUnverified, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return Answer{}, fmt.Errorf("%w: %v", ErrUnverified, err)
	}
	if err := partnersig.VerifyResponse(resp.Header, a.cfg.CoreApp, requestID, resp.StatusCode, got, a.cfg.Now(), a.cfg.CoreKey); err != nil {
		return Answer{}, fmt.Errorf("%w: %v", ErrUnverified, err)
	}
	a.cfg.Log.Info("adapter: core answered", "path", path, "request_id", requestID, "status", resp.StatusCode)
	return Answer{Status: resp.StatusCode, RequestID: requestID, Replayed: resp.Header.Get("X-FP-Replayed") == "true", Body: got}, nil
}
