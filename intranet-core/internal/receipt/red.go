package receipt

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/task"
)

// Errors of RedFlush.
var (
	// ErrNoReceipt: the bill has no issued receipt (yet): there is nothing to red-flush. The
	// ereceipt.red task waits for it.
	ErrNoReceipt = errors.New("receipt: the bill has no issued receipt")
	// ErrNotSigned: the receipt was issued before receipts carried the unit's signed data; it
	// cannot be red-flushed by this system.
	ErrNotSigned = errors.New("receipt: the receipt carries no signed data")
)

// RedReceipt is the red receipt (红字票据) of a bill's receipt.
type RedReceipt struct {
	BillNo        string
	OriginalCode  string
	OriginalNo    string
	ReceiptCode   string
	ReceiptNo     string
	CheckCode     string
	Amount        int64
	Reason        string
	IssuedAt      time.Time
	Data          []byte // the unit's signed data
	UnitSignature string
	Seal          string
	Layout        []byte // PDF
}

// RedFlush has the receipt of a bill red-flushed (红冲): a red receipt with its own code, number
// and check code, from the unit's stock, referring to the original, which is kept and marked
// red-flushed. It is idempotent: once a bill's receipt is red-flushed, RedFlush answers the same
// red receipt without asking the platform again (and the platform, asked again, answers the same
// red receipt too). The refund engine calls it once a refund is done, directly or through the
// ereceipt.red task (EnqueueRedFlush).
func (s *Service) RedFlush(ctx context.Context, billNo, reason string) (RedReceipt, error) {
	if r, err := GetRed(ctx, s.cfg.DB, billNo); err == nil || !errors.Is(err, sql.ErrNoRows) {
		return r, err
	}
	if reason == "" || len([]rune(reason)) > 200 {
		return RedReceipt{}, fmt.Errorf("receipt: red-flush reason must be 1 to 200 characters")
	}
	var orig struct {
		code, no, data, unit string
		amount               int64
	}
	err := s.cfg.DB.QueryRowContext(ctx, `SELECT r.receipt_code, r.receipt_no, r.data, r.amount, b.unit_code FROM receipts r
		JOIN bills b ON b.bill_no = r.bill_no WHERE r.bill_no = $1`, billNo).Scan(&orig.code, &orig.no, &orig.data, &orig.amount, &orig.unit)
	if errors.Is(err, sql.ErrNoRows) {
		return RedReceipt{}, fmt.Errorf("%w: %s", ErrNoReceipt, billNo)
	}
	if err != nil {
		return RedReceipt{}, fmt.Errorf("receipt: receipt of %s: %w", billNo, err)
	}
	if orig.data == "" {
		return RedReceipt{}, fmt.Errorf("%w: %s", ErrNotSigned, billNo)
	}
	num, err := s.assign(ctx, billNo, ereceipt.KindRed, orig.unit, func(tx *sql.Tx, code, no string) (ereceipt.Data, error) {
		var d ereceipt.Data
		if err := json.Unmarshal([]byte(orig.data), &d); err != nil {
			return d, fmt.Errorf("receipt: data of %s %s: %w", orig.code, orig.no, err)
		}
		d.Kind, d.ReceiptCode, d.ReceiptNo = ereceipt.KindRed, code, no
		d.OriginalCode, d.OriginalNo, d.Reason = orig.code, orig.no, reason
		d.Issuer, d.SignedAt = s.cfg.Issuer, partner.FormatTime(s.cfg.Now())
		return d, nil
	})
	if errors.Is(err, ErrNoStock) {
		s.askForStock(ctx)
	}
	if err != nil {
		return RedReceipt{}, err
	}
	var d ereceipt.Data
	if err := json.Unmarshal([]byte(num.data), &d); err != nil {
		return RedReceipt{}, err
	}
	req := ereceipt.RedRequest{OriginalCode: orig.code, OriginalNo: orig.no, ReceiptCode: num.code, ReceiptNo: num.no,
		Reason: d.Reason, Data: base64.StdEncoding.EncodeToString([]byte(num.data)), UnitSignature: num.unitSignature}
	rc, err := s.cfg.Platform.RedFlush(ctx, partner.StableRequestID("red", num.code+num.no), req, orig.amount)
	if err != nil {
		if partner.IsFinal(err) {
			s.void(ctx, num)
		}
		return RedReceipt{}, err
	}
	issuedAt, err := time.Parse(time.RFC3339, rc.IssuedAt)
	if err != nil {
		return RedReceipt{}, fmt.Errorf("receipt: issued_at: %w", err)
	}
	layout, err := base64.StdEncoding.DecodeString(rc.Layout)
	if err != nil {
		return RedReceipt{}, fmt.Errorf("receipt: layout: %w", err)
	}
	err = s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO red_receipts (bill_no, original_code, original_no, receipt_code, receipt_no, check_code,
			amount, reason, issued_at, data, unit_signature, seal, layout, stored_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING`,
			billNo, orig.code, orig.no, rc.ReceiptCode, rc.ReceiptNo, rc.CheckCode, rc.Amount, d.Reason, issuedAt.UTC(),
			num.data, num.unitSignature, rc.Seal, layout, s.cfg.Now().UTC())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE receipts SET red_flushed_at = $2 WHERE bill_no = $1 AND red_flushed_at IS NULL`,
			billNo, s.cfg.Now().UTC()); err != nil {
			return err
		}
		return markIssued(ctx, tx, num)
	})
	if err != nil {
		return RedReceipt{}, fmt.Errorf("receipt: store red receipt of %s: %w", billNo, err)
	}
	s.cfg.Logger.Info("receipt red-flushed", "bill_no", billNo, "original_no", orig.no, "receipt_code", rc.ReceiptCode, "receipt_no", rc.ReceiptNo)
	return GetRed(ctx, s.cfg.DB, billNo)
}

