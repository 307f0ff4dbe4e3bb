// Package window is the client of the police Comprehensive Application Platform on the window
// side (综合应用平台): the core tells it when a decision was paid. The message shapes follow
// docs/partners.md; the real interface document replaces this package.
package window

import (
	"context"
	"errors"
	"fmt"

	"finepay/intranet-core/internal/partner"
)

// PathPaymentResults is where payment results are reported.
const PathPaymentResults = "/window/v1/payment-results"

// ErrBadAnswer is returned for a signed answer that does not hold what the protocol promises.
var ErrBadAnswer = errors.New("window: unexpected answer")

// Client calls the window platform.
type Client struct{ p *partner.Client }

// New returns a client over a partner connection.
func New(p *partner.Client) *Client { return &Client{p: p} }

// PaymentResult tells the window platform that a decision was paid.
type PaymentResult struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	FormNo          string `json:"form_no"`
	OrderNo         string `json:"order_no"`
	Amount          int64  `json:"amount"`
	PaidAt          string `json:"paid_at"`
	ReceiptCode     string `json:"receipt_code"`
	ReceiptNo       string `json:"receipt_no"`
}

// ReportPaymentResult reports a payment. Repeated reports change nothing at the platform.
func (c *Client) ReportPaymentResult(ctx context.Context, requestID string, r PaymentResult) error {
	var a struct {
		Status string `json:"status"`
	}
	if err := c.p.PostJSON(ctx, PathPaymentResults, requestID, r, &a); err != nil {
		return err
	}
	if a.Status != "accepted" {
		return fmt.Errorf("%w: status %q", ErrBadAnswer, a.Status)
	}
	return nil
}
