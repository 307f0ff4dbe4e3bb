package bill

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/ferry/outbox"
	"finepay/intranet-core/internal/partner"
	"finepay/shared/bizdate"
	"finepay/shared/httpx"
)

// ActorKey is the echo context key under which the authentication middleware puts the name of
// the caller ("window-api", "console:clerk").
const ActorKey = "finepay.actor"

// maxBody bounds a request body of the API.
const maxBody = 64 << 10

// Routes mounts the window API on g (normally /api/v1):
//
//	POST /bills             create the bill of a decision (201 new, 200 existing)
//	GET  /bills/{bill_no}   a bill with its status, payment and receipt
func Routes(g *echo.Group, s *Service) {
	g.POST("/bills", s.handleCreate)
	g.GET("/bills/:bill_no", s.handleGet)
}

// BillJSON is the API's rendering of a bill. Amounts are fen.
type BillJSON struct {
	BillNo          string       `json:"bill_no"`
	Token           string       `json:"token"`
	QRURL           string       `json:"qr_url"`
	DecisionNo      string       `json:"decision_no"`
	ViolationSerial string       `json:"violation_serial"`
	PartyMasked     string       `json:"party_masked"`
	PlateMasked     string       `json:"plate_masked"`
	FormNo          string       `json:"form_no"`
	PayCode         string       `json:"pay_code"`
	Fine            int64        `json:"fine"`
	LateFee         int64        `json:"late_fee"`
	TotalDueToday   int64        `json:"total_due_today"`
	ServedDate      string       `json:"served_date"`
	DueDate         string       `json:"due_date"`
	LateFeeApplies  bool         `json:"late_fee_applies"`
	UnitName        string       `json:"unit_name"`
	ItemName        string       `json:"item_name"`
	Status          string       `json:"status"`
	CreatedAt       string       `json:"created_at"`
	Payment         *PaymentJSON `json:"payment"`
	Receipt         *ReceiptJSON `json:"receipt"`
}

// PaymentJSON is the API's rendering of the payment of a bill.
type PaymentJSON struct {
	OrderNo        string `json:"order_no"`
	Channel        string `json:"channel"`
	ChannelTradeNo string `json:"channel_trade_no"`
	Amount         int64  `json:"amount"`
	Fine           int64  `json:"fine"`
	LateFee        int64  `json:"late_fee"`
	PaidAt         string `json:"paid_at"`
}

// ReceiptJSON is the API's rendering of the e-receipt of a bill.
type ReceiptJSON struct {
	ReceiptCode string `json:"receipt_code"`
	ReceiptNo   string `json:"receipt_no"`
	CheckCode   string `json:"check_code"`
	Amount      int64  `json:"amount"`
	IssuedAt    string `json:"issued_at"`
}

func rfc3339(t time.Time) string { return t.In(bizdate.Location).Format(time.RFC3339) }

// JSON renders v for the API.
func (v View) JSON() BillJSON {
	j := BillJSON{
		BillNo: v.BillNo, Token: v.Token, QRURL: v.QRURL, DecisionNo: v.DecisionNo, ViolationSerial: v.ViolationSerial,
		PartyMasked: v.PartyMasked, PlateMasked: v.PlateMasked, FormNo: v.FormNo, PayCode: v.PayCode,
		Fine: int64(v.Fine), LateFee: int64(v.LateFee), TotalDueToday: int64(v.TotalDueToday),
		ServedDate: v.ServedDate, DueDate: v.DueDate, LateFeeApplies: v.LateFeeApplies,
		UnitName: v.UnitName, ItemName: v.ItemName, Status: v.Status, CreatedAt: rfc3339(v.CreatedAt),
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

// DecodeCreate reads a CreateRequest: JSON, at most 64 KiB, no unknown fields. Errors are
// *httpx.Error naming the offending field.
func DecodeCreate(body io.Reader) (CreateRequest, error) {
	var req CreateRequest
	dec := json.NewDecoder(io.LimitReader(body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return req, httpx.Wrap(http.StatusBadRequest, "INVALID_REQUEST", fmt.Sprintf("invalid request: %s: must be a %s", te.Field, te.Type), err)
		}
		if m := reUnknownField.FindStringSubmatch(err.Error()); m != nil {
			return req, httpx.Wrap(http.StatusBadRequest, "INVALID_REQUEST", "invalid request: "+m[1]+": unknown field", err)
		}
		return req, httpx.Wrap(http.StatusBadRequest, "INVALID_REQUEST", "invalid request: body must be a JSON object", err)
	}
	if dec.More() {
		return req, httpx.NewError(http.StatusBadRequest, "INVALID_REQUEST", "invalid request: trailing data after the JSON object")
	}
	return req, nil
}

var reUnknownField = regexp.MustCompile(`unknown field "([^"]{1,40})"`)

func actor(c echo.Context) string {
	if a, ok := c.Get(ActorKey).(string); ok && a != "" {
		return a
	}
	return "unknown"
}

func (s *Service) handleCreate(c echo.Context) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return httpx.NewError(http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "the body must be application/json")
	}
	req, err := DecodeCreate(c.Request().Body)
	if err != nil {
		return err
	}
	v, created, err := s.Create(c.Request().Context(), actor(c), req)
	if err != nil {
		return HTTPError(err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, v.JSON())
}

func (s *Service) handleGet(c echo.Context) error {
	v, err := s.Get(c.Request().Context(), c.Param("bill_no"))
	if err != nil {
		return HTTPError(err)
	}
	return c.JSON(http.StatusOK, v.JSON())
}

// HTTPError maps the service's errors to the one HTTP error type.
func HTTPError(err error) error {
	var ve *ValidationError
	var pe *partner.Error
	switch {
	case errors.As(err, &ve):
		return httpx.Wrap(http.StatusBadRequest, "INVALID_REQUEST", ve.Error(), err)
	case errors.Is(err, ErrNotFound):
		return httpx.Wrap(http.StatusNotFound, "NOT_FOUND", "no such bill", err)
	case errors.Is(err, ErrConflict):
		return httpx.Wrap(http.StatusConflict, "DECISION_CONFLICT", "the decision already has a bill created with different data", err)
	case errors.Is(err, ErrNonTax) && errors.As(err, &pe) && pe.Final():
		return httpx.Wrap(http.StatusUnprocessableEntity, "NONTAX_REFUSED", fmt.Sprintf("the non-tax system refused the form: %s %s", pe.Code, pe.Message), err)
	case errors.Is(err, ErrNonTax):
		return httpx.Wrap(http.StatusBadGateway, "NONTAX_UNAVAILABLE", "the non-tax system did not issue a payment form; try again", err)
	case errors.Is(err, outbox.ErrBackpressure):
		return httpx.Wrap(http.StatusServiceUnavailable, "BACKPRESSURE", "the ferry to the gateway is behind; nothing was stored; try again later", err)
	}
	return err
}
