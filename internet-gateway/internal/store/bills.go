package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"finepay/shared/money"
)

// Bill statuses.
const (
	BillPayable = "payable"
	BillPaid    = "paid"
)

// Bill is the payer's view of a payable bill.
type Bill struct {
	BillNo         string
	Token          string
	DecisionNo     string
	PartyMasked    string
	PlateMasked    string
	Fine           money.Fen
	ServedDate     string // YYYY-MM-DD, Asia/Shanghai
	LateFeeApplies bool
	UnitName       string
	ItemName       string
	FormNo         string
	PayCode        string
	LookupHash     string // keyed hash of decision number and plate's last four characters; "" when none
	Status         string
	IssuedAt       time.Time
	UpdatedAt      time.Time
}

const billColumns = `bill_no, token, decision_no, party_masked, plate_masked, fine, served_date, late_fee_applies,
	unit_name, item_name, form_no, pay_code, status, issued_at, updated_at, lookup_hash`

func scanBill(row interface{ Scan(...any) error }) (Bill, error) {
	var b Bill
	err := row.Scan(&b.BillNo, &b.Token, &b.DecisionNo, &b.PartyMasked, &b.PlateMasked, &b.Fine, &b.ServedDate,
		&b.LateFeeApplies, &b.UnitName, &b.ItemName, &b.FormNo, &b.PayCode, &b.Status, &b.IssuedAt, &b.UpdatedAt, &b.LookupHash)
	return b, err
}

// BillUpsert inserts a bill or, when its bill number is known, updates it with a publication
// that is not older than the stored one. The status is kept: a paid bill stays paid. It
// returns the token the bill had before ("" for a new bill), so that caches under it can be
// dropped.
func (s *Store) BillUpsert(ctx context.Context, q Querier, b Bill) (oldToken string, err error) {
	err = q.QueryRowContext(ctx, `SELECT token FROM bills WHERE bill_no = $1`, b.BillNo).Scan(&oldToken)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("store: bill %s: %w", b.BillNo, err)
	}
	if b.Status == "" {
		b.Status = BillPayable
	}
	_, err = q.ExecContext(ctx, `INSERT INTO bills (`+billColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		ON CONFLICT (bill_no) DO UPDATE SET token = excluded.token, decision_no = excluded.decision_no,
			party_masked = excluded.party_masked, plate_masked = excluded.plate_masked, fine = excluded.fine,
			served_date = excluded.served_date, late_fee_applies = excluded.late_fee_applies,
			unit_name = excluded.unit_name, item_name = excluded.item_name, form_no = excluded.form_no,
			pay_code = excluded.pay_code, issued_at = excluded.issued_at, updated_at = excluded.updated_at,
			lookup_hash = excluded.lookup_hash
		WHERE bills.issued_at <= excluded.issued_at`,
		b.BillNo, b.Token, b.DecisionNo, b.PartyMasked, b.PlateMasked, int64(b.Fine), b.ServedDate, b.LateFeeApplies,
		b.UnitName, b.ItemName, b.FormNo, b.PayCode, b.Status, utc(b.IssuedAt), utc(b.UpdatedAt), b.LookupHash)
	if err != nil {
		return "", fmt.Errorf("store: upsert bill %s: %w", b.BillNo, err)
	}
	return oldToken, nil
}

// BillGetByToken returns the bill of a cashier token.
func (s *Store) BillGetByToken(ctx context.Context, q Querier, token string) (Bill, error) {
	b, err := scanBill(q.QueryRowContext(ctx, `SELECT `+billColumns+` FROM bills WHERE token = $1`, token))
	return b, notFound(err, "bill")
}

// BillFindByLookupHash returns the most recently issued bill with a lookup hash. An empty hash
// finds nothing.
func (s *Store) BillFindByLookupHash(ctx context.Context, q Querier, hash string) (Bill, error) {
	if hash == "" {
		return Bill{}, fmt.Errorf("%w: bill by lookup hash", ErrNotFound)
	}
	b, err := scanBill(q.QueryRowContext(ctx, `SELECT `+billColumns+` FROM bills WHERE lookup_hash = $1
		ORDER BY issued_at DESC, bill_no DESC LIMIT 1`, hash))
	return b, notFound(err, "bill by lookup hash")
}

// BillGet returns a bill by number.
func (s *Store) BillGet(ctx context.Context, q Querier, billNo string) (Bill, error) {
	b, err := scanBill(q.QueryRowContext(ctx, `SELECT `+billColumns+` FROM bills WHERE bill_no = $1`, billNo))
	return b, notFound(err, "bill "+billNo)
}

// BillMarkPaidToken sets a bill's status to paid and returns its token ("" when there is no
// such bill), in one statement.
func (s *Store) BillMarkPaidToken(ctx context.Context, q Querier, billNo string, now time.Time) (string, error) {
	var token string
	err := q.QueryRowContext(ctx, `UPDATE bills SET status = $2, updated_at = $3 WHERE bill_no = $1 RETURNING token`,
		billNo, BillPaid, utc(now)).Scan(&token)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("store: mark bill %s paid: %w", billNo, err)
	}
	return token, nil
}

// BillMarkPaid sets a bill's status to paid.
func (s *Store) BillMarkPaid(ctx context.Context, q Querier, billNo string, now time.Time) error {
	_, err := q.ExecContext(ctx, `UPDATE bills SET status = $2, updated_at = $3 WHERE bill_no = $1`, billNo, BillPaid, utc(now))
	if err != nil {
		return fmt.Errorf("store: mark bill %s paid: %w", billNo, err)
	}
	return nil
}
