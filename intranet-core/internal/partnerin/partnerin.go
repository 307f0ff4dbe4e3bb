// Package partnerin is the server side of the signed-JSON envelope of docs/partners.md, for the
// systems that call the core: the 12123 Internet Service Platform (P1) and the agency-bank
// adapter (P3). It verifies the caller's SM2 signature and timestamp, refuses an unknown caller,
// answers a repeated request ID with the stored first answer (and a reused one with 409),
// records every request, accepted or refused, in partner_audit, and signs every answer, errors
// included, with the core's key.
//
// Request IDs are remembered in the core's database, so a retry after a restart still gets the
// first answer. A request still being answered (another attempt in flight, or one cut short by a
// crash less than StaleAfter ago) is answered 409 REQUEST_IN_PROGRESS, which the caller retries.
package partnerin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/partner"
	"finepay/shared/clip"
	"finepay/shared/gm"
	"finepay/shared/httpx"
)

// StaleAfter is how long a request left unanswered by a crash blocks its request ID.
const StaleAfter = 2 * time.Minute

// Caller is a system allowed to call the core.
type Caller struct {
	// Name is the node name the caller sends in X-FP-App ("isp12123", "bankadapter").
	Name string
	// Key verifies the caller's signatures: the public key of its signing certificate.
	Key *gm.PublicKey
}

// Config configures a Guard.
type Config struct {
	DB *sqldb.DB
	// Node is the core's name in X-FP-App of every answer ("core").
	Node string
	// Key signs answers.
	Key     gm.Signer
	Callers []Caller
	// MaxBody bounds a request body; 0 means 64 KiB.
	MaxBody  int64
	Now      func() time.Time
	Rand     io.Reader
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Guard is the envelope middleware.
type Guard struct {
	cfg      Config
	callers  map[string]*gm.PublicKey
	requests *prometheus.CounterVec
}

// New checks cfg and returns a Guard.
func New(cfg Config) (*Guard, error) {
	if cfg.DB == nil || cfg.Node == "" || cfg.Key == nil {
		return nil, errors.New("partnerin: database, node name and signing key are required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{cfg: cfg, callers: map[string]*gm.PublicKey{}}
	for _, c := range cfg.Callers {
		if !partner.ValidRequestID(c.Name) || c.Key == nil {
			return nil, fmt.Errorf("partnerin: caller %q needs a name of [A-Za-z0-9_-] and a key", c.Name)
		}
		g.callers[c.Name] = c.Key
	}
	g.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "finepay_partner_requests_total",
		Help: "Requests received from partner systems, by caller and answer code (ok for 2xx).",
	}, []string{"caller", "code"})
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(g.requests); err != nil {
			return nil, fmt.Errorf("partnerin: metrics: %w", err)
		}
	}
	return g, nil
}

// callerKey is the echo context key holding the verified caller's name.
const callerKey = "partnerin.caller"

// CallerOf returns the verified caller of a request that passed the guard.
func CallerOf(c echo.Context) string {
	s, _ := c.Get(callerKey).(string)
	return s
}

// Middleware verifies, deduplicates, records and signs. GET look-ups are verified and signed but
// not stored: a repeated ID is answered afresh.
func (g *Guard) Middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		app := req.Header.Get(partner.HeaderApp)
		rid := req.Header.Get(partner.HeaderRequestID)
		if !partner.ValidRequestID(rid) {
			rid = ""
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, g.cfg.MaxBody+1))
		if err != nil {
			return g.refuse(c, app, rid, httpx.Wrap(http.StatusBadRequest, "INVALID_REQUEST", "reading the request body failed", err))
		}
		if int64(len(body)) > g.cfg.MaxBody {
			return g.refuse(c, app, rid, httpx.NewError(http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE",
				fmt.Sprintf("the body exceeds %d bytes", g.cfg.MaxBody)))
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if e := g.verify(req, body); e != nil {
			return g.refuse(c, app, rid, e)
		}
		c.Set(callerKey, app)

		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			res := httpx.Capture(c, next)
			g.record(c, app, rid, res.Status, res.Body, "")
			return g.reply(c, rid, res, false)
		}
		sum := sha256.Sum256([]byte(req.Method + "\n" + req.URL.RequestURI() + "\n" + string(body)))
		hash := hex.EncodeToString(sum[:])
		stored, err := g.begin(req.Context(), app, rid, hash)
		if err != nil {
			var he *httpx.Error
			if errors.As(err, &he) {
				return g.refuse(c, app, rid, he)
			}
			return g.refuse(c, app, rid, httpx.Wrap(http.StatusServiceUnavailable, "UNAVAILABLE", "the request could not be recorded; retry", err))
		}
		if stored != nil {
			g.record(c, app, rid, stored.Status, stored.Body, "replayed")
			return g.reply(c, rid, *stored, true)
		}
		res := httpx.Capture(c, next)
		if err := g.finish(context.WithoutCancel(req.Context()), app, rid, res); err != nil {
			g.cfg.Logger.Error("partner answer not stored", "caller", app, "request_id", rid, "err", err)
		}
		g.record(c, app, rid, res.Status, res.Body, "")
		return g.reply(c, rid, res, false)
	}
}

