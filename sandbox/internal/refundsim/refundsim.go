// Package refundsim simulates the finance side of refunds as docs/partners.md specifies it: the
// e-receipt platform's refund application (which it forwards to the non-tax system for review),
// the non-tax system's review decision, and the parties told a refund's outcome (the non-tax
// system, the unified public payment platform, the window platform and the 12123 platform).
//
// Review decisions: an application whose reason contains "reject" is rejected; any other is
// pending at the first look and approved at the second, so that the caller's polling is
// exercised. POST /_sandbox/refund-reviews/{refund_no} sets a decision by hand.
//
// The routes are meant to sit behind partnerapi.Guard, which verifies and signs the envelope.
package refundsim

import (
	"io"
	"log/slog"
	"net/http"
	"regexp"
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
}

// Review decisions.
const (
	Pending  = "pending"
	Approved = "approved"
	Rejected = "rejected"
)

// Application is a refund application received by the e-receipt platform.
type Application struct {
	ApplicationRequest
	Decision   string `json:"decision"`
	Looks      int    `json:"looks"` // how often the decision was asked for
	ReceivedAt string `json:"received_at"`
	Repeats    int    `json:"repeats"`
}

// Outcome is a refund outcome reported to one party.
type Outcome struct {
	OutcomeRequest
	Party      string `json:"party"`
	ReceivedAt string `json:"received_at"`
	Reports    int    `json:"reports"`
}

// State is what the simulator holds, for /_sandbox/state.
type State struct {
	Applications []Application `json:"refund_applications"`
	Outcomes     []Outcome     `json:"refund_outcomes"`
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	now func() time.Time
	log *slog.Logger

	mu       sync.Mutex
	apps     []*Application
	byRefund map[string]*Application
	outcomes []*Outcome
	byParty  map[string]*Outcome // party + "/" + refund_no
}