// GetRed returns the red receipt of a bill; sql.ErrNoRows when it has none.
func GetRed(ctx context.Context, q querier, billNo string) (RedReceipt, error) {
	r := RedReceipt{BillNo: billNo}
	var data string
	err := q.QueryRowContext(ctx, `SELECT original_code, original_no, receipt_code, receipt_no, check_code, amount, reason, issued_at,
		data, unit_signature, seal, layout FROM red_receipts WHERE bill_no = $1`, billNo).Scan(&r.OriginalCode, &r.OriginalNo,
		&r.ReceiptCode, &r.ReceiptNo, &r.CheckCode, &r.Amount, &r.Reason, &r.IssuedAt, &data, &r.UnitSignature, &r.Seal, &r.Layout)
	if err != nil {
		return RedReceipt{}, err
	}
	r.Data = []byte(data)
	return r, nil
}

// RedTask is the payload of an ereceipt.red task.
type RedTask struct {
	BillNo string `json:"bill_no"`
	Reason string `json:"reason"`
}

// EnqueueRedFlush queues the red-flush of a bill's receipt in tx (the refund's transaction); a
// red-flush already queued for the bill is left as it is.
func EnqueueRedFlush(ctx context.Context, tx *sql.Tx, now time.Time, billNo, reason string) (bool, error) {
	return task.Enqueue(ctx, tx, now, task.Spec{Kind: KindRedFlush, Key: billNo, RequestID: partner.StableRequestID("rfl", billNo),
		Payload: RedTask{BillNo: billNo, Reason: reason}})
}

// HandleRedFlush is the task.Handler of KindRedFlush. A bill whose receipt is not issued yet
// waits for it.
func (s *Service) HandleRedFlush(ctx context.Context, t task.Task) (task.Finish, error) {
	var rt RedTask
	if err := t.Decode(&rt); err != nil {
		return nil, task.Permanent(err)
	}
	_, err := s.RedFlush(ctx, rt.BillNo, rt.Reason)
	if err != nil && (partner.IsFinal(err) || errors.Is(err, ErrNotSigned)) {
		return nil, task.Permanent(err)
	}
	return nil, err
}
