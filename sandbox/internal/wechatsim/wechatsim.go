// Package wechatsim simulates WeChat Pay API v3 for a direct merchant, as /work/shared/PROTOCOLS.md
// describes it: Native (QR) orders, query and close, signed with the merchant's RSA key and
// answered with the platform's; a payer page and a payer robot; and payment notifications
// encrypted with the APIv3 key, platform-signed and resent on WeChat's schedule until the
// merchant answers 200 or 204.
package wechatsim

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
)

// Defaults of Config.
const (
	DefaultAppID         = "wxd678efh567hg6787"
	DefaultMchID         = "1900000001"
	DefaultMerchantName  = "黑龙江省公安厅交通警察总队"
	DefaultNotifyWorkers = 16
	DefaultNotifyTimeout = 5 * time.Second
)

// Config configures the simulator.
type Config struct {
	AppID        string
	MchID        string
	MerchantName string
	Keys         Keys
	// PublicURL is the sandbox's base URL, for the pay_url of orders in the state.
	PublicURL string
	// ScheduleScale multiplies the resend schedule (1 = WeChat's real 15s … 6h).
	ScheduleScale float64
	// Duplicates is how many copies of each notification are sent at once (1 = no duplicates).
	Duplicates int
	// NotifyWorkers bounds the notification rounds in flight.
	NotifyWorkers int
	// NotifyTimeout bounds one notification request.
	NotifyTimeout time.Duration
	// Client sends notifications; nil makes one with NotifyTimeout that follows no redirect.
	Client *http.Client
	// Registerer receives the notification counters; nil registers nothing.
	Registerer prometheus.Registerer
	Now        func() time.Time
	Rand       io.Reader
	Log        *slog.Logger
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	cfg            Config
	merchantKey    *rsa.PublicKey
	merchantSerial string
	platformSerial string
	now            func() time.Time
	log            *slog.Logger
	metrics        metrics

	mu         sync.Mutex
	orders     []*order
	byTrade    map[string]*order // out_trade_no
	byPR       map[string]*order
	byTxn      map[string]*order // transaction_id
	txnSeq     int
	refunds    []*refund
	byRefund   map[string]*refund // out_refund_no
	refundMode string             // mode of the refunds to come (POST /_sandbox/wechat/refund-mode)

	notifier *notifier
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
	if cfg.MchID == "" {
		cfg.MchID = DefaultMchID
	}
	if cfg.MerchantName == "" {
		cfg.MerchantName = DefaultMerchantName
	}
	if cfg.ScheduleScale <= 0 {
		cfg.ScheduleScale = 1
	}
	if cfg.Duplicates < 1 {
		cfg.Duplicates = 1
	}
	if cfg.NotifyWorkers < 1 {
		cfg.NotifyWorkers = DefaultNotifyWorkers
	}
	if cfg.NotifyTimeout <= 0 {
		cfg.NotifyTimeout = DefaultNotifyTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout:       cfg.NotifyTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
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
	s := &Sim{
		cfg:            cfg,
		merchantKey:    cfg.Keys.MerchantCert.PublicKey.(*rsa.PublicKey),
		merchantSerial: Serial(cfg.Keys.MerchantCert),
		platformSerial: Serial(cfg.Keys.PlatformCert),
		now:            cfg.Now,
		log:            cfg.Log,
		byTrade:        map[string]*order{},
		byPR:           map[string]*order{},
		byTxn:          map[string]*order{},
		byRefund:       map[string]*refund{},
	}
	if err := s.metrics.init(cfg.Registerer); err != nil {
		return nil, err
	}
	s.notifier = newNotifier(s)
	return s, nil
}

// Register adds the routes to e: the API v3 under /v3 (signed both ways), the payer page and
// robot under /wechat.
func (s *Sim) Register(e *echo.Echo) {
	v3 := e.Group("/v3", s.signedAPI)
	v3.POST("/pay/transactions/native", s.handleNative)
	v3.GET("/pay/transactions/out-trade-no/:out_trade_no", s.handleQuery)
	v3.GET("/pay/transactions/id/:transaction_id", s.handleQueryByID)
	v3.POST("/pay/transactions/out-trade-no/:out_trade_no/close", s.handleClose)
	v3.POST("/refund/domestic/refunds", s.handleRefund)
	v3.GET("/refund/domestic/refunds/:out_refund_no", s.handleRefundQuery)
	v3.Any("/*", func(echo.Context) error {
		return apiError(http.StatusNotFound, "NOT_FOUND", "no such API in the sandbox")
	})

	e.GET("/wechat/pay", s.handlePage)
	e.POST("/wechat/pay", s.handlePagePay)
	e.POST("/wechat/robot/pay", s.handleRobotPay)
	e.GET("/_sandbox/wechat/notifications/:out_trade_no", s.handleNotification)
	e.POST("/_sandbox/wechat/refund-mode", s.handleRefundMode)
	e.POST("/_sandbox/wechat/refunds/:out_refund_no/resolve", s.handleRefundResolve)
}

// handleNotification answers the last notification request of an order, for replay by tests.
func (s *Sim) handleNotification(c echo.Context) error {
	r, err := s.Notification(pathParam(c, "out_trade_no"))
	if err != nil {
		return apiError(http.StatusNotFound, "NOT_FOUND", "no notification for this order: unknown or not paid")
	}
	return c.JSON(http.StatusOK, r)
}

// Start sends queued and future notifications until ctx is done; Wait then returns once the
// deliveries in flight have stopped.
func (s *Sim) Start(ctx context.Context) { s.notifier.start(ctx) }

// Wait blocks until the notifier started by Start has stopped.
func (s *Sim) Wait() { s.notifier.wait() }

// ErrNotFound is returned for an unknown order.
var ErrNotFound = errors.New("wechatsim: order not found")

// Done returns a channel closed when the notification of the order has been acknowledged or
// abandoned. It fails with ErrNotFound when the order is unknown or not paid.
func (s *Sim) Done(outTradeNo string) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byTrade[outTradeNo]
	if !ok || o.note == nil {
		return nil, ErrNotFound
	}
	return o.note.done, nil
}
