package receipt

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/task"
)

// querier is what the stores here need of a *sql.DB, *sqldb.DB or *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ErrNoStock: the unit has no receipt number left in stock. The task waits (and a stock pull is
// queued); an operator is alerted by the task's error.
var ErrNoStock = errors.New("receipt: no receipt numbers in stock for the unit")

// States of a number taken from stock.
const (
	NumberAssigned = "assigned"
	NumberIssued   = "issued"
	NumberVoid     = "void"
)

// number is a receipt number taken from stock with the unit's signed data.
type number struct {
	code, no, kind, billNo string
	data, unitSignature    string
}

// buildData returns the receipt data for a number.
type buildData func(tx *sql.Tx, code, no string) (ereceipt.Data, error)

// assign returns the live number of a bill's receipt of a kind; the first time, it takes the
// next number from the unit's stock and records it with the signed data, in one transaction.
func (s *Service) assign(ctx context.Context, billNo, kind, unit string, build buildData) (number, error) {
	var n number
	err := s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		n = number{billNo: billNo, kind: kind}
		err := tx.QueryRowContext(ctx, `SELECT receipt_code, receipt_no, data, unit_signature FROM receipt_numbers
			WHERE bill_no = $1 AND kind = $2 AND state <> 'void'`, billNo, kind).Scan(&n.code, &n.no, &n.data, &n.unitSignature)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		alloc, code, no, err := take(ctx, tx, unit)
		if err != nil {
			return err
		}
		d, err := build(tx, code, no)
		if err != nil {
			return err
		}
		data, sig, err := ereceipt.Sign(s.cfg.UnitKey, s.cfg.Rand, d)
		if err != nil {
			return err
		}
		n.code, n.no, n.data, n.unitSignature = code, no, string(data), sig
		_, err = tx.ExecContext(ctx, `INSERT INTO receipt_numbers (receipt_code, receipt_no, allocation_id, unit_code, bill_no, kind,
			state, data, unit_signature, assigned_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			code, no, alloc, unit, billNo, kind, NumberAssigned, n.data, sig, s.cfg.Now().UTC())
		return err
	})
	if err != nil {
		return number{}, fmt.Errorf("receipt: number for %s %s: %w", kind, billNo, err)
	}
	return n, nil
}

// take consumes the next number of the unit's stock: the oldest range taken into stock that has
// numbers left. The guarded UPDATE serialises concurrent takers on the range's row.
func take(ctx context.Context, tx *sql.Tx, unit string) (alloc, code, no string, err error) {
	for range 5 {
		var n int64
		err = tx.QueryRowContext(ctx, `UPDATE receipt_stock SET next_no = next_no + 1
			WHERE allocation_id = (SELECT allocation_id FROM receipt_stock WHERE unit_code = $1 AND accepted_at IS NOT NULL
				AND next_no <= end_no ORDER BY handed_at, allocation_id LIMIT 1)
			AND next_no <= end_no
			RETURNING allocation_id, receipt_code, next_no - 1`, unit).Scan(&alloc, &code, &n)
		if err == nil {
			return alloc, code, fmt.Sprintf("%010d", n), nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", "", "", err
		}
		var left int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM receipt_stock WHERE unit_code = $1 AND accepted_at IS NOT NULL AND next_no <= end_no`,
			unit).Scan(&left); err != nil {
			return "", "", "", err
		}
		if left == 0 {
			return "", "", "", fmt.Errorf("%w %s", ErrNoStock, unit)
		}
	}
	return "", "", "", fmt.Errorf("%w %s (contended)", ErrNoStock, unit)
}

func markIssued(ctx context.Context, tx *sql.Tx, n number) error {
	_, err := tx.ExecContext(ctx, `UPDATE receipt_numbers SET state = $3 WHERE receipt_code = $1 AND receipt_no = $2 AND state = $4`,
		n.code, n.no, NumberIssued, NumberAssigned)
	return err
}

// void marks a number the platform finally refused; it is reported for write-off, and the bill's
// next attempt takes a new one.
func (s *Service) void(ctx context.Context, n number) {
	if _, err := s.cfg.DB.ExecContext(ctx, `UPDATE receipt_numbers SET state = $3 WHERE receipt_code = $1 AND receipt_no = $2 AND state = $4`,
		n.code, n.no, NumberVoid, NumberAssigned); err != nil {
		s.cfg.Logger.Error("receipt: void number", "receipt_code", n.code, "receipt_no", n.no, "err", err)
		return
	}
	s.cfg.Logger.Warn("receipt number voided: the platform refused it", "receipt_code", n.code, "receipt_no", n.no, "bill_no", n.billNo)
}

