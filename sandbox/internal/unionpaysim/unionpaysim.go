// Package unionpaysim simulates UnionPay online payments (ACP 5.1.0) for a merchant, as
// /work/shared/PROTOCOLS.md describes it: the back-transaction endpoint (consume QR codes,
// txnType 01 txnSubType 07), the front-transaction endpoint (a browser's consume form that opens
// the payer page), and the query endpoint (txnType 00); requests verified by the merchant's
// certificate named by certId, answers and notifications signed with signMethod 01 and carrying
// UnionPay's signing certificate in signPubKeyCert; answers written as name=value text without
// URL encoding. A payer page and a payer robot pay; backUrl notifications (forms) are resent
// until the merchant answers HTTP 200, on a configurable schedule (1m, 2m, 4m, 8m, 16m, then
// hourly to 24 h), some twice within a second and some held back so that they arrive out of
// order, as configured; an order's notifications can be dropped for tests.
package unionpaysim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"finepay/sandbox/internal/resend"
)

// Defaults of Config.
const (
	DefaultMerID        = "777290058110048"
	DefaultMerchantName = "黑龙江省公安厅交通警察总队"
	// DefaultSchedule is the resend schedule: UnionPay does not publish one (uncertain in
	// PROTOCOLS.md); this is the documented choice.
	DefaultSchedule = "1m,2m,4m,8m,16m,23*1h"
)

// ParseSchedule reads a comma-separated list of durations, where "N*d" stands for N times d.
func ParseSchedule(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		n, d := 1, part
		if a, b, ok := strings.Cut(part, "*"); ok {
			var err error
			if n, err = strconv.Atoi(a); err != nil || n < 1 || n > 1000 {
				return nil, fmt.Errorf("unionpaysim: schedule %q: %q is not a repeat count", s, a)
			}
			d = b
		}
		v, err := time.ParseDuration(d)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("unionpaysim: schedule %q: %q is not a duration > 0", s, d)
		}
		for range n {
			out = append(out, v)
		}
	}
	return out, nil
}

// Config configures the simulator.
type Config struct {
	MerID        string
	MerchantName string
	Keys         Keys
	// PublicURL is the sandbox's base URL, for the pay_url of orders in the state.
	PublicURL string
	// Schedule is the wait before each resend of a notification not answered 200; nil: the
	// default schedule. ScheduleScale multiplies it (1 = as written).
	Schedule      []time.Duration
	ScheduleScale float64
	// DuplicateRate is the probability that a notification round is sent twice within a second.
	DuplicateRate float64
	// OutOfOrderRate is the probability that a notification is held back for up to the first
	// resend interval, so that notifications of later payments may arrive before it.
	OutOfOrderRate float64
	NotifyWorkers  int
	NotifyTimeout  time.Duration
	// Client sends notifications; nil makes one with NotifyTimeout that follows no redirect.
	Client     *http.Client
	Registerer prometheus.Registerer
	Now        func() time.Time
	Rand       io.Reader
	// Float returns a number in [0, 1) for the rates; math/rand/v2 when nil.
	Float func() float64
	Log   *slog.Logger
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	cfg     Config
	now     func() time.Time
	log     *slog.Logger
	metrics metrics
	queue   *resend.Queue

	mu      sync.Mutex
	orders  []*order
	byID    map[string]*order // orderId + "/" + txnTime
	byOrder map[string]*order // orderId: the latest
	byCode  map[string]*order // the token at the end of qrCode
	seq     int
	// refunds by orderId + "/" + txnTime; refundMode is the mode of the refunds to come.
	refunds    map[string]*refund
	refundMode string
}

// New checks cfg and returns a simulator. Notifications are queued from the start and sent once
// Start has been called.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Keys.check(); err != nil {
		return nil, err
	}
	if cfg.MerID == "" {
		cfg.MerID = DefaultMerID
	}
	if cfg.MerchantName == "" {
		cfg.MerchantName = DefaultMerchantName
	}
	if cfg.Schedule == nil {
		cfg.Schedule, _ = ParseSchedule(DefaultSchedule)
	}
	if cfg.ScheduleScale <= 0 {
		cfg.ScheduleScale = 1
	}
	if cfg.NotifyTimeout <= 0 {
		cfg.NotifyTimeout = 5 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.NotifyTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	s := &Sim{cfg: cfg, now: cfg.Now, log: cfg.Log, byID: map[string]*order{}, byOrder: map[string]*order{},
		byCode: map[string]*order{}, refunds: map[string]*refund{}}
	if err := s.metrics.init(cfg.Registerer); err != nil {
		return nil, err
	}
	s.queue = resend.New(resend.Config{Schedule: cfg.Schedule, Scale: cfg.ScheduleScale, DuplicateRate: cfg.DuplicateRate,
		Workers: cfg.NotifyWorkers, Client: cfg.Client, Float: cfg.Float, Now: cfg.Now, Log: cfg.Log,
		Sent: s.metrics.sent.Inc, Acked: s.metrics.acked.Inc, Abandoned: s.metrics.abandoned.Inc})
	return s, nil
}

// Register adds the routes to e: the ACP endpoints under /unionpay/gateway/api, the payer page
// and robot, and the inspection endpoints.
func (s *Sim) Register(e *echo.Echo) {
	e.POST("/unionpay/gateway/api/backTransReq.do", s.handleBackTrans)
	e.POST("/unionpay/gateway/api/frontTransReq.do", s.handleFrontTrans)
	e.POST("/unionpay/gateway/api/queryTrans.do", s.handleQuery)
	e.GET("/unionpay/pay", s.handlePage)
	e.POST("/unionpay/pay", s.handlePagePay)
	e.POST("/unionpay/robot/pay", s.handleRobotPay)
	e.GET("/_sandbox/unionpay/notifications/:order_id", s.handleNotification)
	e.POST("/_sandbox/unionpay/orders/:order_id/drop-notifications", s.handleDrop)
	e.POST("/_sandbox/unionpay/refund-mode", s.handleRefundMode)
	e.POST("/_sandbox/unionpay/refunds/:order_id/resolve", s.handleRefundResolve)
}

// Start sends queued and future notifications until ctx is done.
func (s *Sim) Start(ctx context.Context) { s.queue.Start(ctx) }

// Wait blocks until the notifier started by Start has stopped.
func (s *Sim) Wait() { s.queue.Wait() }

// ErrNotFound is returned for an unknown order.
var ErrNotFound = errors.New("unionpaysim: order not found")

// Done returns a channel closed when the notification of the (latest) order with orderId has
// been acknowledged, abandoned or dropped. It fails with ErrNotFound when the order is unknown
// or not paid.
func (s *Sim) Done(orderID string) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byOrder[orderID]
	if !ok || o.delivery == nil {
		return nil, ErrNotFound
	}
	return o.delivery.Done(), nil
}
