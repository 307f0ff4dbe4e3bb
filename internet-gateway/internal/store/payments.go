package store

import (
	"context"
	"fmt"
	"time"

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

// PaymentLatestForBill returns the most recent payment of a bill.
func (s *Store) PaymentLatestForBill(ctx context.Context, q Querier, billNo string) (Payment, error) {
	p, err := scanPayment(q.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments
		WHERE bill_no = $1 ORDER BY paid_at DESC, id DESC LIMIT 1`, billNo))
	return p, notFound(err, "payment of bill "+billNo)
}
