// Package link is the ferry's online transport: HTTP/1.1 over GM TLS (package tlsgm) with
// mutual SM2 certificate authentication and a one-peer allow-list on each side. The DMZ ferry
// only listens (Server, Serve); the intranet ferry dials out (Client). Nothing here lets the DMZ
// side open a connection.
//
// # Protocol
//
// All requests come from the intranet ferry. Bundles and acknowledgements travel as their own
// bytes (package bundle), with Content-Type application/vnd.finepay.bundle and
// application/vnd.finepay.ack; errors are JSON {"code": "...", "message": "..."}.
//
//	POST /v1/bundles   body: one bundle of a to-gateway lane.
//	  200  body: the DMZ's signed acknowledgement (the bundle is committed, or was before:
//	       a bundle seen before is acknowledged again and changes nothing).
//	  409  {"code":"SEQUENCE_GAP","message":...,"lane":"to-gateway.N","expected":E}: the
//	       bundle starts past the lane's next sequence; nothing was applied; resend from E.
//	  400  {"code":"<REASON>"}: verification failed (SIGNATURE, DECRYPT, DIGEST, SEQUENCE,
//	       MALFORMED, FORBIDDEN_TYPE, INVALID_MESSAGE, WRONG_PARTY, FORBIDDEN_LANE); the bundle
//	       was audited, quarantined and not applied. 413 (LIMIT) when it is too large.
//	  503  {"code":"UNAVAILABLE"}: the DMZ cannot write its audit trail or reach its database;
//	       nothing was applied or acknowledged; try again later.
//
//	POST /v1/pull      body: {"marks":{"to-core.0":12,...},"wait_ms":10000}, the intranet's
//	                   high-water mark of each to-core lane it has received.
//	  200  body: one bundle of a to-core lane with messages after the marks (the DMZ held the
//	       request up to min(wait_ms, its -long-poll) until one was there).
//	  204  nothing to send.
//
//	POST /v1/acks      body: the intranet's signed acknowledgement of a pulled bundle.
//	  204  verified; the DMZ retired its outbox up to the acknowledged sequence.
//	  400  as for bundles; 503 as for bundles.
//
//	Any other request of the allowed peer (a pull that is not JSON or names a lane that does not
//	exist, an unknown route) gets 400, 404, 405 or 413 and is audited as request.rejected.
//
// The server checks, besides the TLS allow-list, that each request's connection presented the
// one allowed peer certificate.
package link

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/bundle"
	"finepay/ferry/relay"
	"finepay/shared/httpx"
	"finepay/shared/tlsgm"
)

// Content types.
const (
	BundleType = "application/vnd.finepay.bundle"
	AckType    = "application/vnd.finepay.ack"
)

// maxPullRequest bounds a pull request body.
const maxPullRequest = 64 << 10

// PullRequest is the body of POST /v1/pull.
type PullRequest struct {
	Marks  map[string]int64 `json:"marks"`
	WaitMS int64            `json:"wait_ms"`
}

// GapBody is the body of a 409 answer.
type GapBody struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Lane     string `json:"lane"`
	Expected int64  `json:"expected"`
}

// ServerConfig configures a Server.
type ServerConfig struct {
	Relay           *relay.Relay // a DMZ-side relay
	Logger          *slog.Logger
	Registry        prometheus.Registerer // gets ferry_link_request_duration_seconds
	PeerFingerprint string                // the one peer allowed (its signing certificate)
	MaxBytes        int                   // the bundle size limit
}

// Server is the DMZ side's link endpoint.
type Server struct {
	cfg  ServerConfig
	echo *echo.Echo
}

// NewServer returns the link endpoint as an http.Handler.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = bundle.DefaultMaxBytes
	}
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_link_request_duration_seconds",
		Help:    "Time to serve link requests (pulls include their long-poll wait), by route and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"method", "route", "status"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(dur)
	}
	s := &Server{cfg: cfg, echo: echo.New()}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = httpx.ErrorHandler(cfg.Logger)
	e.Use(observe(cfg.Logger, dur), s.requirePeer, s.auditUnknownRoutes)
	e.POST("/v1/bundles", s.postBundle)
	e.POST("/v1/pull", s.postPull)
	e.POST("/v1/acks", s.postAck)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// observe records request durations and turns panics into 500s.
func observe(log *slog.Logger, dur *prometheus.HistogramVec) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			start := time.Now()
			defer func() {
				if p := recover(); p != nil {
					log.Error("link: panic in handler", "path", c.Request().URL.Path, "panic", fmt.Sprint(p))
					err = httpx.NewError(http.StatusInternalServerError, "INTERNAL", http.StatusText(http.StatusInternalServerError))
				}
				if err != nil {
					c.Error(err)
					err = nil
				}
				route := c.Path()
				if route == "" {
					route = "unmatched"
				}
				dur.WithLabelValues(c.Request().Method, route, strconv.Itoa(c.Response().Status)).Observe(time.Since(start).Seconds())
			}()
			return next(c)
		}
	}
}

