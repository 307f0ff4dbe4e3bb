package adaptersim

import (
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
)

// RefundInstruction is the body of POST /adapter/v1/refunds: the core asks that a bank payment
// be refunded (flow R4).
type RefundInstruction struct {
	RefundNo   string `json:"refund_no"`
	BankCode   string `json:"bank_code"`
	BankSerial string `json:"bank_serial"`
	OrderNo    string `json:"order_no"`
	PaidAmount int64  `json:"paid_amount"`
	Amount     int64  `json:"amount"`
	Reason     string `json:"reason"`
}

// RefundState is the bank's word on a refund: the answer of GET /adapter/v1/refunds/{refund_no}
// and the body of the result pushed to the core (POST /partner/v1/bank/refund-results).
type RefundState struct {
	RefundNo       string `json:"refund_no"`
	BankCode       string `json:"bank_code"`
	BankSerial     string `json:"bank_serial"`
	Status         string `json:"status"` // processing, success or failed
	BankRefundNo   string `json:"bank_refund_no"`
	RefundedAmount int64  `json:"refunded_amount"`
	At             string `json:"at"`
	Detail         string `json:"detail"`
}

// Errors a Bank answers an instruction with.
var (
	// ErrUnknownPayment: the bank has no payment of that serial.
	ErrUnknownPayment = errors.New("adaptersim: the bank has no such payment")
	// ErrRefundConflict: the refund number was instructed before with other facts.
	ErrRefundConflict = errors.New("adaptersim: the refund number was instructed with other facts")
	// ErrExceedsPaid: the amount exceeds what is left of the payment.
	ErrExceedsPaid = errors.New("adaptersim: the amount exceeds what is left to refund")
	// ErrBankTimeout: the bank did not answer in time (it may have taken the refund).
	ErrBankTimeout = errors.New("adaptersim: the bank did not answer in time")
)

// Bank is the agency bank as the adapter forwards the core's refund instructions to it;
// *banksim.Sim is one.
type Bank interface {
	Code() string
	// Refund takes an instruction; the same refund number again is the same refund.
	Refund(ctx context.Context, in RefundInstruction) error
	// RefundState returns the bank's state of a refund, false when it never got it.
	RefundState(refundNo string) (RefundState, bool)
}

// SetBank connects the bank the core's refund instructions are forwarded to.
func (a *Adapter) SetBank(b Bank) { a.bank = b }

// RefundResult pushes a bank's refund result to the core.
func (a *Adapter) RefundResult(ctx context.Context, requestID string, body RefundState) (Answer, error) {
	return a.post(ctx, "/partner/v1/bank/refund-results", requestID, body)
}

// Register adds the routes the core calls to g, mounted at /adapter/v1 behind
// partnerapi.Guard (which verifies the core's signature and signs the answers):
//
//	POST /refunds              a refund instruction, forwarded to the bank
//	GET  /refunds/{refund_no}  the bank's state of a refund
func (a *Adapter) Register(g *echo.Group) {
	g.POST("/refunds", a.handleRefund)
	g.GET("/refunds/:refund_no", a.handleRefundState)
}

var reRefundNo = regexp.MustCompile(`^[A-Za-z0-9]{8,40}$`)

func (a *Adapter) handleRefund(c echo.Context) error {
	var in RefundInstruction
	if err := field.DecodeJSON(c.Request().Body, &in); err != nil {
		return err
	}
	var v field.Checker
	v.Match("refund_no", in.RefundNo, reRefundNo, "8-40 letters or digits")
	v.Digits("bank_code", in.BankCode, 3, 12)
	v.Match("bank_serial", in.BankSerial, field.Serial, "1-32 letters or digits")
	v.Match("order_no", in.OrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Positive("paid_amount", in.PaidAmount)
	v.Positive("amount", in.Amount)
	if in.Amount > in.PaidAmount {
		v.Add("amount", "must not exceed paid_amount %d", in.PaidAmount)
	}
	v.Required("reason", in.Reason)
	if err := v.Err(); err != nil {
		return err
	}
	if a.bank == nil || in.BankCode != a.bank.Code() {
		return apierr.New(http.StatusNotFound, "BANK_NOT_FOUND", "the adapter serves no bank %s", in.BankCode)
	}
	err := a.bank.Refund(c.Request().Context(), in)
	a.cfg.Log.Info("adapter: refund instruction forwarded", "refund_no", in.RefundNo, "bank_serial", in.BankSerial,
		"amount", in.Amount, "err", err)
	switch {
	case errors.Is(err, ErrUnknownPayment):
		return apierr.New(http.StatusNotFound, "PAYMENT_NOT_FOUND", "bank %s has no payment %s", in.BankCode, in.BankSerial)
	case errors.Is(err, ErrRefundConflict):
		return apierr.New(http.StatusConflict, "REFUND_CONFLICT", "refund %s was instructed with other facts", in.RefundNo)
	case errors.Is(err, ErrExceedsPaid):
		return apierr.New(http.StatusUnprocessableEntity, "AMOUNT_EXCEEDS_PAID", "refund %s exceeds what is left of payment %s", in.RefundNo, in.BankSerial)
	case errors.Is(err, ErrBankTimeout):
		return apierr.New(http.StatusGatewayTimeout, "BANK_TIMEOUT", "bank %s did not answer in time; instruct again with the same refund_no", in.BankCode)
	case err != nil:
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "accepted", "refund_no": in.RefundNo})
}

func (a *Adapter) handleRefundState(c echo.Context) error {
	no := c.Param("refund_no")
	var v field.Checker
	v.Match("refund_no", no, reRefundNo, "8-40 letters or digits")
	if err := v.Err(); err != nil {
		return err
	}
	if a.bank == nil {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no refund %s", no)
	}
	st, ok := a.bank.RefundState(no)
	if !ok {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "the bank never got refund %s", no)
	}
	return c.JSON(http.StatusOK, st)
}
