package ereceipt

import (
	"context"
	"fmt"

	"finepay/intranet-core/internal/refund"
)

// PathRefundApplications is where refunds are applied for; the platform forwards an
// application to the non-tax system for review.
const PathRefundApplications = "/ereceipt/v1/refund-applications"

// ApplyRefund applies for a refund. The same application again is accepted again and changes
// nothing.
func (c *Client) ApplyRefund(ctx context.Context, requestID string, a refund.Application) error {
	var ans struct {
		Status   string `json:"status"`
		RefundNo string `json:"refund_no"`
	}
	if err := c.p.PostJSON(ctx, PathRefundApplications, requestID, a, &ans); err != nil {
		return err
	}
	if ans.Status != "accepted" || ans.RefundNo != a.RefundNo {
		return fmt.Errorf("ereceipt: refund application %s answered %q for %q", a.RefundNo, ans.Status, ans.RefundNo)
	}
	return nil
}