// requirePeer refuses requests whose connection did not present the allowed peer certificate.
func (s *Server) requirePeer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		fp, ok := tlsgm.PeerFromContext(c.Request().Context())
		if !ok || fp != s.cfg.PeerFingerprint {
			s.cfg.Relay.LinkRefused(c.Request().RemoteAddr, fmt.Sprintf("request from peer %q, not the allowed %s", fp, s.cfg.PeerFingerprint))
			return httpx.NewError(http.StatusForbidden, "FORBIDDEN", "peer not allowed")
		}
		return next(c)
	}
}

// auditUnknownRoutes audits a request of the allowed peer for a route or method the link does
// not have: the peer's software is not ours, or not the version we expect.
func (s *Server) auditUnknownRoutes(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		var he *echo.HTTPError
		if errors.As(err, &he) && (he.Code == http.StatusNotFound || he.Code == http.StatusMethodNotAllowed) {
			r := c.Request()
			s.cfg.Relay.RequestRejected(r.RemoteAddr, fmt.Sprintf("%s %s: %s", r.Method, strconv.Quote(r.URL.Path), http.StatusText(he.Code)))
		}
		return err
	}
}

// refuse audits a request the link rejects before the relay sees it and returns the error.
func (s *Server) refuse(c echo.Context, e *httpx.Error) error {
	reason := c.Request().URL.Path + ": " + e.Message
	if e.Cause != nil {
		reason += ": " + e.Cause.Error()
	}
	s.cfg.Relay.RequestRejected(c.Request().RemoteAddr, reason)
	return e
}

func (s *Server) postBundle(c echo.Context) error {
	raw, err := s.readBody(c, s.cfg.MaxBytes)
	if err != nil {
		return err
	}
	ack, err := s.cfg.Relay.Accept(c.Request().Context(), raw, c.Request().RemoteAddr)
	var gap *relay.GapError
	if errors.As(err, &gap) {
		return c.JSON(http.StatusConflict, GapBody{Code: "SEQUENCE_GAP", Message: gap.Error(), Lane: gap.Lane, Expected: gap.Expected})
	}
	if err != nil {
		return httpError(err)
	}
	return c.Blob(http.StatusOK, AckType, ack)
}

func (s *Server) postPull(c echo.Context) error {
	body, err := s.readBody(c, maxPullRequest)
	if err != nil {
		return err
	}
	if len(body) > maxPullRequest {
		return s.refuse(c, httpx.NewError(http.StatusRequestEntityTooLarge, "LIMIT", fmt.Sprintf("pull request over %d bytes", maxPullRequest)))
	}
	var req PullRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return s.refuse(c, httpx.Wrap(http.StatusBadRequest, "BAD_REQUEST", "pull request is not JSON", err))
	}
	for lane, mark := range req.Marks {
		if _, err := bundle.LaneDirection(lane); err != nil || mark < 0 {
			return s.refuse(c, httpx.NewError(http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("bad mark %d for lane %s", mark, strconv.Quote(lane))))
		}
	}
	raw, err := s.cfg.Relay.Pull(c.Request().Context(), req.Marks, time.Duration(req.WaitMS)*time.Millisecond, c.Request().RemoteAddr)
	if err != nil {
		return httpError(err)
	}
	if raw == nil {
		return c.NoContent(http.StatusNoContent)
	}
	return c.Blob(http.StatusOK, BundleType, raw)
}

func (s *Server) postAck(c echo.Context) error {
	raw, err := s.readBody(c, bundle.MaxAckBytes)
	if err != nil {
		return err
	}
	if err := s.cfg.Relay.AcceptAck(c.Request().Context(), raw, c.Request().RemoteAddr); err != nil {
		return httpError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// readBody reads up to limit+1 bytes: an oversized body reaches the relay as such, which
// rejects (and audits) it for its size.
func (s *Server) readBody(c echo.Context, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(c.Request().Body, int64(limit)+1))
	if err != nil {
		return nil, s.refuse(c, httpx.Wrap(http.StatusBadRequest, "BAD_REQUEST", "cannot read request body", err))
	}
	return b, nil
}

// httpError maps relay errors to HTTP errors.
func httpError(err error) error {
	var rej *relay.RejectedError
	switch {
	case errors.As(err, &rej):
		status := http.StatusBadRequest
		if errors.Is(err, bundle.ErrLimit) {
			status = http.StatusRequestEntityTooLarge
		}
		return httpx.Wrap(status, strings.ToUpper(rej.Reason), "refused: "+rej.Reason, err)
	case errors.Is(err, relay.ErrUnavailable):
		return httpx.Wrap(http.StatusServiceUnavailable, "UNAVAILABLE", "cannot process now; try again later", err)
	}
	return err
}

// Serve serves h on the GM TLS listener ln until ctx ends, then shuts down gracefully (in-flight
// requests get up to 10 s). It logs the bound address ("listening", addr=...).
func Serve(ctx context.Context, log *slog.Logger, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ConnContext: tlsgm.ConnContext, ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 120 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("link: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("link: shutdown: %w", err)
	}
	<-errc
	return nil
}
