// Package refundflow ties the refund state machine to the rest of the core: the facts a refund
// application names, the red-flush of a refunded payment's receipt, and the automatic refund of
// duplicate payments (R5). The refund package itself knows nothing of payments and receipts.
package refundflow

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"finepay/intranet-core/internal/payment"
	"finepay/intranet-core/internal/receipt"
	"finepay/intranet-core/internal/refund"
)

// Facts reads what a refund application names from the core's tables: the bill's form, the
// receipt of the payment (none for a duplicate payment, which has no receipt of its own) and
// the amount paid. It is the PaymentFacts of the core.
func Facts(ctx context.Context, q refund.Querier, r refund.Refund) (formNo, code, no string, paid int64, err error) {
	err = q.QueryRowContext(ctx, `SELECT b.form_no, COALESCE(rc.receipt_code, ''), COALESCE(rc.receipt_no, ''), p.amount
		FROM payments p JOIN bills b ON b.bill_no = p.bill_no LEFT JOIN receipts rc ON rc.payment_id = p.id
		WHERE p.id = $1`, r.PaymentID).Scan(&formNo, &code, &no, &paid)
	if err != nil {
		return "", "", "", 0, fmt.Errorf("refund facts of %s: %w", r.RefundNo, err)
	}
	return formNo, code, no, paid, nil
}

// RedFlushOnRefund returns the OnRefunded of the core: it queues the red-flush of the bill's
// receipt when the refunded payment is the one that paid the bill (a duplicate payment's refund
// leaves the bill's receipt alone). The red-flush task is keyed by bill, so a second refund of
// the same payment does not flush twice.
func RedFlushOnRefund(now func() time.Time) func(ctx context.Context, tx *sql.Tx, r refund.Refund) error {
	return func(ctx context.Context, tx *sql.Tx, r refund.Refund) error {
		var result string
		if err := tx.QueryRowContext(ctx, `SELECT result FROM payments WHERE id = $1`, r.PaymentID).Scan(&result); err != nil {
			return fmt.Errorf("refund %s: payment: %w", r.RefundNo, err)
		}
		if result != payment.ResultRecorded {
			return nil
		}
		_, err := receipt.EnqueueRedFlush(ctx, tx, now(), r.BillNo, "refund "+r.RefundNo)
		return err
	}
}

// StartR5 returns the payment service's OnDuplicate: the automatic refund of a duplicate channel
// payment (flow R5), started in the transaction that records it. The duplicate's order number
// is the instruction, so however often the confirmation is repeated there is one refund. A
// duplicate bank payment is left for the bank route (R4), which a clerk starts.
func StartR5(s *refund.Service, log *slog.Logger) func(ctx context.Context, tx *sql.Tx, p payment.Record) error {
	return func(ctx context.Context, tx *sql.Tx, p payment.Record) error {
		if p.Channel == payment.ChannelBank {
			log.Warn("duplicate bank payment: refund it through the bank route", "order_no", p.OrderNo)
			return nil
		}
		_, _, err := s.Start(ctx, tx, refund.Request{PaymentID: p.ID, Route: refund.R5, InstructionID: "dup:" + p.OrderNo,
			Amount: p.Amount, Reason: "duplicate payment: " + p.Reason, RequestedBy: "core:r5"})
		return err
	}
}
