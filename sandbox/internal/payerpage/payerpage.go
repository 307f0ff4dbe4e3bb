// Package payerpage renders the simulators' payer pages (WeChat Pay, Alipay, UnionPay) with the
// headers every one of them sends: no caching, a strict content security policy (inline styles
// only, no scripts, no outside resources), no sniffing, no referrer.
package payerpage

import (
	"bytes"
	"fmt"
	"html/template"

	"github.com/labstack/echo/v4"
)

// Render executes t with data and writes it with status. formAction is the CSP form-action
// source list ("'self'" for pages that only post to themselves).
func Render(c echo.Context, status int, t *template.Template, data any, formAction string) error {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return fmt.Errorf("payer page %s: %w", t.Name(), err)
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+formAction+"; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	return c.HTMLBlob(status, buf.Bytes())
}