// verify checks the envelope; it returns the error to answer, or nil.
func (g *Guard) verify(req *http.Request, body []byte) *httpx.Error {
	h := req.Header
	app, rid, tss, sigs := h.Get(partner.HeaderApp), h.Get(partner.HeaderRequestID), h.Get(partner.HeaderTimestamp), h.Get(partner.HeaderSignature)
	if app == "" || rid == "" || tss == "" || sigs == "" {
		return httpx.NewError(http.StatusUnauthorized, "UNAUTHENTICATED", "the envelope headers X-FP-App, X-FP-Request-Id, X-FP-Timestamp and X-FP-Signature are required")
	}
	if !partner.ValidRequestID(rid) {
		return httpx.NewError(http.StatusBadRequest, "INVALID_REQUEST_ID", "X-FP-Request-Id must be 1-64 characters [A-Za-z0-9_-]")
	}
	key, ok := g.callers[app]
	if !ok {
		return httpx.NewError(http.StatusUnauthorized, "UNAUTHENTICATED", "the caller is not trusted")
	}
	ts, err := strconv.ParseInt(tss, 10, 64)
	if err != nil {
		return httpx.NewError(http.StatusUnauthorized, "TIMESTAMP_OUT_OF_WINDOW", "X-FP-Timestamp must be Unix seconds")
	}
	if d := g.cfg.Now().Sub(time.Unix(ts, 0)); d > partner.ClockWindow || d < -partner.ClockWindow {
		return httpx.NewError(http.StatusUnauthorized, "TIMESTAMP_OUT_OF_WINDOW",
			fmt.Sprintf("X-FP-Timestamp must be within %d s of the core's clock", int(partner.ClockWindow/time.Second)))
	}
	sig, err := base64.StdEncoding.DecodeString(sigs)
	if err != nil {
		return httpx.NewError(http.StatusUnauthorized, "SIGNATURE_INVALID", "the request signature does not verify")
	}
	if err := key.Verify(partner.RequestSigningString(app, rid, ts, req.Method, req.URL.RequestURI(), body), sig); err != nil {
		return httpx.Wrap(http.StatusUnauthorized, "SIGNATURE_INVALID", "the request signature does not verify", err)
	}
	return nil
}

// begin claims (caller, rid) for this request. It returns the stored answer of an earlier
// attempt, or nil when this attempt is to run the handler.
func (g *Guard) begin(ctx context.Context, app, rid, hash string) (*httpx.Captured, error) {
	db := g.cfg.DB
	now := g.cfg.Now().UTC()
	for range 3 {
		res, err := db.ExecContext(ctx, `INSERT INTO partner_requests (caller, request_id, hash, status, created_at)
			VALUES ($1, $2, $3, 0, $4) ON CONFLICT (caller, request_id) DO NOTHING`, app, rid, hash, now)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil, nil
		}
		var (
			h       string
			status  int
			body    []byte
			created time.Time
		)
		err = db.QueryRowContext(ctx, `SELECT hash, status, body, created_at FROM partner_requests WHERE caller = $1 AND request_id = $2`,
			app, rid).Scan(&h, &status, &body, &created)
		if errors.Is(err, sql.ErrNoRows) {
			continue // the other attempt failed with 5xx and let the ID go
		}
		if err != nil {
			return nil, err
		}
		switch {
		case h != hash:
			return nil, httpx.NewError(http.StatusConflict, "REQUEST_ID_CONFLICT",
				fmt.Sprintf("request ID %s was already used for a different request", rid))
		case status != 0:
			return &httpx.Captured{Status: status, Header: jsonHeader(), Body: body}, nil
		case now.Sub(created) < StaleAfter:
			return nil, httpx.NewError(http.StatusConflict, "REQUEST_IN_PROGRESS",
				fmt.Sprintf("request %s is being answered; retry", rid))
		}
		// Left behind by a crash: take it over.
		res, err = db.ExecContext(ctx, `UPDATE partner_requests SET created_at = $1 WHERE caller = $2 AND request_id = $3 AND status = 0 AND created_at = $4`,
			now, app, rid, created)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil, nil
		}
	}
	return nil, httpx.NewError(http.StatusConflict, "REQUEST_IN_PROGRESS", fmt.Sprintf("request %s is being answered; retry", rid))
}

