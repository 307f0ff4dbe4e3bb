package banksim

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/adaptersim"
	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/shanghai"
)

// Refund modes: how the refunds instructed after POST /_sandbox/bank/refund-mode behave.
const (
	ModeSuccess = "success" // refunded at once; the result is pushed to the core
	ModeTimeout = "timeout" // refunded at once and pushed, but the first instruction's answer is lost (504)
	ModeFailed  = "failed"  // the bank cannot refund (the payer's account is closed): failed, pushed
)

// RefundModes lists the modes.
var RefundModes = []string{ModeSuccess, ModeTimeout, ModeFailed}

// Refund is a refund instruction the bank took, as its ledger holds it.
type Refund struct {
	RefundNo     string `json:"refund_no"`
	BankSerial   string `json:"bank_serial"`
	OrderNo      string `json:"order_no"`
	Amount       int64  `json:"amount"`
	Reason       string `json:"reason"`
	Mode         string `json:"mode"`
	Status       string `json:"status"` // success or failed
	BankRefundNo string `json:"bank_refund_no,omitempty"`
	Detail       string `json:"detail,omitempty"`
	At           string `json:"at"`
	// Instructions counts the instructions received with this refund number: the bank refunds
	// at the first, the others change nothing.
	Instructions int `json:"instructions"`
	// Report is where the push of the result to the core is: pending, accepted, refused (Code),
	// or unanswered.
	Report     string `json:"report"`
	ReportCode string `json:"report_code,omitempty"`
}

// Entry is a movement of money in the bank's ledger: a payment collected (positive) or a
// refund paid back (negative).
type Entry struct {
	Kind       string `json:"kind"` // payment or refund
	BankSerial string `json:"bank_serial"`
	RefundNo   string `json:"refund_no,omitempty"`
	Amount     int64  `json:"amount"`
	At         string `json:"at"`
}

// Code is the bank's institution code.
func (s *Sim) Code() string { return s.cfg.BankCode }

// SetRefundMode sets how the refunds instructed from now on behave (one of RefundModes).
func (s *Sim) SetRefundMode(mode string) error {
	for _, m := range RefundModes {
		if m == mode {
			s.mu.Lock()
			s.refundMode = mode
			s.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("mode must be one of %v", RefundModes)
}

// Refund takes a refund instruction forwarded by the adapter. The same refund number again is
// the same refund: counted, nothing else changes. A new one is refunded (or fails) at once, and
// its result is pushed to the core through the adapter.
func (s *Sim) Refund(_ context.Context, in adaptersim.RefundInstruction) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.byRefund[in.RefundNo]; ok {
		if r.BankSerial != in.BankSerial || r.Amount != in.Amount {
			return adaptersim.ErrRefundConflict
		}
		r.Instructions++
		s.cfg.Log.Info("bank refund instructed again; nothing changes", "refund_no", r.RefundNo, "instructions", r.Instructions)
		return nil
	}
	var p *Payment
	for _, x := range s.payments {
		if x.BankSerial == in.BankSerial && x.Status == "accepted" {
			p = x
		}
	}
	if p == nil {
		return adaptersim.ErrUnknownPayment
	}
	if in.Amount > p.Amount-p.Refunded {
		return adaptersim.ErrExceedsPaid
	}
	mode := s.refundMode
	if mode == "" {
		mode = ModeSuccess
	}
	now := s.cfg.Now()
	s.refundSeq++
	r := &Refund{RefundNo: in.RefundNo, BankSerial: in.BankSerial, OrderNo: in.OrderNo, Amount: in.Amount, Reason: in.Reason,
		Mode: mode, At: shanghai.Time(now), Instructions: 1, Report: "pending"}
	if mode == ModeFailed {
		r.Status, r.Detail = "failed", "the payer's account is closed"
	} else {
		r.Status = "success"
		r.BankRefundNo = fmt.Sprintf("BR%s%06d%s", now.In(shanghai.Location).Format("20060102"), s.refundSeq, s.randDigits(4))
		p.Refunded += in.Amount
		s.ledger = append(s.ledger, Entry{Kind: "refund", BankSerial: p.BankSerial, RefundNo: r.RefundNo, Amount: -in.Amount, At: r.At})
	}
	s.refunds = append(s.refunds, r)
	s.byRefund[r.RefundNo] = r
	s.cfg.Log.Info("bank refund made", "refund_no", r.RefundNo, "bank_serial", r.BankSerial, "amount", r.Amount, "status", r.Status, "mode", mode)
	s.reports.Add(1)
	go s.report(r.RefundNo)
	if mode == ModeTimeout {
		return adaptersim.ErrBankTimeout
	}
	return nil
}

// RefundState returns the bank's state of a refund.
func (s *Sim) RefundState(refundNo string) (adaptersim.RefundState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byRefund[refundNo]
	if !ok {
		return adaptersim.RefundState{}, false
	}
	return s.stateOf(r), true
}

func (s *Sim) stateOf(r *Refund) adaptersim.RefundState {
	st := adaptersim.RefundState{RefundNo: r.RefundNo, BankCode: s.cfg.BankCode, BankSerial: r.BankSerial, Status: r.Status,
		BankRefundNo: r.BankRefundNo, At: r.At, Detail: r.Detail}
	if r.Status == "success" {
		st.RefundedAmount = r.Amount
	}
	return st
}

// report pushes a refund's result to the core through the adapter, under one request ID per
// refund (the adapter sends it again when no verified answer comes).
func (s *Sim) report(refundNo string) {
	defer s.reports.Done()
	st, _ := s.RefundState(refundNo)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := s.cfg.Adapter.RefundResult(ctx, "brr-"+refundNo, st)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.byRefund[refundNo]
	switch {
	case err != nil:
		r.Report = "unanswered"
	case a.Status == http.StatusOK:
		r.Report = "accepted"
	default:
		r.Report, r.ReportCode = "refused", a.Code()
	}
	s.cfg.Log.Info("bank refund result pushed", "refund_no", refundNo, "report", r.Report, "code", r.ReportCode, "err", err)
}

// Wait waits for the pushes of refund results under way.
func (s *Sim) Wait() { s.reports.Wait() }

// RefundModeRequest is the body of POST /_sandbox/bank/refund-mode.
type RefundModeRequest struct {
	Mode string `json:"mode"`
}

func (s *Sim) handleRefundMode(c echo.Context) error {
	var req RefundModeRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	if err := s.SetRefundMode(req.Mode); err != nil {
		return apierr.Invalid(field.CodeInvalid, "mode: %v", err)
	}
	return c.JSON(http.StatusOK, map[string]string{"mode": req.Mode})
}

func (s *Sim) handleLedger(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, s.Snapshot())
}
