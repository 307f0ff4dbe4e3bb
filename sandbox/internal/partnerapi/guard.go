// Package partnerapi is the server side of the partner envelope (docs/partners.md) shared by the
// finance and police simulators: it verifies the caller's signature and timestamp, answers a
// repeated request ID with the stored first answer (and a reused one with 409), and signs every
// response, errors included, with the sandbox's key.
package partnerapi

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/partnersig"
	"finepay/shared/httpx"
)

// Caller is a node allowed to call the partner endpoints.
type Caller struct {
	// Name is the node name sent in X-FP-App ("core").
	Name string
	// Key verifies the caller's signatures: the public key of its signing certificate.
	Key partnersig.Verifier
	// Fingerprint identifies the caller's certificate ("sm3:<hex>").
	Fingerprint string
}

// Config configures a Guard.
type Config struct {
	// Node is this partner's name, sent in X-FP-App of every response ("sandbox").
	Node string
	// Key signs responses.
	Key partnersig.Signer
	// Callers are the known callers, by node name.
	Callers []Caller
	// Trusted lists the accepted certificate fingerprints; empty trusts every caller in Callers.
	Trusted []string
	// MaxBody bounds a request body; 0 means 1 MiB.
	MaxBody int64
	Now     func() time.Time
	Rand    io.Reader
	Log     *slog.Logger
}

// Guard is the envelope middleware.
type Guard struct {
	node    string
	key     partnersig.Signer
	callers map[string]Caller
	trusted map[string]bool
	maxBody int64
	now     func() time.Time
	rand    io.Reader
	log     *slog.Logger
	store   *Store
}

// New checks cfg and returns a Guard.
func New(cfg Config) (*Guard, error) {
	if cfg.Node == "" || cfg.Key == nil {
		return nil, errors.New("partnerapi: node name and signing key are required")
	}
	g := &Guard{
		node: cfg.Node, key: cfg.Key, callers: map[string]Caller{}, maxBody: cfg.MaxBody,
		now: cfg.Now, rand: cfg.Rand, log: cfg.Log, store: NewStore(),
	}
	if g.maxBody <= 0 {
		g.maxBody = 1 << 20
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.rand == nil {
		g.rand = rand.Reader
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	for _, c := range cfg.Callers {
		if c.Name == "" || c.Key == nil {
			return nil, errors.New("partnerapi: a caller needs a name and a key")
		}
		g.callers[c.Name] = c
	}
	if len(cfg.Trusted) > 0 {
		g.trusted = map[string]bool{}
		for _, fp := range cfg.Trusted {
			g.trusted[NormalizeFingerprint(fp)] = true
		}
	}
	return g, nil
}

// NormalizeFingerprint lowercases a fingerprint and drops colons, so that "sm3:AB:CD…" and
// "sm3:abcd…" compare equal.
func NormalizeFingerprint(fp string) string {
	fp = strings.ToLower(strings.TrimSpace(fp))
	prefix, rest, ok := strings.Cut(fp, "sm3:")
	if ok && prefix == "" {
		return "sm3:" + strings.ReplaceAll(rest, ":", "")
	}
	return strings.ReplaceAll(fp, ":", "")
}

// Requests is the number of request IDs remembered.
func (g *Guard) Requests() int { return g.store.Len() }

// Middleware verifies, deduplicates and signs. GET and HEAD look-ups are verified and signed but
// not stored: they change nothing, so a repeated ID is simply answered afresh.
func (g *Guard) Middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		rid := req.Header.Get(partnersig.HeaderRequestID)
		if !partnersig.ValidRequestID(rid) {
			rid = ""
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, g.maxBody+1))
		if err != nil {
			return g.fail(c, rid, apierr.Wrap(err, http.StatusBadRequest, "INVALID_REQUEST", "reading the request body failed"))
		}
		if int64(len(body)) > g.maxBody {
			return g.fail(c, rid, apierr.New(http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", "the body exceeds %d bytes", g.maxBody))
		}
		req.Body = io.NopCloser(bytes.NewReader(body))

		env, err := partnersig.Parse(req.Header)
		if err == nil {
			err = g.verify(env, req, body)
		}
		if err != nil {
			g.log.WarnContext(req.Context(), "partner request refused",
				"app", req.Header.Get(partnersig.HeaderApp), "request_id", rid, "path", req.URL.Path, "err", err)
			return g.fail(c, rid, envelopeError(err))
		}
		c.Set(CallerKey, env.App)

		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			return g.reply(c, env.RequestID, httpx.Capture(c, next), false)
		}
		hash := sha256.Sum256([]byte(req.Method + "\n" + req.RequestURI + "\n" + string(body)))
		stored, finish, err := g.store.Begin(req.Context(), env.App+"\n"+env.RequestID, hash)
		switch {
		case errors.Is(err, ErrConflict):
			return g.fail(c, env.RequestID, apierr.New(http.StatusConflict, "REQUEST_ID_CONFLICT",
				"request ID %s was already used for a different request", env.RequestID))
		case err != nil:
			return err
		case stored != nil:
			return g.reply(c, env.RequestID, *stored, true)
		}
		res := httpx.Capture(c, next)
		if res.Status < 500 {
			finish(&res)
		} else {
			finish(nil)
		}
		return g.reply(c, env.RequestID, res, false)
	}
}

