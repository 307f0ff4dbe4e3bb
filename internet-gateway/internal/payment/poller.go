package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"finepay/internet-gateway/internal/channel"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/clip"
)

// PollerConfig configures a Poller.
type PollerConfig struct {
	Store    *store.Store
	Recorder *Recorder
	// Adapters are the channels whose orders are queried.
	Adapters []channel.Adapter
	// After is how old an order without a result must be before it is first queried, and the
	// first wait before the next query; each further wait doubles, up to MaxInterval.
	After time.Duration
	// MaxInterval caps the wait between two queries of an order; 30 minutes when zero.
	MaxInterval time.Duration
	// Every is how often Run looks for such orders; After/4 within [1s, 30s] when zero.
	Every  time.Duration
	Batch  int // orders per round; 100 when zero
	Now    func() time.Time
	Logger *slog.Logger
}

// Poller queries orders that are still unpaid some time after creation (never trust only
// notifications), with backoff, until they are final: a paid one is recorded exactly as a
// notification would record it; one that is closed at the channel, or unpaid past its expiry
// (then closed at the channel), is closed. It also retires an open order that a new one is
// about to replace (see Retire).
type Poller struct {
	store    *store.Store
	recorder *Recorder
	adapters map[string]channel.Adapter
	channels []string
	after    time.Duration
	maxWait  time.Duration
	every    time.Duration
	batch    int
	now      func() time.Time
	log      *slog.Logger
}

// NewPoller returns a Poller.
func NewPoller(cfg PollerConfig) *Poller {
	if cfg.After <= 0 {
		cfg.After = time.Minute
	}
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = 30 * time.Minute
	}
	if cfg.Every <= 0 {
		cfg.Every = min(max(cfg.After/4, time.Second), 30*time.Second)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Poller{store: cfg.Store, recorder: cfg.Recorder, adapters: map[string]channel.Adapter{}, after: cfg.After,
		maxWait: max(cfg.MaxInterval, cfg.After), every: cfg.Every, batch: cfg.Batch, now: cfg.Now, log: cfg.Logger}
	for _, a := range cfg.Adapters {
		p.adapters[a.Name()] = a
		p.channels = append(p.channels, a.Name())
	}
	return p
}