// finish stores an answer below 500, or lets the request ID go so that a retry runs again.
func (g *Guard) finish(ctx context.Context, app, rid string, res httpx.Captured) error {
	if res.Status >= 500 {
		_, err := g.cfg.DB.ExecContext(ctx, `DELETE FROM partner_requests WHERE caller = $1 AND request_id = $2 AND status = 0`, app, rid)
		return err
	}
	_, err := g.cfg.DB.ExecContext(ctx, `UPDATE partner_requests SET status = $1, body = $2 WHERE caller = $3 AND request_id = $4`,
		res.Status, res.Body, app, rid)
	return err
}

// refuse answers an envelope failure: recorded, signed, nothing else done.
func (g *Guard) refuse(c echo.Context, app, rid string, e *httpx.Error) error {
	g.cfg.Logger.Warn("partner request refused", "caller", app, "request_id", rid, "path", c.Request().URL.Path,
		"status", e.Status, "code", e.Code, "err", e.Error())
	body, _ := json.Marshal(httpx.ErrorBody{Code: e.Code, Message: e.Message})
	res := httpx.Captured{Status: e.Status, Header: jsonHeader(), Body: body}
	g.record(c, app, rid, res.Status, res.Body, e.Message)
	return g.reply(c, rid, res, false)
}

// record writes the audit row of one request. A failure is logged: the answer was already
// decided, and the log carries the same facts.
func (g *Guard) record(c echo.Context, app, rid string, status int, body []byte, detail string) {
	code := "ok"
	if status < 200 || status > 299 {
		var eb httpx.ErrorBody
		if json.Unmarshal(body, &eb) == nil && eb.Code != "" {
			code = eb.Code
		} else {
			code = strconv.Itoa(status)
		}
	}
	caller := app
	if _, ok := g.callers[app]; !ok {
		caller = "unknown"
	}
	g.requests.WithLabelValues(caller, code).Inc()
	req := c.Request()
	_, err := g.cfg.DB.ExecContext(context.WithoutCancel(req.Context()),
		`INSERT INTO partner_audit (at, caller, request_id, method, path, status, code, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		g.cfg.Now().UTC(), clip.Text(app, 64), rid, req.Method, clip.Text(req.URL.Path, 200), status, code, clip.Text(detail, 500))
	if err != nil {
		g.cfg.Logger.Error("partner audit not written", "caller", app, "request_id", rid, "err", err)
	}
}

// reply signs res and sends it.
func (g *Guard) reply(c echo.Context, rid string, res httpx.Captured, replayed bool) error {
	ts := g.cfg.Now().Unix()
	sig, err := g.cfg.Key.Sign(g.cfg.Rand, partner.ResponseSigningString(g.cfg.Node, rid, ts, res.Status, res.Body))
	if err != nil {
		return fmt.Errorf("partnerin: sign answer: %w", err)
	}
	h := res.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set(partner.HeaderApp, g.cfg.Node)
	h.Set(partner.HeaderRequestID, rid)
	h.Set(partner.HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(partner.HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	if replayed {
		h.Set("X-FP-Replayed", "true")
	}
	res.Header = h
	return httpx.WriteCaptured(c, res)
}

func jsonHeader() http.Header {
	return http.Header{echo.HeaderContentType: {echo.MIMEApplicationJSONCharsetUTF8}}
}
