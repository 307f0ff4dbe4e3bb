// Package console is the window clerks' web console on the police intranet: password login for
// the clerk and reviewer accounts, a form that creates the payable bill of a penalty decision and
// shows its QR code for printing, the list of recent bills with their payment status and receipt,
// the look-up of a decision's bills with their payments, receipts and refunds, and the window
// refunds (R3 for a channel payment, R4 for a bank payment): one user starts a refund, another
// reviews it. The window API gets POST /api/v1/refunds (R2), naming the window user who asked.
// Users have roles (roles.go): a clerk creates bills and starts refunds, a reviewer reviews them,
// and nobody reviews a refund they asked for.
//
// Security behaviour (SECURITY.md): passwords are stored as PBKDF2-HMAC-SM3 (at least 100,000
// iterations, random salt); five failed logins lock the account for 30 minutes; a session is a
// random 256-bit ID in an HttpOnly, SameSite=Strict cookie (Secure when served over TLS), stored
// only as its SM3 digest, and ends after 15 minutes idle; every form carries a CSRF token; every
// login, good or bad, every bill created, every look-up, refund started and review, and every
// action refused (by role too), is written to the console audit table. Pages are
// server-rendered html/template, embedded, with inline CSS and no outside resources.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/refund"
	"finepay/shared/gm"
)

//go:embed templates/*.html
var templateFiles embed.FS

var pages = template.Must(template.New("").ParseFS(templateFiles, "templates/*.html"))

// Cookie names.
const (
	SessionCookie = "fp_console"
	loginCSRF     = "fp_login_csrf"
)

// The console users this version has: the clerk, and a reviewer so that a refund and its review
// are by different people. What each may do is its roles' (Config.Roles, roles.go).
const (
	ClerkUser    = "clerk"
	ReviewerUser = "reviewer"
)

// Errors of Login.
var (
	ErrBadCredentials = errors.New("console: wrong user name or password")
	ErrLocked         = errors.New("console: account locked after too many failed logins")
)

// Config configures a Console.
type Config struct {
	DB          *sqldb.DB
	Bills       *bill.Service
	Refunds     *refund.Service // nil: the refund pages and API answer that refunds are off
	Now         func() time.Time
	Rand        io.Reader
	Logger      *slog.Logger
	Iterations  int           // PBKDF2 iterations of new hashes; DefaultIterations when zero
	IdleTimeout time.Duration // 15 min when zero
	LockAfter   int           // failed logins that lock; 5 when zero
	LockFor     time.Duration // 30 min when zero
	// QR renders a URL as a PNG; nil uses the built-in encoder.
	QR func(content string) ([]byte, error)
	// Roles are the roles of each user (ParseRoles); nil: DefaultRoles.
	Roles map[string][]string
}

// Console serves the clerk pages.
type Console struct {
	cfg       Config
	dummyOnce sync.Once
	dummy     string
}

