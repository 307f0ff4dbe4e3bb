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
	"finepay/sandbox/internal/ispsim"
	"finepay/sandbox/internal/nontaxsim"
	"finepay/sandbox/internal/partnerapi"
	"finepay/sandbox/internal/refundsim"
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
	ISP      *ispsim.Sim
	P3       *P3Sims
	Refunds  *refundsim.Sim
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
	units, items := nontaxsim.MasterData()
	s.EReceipt = ereceiptsim.New(ereceiptsim.Config{
		Key: m.SignKey, UnitKey: m.UnitKey, Decrypter: m.EncKey, Forms: s.formInfo, Units: eReceiptUnits(units),
		Items: eReceiptItems(items), UnitsInUse: s.formUnits, CheckURL: cfg.PublicURL + "/ereceipt/check",
		Now: d.Now, Rand: d.Rand, Log: d.Log.With("sim", "ereceipt"),
	})
	s.Refunds = refundsim.New(refundsim.Config{Now: d.Now, Log: d.Log.With("sim", "refunds")})
	s.Window = windowsim.New(windowsim.Config{CoreURL: cfg.CoreURL, APIToken: cfg.WindowAPIToken, Rand: d.Rand, Now: d.Now,
		Log: d.Log.With("sim", "window")})
	s.ISP = ispsim.New(ispsim.Config{CoreURL: cfg.CoreURL, Key: m.SignKey, Keys: m.ISP, Now: d.Now, Rand: d.Rand,
		Log: d.Log.With("sim", "isp")})
	if s.P3, err = newP3(cfg, m, d, s.NonTax); err != nil {
		return nil, err
	}
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

// formUnits are the units the non-tax system issued forms for: the e-receipt platform hands
// them stock too.
func (s *Server) formUnits() []string {
	var out []string
	for _, f := range s.NonTax.Snapshot().Forms {
		out = append(out, f.UnitCode)
	}
	return out
}

func eReceiptUnits(units map[string]string) []ereceiptsim.Unit {
	out := make([]ereceiptsim.Unit, 0, len(units))
	for code, name := range units {
		out = append(out, ereceiptsim.Unit{UnitCode: code, UnitName: name, RegionCode: code[:min(6, len(code))]})
	}
	return out
}

func eReceiptItems(items map[string]string) []ereceiptsim.Item {
	out := make([]ereceiptsim.Item, 0, len(items))
	for code, name := range items {
		out = append(out, ereceiptsim.Item{ItemCode: code, ItemName: name})
	}
	return out
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
	s.NonTax.RegisterInspection(e)
	s.EReceipt.Register(e.Group("/ereceipt/v1", s.guard.Middleware))
	s.EReceipt.RegisterPublic(e)
	s.Window.Register(e.Group("/window/v1", s.guard.Middleware))
	s.Window.RegisterSandbox(e) // R2: a window user has the platform instruct a refund at the core
	s.ISP.Register(e)
	s.ISP.RegisterPartner(e.Group("/isp/v1", s.guard.Middleware))
	s.P3.register(e, s.guard.Middleware)
	// Refunds: the e-receipt platform's application, the non-tax review, and the parties told
	// of a refund's outcome.
	s.Refunds.RegisterApplications(e.Group("/ereceipt/v1", s.guard.Middleware))
	s.Refunds.RegisterReviews(e.Group("/nontax/v1", s.guard.Middleware))
	for party, prefix := range map[string]string{"nontax": "/nontax/v1", "unified": "/unified/v1", "window": "/window/v1", "isp": "/isp/v1"} {
		s.Refunds.RegisterOutcomes(e.Group(prefix, s.guard.Middleware), party)
	}
	s.Refunds.RegisterControl(e.Group("/_sandbox"))
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
	Allocations     []ereceiptsim.Allocation `json:"receipt_allocations"`
	WriteOffs       []ereceiptsim.WriteOff   `json:"receipt_writeoffs"`
	WindowResults   []windowsim.Result       `json:"window_results"`
	WindowRefunds   []windowsim.Instruction  `json:"window_refund_instructions"`
	WeChatOrders    []wechatsim.OrderState   `json:"wechat_orders"`
	AlipayOrders    []alipaysim.OrderState   `json:"alipay_orders"`
	UnionPayOrders  []unionpaysim.OrderState `json:"unionpay_orders"`
	PartnerRequests int                      `json:"partner_requests"`
	ISPOrders       []ispsim.Order           `json:"isp_orders"`
	ISPResults      []ispsim.Result          `json:"isp_results"`
	refundsim.State
	P3State
}

// Snapshot copies the state of every simulator.
func (s *Server) Snapshot() State {
	nt := s.NonTax.Snapshot()
	isp := s.ISP.Snapshot()
	er := s.EReceipt.Snapshot()
	return State{
		Forms: nt.Forms, Payments: nt.Payments, Receipts: er.Receipts, Allocations: er.Allocations, WriteOffs: er.WriteOffs,
		WindowResults: s.Window.Snapshot().Results, WindowRefunds: s.Window.Snapshot().Instructions, WeChatOrders: s.WeChat.Snapshot(),
		AlipayOrders: s.Alipay.Snapshot(), UnionPayOrders: s.UnionPay.Snapshot(), PartnerRequests: s.guard.Requests(),
		ISPOrders: isp.Orders, ISPResults: isp.Results,
		P3State: s.P3.state(), State: s.Refunds.Snapshot(),
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
	s.P3.Bank.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
