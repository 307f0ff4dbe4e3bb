package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"finepay/ferry/sqldb"
	"finepay/shared/money"
)

// Payment sources: how the gateway learnt of a payment.
const (
	SourceNotification = "notification"
	SourceQuery        = "query"
)

// Payment is a payment confirmed by a channel.
type Payment struct {
	ID             int64
	Channel        string
	ChannelTradeNo string
	OrderNo        string
	BillNo         string
	Amount         money.Fen
	Fine           money.Fen
	LateFee        money.Fen
	PaidAt         time.Time
	MessageID      string // of the PaymentConfirmed sent to the core
	NotificationID string // the channel's notification ID, or a synthetic one for a query
	Source         string
	RecordedAt     time.Time
}

const paymentColumns = `id, channel, channel_trade_no, order_no, bill_no, amount, fine, late_fee, paid_at, message_id,
	notification_id, source, recorded_at`

func scanPayment(row interface{ Scan(...any) error }) (Payment, error) {
	var p Payment
	err := row.Scan(&p.ID, &p.Channel, &p.ChannelTradeNo, &p.OrderNo, &p.BillNo, &p.Amount, &p.Fine, &p.LateFee,
		&p.PaidAt, &p.MessageID, &p.NotificationID, &p.Source, &p.RecordedAt)
	return p, err
}

