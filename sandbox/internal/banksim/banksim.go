// Package banksim simulates an agency bank's non-tax collection system (银行代理非税系统) for flow
// P3: a payer gives a decision number at the bank's counter or app; the bank asks the finance
// adapter what is owed, collects it, reports the result through the adapter, and at the end of
// the day sends its detail file through the adapter for reconciliation. For flow R4 it takes the
// core's refund instructions from the adapter, refunds once per refund number, keeps the money
// in a ledger (payments collected, refunds paid back) and pushes each refund's result back
// through the adapter to the core. Tests and the demo drive it through /_sandbox/bank/...
// (sandbox/README.md).
package banksim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/adaptersim"
	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/shanghai"
	"finepay/shared/gm"
)

// DefaultBankCode is the simulated bank's institution code.
const DefaultBankCode = "104100000004"

// Adapter is the finance adapter as the bank sees it; *adaptersim.Adapter is one.
type Adapter interface {
	NewRequestID() string
	Query(ctx context.Context, requestID string, body any) (adaptersim.Answer, error)
	Pay(ctx context.Context, requestID string, body any) (adaptersim.Answer, error)
	Reconcile(ctx context.Context, requestID string, body any) (adaptersim.Answer, error)
	RefundResult(ctx context.Context, requestID string, body adaptersim.RefundState) (adaptersim.Answer, error)
}

// Config configures the simulator.
type Config struct {
	BankCode string
	Adapter  Adapter
	Now      func() time.Time
	Rand     io.Reader
	Log      *slog.Logger
}

// Quote is what the core answered a query with (the fields the bank uses).
type Quote struct {
	DecisionNo   string `json:"decision_no"`
	PayCode      string `json:"pay_code"`
	FormNo       string `json:"form_no"`
	Fine         int64  `json:"fine"`
	LateFee      int64  `json:"late_fee"`
	Amount       int64  `json:"amount"`
	BusinessDate string `json:"business_date"`
}

// Payment is a payment the bank collected, as its ledger holds it.
type Payment struct {
	BankSerial   string `json:"bank_serial"`
	DecisionNo   string `json:"decision_no"`
	PayCode      string `json:"pay_code"`
	Amount       int64  `json:"amount"`
	Fine         int64  `json:"fine"`
	LateFee      int64  `json:"late_fee"`
	PaidAt       string `json:"paid_at"`
	BusinessDate string `json:"business_date"`
	// Status is accepted (the core took the result) or refused (with Code), or unknown.
	Status string `json:"status"`
	Code   string `json:"code,omitempty"`
	Result string `json:"result,omitempty"` // paid or duplicate, from the core
	// Refunded is how much of the payment the bank paid back (flow R4).
	Refunded int64 `json:"refunded"`
}

// State is what the simulator holds, for /_sandbox/state.
type State struct {
	BankCode string    `json:"bank_code"`
	Payments []Payment `json:"bank_payments"`
	Refunds  []Refund  `json:"bank_refunds"`
	// Ledger is every movement of money, oldest first; Balance their sum.
	Ledger  []Entry `json:"ledger"`
	Balance int64   `json:"balance"`
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	cfg Config

	mu         sync.Mutex
	payments   []*Payment
	seq        int
	refunds    []*Refund
	byRefund   map[string]*Refund
	refundMode string
	refundSeq  int
	ledger     []Entry
	reports    sync.WaitGroup // pushes of refund results under way
}

