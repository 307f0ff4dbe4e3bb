package nontax

import (
	"context"
	"fmt"
)

// PathReconciliations is where pre-reconciliation results are sent (flow P3).
const PathReconciliations = "/nontax/v1/reconciliations"

// Reconciliation is the core's pre-reconciliation of an agency bank's end-of-day file, which the
// finance side reconciles further.
type Reconciliation struct {
	ReconID        string               `json:"recon_id"`
	Source         string               `json:"source"` // "bank"
	BankCode       string               `json:"bank_code"`
	BusinessDate   string               `json:"business_date"`
	FileSM3        string               `json:"file_sm3"`
	Status         string               `json:"status"` // balanced or differences
	Matched        int                  `json:"matched"`
	BankOnly       int                  `json:"bank_only"`
	CoreOnly       int                  `json:"core_only"`
	AmountMismatch int                  `json:"amount_mismatch"`
	TotalBank      int64                `json:"total_bank"`
	TotalCore      int64                `json:"total_core"`
	Items          []ReconciliationItem `json:"items"`
}

// ReconciliationItem is one line of a reconciliation: a matched payment or a difference.
type ReconciliationItem struct {
	Class      string `json:"class"` // matched, bank_only, core_only, amount_mismatch
	BankSerial string `json:"bank_serial"`
	DecisionNo string `json:"decision_no"`
	PayCode    string `json:"pay_code"`
	OrderNo    string `json:"order_no,omitempty"`
	BankAmount int64  `json:"bank_amount"`
	CoreAmount int64  `json:"core_amount"`
}

// ReportReconciliation sends a reconciliation result. A repeated report changes nothing.
func (c *Client) ReportReconciliation(ctx context.Context, requestID string, r Reconciliation) error {
	var a struct {
		Status string `json:"status"`
	}
	if err := c.p.PostJSON(ctx, PathReconciliations, requestID, r, &a); err != nil {
		return err
	}
	if a.Status != "accepted" {
		return fmt.Errorf("%w: reconciliation status %q", ErrBadAnswer, a.Status)
	}
	return nil
}
