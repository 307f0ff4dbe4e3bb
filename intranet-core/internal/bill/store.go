package bill

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"finepay/ferry/sqldb"
	"finepay/shared/money"
)

// Record is a row of the bills table.
type Record struct {
	BillNo          string
	Token           string
	DecisionNo      string
	ViolationSerial string
	PartyNameEnc    []byte
	PartyNameIdx    string
	PlateEnc        []byte
	PlateIdx        string
	PartyMasked     string
	PlateMasked     string
	Fine            int64
	ServedDate      string
	LateFeeApplies  bool
	UnitCode        string
	ItemCode        string
	UnitName        string
	ItemName        string
	FormNo          string
	PayCode         string
	DueDate         string
	InputHash       string
	Status          string
	CreatedBy       string
	CreatedAt       time.Time
	PaidAt          sql.NullTime
	PaymentID       sql.NullInt64
}

const billColumns = `bill_no, token, decision_no, violation_serial, party_name_enc, party_name_idx, plate_enc, plate_idx,
	party_masked, plate_masked, fine, served_date, late_fee_applies, unit_code, item_code, unit_name, item_name,
	form_no, pay_code, due_date, input_hash, status, created_by, created_at, paid_at, payment_id`

// Querier is what the read functions need: a *sql.DB, *sqldb.DB or *sql.Tx.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type scanner interface{ Scan(dest ...any) error }

func scanBill(s scanner) (Record, error) {
	var r Record
	err := s.Scan(&r.BillNo, &r.Token, &r.DecisionNo, &r.ViolationSerial, &r.PartyNameEnc, &r.PartyNameIdx, &r.PlateEnc, &r.PlateIdx,
		&r.PartyMasked, &r.PlateMasked, &r.Fine, &r.ServedDate, &r.LateFeeApplies, &r.UnitCode, &r.ItemCode, &r.UnitName, &r.ItemName,
		&r.FormNo, &r.PayCode, &r.DueDate, &r.InputHash, &r.Status, &r.CreatedBy, &r.CreatedAt, &r.PaidAt, &r.PaymentID)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

// BillInsert stores a new bill.
func BillInsert(ctx context.Context, tx *sql.Tx, r Record) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO bills (`+billColumns+`) VALUES
		($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, NULL, NULL)`,
		r.BillNo, r.Token, r.DecisionNo, r.ViolationSerial, r.PartyNameEnc, r.PartyNameIdx, r.PlateEnc, r.PlateIdx,
		r.PartyMasked, r.PlateMasked, r.Fine, r.ServedDate, r.LateFeeApplies, r.UnitCode, r.ItemCode, r.UnitName, r.ItemName,
		r.FormNo, r.PayCode, r.DueDate, r.InputHash, r.Status, r.CreatedBy, r.CreatedAt.UTC())
	return err
}

// BillGetByNo reads a bill by number.
func BillGetByNo(ctx context.Context, q Querier, billNo string) (Record, error) {
	return scanBill(q.QueryRowContext(ctx, `SELECT `+billColumns+` FROM bills WHERE bill_no = $1`, billNo))
}

// BillGetByNoForUpdate reads a bill by number and locks it until tx ends.
func BillGetByNoForUpdate(ctx context.Context, db *sqldb.DB, tx *sql.Tx, billNo string) (Record, error) {
	return scanBill(tx.QueryRowContext(ctx, `SELECT `+billColumns+` FROM bills WHERE bill_no = $1`+db.ForUpdate(), billNo))
}

// BillGetActiveByDecision reads the decision's bill that is not cancelled.
func BillGetActiveByDecision(ctx context.Context, q Querier, decisionNo string) (Record, error) {
	return scanBill(q.QueryRowContext(ctx, `SELECT `+billColumns+` FROM bills WHERE decision_no = $1 AND status <> 'cancelled'`, decisionNo))
}

// BillListByNameIndex returns the bills whose party name has the blind index idx.
func BillListByNameIndex(ctx context.Context, q Querier, idx string) ([]Record, error) {
	return list(ctx, q, `SELECT `+billColumns+` FROM bills WHERE party_name_idx = $1 ORDER BY created_at DESC`, idx)
}

// BillListRecent returns the newest bills.
func BillListRecent(ctx context.Context, q Querier, limit int) ([]Record, error) {
	return list(ctx, q, `SELECT `+billColumns+` FROM bills ORDER BY created_at DESC, bill_no DESC LIMIT $1`, limit)
}

func list(ctx context.Context, q Querier, query string, args ...any) ([]Record, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("bill: list: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanBill(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// BillMarkPaid marks an unpaid bill paid by a payment. It reports false when the bill was not
// unpaid.
func BillMarkPaid(ctx context.Context, tx *sql.Tx, billNo string, paymentID int64, paidAt time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE bills SET status = 'paid', paid_at = $2, payment_id = $3 WHERE bill_no = $1 AND status = 'unpaid'`,
		billNo, paidAt.UTC(), paymentID)
	if err != nil {
		return false, fmt.Errorf("bill: mark paid: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// paymentAndReceipt reads the recorded payment and the receipt of a bill, when there are.
func paymentAndReceipt(ctx context.Context, q Querier, billNo string) (*PaymentView, *ReceiptView, error) {
	var p PaymentView
	var amount, fine, late int64
	err := q.QueryRowContext(ctx, `SELECT order_no, channel, channel_trade_no, amount, fine, late_fee, paid_at FROM payments
		WHERE bill_no = $1 AND result = 'recorded'`, billNo).Scan(&p.OrderNo, &p.Channel, &p.ChannelTradeNo, &amount, &fine, &late, &p.PaidAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bill: payment of %s: %w", billNo, err)
	}
	p.Amount, p.Fine, p.LateFee = money.Fen(amount), money.Fen(fine), money.Fen(late)
	var rc ReceiptView
	var ramount int64
	err = q.QueryRowContext(ctx, `SELECT receipt_code, receipt_no, check_code, amount, issued_at FROM receipts WHERE bill_no = $1`, billNo).
		Scan(&rc.ReceiptCode, &rc.ReceiptNo, &rc.CheckCode, &ramount, &rc.IssuedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return &p, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bill: receipt of %s: %w", billNo, err)
	}
	rc.Amount = money.Fen(ramount)
	return &p, &rc, nil
}