// New returns an empty simulator.
func New(cfg Config) *Sim {
	if cfg.BankCode == "" {
		cfg.BankCode = DefaultBankCode
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
	return &Sim{cfg: cfg, byRefund: map[string]*Refund{}}
}

// Register adds the driving endpoints to e.
func (s *Sim) Register(e *echo.Echo) {
	e.POST("/_sandbox/bank/pay", s.handlePay)
	e.POST("/_sandbox/bank/eod", s.handleEOD)
	e.POST("/_sandbox/bank/refund-mode", s.handleRefundMode)
	e.GET("/_sandbox/bank/ledger", s.handleLedger)
}

// PayRequest is the body of POST /_sandbox/bank/pay.
type PayRequest struct {
	DecisionNo string `json:"decision_no"`
	// Quote, when given, is an earlier query's answer (as the core sent it; fields other than
	// Quote's are ignored): the bank collects on it without asking again (as a bank whose payer
	// was quoted before another route paid).
	Quote json.RawMessage `json:"quote,omitempty"`
	// LateFeeDelta is added to the late fee (and the amount) the bank reports: a bank that
	// collected a wrong amount.
	LateFeeDelta int64 `json:"late_fee_delta,omitempty"`
	// Repeat is how many times the result is reported (1 to 10; 1 when 0), each time as a new
	// request as a bank resending its result does.
	Repeat int `json:"repeat,omitempty"`
}

// PayAnswer is the answer of POST /_sandbox/bank/pay.
type PayAnswer struct {
	Query      *adaptersim.Answer  `json:"query,omitempty"`
	BankSerial string              `json:"bank_serial,omitempty"`
	Results    []adaptersim.Answer `json:"results"`
	Payment    *Payment            `json:"payment,omitempty"`
}

func (s *Sim) handlePay(c echo.Context) error {
	var req PayRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	if len(req.Quote) == 0 {
		v.Digits("decision_no", req.DecisionNo, 15, 20)
	} else if err := json.Unmarshal(req.Quote, new(Quote)); err != nil {
		v.Add("quote", "must be a query answer object")
	}
	if req.Repeat < 0 || req.Repeat > 10 {
		v.Add("repeat", "must be 0 to 10")
	}
	if err := v.Err(); err != nil {
		return err
	}
	ans, err := s.Pay(c.Request().Context(), req)
	if err != nil {
		return apierr.Wrap(err, http.StatusBadGateway, "ADAPTER_FAILED", "the adapter got no verified answer from the core")
	}
	return c.JSON(http.StatusOK, ans)
}

// Pay runs one collection: query (unless quoted), collect, report.
func (s *Sim) Pay(ctx context.Context, req PayRequest) (PayAnswer, error) {
	var out PayAnswer
	var q *Quote
	if len(req.Quote) > 0 {
		q = new(Quote)
		if err := json.Unmarshal(req.Quote, q); err != nil {
			return out, fmt.Errorf("banksim: quote: %w", err)
		}
	} else {
		a, err := s.cfg.Adapter.Query(ctx, s.cfg.Adapter.NewRequestID(), map[string]string{
			"decision_no": req.DecisionNo, "bank_code": s.cfg.BankCode})
		if err != nil {
			return out, err
		}
		out.Query = &a
		if a.Status != http.StatusOK {
			return out, nil
		}
		q = new(Quote)
		if err := json.Unmarshal(a.Body, q); err != nil {
			return out, fmt.Errorf("banksim: query answer: %w", err)
		}
	}
	now := s.cfg.Now()
	s.mu.Lock()
	s.seq++
	p := &Payment{
		BankSerial: fmt.Sprintf("BS%s%06d%s", now.In(shanghai.Location).Format("20060102"), s.seq, s.randDigits(4)),
		DecisionNo: q.DecisionNo, PayCode: q.PayCode, Fine: q.Fine, LateFee: q.LateFee + req.LateFeeDelta,
		Amount: q.Fine + q.LateFee + req.LateFeeDelta, PaidAt: shanghai.Time(now), BusinessDate: shanghai.Date(now),
		Status: "unknown",
	}
	s.payments = append(s.payments, p)
	s.ledger = append(s.ledger, Entry{Kind: "payment", BankSerial: p.BankSerial, Amount: p.Amount, At: p.PaidAt})
	s.mu.Unlock()
	out.BankSerial = p.BankSerial
	body := map[string]any{"bank_code": s.cfg.BankCode, "bank_serial": p.BankSerial, "decision_no": p.DecisionNo,
		"pay_code": p.PayCode, "amount": p.Amount, "fine": p.Fine, "late_fee": p.LateFee, "paid_at": p.PaidAt}
	for range max(req.Repeat, 1) {
		a, err := s.cfg.Adapter.Pay(ctx, s.cfg.Adapter.NewRequestID(), body)
		if err != nil {
			return out, err
		}
		out.Results = append(out.Results, a)
	}
	first := out.Results[0]
	s.mu.Lock()
	if first.Status == http.StatusOK {
		var r struct {
			Result string `json:"result"`
		}
		json.Unmarshal(first.Body, &r)
		p.Status, p.Result = "accepted", r.Result
	} else {
		p.Status, p.Code = "refused", first.Code()
	}
	cp := *p
	s.mu.Unlock()
	out.Payment = &cp
	s.cfg.Log.Info("bank collected", "bank_serial", cp.BankSerial, "decision_no", cp.DecisionNo, "amount", cp.Amount,
		"status", cp.Status, "code", cp.Code)
	return out, nil
}

func (s *Sim) randDigits(n int) string {
	var b strings.Builder
	for range n {
		x, _ := rand.Int(s.cfg.Rand, big.NewInt(10))
		b.WriteByte(byte('0' + x.Int64()))
	}
	return b.String()
}

// EODRequest is the body of POST /_sandbox/bank/eod.
type EODRequest struct {
	// BusinessDate is the day to reconcile (YYYY-MM-DD); today when empty.
	BusinessDate string `json:"business_date,omitempty"`
	// UnknownLines adds lines of payments the core never heard of (a lost result).
	UnknownLines int `json:"unknown_lines,omitempty"`
	// AlterAmounts changes the amount of the given serials in the file (the late fee moves with it):
	// the bank's books differ from what it reported.
	AlterAmounts map[string]int64 `json:"alter_amounts,omitempty"`
}

// EODAnswer is the answer of POST /_sandbox/bank/eod.
type EODAnswer struct {
	File   string            `json:"file"`
	Answer adaptersim.Answer `json:"answer"`
}

func (s *Sim) handleEOD(c echo.Context) error {
	var req EODRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	if req.BusinessDate != "" {
		v.Date("business_date", req.BusinessDate)
	}
	if req.UnknownLines < 0 || req.UnknownLines > 100 {
		v.Add("unknown_lines", "must be 0 to 100")
	}
	if err := v.Err(); err != nil {
		return err
	}
	ans, err := s.EndOfDay(c.Request().Context(), req)
	if err != nil {
		return apierr.Wrap(err, http.StatusBadGateway, "ADAPTER_FAILED", "the adapter got no verified answer from the core")
	}
	return c.JSON(http.StatusOK, ans)
}

// File builds the end-of-day file of a day (the format of docs/partners.md).
func (s *Sim) File(req EODRequest) string {
	day := req.BusinessDate
	if day == "" {
		day = shanghai.Date(s.cfg.Now())
	}
	type line struct {
		serial, decision, payCode, paidAt string
		amount, fine, late                int64
	}
	var lines []line
	s.mu.Lock()
	for _, p := range s.payments {
		if p.BusinessDate != day || p.Status != "accepted" {
			continue
		}
		l := line{p.BankSerial, p.DecisionNo, p.PayCode, p.PaidAt, p.Amount, p.Fine, p.LateFee}
		if a, ok := req.AlterAmounts[p.BankSerial]; ok {
			l.late += a - l.amount
			l.amount = a
		}
		lines = append(lines, l)
	}
	s.mu.Unlock()
	paidAt := day + "T12:00:00+08:00"
	for i := range req.UnknownLines {
		lines = append(lines, line{fmt.Sprintf("BSX%s%04d", strings.ReplaceAll(day, "-", ""), i), "2301" + s.randDigits(12),
			"9" + s.randDigits(19), paidAt, 5000, 5000, 0})
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i].serial < lines[j].serial })
	var total int64
	var body strings.Builder
	for _, l := range lines {
		total += l.amount
		fmt.Fprintf(&body, "%s|%s|%s|%d|%d|%d|%s\n", l.serial, l.decision, l.payCode, l.amount, l.fine, l.late, l.paidAt)
	}
	return fmt.Sprintf("FPBANK|1|%s|%s|%d|%d\n", s.cfg.BankCode, strings.ReplaceAll(day, "-", ""), len(lines), total) + body.String()
}

// EndOfDay sends the day's file through the adapter.
func (s *Sim) EndOfDay(ctx context.Context, req EODRequest) (EODAnswer, error) {
	day := req.BusinessDate
	if day == "" {
		day = shanghai.Date(s.cfg.Now())
	}
	file := s.File(req)
	d := gm.SM3([]byte(file))
	a, err := s.cfg.Adapter.Reconcile(ctx, s.cfg.Adapter.NewRequestID(), map[string]string{
		"bank_code": s.cfg.BankCode, "business_date": day, "file": file, "file_sm3": hex.EncodeToString(d[:])})
	if err != nil {
		return EODAnswer{File: file}, err
	}
	return EODAnswer{File: file, Answer: a}, nil
}

// Snapshot copies the state.
func (s *Sim) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{BankCode: s.cfg.BankCode, Payments: make([]Payment, 0, len(s.payments)), Refunds: make([]Refund, 0, len(s.refunds)),
		Ledger: append([]Entry{}, s.ledger...)}
	for _, p := range s.payments {
		st.Payments = append(st.Payments, *p)
	}
	for _, r := range s.refunds {
		st.Refunds = append(st.Refunds, *r)
	}
	for _, e := range s.ledger {
		st.Balance += e.Amount
	}
	return st
}
