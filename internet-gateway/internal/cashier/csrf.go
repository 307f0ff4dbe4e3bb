package cashier

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"

	"github.com/labstack/echo/v4"
)

const (
	csrfCookie = "fp_csrf"
	csrfField  = "csrf"
)

// csrfToken returns the browser's CSRF token, setting a new cookie when there is none.
func (h *Handler) csrfToken(c echo.Context) string {
	if ck, err := c.Cookie(csrfCookie); err == nil && len(ck.Value) >= 22 && len(ck.Value) <= 64 {
		return ck.Value
	}
	b := make([]byte, 24)
	rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	c.SetCookie(&http.Cookie{Name: csrfCookie, Value: tok, Path: "/q/", HttpOnly: true, Secure: h.cfg.SecureCookies,
		SameSite: http.SameSiteLaxMode, MaxAge: 24 * 3600})
	return tok
}

// csrfOK reports whether the form repeats the cookie's token.
func csrfOK(c echo.Context) bool {
	ck, err := c.Cookie(csrfCookie)
	if err != nil || len(ck.Value) < 22 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.FormValue(csrfField))) == 1
}
