// Package order creates channel orders for payable bills, for every configured channel: one
// open order per bill per channel at a time, reused while it is valid and for the same amount,
// valid until 23:59:59 Asia/Shanghai of the day it was created. Concurrent requests for one
// bill and channel are serialised by a short lock (Redis, or in-process), and a partial unique
// index on the open orders is the final arbiter. An order that is to be replaced (its day has
// passed, or the amount due changed) is settled first: recorded if the channel says it was paid,
// otherwise closed at the channel and here.
package order

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/channel"
	"finepay/internet-gateway/internal/kv"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
)

// Errors of the service.
var (
	ErrNotFound       = errors.New("order: not found")
	ErrBillPaid       = errors.New("order: the bill is already paid")
	ErrBusy           = errors.New("order: another order for this bill is being created")
	ErrChannel        = errors.New("order: the payment channel failed")
	ErrUnknownChannel = errors.New("order: no such payment channel")
)

// Retirer settles an open order before it is replaced (implemented by *payment.Poller): it
// reports whether the order turned out paid (and was recorded); otherwise it was closed.
type Retirer interface {
	Retire(ctx context.Context, o store.Order) (paid bool, err error)
}

// Config configures a Service.
type Config struct {
	Store    *store.Store
	Bills    *bill.Service
	Locks    kv.Locker
	Channels []channel.Adapter // the configured channels, in the order the cashier offers them
	Retirer  Retirer
	LockTTL  time.Duration
	LockWait time.Duration // how long to wait for another request creating the same order
	Now      func() time.Time
	Logger   *slog.Logger
	Registry prometheus.Registerer // gets gateway_channel_orders_created_total; nil = none
}

// Service creates and finds channel orders.
type Service struct {
	store    *store.Store
	bills    *bill.Service
	locks    kv.Locker
	adapters map[string]channel.Adapter
	names    []string
	retirer  Retirer
	lockTTL  time.Duration
	lockWait time.Duration
	now      func() time.Time
	log      *slog.Logger
	created  *prometheus.CounterVec
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 30 * time.Second
	}
	if cfg.LockWait <= 0 {
		cfg.LockWait = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{store: cfg.Store, bills: cfg.Bills, locks: cfg.Locks, adapters: map[string]channel.Adapter{}, retirer: cfg.Retirer,
		lockTTL: cfg.LockTTL, lockWait: cfg.LockWait, now: cfg.Now, log: cfg.Logger,
		created: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_channel_orders_created_total",
			Help: "Channel orders created at the channel, by channel."}, []string{"channel"})}
	for _, a := range cfg.Channels {
		s.adapters[a.Name()] = a
		s.names = append(s.names, a.Name())
		s.created.WithLabelValues(a.Name())
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.created)
	}
	return s
}

// Channels lists the configured channels, in the order the cashier offers them.
func (s *Service) Channels() []string { return append([]string(nil), s.names...) }

