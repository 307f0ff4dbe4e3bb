package store

import (
	"context"
	"fmt"
	"time"

	"finepay/shared/money"
)

// Receipt is the e-receipt (财政电子票据) issued for a payment.
type Receipt struct {
	OrderNo     string
	BillNo      string
	ReceiptCode string // 8 digits
	ReceiptNo   string // 10 digits
	CheckCode   string // 6 characters
	Amount      money.Fen
	PayerMasked string
	IssuedAt    time.Time
	ReceivedAt  time.Time
}

// ReceiptUpsert stores the receipt of an order, replacing an earlier copy.
func (s *Store) ReceiptUpsert(ctx context.Context, q Querier, r Receipt) error {
	_, err := q.ExecContext(ctx, `INSERT INTO receipts (order_no, bill_no, receipt_code, receipt_no, check_code, amount,
		payer_masked, issued_at, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (order_no) DO UPDATE SET bill_no = excluded.bill_no, receipt_code = excluded.receipt_code,
			receipt_no = excluded.receipt_no, check_code = excluded.check_code, amount = excluded.amount,
			payer_masked = excluded.payer_masked, issued_at = excluded.issued_at, received_at = excluded.received_at`,
		r.OrderNo, r.BillNo, r.ReceiptCode, r.ReceiptNo, r.CheckCode, int64(r.Amount), r.PayerMasked, utc(r.IssuedAt), utc(r.ReceivedAt))
	if err != nil {
		return fmt.Errorf("store: upsert receipt of %s: %w", r.OrderNo, err)
	}
	return nil
}

// ReceiptGetByOrder returns the receipt of an order.
func (s *Store) ReceiptGetByOrder(ctx context.Context, q Querier, orderNo string) (Receipt, error) {
	var r Receipt
	err := q.QueryRowContext(ctx, `SELECT order_no, bill_no, receipt_code, receipt_no, check_code, amount, payer_masked,
		issued_at, received_at FROM receipts WHERE order_no = $1`, orderNo).Scan(
		&r.OrderNo, &r.BillNo, &r.ReceiptCode, &r.ReceiptNo, &r.CheckCode, &r.Amount, &r.PayerMasked, &r.IssuedAt, &r.ReceivedAt)
	return r, notFound(err, "receipt of "+orderNo)
}