// Round says what one round did.
type Round struct {
	Queried, Paid, Closed, Failed int
}

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		if _, err := p.RunOnce(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("payment: order query round", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce queries one batch of due orders.
func (p *Poller) RunOnce(ctx context.Context) (Round, error) {
	var r Round
	now := p.now()
	orders, err := p.store.OrderListToQuery(ctx, p.store.DB, p.channels, now.Add(-p.after), now, p.batch)
	if err != nil {
		return r, err
	}
	for _, o := range orders {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.Queried++
		switch outcome, err := p.settle(ctx, o, p.now().After(o.ExpiresAt)); {
		case err != nil:
			r.Failed++
			p.log.Warn("payment: order query", "order_no", o.OrderNo, "channel", o.Channel, "err", err)
		case outcome == store.OrderPaid:
			r.Paid++
		case outcome == store.OrderClosed:
			r.Closed++
		}
		done := p.now()
		if err := p.store.OrderMarkQueried(ctx, p.store.DB, o.OrderNo, done, p.next(o, done)); err != nil {
			return r, err
		}
	}
	return r, nil
}

// next is when an order queried at now is due again: After, then twice as long after each
// query, at most MaxInterval; but never later than just past its expiry, when it is closed.
func (p *Poller) next(o store.Order, now time.Time) time.Time {
	wait := p.maxWait
	if o.QueryCount < 30 {
		wait = min(p.after<<o.QueryCount, p.maxWait)
	}
	n := now.Add(wait)
	if now.Before(o.ExpiresAt) && n.After(o.ExpiresAt) {
		n = o.ExpiresAt.Add(time.Second)
	}
	return n
}

// Retire makes an open order final before a new order of its bill and channel is made: it is
// queried, and recorded when it was paid (paid is then true); otherwise it is closed at the
// channel and here.
func (p *Poller) Retire(ctx context.Context, o store.Order) (paid bool, err error) {
	st, err := p.settle(ctx, o, true)
	return st == store.OrderPaid, err
}

func toChannel(o store.Order) channel.Order {
	return channel.Order{OrderNo: o.OrderNo, BillNo: o.BillNo, Amount: o.Amount, CreatedAt: o.CreatedAt, ExpiresAt: o.ExpiresAt}
}

// settle queries an order and acts on the answer: paid → recorded; closed → closed here; not
// known to the channel and closeOpen → closed here; open and closeOpen → closed at the channel,
// then here. It returns the order's new status, or "".
func (p *Poller) settle(ctx context.Context, o store.Order, closeOpen bool) (string, error) {
	a, ok := p.adapters[o.Channel]
	if !ok {
		return "", fmt.Errorf("payment: order %s of channel %q, which is not configured", o.OrderNo, o.Channel)
	}
	co := toChannel(o)
	t, err := a.Query(ctx, co)
	if err != nil {
		return "", err
	}
	switch {
	case t.State == channel.StatePaid:
		return p.recordQueried(ctx, o, t)
	case t.State == channel.StateClosed:
		return p.close(ctx, o)
	case !closeOpen:
		return "", nil
	case t.State == channel.StateNotFound:
		return p.close(ctx, o) // nothing to close at the channel
	}
	if err := a.Close(ctx, co); errors.Is(err, channel.ErrPaid) {
		// Paid between the query and the close: record it.
		if t, err = a.Query(ctx, co); err != nil {
			return "", err
		}
		if t.State != channel.StatePaid {
			return "", fmt.Errorf("payment: %s: the channel refused to close it as paid, but answers %s", o.OrderNo, t.State)
		}
		return p.recordQueried(ctx, o, t)
	} else if err != nil {
		return "", err
	}
	return p.close(ctx, o)
}

func (p *Poller) close(ctx context.Context, o store.Order) (string, error) {
	closed, err := p.store.OrderClose(ctx, p.store.DB, o.OrderNo, p.now())
	if err != nil || !closed {
		return "", err
	}
	p.log.Info("payment: order closed", "order_no", o.OrderNo, "bill_no", o.BillNo, "channel", o.Channel)
	return store.OrderClosed, nil
}

// recordQueried records a payment found by query like a notification: a notifications row
// (the verified answer without the payer's data, remote address order-query) and then Record,
// with the synthetic notification ID "query:<channel trade number>".
func (p *Poller) recordQueried(ctx context.Context, o store.Order, t channel.Trade) (string, error) {
	id, err := p.store.NotificationInsert(ctx, p.store.DB, store.Notification{
		Channel: o.Channel, ReceivedAt: p.now(), RemoteAddr: "order-query", Headers: "{}", Body: t.Raw,
	})
	if err != nil {
		return "", err
	}
	decide := func(verdict, reason string) error {
		return p.store.NotificationDecide(ctx, p.store.DB, id, store.Decision{Verdict: verdict, Reason: reason,
			EventID: "query:" + t.TradeNo, OutTradeNo: o.OrderNo, ChannelTradeNo: t.TradeNo, At: p.now()})
	}
	res, err := p.recorder.Record(ctx, Confirmation{
		Channel: o.Channel, ChannelTradeNo: t.TradeNo, OrderNo: o.OrderNo, Amount: t.Amount,
		PaidAt: t.PaidAt, NotificationID: "query:" + t.TradeNo, Source: store.SourceQuery,
	})
	if errors.Is(err, ErrAmount) || errors.Is(err, ErrUnknownOrder) {
		p.log.Error("payment: queried payment does not match its order", "order_no", o.OrderNo, "err", err)
		return "", errors.Join(err, decide(store.VerdictRejected, reasonOf(err)+": "+clip.Text(err.Error(), 500)))
	}
	if err != nil {
		return "", err
	}
	verdict := store.VerdictAccepted
	if res.Duplicate {
		verdict = store.VerdictDuplicate
	}
	if err := decide(verdict, ""); err != nil {
		p.log.Error("payment: record query verdict", "order_no", o.OrderNo, "err", err)
	}
	return store.OrderPaid, nil
}
