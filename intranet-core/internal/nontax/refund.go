package nontax

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/refund"
)

// Paths of the non-tax system's refund API.
const (
	PathRefundReviews = "/nontax/v1/refund-reviews/"
	PathRefundResults = "/nontax/v1/refund-results"
)

// RefundReview returns the non-tax system's review decision on a refund: pending, approved or
// rejected, with its note.
func (c *Client) RefundReview(ctx context.Context, requestID, refundNo string) (string, string, error) {
	resp, err := c.p.Do(ctx, http.MethodGet, PathRefundReviews+url.PathEscape(refundNo), requestID, nil)
	if err != nil {
		return "", "", err
	}
	var ans struct {
		RefundNo string `json:"refund_no"`
		Status   string `json:"status"`
		Note     string `json:"note"`
	}
	if err := json.Unmarshal(resp.Body, &ans); err != nil {
		return "", "", fmt.Errorf("%w: review of %s: %v", ErrBadAnswer, refundNo, err)
	}
	switch {
	case ans.RefundNo != refundNo:
		return "", "", fmt.Errorf("%w: review of %q answered for %q", ErrBadAnswer, refundNo, ans.RefundNo)
	case ans.Status != refund.ReviewPending && ans.Status != refund.ReviewApproved && ans.Status != refund.ReviewRejected:
		return "", "", fmt.Errorf("%w: review status %q", ErrBadAnswer, ans.Status)
	}
	return ans.Status, ans.Note, nil
}

// Reporter reports refund outcomes to one party at path: the non-tax system, or another party
// speaking the same refund-results message (the unified payment platform, the window platform).
type Reporter struct {
	p    *partner.Client
	path string
}

// NewReporter returns a reporter posting to path over p.
func NewReporter(p *partner.Client, path string) *Reporter { return &Reporter{p: p, path: path} }

// ReportRefund reports an outcome; a repeated report is accepted again and changes nothing.
func (r *Reporter) ReportRefund(ctx context.Context, requestID string, o refund.Outcome) error {
	var ans struct {
		Status string `json:"status"`
	}
	if err := r.p.PostJSON(ctx, r.path, requestID, o, &ans); err != nil {
		return err
	}
	if ans.Status != "accepted" {
		return fmt.Errorf("%w: refund outcome %s answered %q", ErrBadAnswer, o.RefundNo, ans.Status)
	}
	return nil
}
