// Package police is the client of the traffic police business system (交警业务系统) for flow P3:
// the core, acting as the traffic police front system (交警综合前置系统) for the finance adapter,
// looks up what a decision number owes and reports the payment collected by an agency bank. The
// message shapes follow docs/partners.md; the real interface document replaces this package.
package police

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"

	"finepay/intranet-core/internal/partner"
)

// Paths of the police business system's API.
const (
	PathDecisions      = "/police/v1/decisions/"
	PathPaymentResults = "/police/v1/payment-results"
)

// ErrBadAnswer is returned for a signed answer that does not hold what the protocol promises.
var ErrBadAnswer = errors.New("police: unexpected answer")

// Client calls the police business system.
type Client struct{ p *partner.Client }

// New returns a client over a partner connection.
func New(p *partner.Client) *Client { return &Client{p: p} }

// Decision is what the police business system knows of a penalty decision. The party's name
// and plate are SM2-encrypted to the core's encryption certificate.
type Decision struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	PartyNameEnc    string `json:"party_name_enc"`
	PlateEnc        string `json:"plate_enc"`
	Fine            int64  `json:"fine"`
	ServedDate      string `json:"served_date"`
	LateFeeApplies  bool   `json:"late_fee_applies"`
	UnitCode        string `json:"unit_code"`
	ItemCode        string `json:"item_code"`
	// Status is unpaid or paid (as far as the police system knows).
	Status string `json:"status"`
}

var reDecision = regexp.MustCompile(`^[0-9]{15,20}$`)

// Decision looks a decision up. An unknown decision is a *partner.Error with status 404.
func (c *Client) Decision(ctx context.Context, requestID, decisionNo string) (Decision, error) {
	if !reDecision.MatchString(decisionNo) {
		return Decision{}, fmt.Errorf("police: decision number %q", decisionNo)
	}
	resp, err := c.p.Do(ctx, http.MethodGet, PathDecisions+url.PathEscape(decisionNo), requestID, nil)
	if err != nil {
		return Decision{}, err
	}
	var d Decision
	if err := json.Unmarshal(resp.Body, &d); err != nil {
		return Decision{}, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if d.DecisionNo != decisionNo {
		return Decision{}, fmt.Errorf("%w: answer for decision %q, asked %q", ErrBadAnswer, d.DecisionNo, decisionNo)
	}
	return d, nil
}

// PaymentResult tells the police business system that a decision was paid.
type PaymentResult struct {
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

// ReportPaymentResult reports a payment; repeated reports (by order_no) change nothing.
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
