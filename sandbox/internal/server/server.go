// Package server assembles the sandbox: the WeChat Pay, Alipay and UnionPay simulators, the finance and police
// simulators behind the partner envelope, the inspection endpoints, health, metrics and the
// HTTP server's life cycle.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"finepay/sandbox/internal/alipaysim"
	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/ereceiptsim"
	"finepay/sandbox/internal/nontaxsim"
	"finepay/sandbox/internal/partnerapi"
	"finepay/sandbox/internal/unionpaysim"
	"finepay/sandbox/internal/wechatsim"
	"finepay/sandbox/internal/windowsim"
)

// Deps are the collaborators a Server is built with; zero values take the real ones.
type Deps struct {
	Log  *slog.Logger
	Now  func() time.Time
	Rand io.Reader
	// NotifyClient sends the channels' notifications.
	NotifyClient *http.Client
}

// Server is the assembled sandbox.
type Server struct {
	cfg      Config
	log      *slog.Logger
	echo     *echo.Echo
	registry *prometheus.Registry
	ready    atomic.Bool

	WeChat   *wechatsim.Sim
	Alipay   *alipaysim.Sim
	UnionPay *unionpaysim.Sim
	NonTax   *nontaxsim.Sim
	EReceipt *ereceiptsim.Sim
	Window   *windowsim.Sim
	guard    *partnerapi.Guard
}

// New builds the sandbox from its configuration and key material.
func New(cfg Config, m Material, d Deps) (*Server, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	s := &Server{cfg: cfg, log: d.Log, registry: prometheus.NewRegistry()}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var err error
	s.WeChat, err = wechatsim.New(wechatsim.Config{
		AppID: cfg.WeChatAppID, MchID: cfg.WeChatMchID, MerchantName: cfg.WeChatMerchantName,
		Keys: m.WeChat, PublicURL: cfg.PublicURL, ScheduleScale: cfg.WeChatScheduleScale,
		Duplicates: cfg.WeChatDuplicates, NotifyWorkers: cfg.WeChatNotifyWorkers,
		NotifyTimeout: cfg.WeChatNotifyTimeout, Client: d.NotifyClient, Registerer: s.registry,
		Now: d.Now, Rand: d.Rand, Log: d.Log.With("sim", "wechat"),
	})
	if err != nil {
		return nil, err
	}
	s.Alipay, err = alipaysim.New(alipaysim.Config{
		AppID: cfg.AlipayAppID, SellerID: cfg.AlipaySellerID, MerchantName: cfg.WeChatMerchantName, Keys: m.Alipay,
		PublicURL: cfg.PublicURL, ScheduleScale: cfg.AlipayScheduleScale, DuplicateRate: cfg.AlipayDuplicateRate,
		OutOfOrderRate: cfg.AlipayOutOfOrderRate, NotifyWorkers: cfg.WeChatNotifyWorkers, NotifyTimeout: cfg.WeChatNotifyTimeout,
		Client: d.NotifyClient, Registerer: s.registry, Now: d.Now, Rand: d.Rand, Log: d.Log.With("sim", "alipay"),
	})
	if err != nil {
		return nil, err
	}
	s.UnionPay, err = unionpaysim.New(unionpaysim.Config{
		MerID: cfg.UnionPayMerID, MerchantName: cfg.WeChatMerchantName, Keys: m.UnionPay, PublicURL: cfg.PublicURL,
		Schedule: cfg.UnionPaySchedule, ScheduleScale: cfg.UnionPayScheduleScale, DuplicateRate: cfg.UnionPayDuplicateRate,
		OutOfOrderRate: cfg.UnionPayOutOfOrderRate, NotifyWorkers: cfg.WeChatNotifyWorkers, NotifyTimeout: cfg.WeChatNotifyTimeout,
		Client: d.NotifyClient, Registerer: s.registry, Now: d.Now, Rand: d.Rand, Log: d.Log.With("sim", "unionpay"),
	})
	if err != nil {
		return nil, err
	}
	s.NonTax = nontaxsim.New(nontaxsim.Config{Decrypter: m.EncKey, Now: d.Now, Log: d.Log.With("sim", "nontax")})
	s.EReceipt = ereceiptsim.New(ereceiptsim.Config{
		Key: m.SignKey, Decrypter: m.EncKey, Forms: s.formInfo, Now: d.Now, Rand: d.Rand,
		Log: d.Log.With("sim", "ereceipt"),
	})
	s.Window = windowsim.New(windowsim.Config{Now: d.Now, Log: d.Log.With("sim", "window")})
	s.guard, err = partnerapi.New(partnerapi.Config{
		Node: Node, Key: m.SignKey, Callers: m.Callers, Trusted: cfg.PartnerFingerprints,
		Now: d.Now, Rand: d.Rand, Log: d.Log.With("sim", "partner"),
	})
	if err != nil {
		return nil, err
	}
	if err := s.routes(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) formInfo(formNo string) (ereceiptsim.FormInfo, bool) {
	f, ok := s.NonTax.Form(formNo)
	if !ok {
		return ereceiptsim.FormInfo{}, false
	}
	return ereceiptsim.FormInfo{
		PayCode: f.PayCode, UnitCode: f.UnitCode, UnitName: f.UnitName,
		ItemCode: f.ItemCode, ItemName: f.ItemName, Fine: f.Fine,
	}, true
}

func (s *Server) routes() error {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = apierr.Handler(s.log)
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "http_request_duration_seconds",
		Help:    "HTTP request duration by route, method and status.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "method", "status"})
	if err := s.registry.Register(duration); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	e.Use(s.observe(duration), middleware.Recover())

	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.GET("/readyz", func(c echo.Context) error {
		if !s.ready.Load() {
			return c.String(http.StatusServiceUnavailable, "not ready")
		}
		return c.String(http.StatusOK, "ready")
	})
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})))
	e.GET("/_sandbox/state", s.handleState)
	e.GET("/", s.handleIndex)

	s.WeChat.Register(e)
	s.Alipay.Register(e)
	s.UnionPay.Register(e)
	s.NonTax.Register(e.Group("/nontax/v1", s.guard.Middleware))
	s.EReceipt.Register(e.Group("/ereceipt/v1", s.guard.Middleware))
	s.Window.Register(e.Group("/window/v1", s.guard.Middleware))
	s.echo = e
	return nil
}

