// Package alipaysim simulates the Alipay open platform for face-to-face QR payments (当面付), as
// /work/shared/PROTOCOLS.md describes it: gateway.do with alipay.trade.precreate, .query and
// .close, requests RSA2-verified with the application's public key and answers signed by Alipay's
// key over the text of the *_response object; a payer page and a payer robot; and asynchronous
// notifications (forms signed RSA2) resent at 4m, 10m, 10m, 1h, 2h, 6h, 15h until the merchant
// answers the body "success". Some are sent twice within a second and some out of order
// (TRADE_FINISHED before TRADE_SUCCESS), as configured; the notifications of an order can be
// dropped for tests.
package alipaysim

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"finepay/sandbox/internal/resend"
)

// Defaults of Config.
const (
	DefaultAppID        = "2021004100000001"
	DefaultSellerID     = "2088000000000001"
	DefaultMerchantName = "黑龙江省公安厅交通警察总队"
)

// Schedule is Alipay's resend schedule after a notification that was not answered "success":
// 7 resends, about 25 hours in all.
var Schedule = []time.Duration{4 * time.Minute, 10 * time.Minute, 10 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 15 * time.Hour}

// Config configures the simulator.
type Config struct {
	AppID        string
	SellerID     string // the merchant's Alipay user ID (PID), seller_id of notifications
	MerchantName string
	Keys         Keys
	// PublicURL is the sandbox's base URL, for the pay_url of orders in the state.
	PublicURL string
	// ScheduleScale multiplies the resend schedule (1 = Alipay's real 4m … 15h).
	ScheduleScale float64
	// DuplicateRate is the probability that a notification round is sent twice within a second.
	DuplicateRate float64
	// OutOfOrderRate is the probability that a payment is notified as TRADE_FINISHED first and
	// TRADE_SUCCESS after it (Alipay sends them the other way round).
	OutOfOrderRate float64
	// NotifyWorkers bounds the notification rounds in flight; NotifyTimeout one request.
	NotifyWorkers int
	NotifyTimeout time.Duration
	// Client sends notifications; nil makes one with NotifyTimeout that follows no redirect.
	Client *http.Client
	// Registerer receives the counters; nil registers nothing.
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
	appKey  *rsa.PublicKey
	now     func() time.Time
	log     *slog.Logger
	metrics metrics
	queue   *resend.Queue

	mu      sync.Mutex
	orders  []*order
	byTrade map[string]*order // out_trade_no
	byNo    map[string]*order // trade_no
	byCode  map[string]*order // the token of qr_code
	seq     int
	// refunds by out_request_no; refundMode is the mode of the refunds to come.
	refunds    map[string]*refund
	refundMode string
}

// New checks cfg and returns a simulator. Notifications are queued from the start and sent once
// Start has been called.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Keys.check(); err != nil {
		return nil, err
	}
	if cfg.AppID == "" {
		cfg.AppID = DefaultAppID
	}
	if cfg.SellerID == "" {
		cfg.SellerID = DefaultSellerID
	}
	if cfg.MerchantName == "" {
		cfg.MerchantName = DefaultMerchantName
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
	s := &Sim{cfg: cfg, appKey: cfg.Keys.AppCert.PublicKey.(*rsa.PublicKey), now: cfg.Now, log: cfg.Log,
		byTrade: map[string]*order{}, byNo: map[string]*order{}, byCode: map[string]*order{},
		refunds: map[string]*refund{}}
	if err := s.metrics.init(cfg.Registerer); err != nil {
		return nil, err
	}
	s.queue = resend.New(resend.Config{Schedule: Schedule, Scale: cfg.ScheduleScale, DuplicateRate: cfg.DuplicateRate,
		Workers: cfg.NotifyWorkers, Client: cfg.Client, Float: cfg.Float, Now: cfg.Now, Log: cfg.Log,
		Sent: s.metrics.sent.Inc, Acked: s.metrics.acked.Inc, Abandoned: s.metrics.abandoned.Inc})
	return s, nil
}

// Register adds the routes to e: the open platform's gateway, the payer page and robot, and the
// inspection endpoints.
func (s *Sim) Register(e *echo.Echo) {
	e.POST("/alipay/gateway.do", s.handleGateway)
	e.GET("/alipay/pay", s.handlePage)
	e.POST("/alipay/pay", s.handlePagePay)
	e.POST("/alipay/robot/pay", s.handleRobotPay)
	e.GET("/_sandbox/alipay/notifications/:out_trade_no", s.handleNotification)
	e.POST("/_sandbox/alipay/orders/:out_trade_no/drop-notifications", s.handleDrop)
	e.POST("/_sandbox/alipay/refund-mode", s.handleRefundMode)
	e.POST("/_sandbox/alipay/refunds/:out_request_no/resolve", s.handleRefundResolve)
}

// Start sends queued and future notifications until ctx is done.
func (s *Sim) Start(ctx context.Context) { s.queue.Start(ctx) }

// Wait blocks until the notifier started by Start has stopped.
func (s *Sim) Wait() { s.queue.Wait() }

// ErrNotFound is returned for an unknown order.
var ErrNotFound = errors.New("alipaysim: order not found")

// Done returns a channel closed when the order's last notification (TRADE_SUCCESS) has been
// acknowledged, abandoned or dropped. It fails with ErrNotFound when the order is unknown or not
// paid.
func (s *Sim) Done(outTradeNo string) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byTrade[outTradeNo]
	if !ok || len(o.deliveries) == 0 {
		return nil, ErrNotFound
	}
	return o.deliveries[len(o.deliveries)-1].Done(), nil
}