// PaymentInsert stores a payment unless one with the same channel and channel trade number
// exists; it reports whether it inserted. A payment for an order that already has a different
// payment fails with a unique violation.
func (s *Store) PaymentInsert(ctx context.Context, q Querier, p Payment) (bool, error) {
	res, err := q.ExecContext(ctx, `INSERT INTO payments (channel, channel_trade_no, order_no, bill_no, amount, fine, late_fee,
		paid_at, message_id, notification_id, source, recorded_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (channel, channel_trade_no) DO NOTHING`,
		p.Channel, p.ChannelTradeNo, p.OrderNo, p.BillNo, int64(p.Amount), int64(p.Fine), int64(p.LateFee),
		utc(p.PaidAt), p.MessageID, p.NotificationID, p.Source, utc(p.RecordedAt))
	if err != nil {
		return false, fmt.Errorf("store: insert payment %s/%s: %w", p.Channel, p.ChannelTradeNo, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// PaymentGetByTrade returns the payment of a channel trade number.
func (s *Store) PaymentGetByTrade(ctx context.Context, q Querier, channel, tradeNo string) (Payment, error) {
	p, err := scanPayment(q.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments
		WHERE channel = $1 AND channel_trade_no = $2`, channel, tradeNo))
	return p, notFound(err, "payment")
}

// PaymentLatestForBill returns the payment of a bill the payer is shown: the one its e-receipt
// was issued for, or else the most recent. A bill paid twice (the second payment a duplicate the
// core refunds) thus shows the payment that paid it once its receipt is here.
func (s *Store) PaymentLatestForBill(ctx context.Context, q Querier, billNo string) (Payment, error) {
	p, err := scanPayment(q.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments
		WHERE bill_no = $1
		ORDER BY CASE WHEN EXISTS (SELECT 1 FROM receipts r WHERE r.order_no = payments.order_no) THEN 0 ELSE 1 END,
			paid_at DESC, id DESC LIMIT 1`, billNo))
	return p, notFound(err, "payment of bill "+billNo)
}

// PaymentRecording is a confirmed payment to record with PaymentRecord: its order is paid at
// Payment.Amount through Payment.Channel; the bill number, fine and late fee are the order's.
type PaymentRecording struct {
	Payment Payment
	// Notification, when not nil, is stored with the payment: verdict accepted when the payment
	// is new, duplicate when it was recorded before.
	Notification *Notification
	// Queue, when not nil and on PostgreSQL, returns WITH clauses (their parameters numbered from
	// first) that the recording's statement runs when cond holds, which it does exactly when
	// the payment is new: the ferry outbox row of the payment's message (outbox.Clauses). The
	// statement then needs no transaction around it. On SQLite, Queue is not used.
	Queue func(cond string, first int) (string, []any)
}

// PaymentRecorded is what PaymentRecord did.
type PaymentRecorded struct {
	Payment        Payment // as inserted (ID unset); for a duplicate, only what was given
	Inserted       bool    // false: the payment was recorded before and nothing but the notification changed
	Token          string  // the bill's token ("" when the payment is a duplicate or there is no bill)
	NotificationID int64   // 0 without a notification
}

// PaymentRecord records a confirmed payment in q (a transaction of the caller's): it marks
// the order paid (from any status, like OrderMarkPaid, but keeping updated_at of an order paid
// already, so that a duplicate changes nothing; the update locks the order's row), inserts the payment unless
// one with the same channel and channel trade number exists and, when it did, marks the bill
// paid; it stores the notification, if any, with its verdict. It fails with ErrNotFound,
// changing nothing, when there is no order of that number, channel and amount, and with a
// unique violation when the order already has a different payment (the caller rolls back).
//
// On PostgreSQL this is one statement (one round trip); on SQLite, one statement a step.
func (s *Store) PaymentRecord(ctx context.Context, q Querier, r PaymentRecording) (PaymentRecorded, error) {
	if s.DB.Dialect == sqldb.Postgres {
		return s.paymentRecordPostgres(ctx, q, r)
	}
	p := r.Payment
	o, err := scanOrder(q.QueryRowContext(ctx, `UPDATE channel_orders SET status = $2,
		updated_at = CASE WHEN status = $2 THEN updated_at ELSE $3 END
		WHERE order_no = $1 AND channel = $4 AND amount = $5 RETURNING `+orderColumns,
		p.OrderNo, OrderPaid, utc(p.RecordedAt), p.Channel, int64(p.Amount)))
	if err != nil {
		return PaymentRecorded{}, notFound(err, "order "+p.OrderNo+" of "+p.Channel+" for that amount")
	}
	p.BillNo, p.Fine, p.LateFee = o.BillNo, o.Fine, o.LateFee
	out := PaymentRecorded{Payment: p}
	if out.Inserted, err = s.PaymentInsert(ctx, q, p); err != nil {
		return PaymentRecorded{}, err
	}
	if out.Inserted {
		if out.Token, err = s.BillMarkPaidToken(ctx, q, p.BillNo, p.RecordedAt); err != nil {
			return PaymentRecorded{}, err
		}
	}
	if r.Notification != nil {
		n := *r.Notification
		n.Verdict = VerdictAccepted
		if !out.Inserted {
			n.Verdict = VerdictDuplicate
		}
		if out.NotificationID, err = s.NotificationInsert(ctx, q, n); err != nil {
			return PaymentRecorded{}, err
		}
	}
	return out, nil
}

// paymentRecordPostgres is PaymentRecord in one statement: each step is a data-modifying WITH
// that takes what it needs from the RETURNING of the one before, so that no order means no
// payment, no bill update and no notification.
func (s *Store) paymentRecordPostgres(ctx context.Context, q Querier, r PaymentRecording) (PaymentRecorded, error) {
	p := r.Payment
	args := []any{p.OrderNo, p.Channel, int64(p.Amount), utc(p.RecordedAt), p.ChannelTradeNo, utc(p.PaidAt), p.MessageID,
		p.NotificationID, p.Source, OrderPaid, BillPaid}
	note, noteID := ``, `NULL::bigint`
	if n := r.Notification; n != nil {
		body := n.Body
		if body == nil {
			body = []byte{}
		}
		args = append(args, n.Channel, utc(n.ReceivedAt), n.RemoteAddr, n.Headers, body, n.Reason, n.EventID, n.OutTradeNo,
			n.ChannelTradeNo, nullTime(n.DecidedAt), VerdictAccepted, VerdictDuplicate)
		note = `,
		n AS (INSERT INTO notifications (channel, received_at, remote_addr, headers, body, verdict, reason, event_id,
				out_trade_no, channel_trade_no, decided_at)
			SELECT $12::text, $13::timestamptz, $14::text, $15::text, $16::bytea,
				CASE WHEN EXISTS (SELECT 1 FROM p) THEN $22::text ELSE $23::text END,
				$17::text, $18::text, $19::text, $20::text, $21::timestamptz FROM o
			RETURNING id)`
		noteID = `(SELECT id FROM n)`
	}
	if r.Queue != nil {
		clauses, qargs := r.Queue(`EXISTS (SELECT 1 FROM p)`, len(args)+1)
		note += `,
		` + clauses
		args = append(args, qargs...)
	}
	var token sql.NullString
	var pid, nid sql.NullInt64
	err := q.QueryRowContext(ctx, `WITH o AS (
			UPDATE channel_orders SET status = $10::text,
				updated_at = CASE WHEN status = $10::text THEN updated_at ELSE $4::timestamptz END
			WHERE order_no = $1::text AND channel = $2::text AND amount = $3::bigint
			RETURNING bill_no, fine, late_fee),
		p AS (INSERT INTO payments (channel, channel_trade_no, order_no, bill_no, amount, fine, late_fee, paid_at, message_id,
				notification_id, source, recorded_at)
			SELECT $2::text, $5::text, $1::text, o.bill_no, $3::bigint, o.fine, o.late_fee, $6::timestamptz, $7::text,
				$8::text, $9::text, $4::timestamptz FROM o
			ON CONFLICT (channel, channel_trade_no) DO NOTHING
			RETURNING id),
		b AS (UPDATE bills SET status = $11::text, updated_at = $4::timestamptz
			FROM o WHERE bills.bill_no = o.bill_no AND EXISTS (SELECT 1 FROM p)
			RETURNING bills.token)`+note+`
		SELECT o.bill_no, o.fine, o.late_fee, (SELECT id FROM p), (SELECT token FROM b), `+noteID+` FROM o`, args...).Scan(
		&p.BillNo, &p.Fine, &p.LateFee, &pid, &token, &nid)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return PaymentRecorded{}, fmt.Errorf("%w: order %s of %s for that amount", ErrNotFound, p.OrderNo, p.Channel)
		}
		return PaymentRecorded{}, fmt.Errorf("store: record payment %s/%s: %w", p.Channel, p.ChannelTradeNo, err)
	}
	if pid.Valid {
		p.ID = pid.Int64
	}
	return PaymentRecorded{Payment: p, Inserted: pid.Valid, Token: token.String, NotificationID: nid.Int64}, nil
}
