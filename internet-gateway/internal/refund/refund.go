// Package refund is the channel side of refunds (flows R1, R2, R3, R5 on this side of the
// boundary). The core instructs a refund (refund.instructed, through the ferry); the inbox
// handler stores it once per refund number; a durable worker requests it at the channel and
// follows it by query with backoff until final; refund notifications (WeChat, UnionPay) bring
// results early. Every change of a refund's status is put in the outbox as a refund.result, one
// message per distinct status, in the same transaction as the change.
//
// The refund number is the channel's out_refund_no / out_request_no / orderId on every call:
// a call that timed out leaves the refund unknown, and the worker queries it and, when the
// channel knows no such refund, requests it again with the same number, never another.
package refund

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/inbox"
	"finepay/ferry/outbox"
	"finepay/internet-gateway/internal/channel"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
	"finepay/shared/clip"
	"finepay/shared/envelope"
	"finepay/shared/money"
)

// Sources of a result, as refund_results records them.
const (
	SourceCall         = "call"
	SourceQuery        = "query"
	SourceNotification = "notification"
	SourceInstruction  = "instruction"
)

// Config configures a Service.
type Config struct {
	Store    *store.Store
	Outbox   *outbox.Outbox
	Adapters []channel.RefundAdapter
	// After is the wait before the first query of a refund the channel is processing, and
	// before the retry of a call that got no answer; each further wait doubles, up to
	// MaxInterval. 30 s when zero.
	After time.Duration
	// MaxInterval caps the wait between two calls or queries of a refund; 30 minutes when zero.
	MaxInterval time.Duration
	// CallTimeout bounds one call at the channel (a refund request or a query); 15 s when zero.
	// A refund request that times out leaves the refund unknown.
	CallTimeout time.Duration
	// Every is how often Run looks for due refunds (besides being woken); 1 s when zero.
	Every  time.Duration
	Batch  int // refunds per round; 50 when zero
	Now    func() time.Time
	Logger *slog.Logger
	// Registry gets gateway_refund_results_total and gateway_refund_notifications_total.
	Registry prometheus.Registerer
	// WeChat and UnionPay open refund notifications; nil when the channel is not configured.
	WeChat   WeChatOpener
	UnionPay UnionPayOpener
}

// Service stores instructed refunds, requests and follows them, and reports their results.
type Service struct {
	store    *store.Store
	outbox   *outbox.Outbox
	adapters map[string]channel.RefundAdapter
	after    time.Duration
	maxWait  time.Duration
	timeout  time.Duration
	every    time.Duration
	batch    int
	now      func() time.Time
	log      *slog.Logger
	wechat   WeChatOpener
	unionpay UnionPayOpener
	wake     chan struct{}
	results  *prometheus.CounterVec
	notes    *prometheus.CounterVec
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.After <= 0 {
		cfg.After = 30 * time.Second
	}
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = 30 * time.Minute
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 15 * time.Second
	}
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 50
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{store: cfg.Store, outbox: cfg.Outbox, adapters: map[string]channel.RefundAdapter{}, after: cfg.After,
		maxWait: max(cfg.MaxInterval, cfg.After), timeout: cfg.CallTimeout, every: cfg.Every, batch: cfg.Batch, now: cfg.Now,
		log: cfg.Logger, wechat: cfg.WeChat, unionpay: cfg.UnionPay, wake: make(chan struct{}, 1),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_refund_results_total",
			Help: "Refund results reported to the core (one per refund and distinct status), by channel and status."},
			[]string{"channel", "status"}),
		notes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_refund_notifications_total",
			Help: "Refund notifications received, by channel and verdict."}, []string{"channel", "verdict"}),
	}
	for _, a := range cfg.Adapters {
		s.adapters[a.Name()] = a
		for _, st := range []string{store.RefundProcessing, store.RefundSuccess, store.RefundFailed, store.RefundUnknown} {
			s.results.WithLabelValues(a.Name(), st)
		}
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.results, s.notes)
	}
	return s
}

// Handlers returns the inbox handler of refund.instructed.
func (s *Service) Handlers() map[string]inbox.Handler {
	return map[string]inbox.Handler{envelope.TypeRefundInstructed: s.applyInstruction}
}

