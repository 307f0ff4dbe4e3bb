// Package policesim simulates the traffic police business system (交警业务系统) as docs/partners.md
// specifies it for flow P3: the core, acting as the traffic police front system, looks decisions
// up by number and reports the payments agency banks collected, and, for flow R4, the outcome
// of the refunds of those payments (POST /police/v1/refund-results). Decisions are put in by tests
// and the demo through POST /_sandbox/police/decisions; the party's name and plate are answered
// SM2-encrypted to the core's encryption certificate.
//
// The /police/v1 routes are meant to sit behind partnerapi.Guard, which verifies and signs the
// envelope.
package policesim

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/refundsim"
	"finepay/sandbox/internal/shanghai"
)

// Encrypter encrypts to the core's encryption certificate; *gm.PublicKey is one.
type Encrypter interface {
	Encrypt(rand io.Reader, plaintext []byte) ([]byte, error)
}

// Config configures the simulator.
type Config struct {
	// CoreEnc encrypts party_name_enc and plate_enc (core-enc.pem).
	CoreEnc Encrypter
	// NonTaxPaid reports whether the non-tax system already holds a payment report of the order:
	// the simulator records it with each result, so that a test can check that the police system
	// was told first.
	NonTaxPaid func(orderNo string) bool
	Now        func() time.Time
	Rand       io.Reader
	Log        *slog.Logger
}

// Decision is a penalty decision the police business system knows.
type Decision struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	PartyName       string `json:"party_name"`
	Plate           string `json:"plate"`
	Fine            int64  `json:"fine"`
	ServedDate      string `json:"served_date"`
	LateFeeApplies  bool   `json:"late_fee_applies"`
	UnitCode        string `json:"unit_code"`
	ItemCode        string `json:"item_code"`
	Status          string `json:"status"` // unpaid or paid
	// PaidBy is the order number of the first payment result received.
	PaidBy string `json:"paid_by,omitempty"`
}

// Result is a payment result received.
type Result struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	FormNo          string `json:"form_no"`
	PayCode         string `json:"pay_code"`
	OrderNo         string `json:"order_no"`
	Channel         string `json:"channel"`
	ChannelTradeNo  string `json:"channel_trade_no"`
	Amount          int64  `json:"amount"`
	Fine            int64  `json:"fine"`
	LateFee         int64  `json:"late_fee"`
	PaidAt          string `json:"paid_at"`
	ReceivedAt      string `json:"received_at"`
	// Duplicate: the decision was already paid by another order.
	Duplicate bool `json:"duplicate"`
	// NonTaxBefore is true when the non-tax system had the payment before the police system
	// (the wrong order for flow P3).
	NonTaxBefore bool `json:"nontax_before"`
	Reports      int  `json:"reports"`
}

// State is what the simulator holds, for /_sandbox/state.
type State struct {
	Decisions     []Decision     `json:"police_decisions"`
	Results       []Result       `json:"police_results"`
	RefundResults []RefundResult `json:"police_refund_results"`
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	cfg Config

	mu         sync.Mutex
	decisions  []*Decision
	byDecision map[string]*Decision
	results    []*Result
	byOrder    map[string]*Result
	refunds    []*RefundResult
	byRefund   map[string]*RefundResult
}

// New returns an empty simulator.
func New(cfg Config) *Sim {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.NonTaxPaid == nil {
		cfg.NonTaxPaid = func(string) bool { return false }
	}
	return &Sim{cfg: cfg, byDecision: map[string]*Decision{}, byOrder: map[string]*Result{}, byRefund: map[string]*RefundResult{}}
}

// Register adds the partner routes to g, which should be mounted at /police/v1.
func (s *Sim) Register(g *echo.Group) {
	g.GET("/decisions/:decision_no", s.handleDecision)
	g.POST("/payment-results", s.handleResult)
	g.POST("/refund-results", s.handleRefundResult)
}

// RegisterSandbox adds POST /_sandbox/police/decisions to e.
func (s *Sim) RegisterSandbox(e *echo.Echo) {
	e.POST("/_sandbox/police/decisions", s.handleAdd)
}

// DecisionAnswer is the answer to GET /police/v1/decisions/{decision_no}.
type DecisionAnswer struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	PartyNameEnc    string `json:"party_name_enc"`
	PlateEnc        string `json:"plate_enc"`
	Fine            int64  `json:"fine"`
	ServedDate      string `json:"served_date"`
	LateFeeApplies  bool   `json:"late_fee_applies"`
	UnitCode        string `json:"unit_code"`
	ItemCode        string `json:"item_code"`
	Status          string `json:"status"`
}

