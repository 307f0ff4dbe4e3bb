// Package order creates channel orders for payable bills: one open order per bill per channel
// at a time (a short lock), reused while it is valid and for the same amount, valid until
// 23:59:59 Asia/Shanghai of the day it was created.
package order

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/kv"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/wechat"
	"finepay/shared/bizdate"
)

// Errors of the service.
var (
	ErrNotFound = errors.New("order: not found")
	ErrBillPaid = errors.New("order: the bill is already paid")
	ErrBusy     = errors.New("order: another order for this bill is being created")
	ErrChannel  = errors.New("order: the payment channel failed")
)

// NativeCreator places WeChat Native orders (implemented by *wechat.Client).
type NativeCreator interface {
	CreateNative(ctx context.Context, o wechat.NativeOrder) (string, error)
}

// Config configures a Service.
type Config struct {
	Store     *store.Store
	Bills     *bill.Service
	Locks     kv.Locker
	WeChat    NativeCreator
	NotifyURL string // where WeChat sends payment notifications
	LockTTL   time.Duration
	LockWait  time.Duration // how long to wait for another request creating the same order
	Now       func() time.Time
	Logger    *slog.Logger
	Registry  prometheus.Registerer // gets gateway_channel_orders_created_total; nil = none
}

// Service creates and finds channel orders.
type Service struct {
	store     *store.Store
	bills     *bill.Service
	locks     kv.Locker
	wechat    NativeCreator
	notifyURL string
	lockTTL   time.Duration
	lockWait  time.Duration
	now       func() time.Time
	log       *slog.Logger
	created   *prometheus.CounterVec
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
	s := &Service{store: cfg.Store, bills: cfg.Bills, locks: cfg.Locks, wechat: cfg.WeChat, notifyURL: cfg.NotifyURL,
		lockTTL: cfg.LockTTL, lockWait: cfg.LockWait, now: cfg.Now, log: cfg.Logger,
		created: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_channel_orders_created_total",
			Help: "Channel orders created at the channel, by channel."}, []string{"channel"})}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.created)
	}
	return s
}

// CreateWeChat returns a WeChat Native order for the bill of token: the open order of today
// for the same amount when there is one, otherwise a new one placed at WeChat. Concurrent
// calls for one bill are serialised by a lock, so they end with one order.
func (s *Service) CreateWeChat(ctx context.Context, token string) (store.Order, error) {
	b, err := s.bills.GetFresh(ctx, token)
	if err != nil {
		return store.Order{}, err
	}
	if b.Status == store.BillPaid {
		return store.Order{}, ErrBillPaid
	}
	lock, err := s.lock(ctx, "order:"+b.BillNo+":"+wechat.Channel)
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
	open, err := s.store.OrderFindOpen(ctx, s.store.DB, b.BillNo, wechat.Channel, now)
	switch {
	case err == nil && open.Amount == due.Total:
		return open, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return store.Order{}, err
	}

	o := store.Order{
		OrderNo: newOrderNo(now), BillNo: b.BillNo, Channel: wechat.Channel,
		Amount: due.Total, Fine: due.Fine, LateFee: due.LateFee, Status: store.OrderCreated,
		ExpiresAt: bizdate.Of(now).End(), CreatedAt: now, UpdatedAt: now,
	}
	o.CodeURL, err = s.wechat.CreateNative(ctx, wechat.NativeOrder{
		OutTradeNo: o.OrderNo, Description: description(b), Attach: b.BillNo, NotifyURL: s.notifyURL,
		Total: int64(o.Amount), TimeExpire: o.ExpiresAt,
	})
	if err != nil {
		return store.Order{}, fmt.Errorf("%w: %w", ErrChannel, err)
	}
	if err := s.store.OrderInsert(ctx, s.store.DB, o); err != nil {
		return store.Order{}, err
	}
	s.created.WithLabelValues(wechat.Channel).Inc()
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

// description is what the payer sees in WeChat: at most 127 bytes.
func description(b store.Bill) string {
	d := "交通违法罚款"
	if b.ItemName != "" {
		d = b.ItemName
	}
	for len(d) > 127 {
		_, n := utf8.DecodeLastRuneInString(d)
		d = d[:len(d)-n]
	}
	return d
}

// newOrderNo is "FP", the Asia/Shanghai time to the second and 12 random digits (28
// characters, within WeChat's 6–32).
func newOrderNo(now time.Time) string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e12))
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("FP%s%012d", now.In(bizdate.Location).Format("20060102150405"), n.Int64())
}
