// Package bill is the gateway's read model of payable bills: it applies bill.published and
// receipt.issued messages from the core (inbox handlers), and answers the cashier pages with a
// bill's view for today (the late fee is computed for the Asia/Shanghai date of the request) and
// its payment outcome. Bill views are cached by token (cache-aside, short TTL), dropped when the
// bill changes.
package bill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"finepay/internet-gateway/internal/kv"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
	"finepay/shared/money"
	"finepay/shared/penalty"
)

// ErrNotFound is returned for a token that names no bill (or is not a token at all).
var ErrNotFound = errors.New("bill: not found")

// DefaultCacheTTL is how long a bill view stays cached.
const DefaultCacheTTL = 15 * time.Second

var reToken = regexp.MustCompile(`^[A-Za-z0-9_-]{22,64}$`)

// Config configures a Service.
type Config struct {
	Store    *store.Store
	Cache    kv.Cache
	CacheTTL time.Duration // DefaultCacheTTL when zero
	Now      func() time.Time
	Logger   *slog.Logger
}

// Service reads and maintains bills.
type Service struct {
	store *store.Store
	cache kv.Cache
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: cfg.Store, cache: cfg.Cache, ttl: cfg.CacheTTL, now: cfg.Now, log: cfg.Logger}
}

func cacheKey(token string) string { return "bill:" + token }

// Get returns the bill of a cashier token, from the cache when it is there.
func (s *Service) Get(ctx context.Context, token string) (store.Bill, error) {
	if !reToken.MatchString(token) {
		return store.Bill{}, ErrNotFound
	}
	if raw, ok, err := s.cache.Get(ctx, cacheKey(token)); err != nil {
		s.log.Warn("bill: cache get", "err", err)
	} else if ok {
		var b store.Bill
		if err := json.Unmarshal(raw, &b); err == nil && b.Token == token {
			return b, nil
		}
	}
	b, err := s.store.BillGetByToken(ctx, s.store.DB, token)
	if errors.Is(err, store.ErrNotFound) {
		return store.Bill{}, ErrNotFound
	}
	if err != nil {
		return store.Bill{}, err
	}
	if raw, err := json.Marshal(b); err == nil {
		if err := s.cache.Set(ctx, cacheKey(token), raw, s.ttl); err != nil {
			s.log.Warn("bill: cache set", "err", err)
		}
	}
	return b, nil
}

// GetFresh returns the bill of a token from the database, bypassing the cache.
func (s *Service) GetFresh(ctx context.Context, token string) (store.Bill, error) {
	if !reToken.MatchString(token) {
		return store.Bill{}, ErrNotFound
	}
	b, err := s.store.BillGetByToken(ctx, s.store.DB, token)
	if errors.Is(err, store.ErrNotFound) {
		return store.Bill{}, ErrNotFound
	}
	return b, err
}

// FindByLookup returns the bill whose lookup hash is hash (the newest, should a decision have
// had several), read from the database.
func (s *Service) FindByLookup(ctx context.Context, hash string) (store.Bill, error) {
	b, err := s.store.BillFindByLookupHash(ctx, s.store.DB, hash)
	if errors.Is(err, store.ErrNotFound) {
		return store.Bill{}, ErrNotFound
	}
	return b, err
}

// Invalidate drops the cached views of tokens.
func (s *Service) Invalidate(ctx context.Context, tokens ...string) {
	var keys []string
	for _, t := range tokens {
		if t != "" {
			keys = append(keys, cacheKey(t))
		}
	}
	if err := s.cache.Delete(ctx, keys...); err != nil {
		s.log.Warn("bill: cache delete", "err", err)
	}
}

// Amounts is what is due on a day.
type Amounts struct {
	Day     bizdate.Date
	Fine    money.Fen
	LateFee money.Fen
	Total   money.Fen
}

// Due returns the amounts due for bill b when paying on day.
func Due(b store.Bill, day bizdate.Date) (Amounts, error) {
	served, err := bizdate.Parse(b.ServedDate)
	if err != nil {
		return Amounts{}, fmt.Errorf("bill %s: %w", b.BillNo, err)
	}
	fine, fee, total := penalty.Due(b.Fine, served, day, b.LateFeeApplies)
	return Amounts{Day: day, Fine: fine, LateFee: fee, Total: total}, nil
}

// View is a bill with what is due today.
type View struct {
	Bill store.Bill
	Due  Amounts
}

// View returns the bill of a token and what is due on today's business date.
func (s *Service) View(ctx context.Context, token string) (View, error) {
	b, err := s.Get(ctx, token)
	if err != nil {
		return View{}, err
	}
	due, err := Due(b, bizdate.Of(s.now()))
	if err != nil {
		return View{}, err
	}
	return View{Bill: b, Due: due}, nil
}

// Outcome is where a bill stands: its latest payment and that payment's receipt, when they
// exist.
type Outcome struct {
	Bill    store.Bill
	Payment *store.Payment
	Receipt *store.Receipt
	Refunds []store.Refund // of the payment, as the channel reported them
}

// Paid reports whether a payment was recorded.
func (o Outcome) Paid() bool { return o.Payment != nil }

// Outcome returns the payment outcome of a token's bill, read from the database.
func (s *Service) Outcome(ctx context.Context, token string) (Outcome, error) {
	b, err := s.Get(ctx, token)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Bill: b}
	p, err := s.store.PaymentLatestForBill(ctx, s.store.DB, b.BillNo)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	out.Payment = &p
	if out.Refunds, err = s.store.RefundListForOrder(ctx, s.store.DB, p.OrderNo); err != nil {
		return out, err
	}
	r, err := s.store.ReceiptGetByOrder(ctx, s.store.DB, p.OrderNo)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	out.Receipt = &r
	return out, nil
}