func (s *Sim) handleDecision(c echo.Context) error {
	no := c.Param("decision_no")
	var v field.Checker
	v.Digits("decision_no", no, 15, 20)
	if err := v.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	d, ok := s.byDecision[no]
	var cp Decision
	if ok {
		cp = *d
	}
	s.mu.Unlock()
	if !ok {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "decision %s is unknown", no)
	}
	name, err := s.encrypt(cp.PartyName)
	if err != nil {
		return err
	}
	plate, err := s.encrypt(cp.Plate)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, DecisionAnswer{
		DecisionNo: cp.DecisionNo, ViolationSerial: cp.ViolationSerial, PartyNameEnc: name, PlateEnc: plate,
		Fine: cp.Fine, ServedDate: cp.ServedDate, LateFeeApplies: cp.LateFeeApplies, UnitCode: cp.UnitCode,
		ItemCode: cp.ItemCode, Status: cp.Status,
	})
}

func (s *Sim) encrypt(text string) (string, error) {
	ct, err := s.cfg.CoreEnc.Encrypt(s.cfg.Rand, []byte(text))
	if err != nil {
		return "", fmt.Errorf("policesim: encrypt: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// ResultRequest is the body of POST /police/v1/payment-results.
type ResultRequest struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	FormNo          string `json:"form_no"`
	PayCode         string `json:"pay_code"`
	OrderNo         string `json:"order_no"`
	Channel         string `json:"channel"`
	ChannelTradeNo  string `json:"channel_trade_no"`
	Amount          int64  `json:"amount"`
	Fine            int64  `json:"fine"`
	LateFee         int64  `json:"late_fee"`
	PaidAt          string `json:"paid_at"`
}

var channels = map[string]bool{"wechat": true, "alipay": true, "unionpay": true, "bank": true}

func (s *Sim) handleResult(c echo.Context) error {
	var req ResultRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Digits("decision_no", req.DecisionNo, 15, 20)
	v.Match("violation_serial", req.ViolationSerial, field.Serial, "1-32 letters or digits")
	v.Digits("form_no", req.FormNo, 1, 32)
	v.Digits("pay_code", req.PayCode, 1, 32)
	v.Match("order_no", req.OrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	if !channels[req.Channel] {
		v.Add("channel", "must be one of wechat, alipay, unionpay, bank")
	}
	v.Match("channel_trade_no", req.ChannelTradeNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Positive("amount", req.Amount)
	v.Positive("fine", req.Fine)
	v.NonNegative("late_fee", req.LateFee)
	if req.Amount != req.Fine+req.LateFee {
		v.Add("amount", "must equal fine + late_fee")
	}
	v.Time("paid_at", req.PaidAt)
	if err := v.Err(); err != nil {
		return err
	}
	nontaxFirst := s.cfg.NonTaxPaid(req.OrderNo)
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.byDecision[req.DecisionNo]
	if !ok {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "decision %s is unknown", req.DecisionNo)
	}
	if req.Fine != d.Fine || req.ViolationSerial != d.ViolationSerial {
		return apierr.Invalid(field.CodeInvalid, "fine and violation_serial must be the decision's (%d, %s)", d.Fine, d.ViolationSerial)
	}
	if r, ok := s.byOrder[req.OrderNo]; ok {
		if r.DecisionNo != req.DecisionNo || r.Amount != req.Amount || r.FormNo != req.FormNo {
			return apierr.New(http.StatusConflict, "RESULT_CONFLICT", "order %s was reported for decision %s, amount %d",
				r.OrderNo, r.DecisionNo, r.Amount)
		}
		r.Reports++
		return c.JSON(http.StatusOK, map[string]any{"status": "accepted", "duplicate": r.Duplicate})
	}
	r := &Result{
		DecisionNo: req.DecisionNo, ViolationSerial: req.ViolationSerial, FormNo: req.FormNo, PayCode: req.PayCode,
		OrderNo: req.OrderNo, Channel: req.Channel, ChannelTradeNo: req.ChannelTradeNo, Amount: req.Amount, Fine: req.Fine,
		LateFee: req.LateFee, PaidAt: req.PaidAt, ReceivedAt: shanghai.Time(s.cfg.Now()), Duplicate: d.Status == "paid",
		NonTaxBefore: nontaxFirst, Reports: 1,
	}
	if d.Status != "paid" {
		d.Status, d.PaidBy = "paid", req.OrderNo
	}
	s.results = append(s.results, r)
	s.byOrder[r.OrderNo] = r
	s.cfg.Log.Info("police payment result received", "decision_no", r.DecisionNo, "order_no", r.OrderNo,
		"amount", r.Amount, "duplicate", r.Duplicate)
	return c.JSON(http.StatusOK, map[string]any{"status": "accepted", "duplicate": r.Duplicate})
}

// AddRequest is the body of POST /_sandbox/police/decisions. Empty fields are invented:
// a decision number of Harbin (2301…), a serial, 张三, 黑A12345, ¥200.00 served today, unit
// 230100, item 103050101; late fees apply unless late_fee_applies is false.
type AddRequest struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	PartyName       string `json:"party_name"`
	Plate           string `json:"plate"`
	Fine            int64  `json:"fine"`
	ServedDate      string `json:"served_date"`
	LateFeeApplies  *bool  `json:"late_fee_applies"`
	UnitCode        string `json:"unit_code"`
	ItemCode        string `json:"item_code"`
}

func (s *Sim) handleAdd(c echo.Context) error {
	var req AddRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	d, err := s.Add(req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// Add puts a decision in, inventing the fields not given.
func (s *Sim) Add(req AddRequest) (Decision, error) {
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			x, _ := rand.Int(s.cfg.Rand, big.NewInt(10))
			b[i] = byte('0' + x.Int64())
		}
		return string(b)
	}
	d := Decision{DecisionNo: req.DecisionNo, ViolationSerial: req.ViolationSerial, PartyName: req.PartyName, Plate: req.Plate,
		Fine: req.Fine, ServedDate: req.ServedDate, LateFeeApplies: req.LateFeeApplies == nil || *req.LateFeeApplies,
		UnitCode: req.UnitCode, ItemCode: req.ItemCode, Status: "unpaid"}
	if d.DecisionNo == "" {
		d.DecisionNo = "2301" + digits(12)
	}
	if d.ViolationSerial == "" {
		d.ViolationSerial = "2301" + digits(12)
	}
	if d.PartyName == "" {
		d.PartyName = "张三"
	}
	if d.Plate == "" {
		d.Plate = "黑A" + digits(5)
	}
	if d.Fine == 0 {
		d.Fine = 20000
	}
	if d.ServedDate == "" {
		d.ServedDate = shanghai.Date(s.cfg.Now())
	}
	if d.UnitCode == "" {
		d.UnitCode = "230100"
	}
	if d.ItemCode == "" {
		d.ItemCode = "103050101"
	}
	var v field.Checker
	v.Digits("decision_no", d.DecisionNo, 15, 20)
	v.Match("violation_serial", d.ViolationSerial, field.Serial, "1-32 letters or digits")
	v.Positive("fine", d.Fine)
	v.Date("served_date", d.ServedDate)
	v.Digits("unit_code", d.UnitCode, 6, 20)
	v.Digits("item_code", d.ItemCode, 1, 20)
	if err := v.Err(); err != nil {
		return Decision{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byDecision[d.DecisionNo]; ok {
		return Decision{}, apierr.New(http.StatusConflict, "DECISION_EXISTS", "decision %s is already known", d.DecisionNo)
	}
	p := &d
	s.decisions = append(s.decisions, p)
	s.byDecision[d.DecisionNo] = p
	return d, nil
}

// Snapshot copies the state.
func (s *Sim) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Decisions: make([]Decision, 0, len(s.decisions)), Results: make([]Result, 0, len(s.results)),
		RefundResults: make([]RefundResult, 0, len(s.refunds))}
	for _, r := range s.refunds {
		st.RefundResults = append(st.RefundResults, *r)
	}
	for _, d := range s.decisions {
		st.Decisions = append(st.Decisions, *d)
	}
	for _, r := range s.results {
		st.Results = append(st.Results, *r)
	}
	return st
}

// RefundResultRequest is the body of POST /police/v1/refund-results: the outcome of a refund of a
// payment the police system was told of (flow R4).
type RefundResultRequest = refundsim.OutcomeRequest

// RefundResult is a refund outcome received.
type RefundResult struct {
	RefundResultRequest
	DecisionNo string `json:"decision_no"`
	ReceivedAt string `json:"received_at"`
	Reports    int    `json:"reports"`
}

func (s *Sim) handleRefundResult(c echo.Context) error {
	req, err := refundsim.DecodeOutcome(c.Request().Body)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.byOrder[req.OrderNo]
	if !ok {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no payment of order %s was reported", req.OrderNo)
	}
	if req.Amount > p.Amount || req.FormNo != p.FormNo {
		return apierr.Invalid(field.CodeInvalid, "amount and form_no must fit payment %s (%d, form %s)", p.OrderNo, p.Amount, p.FormNo)
	}
	if r, ok := s.byRefund[req.RefundNo]; ok {
		if r.Status != req.Status || r.Amount != req.Amount || r.OrderNo != req.OrderNo {
			return apierr.New(http.StatusConflict, "RESULT_CONFLICT", "refund %s was reported %s for %d", req.RefundNo, r.Status, r.Amount)
		}
		r.Reports++
		return c.JSON(http.StatusOK, map[string]string{"status": "accepted"})
	}
	r := &RefundResult{RefundResultRequest: req, DecisionNo: p.DecisionNo, ReceivedAt: shanghai.Time(s.cfg.Now()), Reports: 1}
	s.refunds = append(s.refunds, r)
	s.byRefund[r.RefundNo] = r
	s.cfg.Log.Info("police refund result received", "refund_no", r.RefundNo, "order_no", r.OrderNo, "decision_no", r.DecisionNo,
		"status", r.Status, "amount", r.Amount)
	return c.JSON(http.StatusOK, map[string]string{"status": "accepted"})
}