// Create returns an order of the bill of token at channel ch: the open order of today for the
// same amount when there is one, otherwise a new one placed at the channel (after the old open
// order, if any, was settled). Concurrent calls for one bill and channel are serialised by a
// lock, so they end with one order.
func (s *Service) Create(ctx context.Context, token, ch string) (store.Order, error) {
	a, ok := s.adapters[ch]
	if !ok {
		return store.Order{}, fmt.Errorf("%w: %q", ErrUnknownChannel, ch)
	}
	b, err := s.bills.GetFresh(ctx, token)
	if err != nil {
		return store.Order{}, err
	}
	if b.Status == store.BillPaid {
		return store.Order{}, ErrBillPaid
	}
	lock, err := s.lock(ctx, "order:"+b.BillNo+":"+ch)
	if err != nil {
		return store.Order{}, err
	}
	defer func() {
		if err := lock.Release(context.WithoutCancel(ctx)); err != nil {
			s.log.Warn("order: release lock", "bill_no", b.BillNo, "err", err)
		}
	}()

	// Under the lock, read the bill again: a payment may have landed meanwhile.
	if b, err = s.store.BillGet(ctx, s.store.DB, b.BillNo); err != nil {
		return store.Order{}, err
	}
	if b.Status == store.BillPaid {
		return store.Order{}, ErrBillPaid
	}
	now := s.now()
	due, err := bill.Due(b, bizdate.Of(now))
	if err != nil {
		return store.Order{}, err
	}
	open, err := s.store.OrderFindOpen(ctx, s.store.DB, b.BillNo, ch)
	switch {
	case err == nil && now.Before(open.ExpiresAt) && open.Amount == due.Total && open.CodeURL != "":
		return open, nil
	case err == nil && s.retirer == nil:
		return store.Order{}, fmt.Errorf("%w: order %s must be settled, and there is no retirer", ErrChannel, open.OrderNo)
	case err == nil:
		// Expired, or for another amount: settle it before a new order is made.
		paid, err := s.retirer.Retire(ctx, open)
		switch {
		case err != nil:
			return store.Order{}, fmt.Errorf("%w: settling order %s: %w", ErrChannel, open.OrderNo, err)
		case paid:
			return store.Order{}, ErrBillPaid
		}
		s.log.Info("order: replaced", "order_no", open.OrderNo, "bill_no", b.BillNo, "channel", ch)
	case !errors.Is(err, store.ErrNotFound):
		return store.Order{}, err
	}

	o := store.Order{
		OrderNo: newOrderNo(now), BillNo: b.BillNo, Channel: ch,
		Amount: due.Total, Fine: due.Fine, LateFee: due.LateFee, Status: store.OrderCreated,
		ExpiresAt: bizdate.Of(now).End(), CreatedAt: now.Truncate(time.Second), UpdatedAt: now,
	}
	co := channel.Order{OrderNo: o.OrderNo, BillNo: b.BillNo, Subject: subject(b), Amount: o.Amount, CreatedAt: o.CreatedAt, ExpiresAt: o.ExpiresAt}
	o.CodeURL, err = a.Create(ctx, co)
	if err != nil {
		return store.Order{}, fmt.Errorf("%w: %w", ErrChannel, err)
	}
	if err := s.store.OrderInsert(ctx, s.store.DB, o); err != nil {
		if !store.IsUniqueViolation(err) {
			return store.Order{}, err
		}
		// Another replica created the bill's order meanwhile (its lock is not ours: no shared
		// Redis). Ours is closed at the channel; theirs is the one.
		if cerr := a.Close(context.WithoutCancel(ctx), co); cerr != nil {
			s.log.Warn("order: close a surplus order at the channel", "order_no", o.OrderNo, "err", cerr)
		}
		theirs, ferr := s.store.OrderFindOpen(ctx, s.store.DB, b.BillNo, ch)
		if ferr != nil {
			return store.Order{}, errors.Join(err, ferr)
		}
		return theirs, nil
	}
	s.created.WithLabelValues(ch).Inc()
	s.log.Info("order: created", "order_no", o.OrderNo, "bill_no", o.BillNo, "channel", o.Channel, "amount", int64(o.Amount))
	return o, nil
}

// lock takes the order lock of a bill, waiting up to lockWait for another holder.
func (s *Service) lock(ctx context.Context, key string) (kv.Lock, error) {
	deadline := time.NewTimer(s.lockWait)
	defer deadline.Stop()
	wait := 20 * time.Millisecond
	for {
		l, err := s.locks.TryLock(ctx, key, s.lockTTL)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, kv.ErrLocked) {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-deadline.C:
			t.Stop()
			return nil, ErrBusy
		case <-t.C:
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// Get returns an order of the bill of token.
func (s *Service) Get(ctx context.Context, token, orderNo string) (store.Order, store.Bill, error) {
	b, err := s.bills.Get(ctx, token)
	if err != nil {
		return store.Order{}, store.Bill{}, err
	}
	o, err := s.store.OrderGet(ctx, s.store.DB, orderNo, false)
	if errors.Is(err, store.ErrNotFound) || (err == nil && o.BillNo != b.BillNo) {
		return store.Order{}, b, ErrNotFound
	}
	return o, b, err
}

// subject is what the payer sees in the payment app; each adapter cuts it to its channel's
// limit.
func subject(b store.Bill) string {
	if b.ItemName != "" {
		return b.ItemName
	}
	return "交通违法罚款"
}

// newOrderNo is "FP", the Asia/Shanghai time to the second and 12 random digits: 28 letters and
// digits, within WeChat's 6–32, Alipay's 64 and UnionPay's 8–40 (and its alphanumerics only).
func newOrderNo(now time.Time) string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e12))
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("FP%s%012d", now.In(bizdate.Location).Format("20060102150405"), n.Int64())
}