// CallerKey is the echo context key holding the verified caller's node name.
const CallerKey = "partner.caller"

func (g *Guard) verify(env partnersig.Envelope, req *http.Request, body []byte) error {
	caller, ok := g.callers[env.App]
	if !ok {
		return fmt.Errorf("%w: unknown caller %q", errUntrusted, env.App)
	}
	if g.trusted != nil && !g.trusted[NormalizeFingerprint(caller.Fingerprint)] {
		return fmt.Errorf("%w: certificate %s of %q is not on the trust list", errUntrusted, caller.Fingerprint, env.App)
	}
	return partnersig.VerifyRequest(env, req.Method, req.RequestURI, body, g.now(), caller.Key)
}

var errUntrusted = errors.New("untrusted caller")

func envelopeError(err error) *apierr.Error {
	switch {
	case errors.Is(err, partnersig.ErrRequestID):
		return apierr.New(http.StatusBadRequest, "INVALID_REQUEST_ID", "%s must be 1-64 characters [A-Za-z0-9_-]", partnersig.HeaderRequestID)
	case errors.Is(err, partnersig.ErrMissing):
		return apierr.Wrap(err, http.StatusUnauthorized, "UNAUTHENTICATED", "%s", strings.TrimPrefix(err.Error(), "partnersig: "))
	case errors.Is(err, errUntrusted):
		return apierr.Wrap(err, http.StatusUnauthorized, "UNAUTHENTICATED", "the caller is not trusted")
	case errors.Is(err, partnersig.ErrTimestamp):
		return apierr.Wrap(err, http.StatusUnauthorized, "TIMESTAMP_OUT_OF_WINDOW",
			"%s must be within %d s of the partner's clock", partnersig.HeaderTimestamp, int(partnersig.Window/time.Second))
	default:
		return apierr.Wrap(err, http.StatusUnauthorized, "SIGNATURE_INVALID", "the request signature does not verify")
	}
}

func (g *Guard) fail(c echo.Context, rid string, e *apierr.Error) error {
	res := httpx.Capture(c, func(echo.Context) error { return e })
	return g.reply(c, rid, res, false)
}

func (g *Guard) reply(c echo.Context, rid string, res httpx.Captured, replay bool) error {
	h := res.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if err := partnersig.SignResponse(h, g.node, rid, res.Status, res.Body, g.now(), g.key, g.rand); err != nil {
		return fmt.Errorf("partnerapi: %w", err)
	}
	if replay {
		h.Set("X-FP-Replayed", "true")
	}
	res.Header = h
	return httpx.WriteCaptured(c, res)
}