// observe records the duration of every request by route template and logs it.
func (s *Server) observe(h *prometheus.HistogramVec) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			status := c.Response().Status
			d := time.Since(start)
			h.WithLabelValues(route, c.Request().Method, strconv.Itoa(status)).Observe(d.Seconds())
			level := slog.LevelDebug
			if status >= 400 {
				level = slog.LevelInfo
			}
			s.log.Log(c.Request().Context(), level, "http request", "method", c.Request().Method,
				"route", route, "path", c.Request().URL.Path, "status", status, "duration_ms", d.Milliseconds())
			return nil
		}
	}
}

// State is the answer of GET /_sandbox/state.
type State struct {
	Forms           []nontaxsim.Form         `json:"forms"`
	Payments        []nontaxsim.Payment      `json:"payments"`
	Receipts        []ereceiptsim.Receipt    `json:"receipts"`
	WindowResults   []windowsim.Result       `json:"window_results"`
	WeChatOrders    []wechatsim.OrderState   `json:"wechat_orders"`
	AlipayOrders    []alipaysim.OrderState   `json:"alipay_orders"`
	UnionPayOrders  []unionpaysim.OrderState `json:"unionpay_orders"`
	PartnerRequests int                      `json:"partner_requests"`
}

// Snapshot copies the state of every simulator.
func (s *Server) Snapshot() State {
	nt := s.NonTax.Snapshot()
	return State{
		Forms: nt.Forms, Payments: nt.Payments, Receipts: s.EReceipt.Snapshot().Receipts,
		WindowResults: s.Window.Snapshot().Results, WeChatOrders: s.WeChat.Snapshot(),
		AlipayOrders: s.Alipay.Snapshot(), UnionPayOrders: s.UnionPay.Snapshot(), PartnerRequests: s.guard.Requests(),
	}
}

func (s *Server) handleState(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, s.Snapshot())
}

// Handler is the sandbox's HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Run serves on ln and sends the channels' notifications until ctx is done, then shuts down
// gracefully.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	simCtx, stopSims := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSims()
	s.WeChat.Start(simCtx)
	s.Alipay.Start(simCtx)
	s.UnionPay.Start(simCtx)

	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	s.ready.Store(true)

	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		s.ready.Store(false)
		s.log.Info("sandbox shutting down")
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
		err = srv.Shutdown(shutCtx)
		cancel()
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	s.ready.Store(false)
	stopSims()
	s.WeChat.Wait()
	s.Alipay.Wait()
	s.UnionPay.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
