// Package cashier serves the payer's pages (收银台): the bill of a cashier token with what is due
// today and a button for each configured channel (inside WeChat's, Alipay's or UnionPay's app,
// only that app's channel; on a desktop, also a QR code of the page to scan with a phone), the
// QR code of the chosen channel's order, and the result with the e-receipt. Pages
// are server-rendered html/template, embedded, in Chinese and mobile-first, with inline CSS and a
// small inline script (both under a per-response CSP nonce), and nothing loaded from elsewhere.
//
// Every page request counts against a per-client-IP rate limit. The pay button is a same-origin
// form POST protected by a double-submit token: a random value in a SameSite=Lax, HttpOnly
// cookie that the form repeats.
package cashier

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/kv"
	"finepay/internet-gateway/internal/order"
	"finepay/shared/httpx"
)

//go:embed templates/*.html
var templateFiles embed.FS

// Config configures the cashier.
type Config struct {
	Bills   *bill.Service
	Orders  *order.Service
	Limiter kv.Limiter
	// PageLimit is how many page requests a client IP may make per minute (60 when zero);
	// PollLimit is the same for the status endpoint the pages poll (300 when zero).
	PageLimit int
	PollLimit int
	// SandboxPay, when it has an entry for a channel, adds a link to the channel's simulator on
	// the QR page, so that a person or a robot can pay there: WeChat's gets ?pr=<pr of
	// code_url>, Alipay's and UnionPay's ?code=<last path segment of the QR code>.
	SandboxPay map[string]string
	// PublicURL is the gateway's base URL, for the QR code of the bill page on a desktop; empty:
	// the request's scheme and host.
	PublicURL string
	// SecureCookies marks the CSRF cookie Secure (set when the public URL is https).
	SecureCookies bool
	Now           func() time.Time
	Logger        *slog.Logger

	// LookupKey keys the lookup hash (package finepay/shared/lookup); without it the lookup
	// page (/lookup, /api/v1/lookup) is not served. LookupLimit is how many lookups a client IP
	// may make per minute (DefaultLookupLimit when zero), LookupDecisionLimit how many one
	// decision number may get per hour (DefaultLookupDecisionLimit when zero).
	LookupKey           []byte
	LookupLimit         int
	LookupDecisionLimit int
	// Registry gets gateway_lookups_total; nil = none.
	Registry prometheus.Registerer
}

// Handler serves the cashier pages.
type Handler struct {
	cfg     Config
	pages   map[string]*template.Template
	log     *slog.Logger
	lookups *prometheus.CounterVec
}

// New parses the templates and returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.PageLimit <= 0 {
		cfg.PageLimit = 60
	}
	if cfg.PollLimit <= 0 {
		cfg.PollLimit = 300
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LookupLimit <= 0 {
		cfg.LookupLimit = DefaultLookupLimit
	}
	if cfg.LookupDecisionLimit <= 0 {
		cfg.LookupDecisionLimit = DefaultLookupDecisionLimit
	}
	h := &Handler{cfg: cfg, pages: map[string]*template.Template{}, log: cfg.Logger,
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_lookups_total",
			Help: "Bill lookups by decision number and plate, by result: found, not_found, invalid, limited."}, []string{"result"})}
	for _, r := range []string{"found", "not_found", "invalid", "limited"} {
		h.lookups.WithLabelValues(r)
	}
	if cfg.Registry != nil && len(cfg.LookupKey) > 0 {
		cfg.Registry.MustRegister(h.lookups)
	}
	for _, p := range []string{"bill", "order", "result", "message", "lookup"} {
		t, err := template.ParseFS(templateFiles, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, err
		}
		h.pages[p] = t
	}
	return h, nil
}

// Register adds the routes to e.
func (h *Handler) Register(e *echo.Echo) {
	pages := e.Group("/q/:token", h.secure, h.limit("page", h.cfg.PageLimit), h.htmlErrors)
	pages.GET("", h.getBill)
	pages.POST("/pay/:channel", h.postPay)
	pages.GET("/order/:order_no", h.getOrder)
	pages.GET("/result", h.getResult)
	pages.GET("/receipt.pdf", h.getReceiptPDF)
	pages.GET("/receipt.json", h.getReceiptJSON)
	e.GET("/q/:token/status", h.getStatus, h.secure, h.limit("poll", h.cfg.PollLimit))
	if len(h.cfg.LookupKey) > 0 {
		e.GET("/lookup", h.getLookup, h.secure, h.limit("page", h.cfg.PageLimit), h.htmlErrors)
		e.POST("/lookup", h.postLookup, h.secure, h.htmlErrors)
		e.POST("/api/v1/lookup", h.postLookupJSON)
	}
}