// Wake makes Run look for due refunds now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// applyInstruction stores an instructed refund, due at once; a repeated instruction (the same
// refund number) is the same refund and changes nothing. An instruction that contradicts the
// payment recorded here (another order, another amount) or that would refund more than was paid
// is failed at once, without calling the channel.
func (s *Service) applyInstruction(ctx context.Context, tx *sql.Tx, env envelope.Envelope) error {
	p, err := env.Decode()
	if err != nil {
		return err
	}
	m, ok := p.(*envelope.RefundInstructed)
	if !ok {
		return fmt.Errorf("refund: %s carries a %T", env.Type, p)
	}
	now := s.now()
	r := store.Refund{RefundNo: m.RefundNo, Channel: m.Channel, OrderNo: m.OrderNo, ChannelTradeNo: m.ChannelTradeNo,
		PaidAmount: money.Fen(m.PaidAmount), Amount: money.Fen(m.Amount), Reason: m.Reason, Status: store.RefundPending,
		NextAt: now, InstructedAt: now, UpdatedAt: now}
	inserted, err := s.store.RefundInsert(ctx, tx, r)
	if err != nil {
		return err
	}
	if !inserted {
		prev, err := s.store.RefundGet(ctx, tx, m.RefundNo, false)
		if err != nil {
			return err
		}
		if prev.Channel != r.Channel || prev.OrderNo != r.OrderNo || prev.Amount != r.Amount || prev.ChannelTradeNo != r.ChannelTradeNo {
			s.log.Error("refund: a repeated instruction differs from the first; the first stands", "refund_no", m.RefundNo,
				"message_id", env.ID)
		}
		return nil
	}
	if why, err := s.contradiction(ctx, tx, r); err != nil {
		return err
	} else if why != "" {
		s.log.Error("refund: instruction refused", "refund_no", r.RefundNo, "why", why)
		if _, _, err := s.change(ctx, tx, r.RefundNo, channel.RefundOutcome{Status: channel.RefundFailed, Detail: why}, SourceInstruction); err != nil {
			return err
		}
	}
	s.log.Info("refund: instructed", "refund_no", r.RefundNo, "channel", r.Channel, "order_no", r.OrderNo, "amount", int64(r.Amount))
	s.Wake()
	return nil
}