// New returns a console.
func New(cfg Config) *Console {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Iterations == 0 {
		cfg.Iterations = DefaultIterations
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.LockAfter <= 0 {
		cfg.LockAfter = 5
	}
	if cfg.LockFor <= 0 {
		cfg.LockFor = 30 * time.Minute
	}
	if cfg.QR == nil {
		cfg.QR = qrPNG
	}
	if cfg.Roles == nil {
		cfg.Roles, _ = ParseRoles(DefaultRoles)
	}
	return &Console{cfg: cfg}
}

// EnsureClerk creates the clerk account at first start. With an empty password a random one is
// generated and returned (generated true) so the caller can show it once; an existing account is
// left as it is.
func (c *Console) EnsureClerk(ctx context.Context, password string) (pw string, generated, created bool, err error) {
	return c.EnsureUser(ctx, ClerkUser, password)
}

// EnsureReviewer creates the reviewer account at first start, as EnsureClerk does the clerk's.
func (c *Console) EnsureReviewer(ctx context.Context, password string) (pw string, generated, created bool, err error) {
	return c.EnsureUser(ctx, ReviewerUser, password)
}

// EnsureUser creates a console account at first start, as EnsureClerk describes.
func (c *Console) EnsureUser(ctx context.Context, username, password string) (pw string, generated, created bool, err error) {
	if _, err := userGet(ctx, c.cfg.DB, c.cfg.DB, username, false); err == nil {
		return "", false, false, nil
	} else if !errors.Is(err, errNoUser) {
		return "", false, false, err
	}
	if password == "" {
		b := make([]byte, 12)
		if _, err := io.ReadFull(c.cfg.Rand, b); err != nil {
			return "", false, false, err
		}
		password, generated = "Fp-"+base64.RawURLEncoding.EncodeToString(b), true
	} else if err := CheckPolicy(password); err != nil {
		return "", false, false, err
	}
	h, err := HashPassword(c.cfg.Rand, password, c.cfg.Iterations)
	if err != nil {
		return "", false, false, err
	}
	created, err = userInsert(ctx, c.cfg.DB, username, h, c.cfg.Now())
	if err != nil || !created {
		return "", false, false, err
	}
	return password, generated, true, nil
}

func (c *Console) random(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(c.cfg.Rand, b); err != nil {
		panic(fmt.Sprintf("console: random source failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashID(id string) string {
	d := gm.SM3([]byte(id))
	return hex.EncodeToString(d[:])
}

func (c *Console) dummyHash() string {
	c.dummyOnce.Do(func() {
		c.dummy, _ = HashPassword(rand.Reader, c.random(16), max(c.cfg.Iterations, MinIterations))
	})
	return c.dummy
}

// Login checks a user name and password and opens a session, returning its ID (for the
// cookie). It fails with ErrBadCredentials or ErrLocked; every attempt is audited.
func (c *Console) Login(ctx context.Context, username, password, source string) (string, error) {
	now := c.cfg.Now()
	db := c.cfg.DB
	audit := AuditEntry{At: now, Actor: username, Event: "login", Source: source}
	if len(username) > 64 {
		audit.Actor = username[:64]
	}
	u, err := userGet(ctx, db, db, username, false)
	if errors.Is(err, errNoUser) {
		CheckPassword(c.dummyHash(), password) // same work as for a real account
		audit.Result, audit.Detail = "failure", "unknown user"
		if err := auditInsert(ctx, db, audit); err != nil {
			return "", err
		}
		return "", ErrBadCredentials
	}
	if err != nil {
		return "", err
	}
	if u.LockedUntil.Valid && now.Before(u.LockedUntil.Time) {
		audit.Result, audit.Detail = "refused", "account locked"
		if err := auditInsert(ctx, db, audit); err != nil {
			return "", err
		}
		return "", ErrLocked
	}
	ok := CheckPassword(u.PasswordHash, password)

	var sid string
	var outcome error
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		sid, outcome = "", nil
		u, err := userGet(ctx, tx, db, username, true)
		if err != nil {
			return err
		}
		a := audit
		switch {
		case u.LockedUntil.Valid && now.Before(u.LockedUntil.Time):
			outcome = ErrLocked
			a.Result, a.Detail = "refused", "account locked"
		case !ok:
			failed := u.FailedLogins + 1
			var locked any
			if u.LockedUntil.Valid {
				locked = u.LockedUntil.Time.UTC()
			}
			outcome = ErrBadCredentials
			a.Result, a.Detail = "failure", fmt.Sprintf("wrong password (%d in a row)", failed)
			if failed >= c.cfg.LockAfter {
				locked, failed = now.Add(c.cfg.LockFor).UTC(), 0
				outcome = ErrLocked
				a.Detail += "; account locked for " + c.cfg.LockFor.String()
			}
			if _, err := tx.ExecContext(ctx, `UPDATE console_users SET failed_logins = $2, locked_until = $3 WHERE username = $1`, username, failed, locked); err != nil {
				return err
			}
		default:
			if _, err := tx.ExecContext(ctx, `UPDATE console_users SET failed_logins = 0, locked_until = NULL WHERE username = $1`, username); err != nil {
				return err
			}
			sid = c.random(32)
			if err := sessionInsert(ctx, tx, hashID(sid), username, c.random(32), now); err != nil {
				return err
			}
			a.Result = "success"
		}
		return auditInsert(ctx, tx, a)
	})
	if err != nil {
		return "", err
	}
	if outcome != nil {
		c.cfg.Logger.Warn("console login refused", "user", audit.Actor, "source", source, "err", outcome)
		return "", outcome
	}
	c.cfg.Logger.Info("console login", "user", username, "source", source)
	return sid, nil
}

// Session is an open console session.
type Session struct {
	ID       string
	Username string
	CSRF     string
}

// SessionFromRequest returns the request's live session, touching it; an idle one is ended.
func (c *Console) SessionFromRequest(r *http.Request) (*Session, error) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 100 {
		return nil, nil
	}
	ctx := r.Context()
	h := hashID(ck.Value)
	s, ok, err := sessionGet(ctx, c.cfg.DB, h)
	if err != nil || !ok {
		return nil, err
	}
	now := c.cfg.Now()
	if now.Sub(s.LastSeen) > c.cfg.IdleTimeout {
		if err := sessionDelete(ctx, c.cfg.DB, h); err != nil {
			return nil, err
		}
		_ = sessionDeleteIdle(ctx, c.cfg.DB, now.Add(-c.cfg.IdleTimeout))
		return nil, nil
	}
	if err := sessionTouch(ctx, c.cfg.DB, h, now); err != nil {
		return nil, err
	}
	return &Session{ID: ck.Value, Username: s.Username, CSRF: s.CSRF}, nil
}

func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// WindowActor is the actor of window API calls authenticated by the bearer token: the window
// platform.
const WindowActor = "window-api"

// APIAuth authenticates callers of the window API: a bearer token equal to token (when token
// is not empty; actor WindowActor), or a live console session of a user with the clerk role
// (actor "console:USER"; a session without it is refused, 403, and audited as api.access).
func (c *Console) APIAuth(token string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(ec echo.Context) error {
			if h := ec.Request().Header.Get("Authorization"); h != "" {
				if t, ok := strings.CutPrefix(h, "Bearer "); ok && token != "" && equal(t, token) {
					ec.Set(bill.ActorKey, WindowActor)
					return next(ec)
				}
				return &echo.HTTPError{Code: http.StatusUnauthorized, Message: "invalid bearer token"}
			}
			s, err := c.SessionFromRequest(ec.Request())
			if err != nil {
				return err
			}
			if s == nil {
				return &echo.HTTPError{Code: http.StatusUnauthorized, Message: "authentication required"}
			}
			if !c.has(s.Username, RoleClerk) {
				r := ec.Request()
				if err := auditInsert(r.Context(), c.cfg.DB, AuditEntry{At: c.cfg.Now(), Actor: s.Username, Event: "api.access", Result: "refused",
					Source: ec.RealIP(), Detail: "role clerk needed: " + r.Method + " " + r.URL.Path}); err != nil {
					return err
				}
				return &echo.HTTPError{Code: http.StatusForbidden, Message: "the window API needs the clerk role"}
			}
			ec.Set(bill.ActorKey, "console:"+s.Username)
			return next(ec)
		}
	}
}
