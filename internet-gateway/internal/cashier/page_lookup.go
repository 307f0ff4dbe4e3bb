package cashier

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/bill"
	"finepay/shared/httpx"
	"finepay/shared/lookup"
)

// The lookup (DESIGN §6, privacy): a payer who has the decision notice but not its QR code finds
// the bill by the decision number and the last four characters of the plate. It needs both;
// it is rate limited per client IP (per minute) and per decision number (per hour) in the
// key-value store (Redis when configured), and it fails closed when the limiter does not
// answer; its answer never says whether a decision number exists: an unknown decision number
// and wrong plate characters are the same lookup of a keyed hash that finds no bill, with the
// same status and body. The gateway holds neither plates nor pairs of decision number and
// plate: only the hash the core published with the bill.

// Defaults of the lookup's limits.
const (
	DefaultLookupLimit         = 10 // per client IP per minute
	DefaultLookupDecisionLimit = 10 // per decision number per hour
)

// lookupDecisionWindow is the window of the per-decision-number limit.
const lookupDecisionWindow = time.Hour

// Lookup error codes (JSON answers; README lists them).
const (
	CodeInvalidArgument = "INVALID_ARGUMENT"
	CodeInvalidJSON     = "INVALID_JSON"
	CodeNotFound        = "NOT_FOUND"
	CodeRateLimited     = "RATE_LIMITED"
	CodeUnavailable     = "UNAVAILABLE"
	CodeUnsupportedType = "UNSUPPORTED_MEDIA_TYPE"
)

const (
	lookupCookie  = "fp_csrf_lookup"
	maxLookupBody = 4 << 10
)

// Messages of the lookup, Chinese for the page and English for the JSON API.
var (
	msgNotFoundZh       = "未查到与所填处罚决定书编号和号牌后四位相符的待缴罚款，请核对后重试。"
	msgNotFoundEn       = "no bill matches this decision number and these last four plate characters"
	msgIPLimitedZh      = "您的查询过于频繁，请一分钟后再试。"
	msgIPLimitedEn      = "too many lookups from this client; try again in a minute"
	msgDecisionLimitZh  = "该处罚决定书编号的查询次数已达上限，请一小时后再试，或扫描决定书上的二维码缴款。"
	msgDecisionLimitEn  = "too many lookups of this decision number; try again in an hour"
	msgUnavailableZh    = "查询服务暂时不可用，请稍后再试。"
	msgUnavailableEn    = "the lookup is unavailable; try again later"
	msgDecisionFormatZh = "处罚决定书编号应为15至20位数字。"
	msgDecisionFormatEn = "decision_no: must be 15 to 20 digits"
	msgPlateFormatZh    = "号牌后四位应为4个字母或数字。"
	msgPlateFormatEn    = "plate_tail: must be the last 4 characters of the plate, letters or digits"
)

// lookupError is a lookup that found no bill to lead to.
type lookupError struct {
	status     int
	code       string
	zh, en     string
	retryAfter string
	// fields that failed validation (invalid input only)
	decisionBad, plateBad bool
}

func (e *lookupError) Error() string { return "cashier: lookup: " + e.code + ": " + e.en }

var (
	errLookupNotFound    = &lookupError{status: http.StatusNotFound, code: CodeNotFound, zh: msgNotFoundZh, en: msgNotFoundEn}
	errLookupIPLimited   = &lookupError{status: http.StatusTooManyRequests, code: CodeRateLimited, zh: msgIPLimitedZh, en: msgIPLimitedEn, retryAfter: "60"}
	errLookupDNLimited   = &lookupError{status: http.StatusTooManyRequests, code: CodeRateLimited, zh: msgDecisionLimitZh, en: msgDecisionLimitEn, retryAfter: "3600"}
	errLookupUnavailable = &lookupError{status: http.StatusServiceUnavailable, code: CodeUnavailable, zh: msgUnavailableZh, en: msgUnavailableEn, retryAfter: "60"}
)

