package isp

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/ferry/outbox"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/partnerin"
	"finepay/shared/bizdate"
	"finepay/shared/httpx"
)

// Routes mounts the platform's API on g, a group behind partnerin.Guard (normally
// /partner/v1/isp):
//
//	POST /payments                 submit a payment for a decision (201 new order, 200 repeated)
//	GET  /payments/{isp_order_no}  the state of an order
func Routes(g *echo.Group, s *Service) {
	g.POST("/payments", s.handleSubmit)
	g.GET("/payments/:isp_order_no", s.handleGet)
}

// StateJSON is the answer of both endpoints. Amounts are fen; times RFC 3339 (+08:00).
type StateJSON struct {
	ISPOrderNo      string       `json:"isp_order_no"`
	BillNo          string       `json:"bill_no"`
	DecisionNo      string       `json:"decision_no"`
	ViolationSerial string       `json:"violation_serial"`
	CashierURL      string       `json:"cashier_url"`
	Status          string       `json:"status"`
	FormNo          string       `json:"form_no"`
	PayCode         string       `json:"pay_code"`
	Fine            int64        `json:"fine"`
	LateFee         int64        `json:"late_fee"`
	AmountDue       int64        `json:"amount_due"`
	ServedDate      string       `json:"served_date"`
	DueDate         string       `json:"due_date"`
	PartyMasked     string       `json:"party_masked"`
	PlateMasked     string       `json:"plate_masked"`
	UnitName        string       `json:"unit_name"`
	ItemName        string       `json:"item_name"`
	CreatedAt       string       `json:"created_at"`
	Payment         *PaymentJSON `json:"payment"`
	Receipt         *ReceiptJSON `json:"receipt"`
	// ResultPush is where the push of the payment result is: "" before the payment, then
	// pending, running, done or dead.
	ResultPush string `json:"result_push"`
}

// PaymentJSON is the payment of a paid order.
type PaymentJSON struct {
	OrderNo        string `json:"order_no"`
	Channel        string `json:"channel"`
	ChannelTradeNo string `json:"channel_trade_no"`
	Amount         int64  `json:"amount"`
	Fine           int64  `json:"fine"`
	LateFee        int64  `json:"late_fee"`
	PaidAt         string `json:"paid_at"`
}

// ReceiptJSON is the e-receipt of a paid order, once issued.
type ReceiptJSON struct {
	ReceiptCode string `json:"receipt_code"`
	ReceiptNo   string `json:"receipt_no"`
	CheckCode   string `json:"check_code"`
	Amount      int64  `json:"amount"`
	IssuedAt    string `json:"issued_at"`
}

func rfc3339(t time.Time) string { return t.In(bizdate.Location).Format(time.RFC3339) }

// JSON renders st for the platform.
func (st State) JSON() StateJSON {
	v := st.Bill
	j := StateJSON{
		ISPOrderNo: st.ISPOrderNo, BillNo: v.BillNo, DecisionNo: v.DecisionNo, ViolationSerial: v.ViolationSerial,
		CashierURL: v.QRURL, Status: v.Status, FormNo: v.FormNo, PayCode: v.PayCode, Fine: int64(v.Fine),
		LateFee: int64(v.LateFee), AmountDue: int64(v.TotalDueToday), ServedDate: v.ServedDate, DueDate: v.DueDate,
		PartyMasked: v.PartyMasked, PlateMasked: v.PlateMasked, UnitName: v.UnitName, ItemName: v.ItemName,
		CreatedAt: rfc3339(v.CreatedAt), ResultPush: st.Push,
	}
	if p := v.Payment; p != nil {
		j.Payment = &PaymentJSON{OrderNo: p.OrderNo, Channel: p.Channel, ChannelTradeNo: p.ChannelTradeNo,
			Amount: int64(p.Amount), Fine: int64(p.Fine), LateFee: int64(p.LateFee), PaidAt: rfc3339(p.PaidAt)}
	}
	if r := v.Receipt; r != nil {
		j.Receipt = &ReceiptJSON{ReceiptCode: r.ReceiptCode, ReceiptNo: r.ReceiptNo, CheckCode: r.CheckCode,
			Amount: int64(r.Amount), IssuedAt: rfc3339(r.IssuedAt)}
	}
	return j
}

func (s *Service) handleSubmit(c echo.Context) error {
	var r SubmitRequest
	if err := partnerin.Decode(c, &r); err != nil {
		return err
	}
	breq, err := r.Check(s.today(), s.cfg.Key)
	if err != nil {
		return err
	}
	st, err := s.Submit(c.Request().Context(), partnerin.CallerOf(c), r, breq)
	if err != nil {
		return HTTPError(err)
	}
	status := http.StatusOK
	if st.Created {
		status = http.StatusCreated
	}
	return c.JSON(status, st.JSON())
}

func (s *Service) handleGet(c echo.Context) error {
	no := c.Param("isp_order_no")
	if err := CheckOrderNoParam(no); err != nil {
		return err
	}
	st, err := s.Get(c.Request().Context(), partnerin.CallerOf(c), no)
	if err != nil {
		return HTTPError(err)
	}
	return c.JSON(http.StatusOK, st.JSON())
}

// CheckOrderNoParam validates the {isp_order_no} of a look-up.
func CheckOrderNoParam(no string) error {
	p := partnerin.Problems{}
	p.Add(!ValidOrderNo(no), "isp_order_no", "must be 1 to 64 characters [A-Za-z0-9_-]")
	return p.Err()
}

// HTTPError maps the service's errors (and the bill service's) to the API's codes.
func HTTPError(err error) error {
	var ve *bill.ValidationError
	var pe *partner.Error
	switch {
	case errors.Is(err, ErrNotFound):
		return httpx.Wrap(http.StatusNotFound, "NOT_FOUND", "no such 12123 order", err)
	case errors.Is(err, ErrOrderConflict):
		return httpx.Wrap(http.StatusConflict, "ISP_ORDER_CONFLICT", "the isp_order_no was already submitted with other fields", err)
	case errors.Is(err, ErrAlreadyPaid):
		return httpx.Wrap(http.StatusConflict, "ALREADY_PAID", "the decision is already paid", err)
	case errors.Is(err, ErrAmountMismatch):
		return httpx.Wrap(http.StatusUnprocessableEntity, "AMOUNT_MISMATCH", trimPrefix(err), err)
	case errors.As(err, &ve):
		return httpx.Wrap(http.StatusBadRequest, "INVALID_ARGUMENT", ve.Error(), err)
	case errors.Is(err, bill.ErrConflict):
		return httpx.Wrap(http.StatusConflict, "DECISION_CONFLICT", "the decision already has a bill created with different data", err)
	case errors.Is(err, bill.ErrNonTax) && errors.As(err, &pe) && pe.Final():
		return httpx.Wrap(http.StatusUnprocessableEntity, "NONTAX_REFUSED", fmt.Sprintf("the non-tax system refused the form: %s %s", pe.Code, pe.Message), err)
	case errors.Is(err, bill.ErrNonTax):
		return httpx.Wrap(http.StatusBadGateway, "NONTAX_UNAVAILABLE", "the non-tax system did not issue a payment form; try again", err)
	case errors.Is(err, outbox.ErrBackpressure):
		return httpx.Wrap(http.StatusServiceUnavailable, "BACKPRESSURE", "the ferry to the gateway is behind; nothing was stored; try again later", err)
	}
	return err
}

func trimPrefix(err error) string {
	s := err.Error()
	if i := len("isp: "); len(s) > i && s[:i] == "isp: " {
		return s[i:]
	}
	return s
}
