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
	"finepay/ferry/sqldb"
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
// (accepted, or duplicate when the payment was recorded before) with the payment, and returns
// its ID.
//
// The order is marked paid, the payment inserted, the bill marked paid and the notification
// stored by one store call (see store.PaymentRecord). On PostgreSQL the same statement queues
// the PaymentConfirmed in the ferry outbox and runs alone (autocommit): the order is read first
// (its bill and amounts go into the message), then one statement records everything or
// nothing; its outbox lane number comes from the lane's sequence, without a lock. On SQLite
// the steps run in one transaction, the outbox row last. A payment of an unknown order or for
// another amount changes nothing.
func (r *Recorder) record(ctx context.Context, c Confirmation, note *store.Notification) (Result, int64, error) {
	var (
		res    Result
		token  string
		noteID int64
		err    error
	)
	if r.store.DB.Dialect == sqldb.Postgres {
		res, token, noteID, err = r.recordStatement(ctx, c, note)
	} else {
		res, token, noteID, err = r.recordTx(ctx, c, note)
	}
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

// recordStatement is record on PostgreSQL: a read of the order, then one statement.
func (r *Recorder) recordStatement(ctx context.Context, c Confirmation, note *store.Notification) (Result, string, int64, error) {
	o, err := r.store.OrderGet(ctx, r.store.DB, c.OrderNo, false)
	if err := orderMismatch(c, o, err); err != nil {
		return Result{}, "", 0, err
	}
	now := r.now()
	p := r.payment(c, now)
	p.BillNo, p.Fine, p.LateFee = o.BillNo, o.Fine, o.LateFee
	env, err := confirmed(p, c, now)
	if err != nil {
		return Result{}, "", 0, err
	}
	q, err := r.outbox.Prepare(env)
	if err != nil {
		return Result{}, "", 0, err
	}
	rec, err := r.store.PaymentRecord(ctx, r.store.DB, store.PaymentRecording{Payment: p, Notification: note,
		Queue: func(cond string, first int) (string, []any) { return r.outbox.Clauses(q, cond, first) }})
	if errors.Is(err, store.ErrNotFound) {
		// The order was there a moment ago with this channel and amount, and orders are not deleted.
		return Result{}, "", 0, fmt.Errorf("payment: order %s not marked paid: %w", c.OrderNo, err)
	}
	if err != nil {
		return Result{}, "", 0, r.outbox.Refused(err, env.ID)
	}
	if !rec.Inserted {
		prev, err := r.store.PaymentGetByTrade(ctx, r.store.DB, c.Channel, c.ChannelTradeNo)
		if err != nil {
			return Result{}, "", 0, err
		}
		return Result{Payment: prev, Duplicate: true}, "", rec.NotificationID, nil
	}
	return Result{Payment: rec.Payment}, rec.Token, rec.NotificationID, nil
}

// recordTx is record in one transaction (SQLite).
func (r *Recorder) recordTx(ctx context.Context, c Confirmation, note *store.Notification) (Result, string, int64, error) {
	var res Result
	var token string
	var noteID int64
	err := r.store.DB.Tx(ctx, func(tx *sql.Tx) error {
		res, token, noteID = Result{}, "", 0
		now := r.now()
		rec, err := r.store.PaymentRecord(ctx, tx, store.PaymentRecording{Payment: r.payment(c, now), Notification: note})
		if errors.Is(err, store.ErrNotFound) {
			o, err := r.store.OrderGet(ctx, tx, c.OrderNo, false)
			if err := orderMismatch(c, o, err); err != nil {
				return err
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
		token, res = rec.Token, Result{Payment: rec.Payment}
		env, err := confirmed(rec.Payment, c, now)
		if err != nil {
			return err
		}
		// Last before the commit: on SQLite the lane's counter stays locked from here to the commit.
		_, err = r.outbox.Put(ctx, tx, env)
		return err
	})
	return res, token, noteID, err
}

// orderMismatch says why a confirmation does not fit the order read for it (err is the read's
// error): no such order of the channel (ErrUnknownOrder), or another amount (ErrAmount).
func orderMismatch(c Confirmation, o store.Order, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && o.Channel != c.Channel):
		return fmt.Errorf("%w: %s", ErrUnknownOrder, c.OrderNo)
	case err != nil:
		return err
	case o.Amount != c.Amount:
		return fmt.Errorf("%w: %s paid %d, order %d", ErrAmount, c.OrderNo, c.Amount, o.Amount)
	}
	return nil
}

// payment is the payment row of c, recorded at now.
func (r *Recorder) payment(c Confirmation, now time.Time) store.Payment {
	return store.Payment{Channel: c.Channel, ChannelTradeNo: c.ChannelTradeNo, OrderNo: c.OrderNo, Amount: c.Amount,
		PaidAt: c.PaidAt, MessageID: MessageID(c.Channel, c.ChannelTradeNo), NotificationID: c.NotificationID,
		Source: c.Source, RecordedAt: now}
}

// confirmed is the PaymentConfirmed of payment p (its bill and amounts known).
func confirmed(p store.Payment, c Confirmation, now time.Time) (envelope.Envelope, error) {
	return envelope.New(p.MessageID, p.BillNo, now, &envelope.PaymentConfirmed{
		BillNo: p.BillNo, OrderNo: p.OrderNo, Channel: c.Channel, ChannelTradeNo: c.ChannelTradeNo,
		Amount: int64(p.Amount), Fine: int64(p.Fine), LateFee: int64(p.LateFee), PaidAt: c.PaidAt.UTC(),
		NotificationID: c.NotificationID,
	})
}
