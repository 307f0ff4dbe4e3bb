// Package nontax is the client of the finance department's non-tax revenue system
// (非税收入收缴系统): it issues the payment form (非税一般缴款书) and payment identification code
// for a decision, and takes reports of payments collected against a form. The message shapes
// follow docs/partners.md; the real interface document replaces this package.
package nontax

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"finepay/intranet-core/internal/partner"
)

// Paths of the non-tax system's API.
const (
	PathForms    = "/nontax/v1/forms"
	PathPayments = "/nontax/v1/payments"
)

// ErrBadAnswer is returned for a signed answer that does not hold what the protocol promises.
var ErrBadAnswer = errors.New("nontax: unexpected answer")

// Client calls the non-tax system.
type Client struct{ p *partner.Client }

// New returns a client over a partner connection.
func New(p *partner.Client) *Client { return &Client{p: p} }

// FormRequest asks for the payment form of a decision.
type FormRequest struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	UnitCode        string `json:"unit_code"`
	ItemCode        string `json:"item_code"`
	PayerNameEnc    string `json:"payer_name_enc"`
	Fine            int64  `json:"fine"`
	ServedDate      string `json:"served_date"`
	LateFeeApplies  bool   `json:"late_fee_applies"`
}

// Form is an issued payment form. FormNo and PayCode are opaque to FinePay.
type Form struct {
	FormNo   string `json:"form_no"`
	PayCode  string `json:"pay_code"`
	UnitName string `json:"unit_name"`
	ItemName string `json:"item_name"`
	Fine     int64  `json:"fine"`
	DueDate  string `json:"due_date"`
	IssuedAt string `json:"issued_at"`
}

var reOpaque = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// IssueForm asks for the form of a decision. The same decision always gets the same form.
func (c *Client) IssueForm(ctx context.Context, requestID string, r FormRequest) (Form, error) {
	var f Form
	if err := c.p.PostJSON(ctx, PathForms, requestID, r, &f); err != nil {
		return Form{}, err
	}
	if !reOpaque.MatchString(f.FormNo) || !reOpaque.MatchString(f.PayCode) {
		return Form{}, fmt.Errorf("%w: form_no %q / pay_code %q", ErrBadAnswer, f.FormNo, f.PayCode)
	}
	if f.Fine != r.Fine {
		return Form{}, fmt.Errorf("%w: form for %d fen, asked %d", ErrBadAnswer, f.Fine, r.Fine)
	}
	if len(f.UnitName) > 128 || len(f.ItemName) > 128 {
		return Form{}, fmt.Errorf("%w: unit or item name too long", ErrBadAnswer)
	}
	return f, nil
}

// PaymentReport reports a payment collected against a form.
type PaymentReport struct {
	FormNo         string `json:"form_no"`
	PayCode        string `json:"pay_code"`
	OrderNo        string `json:"order_no"`
	Amount         int64  `json:"amount"`
	Fine           int64  `json:"fine"`
	LateFee        int64  `json:"late_fee"`
	Channel        string `json:"channel"`
	ChannelTradeNo string `json:"channel_trade_no"`
	PaidAt         string `json:"paid_at"`
}

// ReportPayment reports a payment. A repeated report is accepted again and changes nothing.
func (c *Client) ReportPayment(ctx context.Context, requestID string, r PaymentReport) error {
	var a struct {
		Status string `json:"status"`
		FormNo string `json:"form_no"`
	}
	if err := c.p.PostJSON(ctx, PathPayments, requestID, r, &a); err != nil {
		return err
	}
	if a.Status != "accepted" {
		return fmt.Errorf("%w: payment report status %q", ErrBadAnswer, a.Status)
	}
	return nil
}