// contradiction checks an instruction against the payment recorded here (when there is one) and
// the other refunds of the order; it returns why the refund must not be made, or "".
func (s *Service) contradiction(ctx context.Context, q store.Querier, r store.Refund) (string, error) {
	p, err := s.store.PaymentGetByTrade(ctx, q, r.Channel, r.ChannelTradeNo)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Not recorded here (e.g. found by reconciliation at the core): the channel checks.
	case err != nil:
		return "", err
	case p.OrderNo != r.OrderNo || p.Amount != r.PaidAmount:
		return fmt.Sprintf("the payment %s is order %s of %d fen, not order %s of %d", r.ChannelTradeNo, p.OrderNo, p.Amount,
			r.OrderNo, r.PaidAmount), nil
	}
	var refunded int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_no = $1 AND channel = $2
		AND refund_no <> $3 AND status <> $4`, r.OrderNo, r.Channel, r.RefundNo, store.RefundFailed).Scan(&refunded); err != nil {
		return "", err
	}
	if refunded+int64(r.Amount) > int64(r.PaidAmount) {
		return fmt.Sprintf("refunds of order %s would come to %d fen, more than the %d paid", r.OrderNo, refunded+int64(r.Amount),
			r.PaidAmount), nil
	}
	return "", nil
}

// Round says what one round of the worker did.
type Round struct {
	Called, Queried, Final, Failed int
}

// Run calls and queries due refunds until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		if _, err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("refund: round", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// RunOnce works one batch of due refunds: each is claimed (so that one replica calls for it),
// then requested at the channel, or queried when the channel has it already or a request got no
// answer.
func (s *Service) RunOnce(ctx context.Context) (Round, error) {
	var round Round
	due, err := s.store.RefundListDue(ctx, s.store.DB, s.now(), s.batch)
	if err != nil {
		return round, err
	}
	for _, r := range due {
		if ctx.Err() != nil {
			return round, ctx.Err()
		}
		// The lease: if this process dies mid-call, the refund is due again after it.
		ok, err := s.store.RefundClaim(ctx, s.store.DB, r.RefundNo, r.NextAt, s.now().Add(s.timeout+s.after))
		if err != nil {
			return round, err
		}
		if !ok {
			continue
		}
		final, called, err := s.work(ctx, r)
		switch {
		case err != nil:
			round.Failed++
			s.log.Warn("refund: call", "refund_no", r.RefundNo, "channel", r.Channel, "err", err)
		case final:
			round.Final++
		}
		if called {
			round.Called++
		} else {
			round.Queried++
		}
	}
	return round, nil
}

// wait is the backoff before the next call or query of a refund that has had n of them.
func (s *Service) wait(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > 30 {
		return s.maxWait
	}
	return min(s.after<<(n-1), s.maxWait)
}

func toChannel(r store.Refund) channel.Refund {
	t, _ := time.ParseInLocation("20060102150405", r.TxnTime, bizdate.Location)
	return channel.Refund{RefundNo: r.RefundNo, OrderNo: r.OrderNo, ChannelTradeNo: r.ChannelTradeNo, PaidAmount: r.PaidAmount,
		Amount: r.Amount, Reason: r.Reason, TxnTime: t}
}

// work makes one step of a claimed refund. A refund the channel has not acknowledged is
// requested; one whose request got no answer is first queried, and requested again (same
// number) only when the channel knows none; an acknowledged one is queried.
func (s *Service) work(ctx context.Context, r store.Refund) (final, called bool, err error) {
	a, ok := s.adapters[r.Channel]
	if !ok {
		r.NextAt, r.UpdatedAt = s.now().Add(s.maxWait), s.now()
		r.Detail = "channel " + r.Channel + " is not configured at this gateway"
		return false, false, errors.Join(fmt.Errorf("refund: %s", r.Detail), s.store.RefundUpdate(ctx, s.store.DB, r))
	}
	if r.Accepted || r.Calls > 0 {
		r.Queries++
		if err := s.store.RefundUpdate(ctx, s.store.DB, r); err != nil {
			return false, false, err
		}
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		o, err := a.QueryRefund(cctx, toChannel(r))
		cancel()
		switch {
		case errors.Is(err, channel.ErrRefundNotFound) && !r.Accepted:
			// The earlier request never arrived: send it again, with the same refund number.
		case errors.Is(err, channel.ErrRefundNotFound):
			return false, false, s.reschedule(ctx, r.RefundNo, "the channel no longer knows the accepted refund")
		case err != nil:
			return false, false, errors.Join(err, s.reschedule(ctx, r.RefundNo, "query: "+err.Error()))
		default:
			final, err := s.settle(ctx, r.RefundNo, o, SourceQuery)
			return final, false, err
		}
	}
	if r.TxnTime == "" {
		r.TxnTime = s.now().In(bizdate.Location).Format("20060102150405")
	}
	r.Calls++
	// Counted before the call: after a crash mid-call the refund is queried before any new request.
	if err := s.store.RefundUpdate(ctx, s.store.DB, r); err != nil {
		return false, true, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	o, err := a.Refund(cctx, toChannel(r))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return false, true, ctx.Err()
		}
		// No verified answer: the refund may or may not have reached the channel.
		_, cerr := s.settle(ctx, r.RefundNo, channel.RefundOutcome{Status: channel.RefundUnknown, Detail: "no answer: " + err.Error()}, SourceCall)
		return false, true, errors.Join(err, cerr)
	}
	final, err = s.settle(ctx, r.RefundNo, o, SourceCall)
	return final, true, err
}

// reschedule keeps a refund's status and sets its next step after the backoff.
func (s *Service) reschedule(ctx context.Context, refundNo, detail string) error {
	return s.store.DB.Tx(ctx, func(tx *sql.Tx) error {
		r, err := s.store.RefundGet(ctx, tx, refundNo, true)
		if err != nil {
			return err
		}
		if envelope.RefundFinal(r.Status) {
			return nil
		}
		now := s.now()
		r.Detail, r.NextAt, r.UpdatedAt = clip.Text(detail, envelope.MaxRefundDetail), now.Add(s.wait(r.Calls+r.Queries)), now
		return s.store.RefundUpdate(ctx, tx, r)
	})
}

// settle applies an outcome in its own transaction; it reports whether the refund is final.
func (s *Service) settle(ctx context.Context, refundNo string, o channel.RefundOutcome, source string) (bool, error) {
	final, _, err := s.settleReport(ctx, refundNo, o, source)
	return final, err
}

// settleReport is settle that also reports whether a result was put in the outbox.
func (s *Service) settleReport(ctx context.Context, refundNo string, o channel.RefundOutcome, source string) (final, emitted bool, err error) {
	err = s.store.DB.Tx(ctx, func(tx *sql.Tx) error {
		r, e, err := s.change(ctx, tx, refundNo, o, source)
		final, emitted = envelope.RefundFinal(r.Status), e
		return err
	})
	return final, emitted, err
}

// change applies what the channel said of a refund, under its row lock: the new status (a final
// one never changes again), what the channel acknowledged, when to look next; and when the
// status is one not reported before, a refund.result into the outbox. A success for another
// amount than asked is not taken as one: the refund stays unknown and is looked at by people.
func (s *Service) change(ctx context.Context, tx *sql.Tx, refundNo string, o channel.RefundOutcome, source string) (store.Refund, bool, error) {
	r, err := s.store.RefundGet(ctx, tx, refundNo, true)
	if err != nil {
		return r, false, err
	}
	if envelope.RefundFinal(r.Status) {
		if o.Status != r.Status {
			s.log.Error("refund: the channel contradicts a final result; kept", "refund_no", refundNo, "status", r.Status,
				"now_says", o.Status, "detail", o.Detail, "source", source)
		}
		return r, false, nil
	}
	now := s.now()
	if o.Status == channel.RefundSuccess && o.Amount != r.Amount {
		s.log.Error("refund: the channel refunded another amount", "refund_no", refundNo, "asked", int64(r.Amount), "refunded", int64(o.Amount))
		o = channel.RefundOutcome{Status: channel.RefundUnknown, ChannelRefundNo: o.ChannelRefundNo,
			Detail: fmt.Sprintf("the channel reports %d fen refunded, %d asked", o.Amount, r.Amount)}
	}
	// Any word of the channel about the refund means it has it (it is queried from now on); a
	// call without an answer, or whose answer settles nothing, leaves that open.
	if source == SourceQuery || source == SourceNotification || o.ChannelRefundNo != "" ||
		(source == SourceCall && o.Status != channel.RefundUnknown) {
		r.Accepted = true
	}
	r.Status = o.Status
	if o.ChannelRefundNo != "" {
		r.ChannelRefundNo = o.ChannelRefundNo
	}
	r.Detail = clip.Text(o.Detail, envelope.MaxRefundDetail)
	r.UpdatedAt = now
	switch {
	case o.Status == channel.RefundSuccess:
		r.RefundedAmount, r.RefundedAt, r.NextAt = o.Amount, o.At, time.Time{}
		if r.RefundedAt.IsZero() {
			r.RefundedAt = now
		}
		if r.ChannelRefundNo == "" {
			r.ChannelRefundNo = r.ChannelTradeNo // Alipay names no refund: the trade's number
		}
	case o.Status == channel.RefundFailed:
		r.NextAt = time.Time{}
	default:
		r.NextAt = now.Add(s.wait(r.Calls + r.Queries))
	}
	if err := s.store.RefundUpdate(ctx, tx, r); err != nil {
		return r, false, err
	}
	id := envelope.RefundResultID(r.RefundNo, r.Status)
	inserted, err := s.store.RefundResultInsert(ctx, tx, r.RefundNo, r.Status, id, source, now)
	if err != nil || !inserted {
		return r, false, err
	}
	res := &envelope.RefundResult{RefundNo: r.RefundNo, Channel: r.Channel, Status: r.Status, ChannelRefundNo: r.ChannelRefundNo,
		At: now.UTC(), Detail: r.Detail}
	if r.Status == store.RefundSuccess {
		res.RefundedAmount, res.At = int64(r.RefundedAmount), r.RefundedAt.UTC()
	}
	if !reChannelRefundNo.MatchString(res.ChannelRefundNo) {
		res.ChannelRefundNo = "" // not one the message carries (the channel's, unchecked by it)
	}
	env, err := envelope.New(id, r.RefundNo, now, res)
	if err != nil {
		return r, false, err
	}
	if _, err := s.outbox.Put(ctx, tx, env); err != nil {
		return r, false, err
	}
	s.results.WithLabelValues(r.Channel, r.Status).Inc()
	s.log.Info("refund: result", "refund_no", r.RefundNo, "channel", r.Channel, "status", r.Status, "source", source,
		"channel_refund_no", r.ChannelRefundNo, "detail", r.Detail)
	return r, true, nil
}

var reChannelRefundNo = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
