// Package payment records confirmed channel payments exactly once and tells the core about them.
//
// A payment is learnt of in two ways, which end in the same Record: a channel notification
// (verified, then stored as received with its verdict, see Notifications) or an active order
// query for orders still unpaid some time after creation (see Poller). Record inserts the
// payment under UNIQUE(channel, channel_trade_no), marks the order and the bill paid and puts a
// PaymentConfirmed into the ferry outbox, all in one transaction; a second delivery of the same
// payment conflicts on the unique key and changes nothing.
package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/outbox"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/envelope"
	"finepay/shared/money"
)

// Errors of Record.
var (
	ErrUnknownOrder = errors.New("payment: unknown order")
	ErrAmount       = errors.New("payment: amount differs from the order's")
	ErrOrderPaid    = errors.New("payment: the order already has a different payment")
)

// Confirmation is a payment a channel confirmed.
type Confirmation struct {
	Channel        string
	ChannelTradeNo string
	OrderNo        string
	Amount         money.Fen
	PaidAt         time.Time
	NotificationID string // the channel's notification ID, or a synthetic one for a query
	Source         string // store.SourceNotification or store.SourceQuery
}

// MessageID is the ID of the PaymentConfirmed of a channel payment: fixed by the channel and
// its trade number, so that the same payment always yields the same message.
func MessageID(channel, tradeNo string) string { return "pay:" + channel + ":" + tradeNo }

// Invalidator drops cached bill views (implemented by *bill.Service).
type Invalidator interface {
	Invalidate(ctx context.Context, tokens ...string)
}

// RecorderConfig configures a Recorder.
type RecorderConfig struct {
	Store    *store.Store
	Outbox   *outbox.Outbox
	Bills    Invalidator
	Now      func() time.Time
	Logger   *slog.Logger
	Registry prometheus.Registerer // gets gateway_payments_recorded_total; nil = none
}

// Recorder records payments.
type Recorder struct {
	store    *store.Store
	outbox   *outbox.Outbox
	bills    Invalidator
	now      func() time.Time
	log      *slog.Logger
	recorded *prometheus.CounterVec
}

// NewRecorder returns a Recorder.
func NewRecorder(cfg RecorderConfig) *Recorder {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{store: cfg.Store, outbox: cfg.Outbox, bills: cfg.Bills, now: cfg.Now, log: cfg.Logger,
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_payments_recorded_total",
			Help: "Payments recorded (first deliveries only), by channel."}, []string{"channel"})}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(r.recorded)
	}
	return r
}

// Result is what Record did.
type Result struct {
	Payment   store.Payment
	Duplicate bool // the payment was recorded before; nothing changed
}

// Record stores a confirmed payment in one transaction: the payment row (unique per channel
// trade number), the order and the bill marked paid, and a PaymentConfirmed in the outbox.
// The amount must equal the order's: an order is paid at the amount it was created with, even
// after its day has passed.
func (r *Recorder) Record(ctx context.Context, c Confirmation) (Result, error) {
	res, _, err := r.record(ctx, c, nil)
	return res, err
}

// record is Record; when note is not nil, it also stores that notification with its verdict
// (accepted, or duplicate when the payment was recorded before) in the payment's transaction,
// and returns its ID.
//
// The order is marked paid, the payment inserted, the bill marked paid and the notification
// stored by one store call (one statement on PostgreSQL, see store.PaymentRecord); the outbox
// row comes last, so that the lane's row lock is held from it to the commit only. A payment of
// an unknown order or for another amount changes nothing: its transaction rolls back.
func (r *Recorder) record(ctx context.Context, c Confirmation, note *store.Notification) (Result, int64, error) {
	var res Result
	var token string
	var noteID int64
	err := r.store.DB.Tx(ctx, func(tx *sql.Tx) error {
		res, token, noteID = Result{}, "", 0
		now := r.now()
		rec, err := r.store.PaymentRecord(ctx, tx, store.PaymentRecording{Payment: store.Payment{
			Channel: c.Channel, ChannelTradeNo: c.ChannelTradeNo, OrderNo: c.OrderNo, Amount: c.Amount, PaidAt: c.PaidAt,
			MessageID: MessageID(c.Channel, c.ChannelTradeNo), NotificationID: c.NotificationID, Source: c.Source,
			RecordedAt: now,
		}, Notification: note})
		if errors.Is(err, store.ErrNotFound) {
			// No order of this number, channel and amount: say which (nothing was changed).
			o, err := r.store.OrderGet(ctx, tx, c.OrderNo, false)
			switch {
			case errors.Is(err, store.ErrNotFound) || (err == nil && o.Channel != c.Channel):
				return fmt.Errorf("%w: %s", ErrUnknownOrder, c.OrderNo)
			case err != nil:
				return err
			case o.Amount != c.Amount:
				return fmt.Errorf("%w: %s paid %d, order %d", ErrAmount, c.OrderNo, c.Amount, o.Amount)
			}
			return fmt.Errorf("payment: order %s not marked paid", c.OrderNo)
		}
		if err != nil {
			return err
		}
		noteID = rec.NotificationID
		if !rec.Inserted {
			prev, err := r.store.PaymentGetByTrade(ctx, tx, c.Channel, c.ChannelTradeNo)
			if err != nil {
				return err
			}
			res = Result{Payment: prev, Duplicate: true}
			return nil
		}
		p := rec.Payment
		token, res = rec.Token, Result{Payment: p}
		env, err := envelope.New(p.MessageID, p.BillNo, now, &envelope.PaymentConfirmed{
			BillNo: p.BillNo, OrderNo: p.OrderNo, Channel: c.Channel, ChannelTradeNo: c.ChannelTradeNo,
			Amount: int64(p.Amount), Fine: int64(p.Fine), LateFee: int64(p.LateFee), PaidAt: c.PaidAt.UTC(),
			NotificationID: c.NotificationID,
		})
		if err != nil {
			return err
		}
		// Last before the commit: the lane's row stays locked from here to the commit.
		_, err = r.outbox.Put(ctx, tx, env)
		return err
	})
	if err != nil {
		if store.IsUniqueViolation(err) {
			return Result{}, 0, fmt.Errorf("%w: %s: %w", ErrOrderPaid, c.OrderNo, err)
		}
		return Result{}, 0, err
	}
	if !res.Duplicate {
		r.recorded.WithLabelValues(c.Channel).Inc()
		r.bills.Invalidate(ctx, token)
		r.log.Info("payment: recorded", "channel", c.Channel, "channel_trade_no", c.ChannelTradeNo, "order_no", c.OrderNo,
			"bill_no", res.Payment.BillNo, "amount", int64(res.Payment.Amount), "source", c.Source, "message_id", res.Payment.MessageID)
	}
	return res, noteID, nil
}