// allowIP counts a lookup against the client's per-minute limit; a limiter that fails closes
// the lookup (it is a privacy control, not only a load guard).
func (h *Handler) allowIP(ctx context.Context, ip string) error {
	ok, err := h.cfg.Limiter.Allow(ctx, "lookup:ip:"+ip, h.cfg.LookupLimit, time.Minute)
	switch {
	case err != nil:
		h.log.Error("cashier: lookup rate limiter", "err", err)
		return errLookupUnavailable
	case !ok:
		return errLookupIPLimited
	}
	return nil
}

// find validates the input, counts it against the decision number's limit and returns the
// token of the bill it names. Unknown decision numbers and wrong plate characters end in the
// same errLookupNotFound, after the same work.
func (h *Handler) find(ctx context.Context, decisionNo, plateTail string) (string, error) {
	d, derr := lookup.NormalizeDecisionNo(decisionNo)
	p, perr := lookup.NormalizePlateTail(plateTail)
	if derr != nil || perr != nil {
		e := &lookupError{status: http.StatusBadRequest, code: CodeInvalidArgument, decisionBad: derr != nil, plateBad: perr != nil}
		var zh, en []string
		if derr != nil {
			zh, en = append(zh, msgDecisionFormatZh), append(en, msgDecisionFormatEn)
		}
		if perr != nil {
			zh, en = append(zh, msgPlateFormatZh), append(en, msgPlateFormatEn)
		}
		e.zh, e.en = strings.Join(zh, ""), strings.Join(en, "; ")
		h.lookups.WithLabelValues("invalid").Inc()
		return "", e
	}
	// The per-decision counter is named by a keyed digest, not the number.
	ok, err := h.cfg.Limiter.Allow(ctx, "lookup:dn:"+lookup.DecisionKey(h.cfg.LookupKey, d), h.cfg.LookupDecisionLimit, lookupDecisionWindow)
	switch {
	case err != nil:
		h.log.Error("cashier: lookup rate limiter", "err", err)
		return "", errLookupUnavailable
	case !ok:
		h.lookups.WithLabelValues("limited").Inc()
		return "", errLookupDNLimited
	}
	hash, err := lookup.Hash(h.cfg.LookupKey, d, p)
	if err != nil {
		return "", err
	}
	b, err := h.cfg.Bills.FindByLookup(ctx, hash)
	switch {
	case errors.Is(err, bill.ErrNotFound):
		h.lookups.WithLabelValues("not_found").Inc()
		return "", errLookupNotFound
	case err != nil:
		return "", err
	}
	h.lookups.WithLabelValues("found").Inc()
	return b.Token, nil
}

// lookupPage is the data of the lookup template.
type lookupPage struct {
	CSRF          string
	DecisionNo    string
	Message       string
	DecisionError string
	PlateError    string
}

// getLookup is GET /lookup: the form.
func (h *Handler) getLookup(c echo.Context) error {
	return h.render(c, http.StatusOK, "lookup", page{Title: "查询缴款", Data: lookupPage{CSRF: h.lookupCSRF(c)}})
}

// postLookup is POST /lookup, the form: 303 to the bill's cashier page when found; otherwise
// the form again with the reason (400 invalid input, 404 no such bill, 429 over a limit).
func (h *Handler) postLookup(c echo.Context) error {
	ctx := c.Request().Context()
	c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, maxLookupBody)
	if err := h.allowIP(ctx, c.RealIP()); err != nil {
		h.lookups.WithLabelValues("limited").Inc()
		return h.lookupFormError(c, err, "")
	}
	if !lookupCSRFOK(c) {
		return errCSRF
	}
	d := c.Request().PostFormValue("decision_no")
	token, err := h.find(ctx, d, c.Request().PostFormValue("plate_tail"))
	if err != nil {
		return h.lookupFormError(c, err, d)
	}
	return c.Redirect(http.StatusSeeOther, billURL(token))
}

