// Package windowsim simulates the window side of the police Comprehensive Application Platform
// (综合应用平台) as docs/partners.md specifies it: it takes the results of payments for decisions,
// idempotently by order number; and, as a caller of the core's window API, it sends the refund
// instructions of window users (flow R2, POST /api/v1/refunds with the platform's bearer token,
// naming the user who asked).
//
// The partner routes are meant to sit behind partnerapi.Guard, which verifies and signs the
// envelope.
package windowsim

import (
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/shanghai"
)

// Config configures the simulator.
type Config struct {
	Now func() time.Time
	Log *slog.Logger
	// CoreURL is the core's base URL, whose window API takes the refund instructions.
	CoreURL string
	// APIToken is the bearer token of the window platform at the core's window API.
	APIToken string
	Client   *http.Client // nil: one with a 30 s timeout
	Rand     io.Reader    // request IDs; nil: crypto/rand
}

// Result is a payment result received.
type Result struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	FormNo          string `json:"form_no"`
	OrderNo         string `json:"order_no"`
	Amount          int64  `json:"amount"`
	PaidAt          string `json:"paid_at"`
	ReceiptCode     string `json:"receipt_code"`
	ReceiptNo       string `json:"receipt_no"`
	ReceivedAt      string `json:"received_at"`
	// Reports counts the reports of this order, the first included.
	Reports int `json:"reports"`
}

// State is what the simulator holds, for /_sandbox/state.
type State struct {
	Results      []Result      `json:"window_results"`
	Instructions []Instruction `json:"window_refund_instructions"`
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	now      func() time.Time
	log      *slog.Logger
	coreURL  string
	apiToken string
	client   *http.Client
	rand     io.Reader

	mu           sync.Mutex
	results      []*Result
	byOrder      map[string]*Result
	instructions []Instruction
}

// New returns an empty simulator.
func New(cfg Config) *Sim {
	s := &Sim{now: cfg.Now, log: cfg.Log, byOrder: map[string]*Result{}, coreURL: strings.TrimRight(cfg.CoreURL, "/"),
		apiToken: cfg.APIToken, client: cfg.Client, rand: cfg.Rand}
	if s.now == nil {
		s.now = time.Now
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: 30 * time.Second}
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Register adds the routes to g, which should be mounted at /window/v1.
func (s *Sim) Register(g *echo.Group) {
	g.POST("/payment-results", s.handleResult)
}

// ResultRequest is the body of POST /window/v1/payment-results.
type ResultRequest struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	FormNo          string `json:"form_no"`
	OrderNo         string `json:"order_no"`
	Amount          int64  `json:"amount"`
	PaidAt          string `json:"paid_at"`
	ReceiptCode     string `json:"receipt_code"`
	ReceiptNo       string `json:"receipt_no"`
}

// ResultResponse is the answer.
type ResultResponse struct {
	Status string `json:"status"`
}

func (s *Sim) handleResult(c echo.Context) error {
	var req ResultRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Digits("decision_no", req.DecisionNo, 15, 20)
	v.Match("violation_serial", req.ViolationSerial, field.Serial, "1-32 letters or digits")
	v.Digits("form_no", req.FormNo, 1, 32)
	v.Match("order_no", req.OrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Positive("amount", req.Amount)
	v.Time("paid_at", req.PaidAt)
	v.OptionalDigits("receipt_code", req.ReceiptCode, 8)
	v.OptionalDigits("receipt_no", req.ReceiptNo, 10)
	if (req.ReceiptCode == "") != (req.ReceiptNo == "") {
		v.Add("receipt_no", "receipt_code and receipt_no go together: both or neither")
	}
	if err := v.Err(); err != nil {
		return err
	}
	if err := s.record(req); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ResultResponse{Status: "accepted"})
}

func (s *Sim) record(req ResultRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.byOrder[req.OrderNo]; ok {
		if r.DecisionNo != req.DecisionNo || r.Amount != req.Amount || r.FormNo != req.FormNo {
			return apierr.New(http.StatusConflict, "RESULT_CONFLICT",
				"order %s was reported for decision %s, form %s, amount %d", r.OrderNo, r.DecisionNo, r.FormNo, r.Amount)
		}
		r.Reports++
		return nil
	}
	r := &Result{
		DecisionNo: req.DecisionNo, ViolationSerial: req.ViolationSerial, FormNo: req.FormNo,
		OrderNo: req.OrderNo, Amount: req.Amount, PaidAt: req.PaidAt, ReceiptCode: req.ReceiptCode,
		ReceiptNo: req.ReceiptNo, ReceivedAt: shanghai.Time(s.now()), Reports: 1,
	}
	s.results = append(s.results, r)
	s.byOrder[r.OrderNo] = r
	s.log.Info("window payment result received", "decision_no", r.DecisionNo, "order_no", r.OrderNo, "amount", r.Amount)
	return nil
}

// Snapshot copies the state.
func (s *Sim) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Results: make([]Result, 0, len(s.results)), Instructions: append([]Instruction{}, s.instructions...)}
	for _, r := range s.results {
		st.Results = append(st.Results, *r)
	}
	return st
}