// page is what the layout renders.
type page struct {
	Title string
	Nonce string
	Poll  *poll
	Data  any
}

// poll makes the page fetch StatusURL every 1.5 s and go to NextURL once the JSON field Want
// is true.
type poll struct {
	StatusURL, NextURL, Want string
}

type message struct {
	Heading, Text, Link string
}

func (h *Handler) render(c echo.Context, status int, name string, p page) error {
	p.Nonce, _ = c.Get("nonce").(string)
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		return err
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// secure sets the security headers of every cashier response, with a fresh CSP nonce.
func (h *Handler) secure(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		b := make([]byte, 16)
		rand.Read(b)
		nonce := base64.RawStdEncoding.EncodeToString(b)
		c.Set("nonce", nonce)
		hd := c.Response().Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; img-src data:; style-src 'nonce-"+nonce+"'; script-src 'nonce-"+nonce+
			"'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		hd.Set("Cache-Control", "no-store")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		return next(c)
	}
}

// limit counts the request against the client IP's limit per minute; over it, 429.
func (h *Handler) limit(kind string, perMinute int) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ok, err := h.cfg.Limiter.Allow(c.Request().Context(), "cashier:"+kind+":"+c.RealIP(), perMinute, time.Minute)
			if err != nil {
				// The limiter is a guard, not a dependency: fail open, loudly.
				h.log.Warn("cashier: rate limiter", "err", err)
			} else if !ok {
				c.Response().Header().Set("Retry-After", "60")
				if kind == "poll" {
					return httpx.NewError(http.StatusTooManyRequests, "RATE_LIMITED", "too many requests")
				}
				return h.render(c, http.StatusTooManyRequests, "message", page{Title: "请求过于频繁", Data: message{
					Heading: "请求过于频繁", Text: "您的请求过于频繁，请稍后再试。"}})
			}
			return next(c)
		}
	}
}

// htmlErrors renders errors of page handlers as HTML pages: *httpx.Error with its status and
// message, anything else as 500 (the cause is logged, never shown).
func (h *Handler) htmlErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil || c.Response().Committed {
			return err
		}
		status, text := http.StatusInternalServerError, "系统繁忙，请稍后再试。"
		var he *httpx.Error
		var ee *echo.HTTPError
		switch {
		case errors.As(err, &he):
			status, text = he.Status, he.Message
		case errors.As(err, &ee):
			status, text = ee.Code, http.StatusText(ee.Code)
		}
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		h.log.Log(c.Request().Context(), level, "cashier: page error", "path", c.Path(), "status", status, "err", err)
		heading := "出错了"
		if status == http.StatusNotFound {
			heading = "页面不存在"
		}
		return h.render(c, status, "message", page{Title: heading, Data: message{Heading: heading, Text: text}})
	}
}

// Domain errors as page errors.
var (
	errNotFound = httpx.NewError(http.StatusNotFound, "NOT_FOUND", "页面不存在或已失效，请核对二维码或链接。如您刚刚办理，请稍候片刻后刷新本页。")
	errCSRF     = httpx.NewError(http.StatusForbidden, "FORBIDDEN", "页面已过期，请返回缴款页面重新操作。")
	errBusy     = httpx.NewError(http.StatusConflict, "BUSY", "正在为您创建支付订单，请稍后刷新重试。")
	errChannel  = httpx.NewError(http.StatusBadGateway, "CHANNEL", "支付渠道暂时不可用，请稍后重试。")
)

func billURL(token string) string   { return "/q/" + token }
func resultURL(token string) string { return "/q/" + token + "/result" }
func statusURL(token string) string { return "/q/" + token + "/status" }
func orderURL(token, orderNo string) string {
	return "/q/" + token + "/order/" + orderNo
}
