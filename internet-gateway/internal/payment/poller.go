package payment

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/wechat"
	"finepay/shared/money"
)

// OrderQuerier queries and closes WeChat orders (implemented by *wechat.Client).
type OrderQuerier interface {
	QueryOrder(ctx context.Context, outTradeNo string) (wechat.Transaction, []byte, error)
	CloseOrder(ctx context.Context, outTradeNo string) error
}

// PollerConfig configures a Poller.
type PollerConfig struct {
	Store    *store.Store
	Recorder *Recorder
	WeChat   OrderQuerier
	AppID    string
	MchID    string
	// After is how old an order without a result must be before it is queried, and how long
	// to wait between two queries of one order.
	After time.Duration
	// Every is how often Run looks for such orders; After/4 within [1s, 30s] when zero.
	Every  time.Duration
	Batch  int // orders per round; 100 when zero
	Now    func() time.Time
	Logger *slog.Logger
}

// Poller queries orders that are still unpaid some time after creation (never trust only
// notifications): a paid one is recorded exactly as a notification would record it; one that
// is closed at the channel, or unpaid past its expiry (then closed at the channel), is closed.
type Poller struct {
	store    *store.Store
	recorder *Recorder
	wechat   OrderQuerier
	appID    string
	mchID    string
	after    time.Duration
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
	return &Poller{store: cfg.Store, recorder: cfg.Recorder, wechat: cfg.WeChat, appID: cfg.AppID, mchID: cfg.MchID,
		after: cfg.After, every: cfg.Every, batch: cfg.Batch, now: cfg.Now, log: cfg.Logger}
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
	orders, err := p.store.OrderListToQuery(ctx, p.store.DB, wechat.Channel, now.Add(-p.after), now.Add(-p.after), p.batch)
	if err != nil {
		return r, err
	}
	for _, o := range orders {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.Queried++
		switch outcome, err := p.check(ctx, o); {
		case err != nil:
			r.Failed++
			p.log.Warn("payment: order query", "order_no", o.OrderNo, "err", err)
		case outcome == store.OrderPaid:
			r.Paid++
		case outcome == store.OrderClosed:
			r.Closed++
		}
		if err := p.store.OrderMarkQueried(ctx, p.store.DB, o.OrderNo, p.now()); err != nil {
			return r, err
		}
	}
	return r, nil
}

// check queries one order and acts on the answer; it returns the order's new status, or "".
func (p *Poller) check(ctx context.Context, o store.Order) (string, error) {
	now := p.now()
	expired := now.After(o.ExpiresAt)
	tx, raw, err := p.wechat.QueryOrder(ctx, o.OrderNo)
	switch {
	case errors.Is(err, wechat.ErrOrderNotExist):
		if expired {
			return p.close(ctx, o)
		}
		return "", nil
	case err != nil:
		return "", err
	}
	switch {
	case tx.Paid():
		return p.recordQueried(ctx, o, tx, raw)
	case tx.TradeState == wechat.StateClosed || tx.TradeState == wechat.StateRevoked || tx.TradeState == wechat.StatePayError:
		return p.close(ctx, o)
	case expired && tx.TradeState == wechat.StateNotPay:
		if err := p.wechat.CloseOrder(ctx, o.OrderNo); err != nil {
			return "", err
		}
		return p.close(ctx, o)
	}
	return "", nil
}

func (p *Poller) close(ctx context.Context, o store.Order) (string, error) {
	closed, err := p.store.OrderClose(ctx, p.store.DB, o.OrderNo, p.now())
	if err != nil || !closed {
		return "", err
	}
	p.log.Info("payment: order closed", "order_no", o.OrderNo, "bill_no", o.BillNo)
	return store.OrderClosed, nil
}

// recordQueried records a payment found by query like a notification: a notifications row
// (the verified answer without its payer block, remote address order-query) and then Record,
// with the synthetic notification ID "query:<transaction_id>".
func (p *Poller) recordQueried(ctx context.Context, o store.Order, tx wechat.Transaction, raw []byte) (string, error) {
	id, err := p.store.NotificationInsert(ctx, p.store.DB, store.Notification{
		Channel: wechat.Channel, ReceivedAt: p.now(), RemoteAddr: "order-query", Headers: "{}", Body: withoutPayer(raw),
	})
	if err != nil {
		return "", err
	}
	decide := func(verdict, reason string) error {
		return p.store.NotificationDecide(ctx, p.store.DB, id, store.Decision{Verdict: verdict, Reason: reason,
			EventID: "query:" + tx.TransactionID, OutTradeNo: tx.OutTradeNo, ChannelTradeNo: tx.TransactionID, At: p.now()})
	}
	paidAt, err := tx.CheckPaid(p.appID, p.mchID)
	if err != nil {
		return "", errors.Join(err, decide(store.VerdictRejected, ReasonInvalid+": "+clean(err.Error(), 500)))
	}
	res, err := p.recorder.Record(ctx, Confirmation{
		Channel: wechat.Channel, ChannelTradeNo: tx.TransactionID, OrderNo: o.OrderNo, Amount: money.Fen(tx.Amount.Total),
		PaidAt: paidAt, NotificationID: "query:" + tx.TransactionID, Source: store.SourceQuery,
	})
	if errors.Is(err, ErrAmount) || errors.Is(err, ErrUnknownOrder) {
		p.log.Error("payment: queried payment does not match its order", "order_no", o.OrderNo, "err", err)
		return "", errors.Join(err, decide(store.VerdictRejected, reasonOf(err)+": "+clean(err.Error(), 500)))
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

// withoutPayer drops the payer (the payer's openid) from a query answer before it is stored:
// the gateway keeps nothing personal beyond masked names and plates. Notifications need no such
// step, as their resource stays encrypted.
func withoutPayer(raw []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	if _, ok := m["payer"]; !ok {
		return raw
	}
	delete(m, "payer")
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}
