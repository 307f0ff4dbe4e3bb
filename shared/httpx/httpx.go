// Package httpx is the HTTP scaffolding every FinePay server shares: one error type rendered by
// one echo error handler, /healthz, /readyz and /metrics, a request-duration histogram, and a
// server that shuts down gracefully.
package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Error is the one HTTP error type. Status and Message go to the client; Code is a stable
// machine-readable word; Cause is only logged.
type Error struct {
	Status  int
	Code    string
	Message string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// NewError returns an Error without a cause.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Wrap returns an Error carrying cause.
func Wrap(status int, code, message string, cause error) *Error {
	return &Error{Status: status, Code: code, Message: message, Cause: cause}
}

// ErrorBody is the JSON rendering of an error.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorHandler renders every error returned by a handler: *Error as itself, echo's own errors
// with their status, anything else as 500 with the status text. Causes are logged, never sent.
func ErrorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, body := render(err)
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		log.Log(c.Request().Context(), level, "http error", "method", c.Request().Method,
			"path", c.Request().URL.Path, "status", status, "code", body.Code, "err", err.Error())
		if c.Request().Method == http.MethodHead {
			err = c.NoContent(status)
		} else {
			err = c.JSON(status, body)
		}
		if err != nil {
			log.Error("http error response", "err", err)
		}
	}
}

func render(err error) (int, ErrorBody) {
	var he *Error
	if errors.As(err, &he) {
		return he.Status, ErrorBody{Code: he.Code, Message: he.Message}
	}
	var ee *echo.HTTPError
	if errors.As(err, &ee) {
		msg := http.StatusText(ee.Code)
		if s, ok := ee.Message.(string); ok && ee.Code < 500 {
			msg = s
		}
		return ee.Code, ErrorBody{Code: codeFor(ee.Code), Message: msg}
	}
	return http.StatusInternalServerError, ErrorBody{Code: "INTERNAL", Message: http.StatusText(http.StatusInternalServerError)}
}

func codeFor(status int) string {
	switch status {
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusMethodNotAllowed:
		return "METHOD_NOT_ALLOWED"
	case http.StatusRequestEntityTooLarge:
		return "TOO_LARGE"
	case http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case http.StatusForbidden:
		return "FORBIDDEN"
	case http.StatusTooManyRequests:
		return "RATE_LIMITED"
	}
	if status >= 500 {
		return "INTERNAL"
	}
	return "BAD_REQUEST"
}

// Options configure New.
type Options struct {
	Service  string                          // the process name, a label on metrics
	Logger   *slog.Logger                    // required
	Registry *prometheus.Registry            // metrics registry served at /metrics; New makes one when nil
	Ready    func(ctx context.Context) error // /readyz check (databases reachable, keys loaded); nil = always ready
}

// New returns an echo server with recovery, the request-duration histogram, the error handler and
// /healthz, /readyz and /metrics. The registry gets Go and process collectors.
func New(o Options) (*echo.Echo, *prometheus.Registry) {
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "http_request_duration_seconds",
		Help:    "Time to serve HTTP requests, by route and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"service", "method", "route", "status"})
	reg.MustRegister(dur)

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = ErrorHandler(o.Logger)
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			start := time.Now()
			defer func() {
				if r := recover(); r != nil {
					o.Logger.Error("panic in handler", "path", c.Request().URL.Path, "panic", fmt.Sprint(r))
					err = NewError(http.StatusInternalServerError, "INTERNAL", http.StatusText(http.StatusInternalServerError))
				}
				if err != nil {
					c.Error(err)
					err = nil
				}
				route := c.Path()
				if route == "" {
					route = "unmatched"
				}
				dur.WithLabelValues(o.Service, c.Request().Method, route, strconv.Itoa(c.Response().Status)).Observe(time.Since(start).Seconds())
			}()
			return next(c)
		}
	})
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c echo.Context) error {
		if o.Ready != nil {
			ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
			defer cancel()
			if err := o.Ready(ctx); err != nil {
				return Wrap(http.StatusServiceUnavailable, "NOT_READY", "not ready", err)
			}
		}
		return c.String(http.StatusOK, "ready\n")
	})
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	return e, reg
}

// Serve listens on addr and serves h until ctx ends, then shuts down gracefully (in-flight
// requests get up to 10 s). It logs the bound address ("listening", addr=...), so that tests can
// start a server on port 0 and read where it went. ready, when not nil, receives the bound
// address once the listener is open.
func Serve(ctx context.Context, log *slog.Logger, addr string, h http.Handler, ready chan<- net.Addr) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	return ServeListener(ctx, log, ln, h, ready)
}

// ServeListener is Serve on an open listener.
func ServeListener(ctx context.Context, log *slog.Logger, ln net.Listener, h http.Handler, ready chan<- net.Addr) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Info("listening", "addr", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	<-errc
	return nil
}
