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
	// HasFile: the signed receipt and its layout file are stored (ReceiptFileByOrder).
	HasFile bool
	// File is written by ReceiptUpsert when set; ReceiptGetByOrder leaves it nil.
	File *ReceiptFile
}

// ReceiptFile is the signed e-receipt a payer downloads: the issuing unit's signed data and
// signature, the finance supervision seal, the layout file (PDF).
type ReceiptFile struct {
	Data          []byte
	UnitSignature string
	Seal          string
	Layout        []byte
}

// ReceiptUpsert stores the receipt of an order, replacing an earlier copy.
func (s *Store) ReceiptUpsert(ctx context.Context, q Querier, r Receipt) error {
	f := r.File
	if f == nil {
		f = &ReceiptFile{}
	}
	_, err := q.ExecContext(ctx, `INSERT INTO receipts (order_no, bill_no, receipt_code, receipt_no, check_code, amount,
		payer_masked, issued_at, received_at, data, unit_signature, seal, layout) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (order_no) DO UPDATE SET bill_no = excluded.bill_no, receipt_code = excluded.receipt_code,
			receipt_no = excluded.receipt_no, check_code = excluded.check_code, amount = excluded.amount,
			payer_masked = excluded.payer_masked, issued_at = excluded.issued_at, received_at = excluded.received_at,
			data = excluded.data, unit_signature = excluded.unit_signature, seal = excluded.seal, layout = excluded.layout`,
		r.OrderNo, r.BillNo, r.ReceiptCode, r.ReceiptNo, r.CheckCode, int64(r.Amount), r.PayerMasked, utc(r.IssuedAt), utc(r.ReceivedAt),
		f.Data, f.UnitSignature, f.Seal, f.Layout)
	if err != nil {
		return fmt.Errorf("store: upsert receipt of %s: %w", r.OrderNo, err)
	}
	return nil
}

// ReceiptGetByOrder returns the receipt of an order.
func (s *Store) ReceiptGetByOrder(ctx context.Context, q Querier, orderNo string) (Receipt, error) {
	var r Receipt
	var layoutLen int64
	err := q.QueryRowContext(ctx, `SELECT order_no, bill_no, receipt_code, receipt_no, check_code, amount, payer_masked,
		issued_at, received_at, COALESCE(length(layout), 0) FROM receipts WHERE order_no = $1`, orderNo).Scan(
		&r.OrderNo, &r.BillNo, &r.ReceiptCode, &r.ReceiptNo, &r.CheckCode, &r.Amount, &r.PayerMasked, &r.IssuedAt, &r.ReceivedAt, &layoutLen)
	r.HasFile = layoutLen > 0
	return r, notFound(err, "receipt of "+orderNo)
}

// ReceiptFileByOrder returns the signed receipt of an order; ErrNotFound when the order has no
// receipt or its receipt came without one.
func (s *Store) ReceiptFileByOrder(ctx context.Context, q Querier, orderNo string) (ReceiptFile, error) {
	var f ReceiptFile
	err := q.QueryRowContext(ctx, `SELECT data, unit_signature, seal, layout FROM receipts WHERE order_no = $1 AND length(layout) > 0`,
		orderNo).Scan(&f.Data, &f.UnitSignature, &f.Seal, &f.Layout)
	return f, notFound(err, "receipt file of "+orderNo)
}
