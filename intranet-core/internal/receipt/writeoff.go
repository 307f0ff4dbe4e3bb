package receipt

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/task"
	"finepay/shared/bizdate"
)

// Write-off statuses kept in receipt_writeoffs.
const (
	WriteOffPending = "pending" // built, not yet answered
)

// HandleWriteOff is the task.Handler of KindWriteOff, whose key is the business day to report:
// the receipts issued that day (blue and red, by the platform's issue time), and the numbers
// voided, per unit and code. The report is built once, at the first attempt, and stored, so that
// every attempt sends the same request; the platform's answer (written-off, or the
// discrepancies it found) is stored with it.
func (s *Service) HandleWriteOff(ctx context.Context, t task.Task) (task.Finish, error) {
	day, err := bizdate.Parse(t.Key)
	if err != nil {
		return nil, task.Permanent(fmt.Errorf("receipt: write-off period %q: %w", t.Key, err))
	}
	var raw string
	err = s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT report FROM receipt_writeoffs WHERE period = $1`, t.Key).Scan(&raw)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		r, err := Usage(ctx, tx, day)
		if err != nil {
			return err
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		raw = string(b)
		_, err = tx.ExecContext(ctx, `INSERT INTO receipt_writeoffs (period, report, status, answer, reported_at) VALUES ($1, $2, $3, '', $4)`,
			t.Key, raw, WriteOffPending, s.cfg.Now().UTC())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("receipt: write-off report of %s: %w", t.Key, err)
	}
	var report ereceipt.WriteOffReport
	if err := json.Unmarshal([]byte(raw), &report); err != nil {
		return nil, task.Permanent(err)
	}
	res, err := s.cfg.Platform.WriteOff(ctx, t.RequestID, report)
	if err != nil {
		if partner.IsFinal(err) {
			return nil, task.Permanent(err)
		}
		return nil, err
	}
	answer, _ := json.Marshal(res)
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE receipt_writeoffs SET status = $2, answer = $3, reported_at = $4 WHERE period = $1`,
			t.Key, res.Status, string(answer), s.cfg.Now().UTC())
		if len(res.Discrepancies) > 0 {
			s.cfg.Logger.Warn("receipt write-off: the platform's records differ", "period", t.Key, "discrepancies", string(answer))
		} else {
			s.cfg.Logger.Info("receipt usage written off", "period", t.Key, "lines", len(report.Usage))
		}
		return err
	}, nil
}

// Usage is the write-off report of a day: per unit and receipt code, the first and last number
// used, the blue and red receipts issued (by issue time) with their amounts, and the numbers
// voided (by assignment time).
func Usage(ctx context.Context, q querier, day bizdate.Date) (ereceipt.WriteOffReport, error) {
	from, to := day.Start().UTC(), day.AddDays(1).Start().UTC()
	rows, err := q.QueryContext(ctx, `
		SELECT b.unit_code, r.receipt_code, r.receipt_no, 'blue', r.amount FROM receipts r JOIN bills b ON b.bill_no = r.bill_no
			WHERE r.issued_at >= $1 AND r.issued_at < $2
		UNION ALL
		SELECT b.unit_code, r.receipt_code, r.receipt_no, 'red', r.amount FROM red_receipts r JOIN bills b ON b.bill_no = r.bill_no
			WHERE r.issued_at >= $1 AND r.issued_at < $2
		UNION ALL
		SELECT unit_code, receipt_code, receipt_no, 'void', 0 FROM receipt_numbers
			WHERE state = 'void' AND assigned_at >= $1 AND assigned_at < $2`, from, to)
	if err != nil {
		return ereceipt.WriteOffReport{}, err
	}
	defer rows.Close()
	by := map[string]*ereceipt.Usage{}
	for rows.Next() {
		var unit, code, no, kind string
		var amount int64
		if err := rows.Scan(&unit, &code, &no, &kind, &amount); err != nil {
			return ereceipt.WriteOffReport{}, err
		}
		u := by[unit+"/"+code]
		if u == nil {
			u = &ereceipt.Usage{UnitCode: unit, ReceiptCode: code, FirstNo: no, LastNo: no}
			by[unit+"/"+code] = u
		}
		u.FirstNo, u.LastNo = min(u.FirstNo, no), max(u.LastNo, no)
		switch kind {
		case "blue":
			u.Issued++
			u.Amount += amount
		case "red":
			u.Red++
			u.RedAmount += amount
		default:
			u.Void++
		}
	}
	if err := rows.Err(); err != nil {
		return ereceipt.WriteOffReport{}, err
	}
	r := ereceipt.WriteOffReport{Period: day.String(), Usage: []ereceipt.Usage{}}
	for _, u := range by {
		r.Usage = append(r.Usage, *u)
	}
	sort.Slice(r.Usage, func(i, j int) bool {
		return r.Usage[i].UnitCode+r.Usage[i].ReceiptCode < r.Usage[j].UnitCode+r.Usage[j].ReceiptCode
	})
	return r, nil
}