// lookupFormError renders the form with a lookup error; other errors go to htmlErrors.
func (h *Handler) lookupFormError(c echo.Context, err error, decisionNo string) error {
	var le *lookupError
	if !errors.As(err, &le) {
		return err
	}
	if le.retryAfter != "" {
		c.Response().Header().Set("Retry-After", le.retryAfter)
	}
	p := lookupPage{CSRF: h.lookupCSRF(c)}
	if le.status == http.StatusBadRequest {
		if le.decisionBad {
			p.DecisionError = msgDecisionFormatZh
		}
		if le.plateBad {
			p.PlateError = msgPlateFormatZh
		}
	} else {
		p.Message = le.zh
	}
	// The decision number typed is shown again only when it is well-formed (never the plate).
	if n, err := lookup.NormalizeDecisionNo(decisionNo); err == nil {
		p.DecisionNo = n
	}
	return h.render(c, le.status, "lookup", page{Title: "查询缴款", Data: p})
}

// LookupRequest is the body of POST /api/v1/lookup.
type LookupRequest struct {
	DecisionNo string `json:"decision_no"`
	PlateTail  string `json:"plate_tail"`
}

// LookupAnswer is the answer of POST /api/v1/lookup when a bill was found.
type LookupAnswer struct {
	CashierURL string `json:"cashier_url"`
}

// postLookupJSON is POST /api/v1/lookup for programs (an app, the 12123 platform's pages): the
// same lookup as the form, answered with the cashier URL or {"code","message"}. It takes
// application/json only, so that a cross-site page cannot post it without a CORS preflight
// (which the gateway never grants).
func (h *Handler) postLookupJSON(c echo.Context) error {
	ctx := c.Request().Context()
	c.Response().Header().Set("Cache-Control", "no-store")
	if err := h.allowIP(ctx, c.RealIP()); err != nil {
		h.lookups.WithLabelValues("limited").Inc()
		return h.lookupJSONError(c, err)
	}
	if mt, _, err := mime.ParseMediaType(c.Request().Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return httpx.NewError(http.StatusUnsupportedMediaType, CodeUnsupportedType, "the body must be application/json")
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxLookupBody+1))
	if err != nil || len(body) > maxLookupBody {
		return httpx.NewError(http.StatusBadRequest, CodeInvalidJSON, "the body must be one JSON object of at most 4 KiB")
	}
	var req LookupRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return httpx.NewError(http.StatusBadRequest, CodeInvalidJSON, `the body must be one JSON object {"decision_no":"...","plate_tail":"..."}`)
	}
	token, err := h.find(ctx, req.DecisionNo, req.PlateTail)
	if err != nil {
		return h.lookupJSONError(c, err)
	}
	return c.JSON(http.StatusOK, LookupAnswer{CashierURL: strings.TrimRight(h.cfg.PublicURL, "/") + billURL(token)})
}

func (h *Handler) lookupJSONError(c echo.Context, err error) error {
	var le *lookupError
	if !errors.As(err, &le) {
		return err
	}
	if le.retryAfter != "" {
		c.Response().Header().Set("Retry-After", le.retryAfter)
	}
	return httpx.NewError(le.status, le.code, le.en)
}

// lookupCSRF returns the browser's CSRF token of the lookup form (a cookie of its own, scoped
// to /lookup), setting a new one when there is none.
func (h *Handler) lookupCSRF(c echo.Context) string {
	if ck, err := c.Cookie(lookupCookie); err == nil && len(ck.Value) >= 22 && len(ck.Value) <= 64 {
		return ck.Value
	}
	b := make([]byte, 24)
	rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	c.SetCookie(&http.Cookie{Name: lookupCookie, Value: tok, Path: "/lookup", HttpOnly: true, Secure: h.cfg.SecureCookies,
		SameSite: http.SameSiteLaxMode, MaxAge: 24 * 3600})
	return tok
}

func lookupCSRFOK(c echo.Context) bool {
	ck, err := c.Cookie(lookupCookie)
	if err != nil || len(ck.Value) < 22 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.FormValue(csrfField))) == 1
}