// New returns an empty simulator.
func New(cfg Config) *Sim {
	s := &Sim{now: cfg.Now, log: cfg.Log, byRefund: map[string]*Application{}, byParty: map[string]*Outcome{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// RegisterApplications adds POST /refund-applications to g, mounted at /ereceipt/v1.
func (s *Sim) RegisterApplications(g *echo.Group) {
	g.POST("/refund-applications", s.handleApply)
}

// RegisterReviews adds GET /refund-reviews/{refund_no} to g, mounted at /nontax/v1.
func (s *Sim) RegisterReviews(g *echo.Group) {
	g.GET("/refund-reviews/:refund_no", s.handleReview)
}

// RegisterOutcomes adds POST /refund-results to g for party ("nontax", "unified", "window", "isp").
func (s *Sim) RegisterOutcomes(g *echo.Group, party string) {
	g.POST("/refund-results", func(c echo.Context) error { return s.handleOutcome(c, party) })
}

// RegisterControl adds POST /refund-reviews/{refund_no} {"decision":...} to g (mounted at /_sandbox).
func (s *Sim) RegisterControl(g *echo.Group) {
	g.POST("/refund-reviews/:refund_no", s.handleDecide)
}

var (
	reRefundNo = regexp.MustCompile(`^[A-Za-z0-9]{8,40}$`)
	reRoute    = regexp.MustCompile(`^R[1-5]$`)
)

// ApplicationRequest is the body of POST /ereceipt/v1/refund-applications.
type ApplicationRequest struct {
	RefundNo    string `json:"refund_no"`
	Route       string `json:"route"`
	FormNo      string `json:"form_no"`
	OrderNo     string `json:"order_no"`
	ReceiptCode string `json:"receipt_code"`
	ReceiptNo   string `json:"receipt_no"`
	PaidAmount  int64  `json:"paid_amount"`
	Amount      int64  `json:"amount"`
	Reason      string `json:"reason"`
}

func (s *Sim) handleApply(c echo.Context) error {
	var req ApplicationRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Match("refund_no", req.RefundNo, reRefundNo, "8-40 letters or digits")
	v.Match("route", req.Route, reRoute, "R1 to R5")
	v.Digits("form_no", req.FormNo, 1, 32)
	v.Match("order_no", req.OrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.OptionalDigits("receipt_code", req.ReceiptCode, 8)
	v.OptionalDigits("receipt_no", req.ReceiptNo, 10)
	v.Positive("paid_amount", req.PaidAmount)
	v.Positive("amount", req.Amount)
	if req.Amount > req.PaidAmount {
		v.Add("amount", "must not exceed paid_amount %d", req.PaidAmount)
	}
	v.Required("reason", req.Reason)
	if err := v.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.byRefund[req.RefundNo]; ok {
		if a.ApplicationRequest != req {
			return apierr.New(http.StatusConflict, "APPLICATION_CONFLICT", "refund %s was applied for with other facts", req.RefundNo)
		}
		a.Repeats++
		return c.JSON(http.StatusOK, map[string]string{"status": "accepted", "refund_no": req.RefundNo})
	}
	a := &Application{ApplicationRequest: req, Decision: Pending, ReceivedAt: shanghai.Time(s.now())}
	s.apps = append(s.apps, a)
	s.byRefund[req.RefundNo] = a
	s.log.Info("refund application received; forwarded for non-tax review", "refund_no", req.RefundNo, "amount", req.Amount, "route", req.Route)
	return c.JSON(http.StatusOK, map[string]string{"status": "accepted", "refund_no": req.RefundNo})
}

// ReviewResponse answers GET /nontax/v1/refund-reviews/{refund_no}.
type ReviewResponse struct {
	RefundNo string `json:"refund_no"`
	Status   string `json:"status"`
	Note     string `json:"note"`
}

func (s *Sim) handleReview(c echo.Context) error {
	no := c.Param("refund_no")
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byRefund[no]
	if !ok {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no refund application %s", no)
	}
	a.Looks++
	if a.Decision == Pending {
		switch {
		case strings.Contains(strings.ToLower(a.Reason), "reject"):
			a.Decision = Rejected
		case a.Looks >= 2:
			a.Decision = Approved
		}
	}
	note := map[string]string{Pending: "under review", Approved: "approved by finance", Rejected: "refused by finance"}[a.Decision]
	return c.JSON(http.StatusOK, ReviewResponse{RefundNo: no, Status: a.Decision, Note: note})
}

func (s *Sim) handleDecide(c echo.Context) error {
	var req struct {
		Decision string `json:"decision"`
	}
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	if req.Decision != Approved && req.Decision != Rejected && req.Decision != Pending {
		return apierr.Invalid(field.CodeInvalid, "decision: must be pending, approved or rejected")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byRefund[c.Param("refund_no")]
	if !ok {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no refund application %s", c.Param("refund_no"))
	}
	a.Decision = req.Decision
	return c.JSON(http.StatusOK, map[string]string{"status": a.Decision})
}

// OutcomeRequest is the body of POST …/refund-results.
type OutcomeRequest struct {
	RefundNo   string `json:"refund_no"`
	Route      string `json:"route"`
	FormNo     string `json:"form_no"`
	OrderNo    string `json:"order_no"`
	Amount     int64  `json:"amount"`
	Status     string `json:"status"`
	ChannelRef string `json:"channel_refund_id"`
	At         string `json:"at"`
}

// DecodeOutcome reads and checks the body of POST …/refund-results, which every party told of a
// refund's outcome takes in the same shape.
func DecodeOutcome(body io.Reader) (OutcomeRequest, error) {
	var req OutcomeRequest
	if err := field.DecodeJSON(body, &req); err != nil {
		return req, err
	}
	var v field.Checker
	v.Match("refund_no", req.RefundNo, reRefundNo, "8-40 letters or digits")
	v.Match("route", req.Route, reRoute, "R1 to R5")
	v.Digits("form_no", req.FormNo, 1, 32)
	v.Match("order_no", req.OrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Positive("amount", req.Amount)
	if req.Status != "refunded" && req.Status != "failed" && req.Status != "rejected" {
		v.Add("status", "must be refunded, failed or rejected")
	}
	v.Time("at", req.At)
	return req, v.Err()
}

func (s *Sim) handleOutcome(c echo.Context, party string) error {
	req, err := DecodeOutcome(c.Request().Body)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := party + "/" + req.RefundNo
	if o, ok := s.byParty[key]; ok {
		if o.Status != req.Status || o.Amount != req.Amount {
			return apierr.New(http.StatusConflict, "RESULT_CONFLICT", "refund %s was reported %s for %d", req.RefundNo, o.Status, o.Amount)
		}
		o.Reports++
		return c.JSON(http.StatusOK, map[string]string{"status": "accepted"})
	}
	o := &Outcome{OutcomeRequest: req, Party: party, ReceivedAt: shanghai.Time(s.now()), Reports: 1}
	s.outcomes = append(s.outcomes, o)
	s.byParty[key] = o
	s.log.Info("refund outcome received", "party", party, "refund_no", req.RefundNo, "status", req.Status)
	return c.JSON(http.StatusOK, map[string]string{"status": "accepted"})
}

// Snapshot copies the state.
func (s *Sim) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Applications: make([]Application, 0, len(s.apps)), Outcomes: make([]Outcome, 0, len(s.outcomes))}
	for _, a := range s.apps {
		st.Applications = append(st.Applications, *a)
	}
	for _, o := range s.outcomes {
		st.Outcomes = append(st.Outcomes, *o)
	}
	return st
}
