package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/sqldb"
)

// ErrConflict: the payment collides with a unique index although the replay check passed: a
// concurrent transaction recorded a payment for the same violation. The consumer retries the
// message, which then sees that payment.
var ErrConflict = errors.New("payment: concurrent payment for the same violation")

// PaymentInsert stores a payment and returns its ID.
func PaymentInsert(ctx context.Context, tx *sql.Tx, r Record) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `INSERT INTO payments (message_id, bill_no, violation_serial, order_no, channel, channel_trade_no,
		amount, fine, late_fee, paid_at, notification_id, result, reason, recorded_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING RETURNING id`,
		r.MessageID, r.BillNo, r.ViolationSerial, r.OrderNo, r.Channel, r.ChannelTradeNo, r.Amount, r.Fine, r.LateFee,
		r.PaidAt.UTC(), r.NotificationID, r.Result, r.Reason, r.RecordedAt.UTC()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: %s", ErrConflict, r.OrderNo)
	}
	if err != nil {
		return 0, fmt.Errorf("payment: insert: %w", err)
	}
	return id, nil
}

// PaymentListByBill returns the payments of a bill, oldest first.
func PaymentListByBill(ctx context.Context, db *sqldb.DB, billNo string) ([]Record, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, message_id, bill_no, violation_serial, order_no, channel, channel_trade_no,
		amount, fine, late_fee, paid_at, notification_id, result, reason, recorded_at FROM payments WHERE bill_no = $1 ORDER BY id`, billNo)
	if err != nil {
		return nil, fmt.Errorf("payment: list: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		if err := rows.Scan(&r.ID, &r.MessageID, &r.BillNo, &r.ViolationSerial, &r.OrderNo, &r.Channel, &r.ChannelTradeNo,
			&r.Amount, &r.Fine, &r.LateFee, &r.PaidAt, &r.NotificationID, &r.Result, &r.Reason, &r.RecordedAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

type countCollector struct{ db *sqldb.DB }

var countDesc = prometheus.NewDesc("core_payments_recorded_total",
	"Confirmed payments stored, by result (recorded, duplicate, unmatched); counted from the payments table.", []string{"result"}, nil)

func (c *countCollector) Describe(ch chan<- *prometheus.Desc) { ch <- countDesc }

func (c *countCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts := map[string]float64{ResultRecorded: 0, ResultDuplicate: 0, ResultUnmatched: 0}
	rows, err := c.db.QueryContext(ctx, `SELECT result, count(*) FROM payments GROUP BY result`)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(countDesc, err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var r string
		var n int64
		if rows.Scan(&r, &n) == nil {
			counts[r] = float64(n)
		}
	}
	for r, n := range counts {
		ch <- prometheus.MustNewConstMetric(countDesc, prometheus.CounterValue, n, r)
	}
}

// paymentFind reads the payment with the message ID, or the channel and trade number;
// sql.ErrNoRows when there is none.
func paymentFind(ctx context.Context, tx *sql.Tx, messageID, channel, tradeNo string) (Record, error) {
	var r Record
	err := tx.QueryRowContext(ctx, `SELECT id, message_id, bill_no, violation_serial, order_no, channel, channel_trade_no,
		amount, fine, late_fee, paid_at, notification_id, result, reason, recorded_at FROM payments
		WHERE message_id = $1 OR (channel = $2 AND channel_trade_no = $3) ORDER BY id LIMIT 1`, messageID, channel, tradeNo).
		Scan(&r.ID, &r.MessageID, &r.BillNo, &r.ViolationSerial, &r.OrderNo, &r.Channel, &r.ChannelTradeNo,
			&r.Amount, &r.Fine, &r.LateFee, &r.PaidAt, &r.NotificationID, &r.Result, &r.Reason, &r.RecordedAt)
	return r, err
}