// askForStock queues a stock pull now (once a minute at most).
func (s *Service) askForStock(ctx context.Context) {
	key := "out-" + s.cfg.Now().UTC().Format("200601021504")
	err := s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		_, err := task.Enqueue(ctx, tx, s.cfg.Now(), task.Spec{Kind: KindStock, Key: key, RequestID: partner.StableRequestID("stk", key)})
		return err
	})
	if err != nil {
		s.cfg.Logger.Error("receipt: queue a stock pull", "err", err)
	}
}

// TakeIn stores a range handed down by finance, unless it is stored already; it reports
// whether it was new. The range is used once accepted (MarkAccepted).
func TakeIn(ctx context.Context, q querier, a ereceipt.Allocation, now time.Time) (bool, error) {
	if err := a.Valid(); err != nil {
		return false, err
	}
	handed, _ := time.Parse(time.RFC3339, a.HandedAt)
	start, _ := strconv.ParseInt(a.StartNo, 10, 64)
	end, _ := strconv.ParseInt(a.EndNo, 10, 64)
	res, err := q.ExecContext(ctx, `INSERT INTO receipt_stock (allocation_id, unit_code, receipt_code, start_no, end_no, next_no, handed_at, stored_at)
		VALUES ($1, $2, $3, $4, $5, $4, $6, $7) ON CONFLICT (allocation_id) DO NOTHING`,
		a.AllocationID, a.UnitCode, a.ReceiptCode, start, end, handed.UTC(), now.UTC())
	if err != nil {
		return false, fmt.Errorf("receipt: take in %s: %w", a.AllocationID, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// MarkAccepted records that the platform confirmed a range taken into stock: its numbers can
// be used from now on.
func MarkAccepted(ctx context.Context, q querier, allocationID string, now time.Time) error {
	_, err := q.ExecContext(ctx, `UPDATE receipt_stock SET accepted_at = $2 WHERE allocation_id = $1 AND accepted_at IS NULL`, allocationID, now.UTC())
	return err
}

// Stock is a unit's stock of one code, for consoles and tests.
type Stock struct {
	UnitCode, ReceiptCode string
	Left                  int64
}

// StockLeft returns what is left in every unit's accepted stock.
func StockLeft(ctx context.Context, q querier) ([]Stock, error) {
	rows, err := q.QueryContext(ctx, `SELECT unit_code, receipt_code, sum(end_no - next_no + 1) FROM receipt_stock
		WHERE accepted_at IS NOT NULL AND next_no <= end_no GROUP BY unit_code, receipt_code ORDER BY unit_code, receipt_code`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Stock
	for rows.Next() {
		var st Stock
		if err := rows.Scan(&st.UnitCode, &st.ReceiptCode, &st.Left); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// HandleStock is the task.Handler of KindStock: it reads the ranges handed down, takes the new
// ones into stock and confirms every range not yet confirmed.
func (s *Service) HandleStock(ctx context.Context, t task.Task) (task.Finish, error) {
	allocs, err := s.cfg.Platform.Allocations(ctx, t.RequestID)
	if err != nil {
		if partner.IsFinal(err) {
			return nil, task.Permanent(err)
		}
		return nil, err
	}
	for _, a := range allocs {
		added, err := TakeIn(ctx, s.cfg.DB, a, s.cfg.Now())
		if err != nil {
			return nil, err
		}
		if added {
			s.cfg.Logger.Info("receipt numbers taken into stock", "allocation_id", a.AllocationID, "unit_code", a.UnitCode,
				"receipt_code", a.ReceiptCode, "start_no", a.StartNo, "end_no", a.EndNo)
		}
	}
	rows, err := s.cfg.DB.QueryContext(ctx, `SELECT allocation_id, unit_code, receipt_code, start_no, end_no FROM receipt_stock
		WHERE accepted_at IS NULL ORDER BY handed_at, allocation_id`)
	if err != nil {
		return nil, err
	}
	var pending []ereceipt.Allocation
	for rows.Next() {
		var a ereceipt.Allocation
		var start, end int64
		if err := rows.Scan(&a.AllocationID, &a.UnitCode, &a.ReceiptCode, &start, &end); err != nil {
			rows.Close()
			return nil, err
		}
		a.StartNo, a.EndNo = fmt.Sprintf("%010d", start), fmt.Sprintf("%010d", end)
		pending = append(pending, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, a := range pending {
		if err := s.cfg.Platform.Accept(ctx, partner.StableRequestID("acc", a.AllocationID), a); err != nil {
			if partner.IsFinal(err) {
				return nil, task.Permanent(err)
			}
			return nil, err
		}
		if err := MarkAccepted(ctx, s.cfg.DB, a.AllocationID, s.cfg.Now()); err != nil {
			return nil, err
		}
	}
	return nil, nil
}
