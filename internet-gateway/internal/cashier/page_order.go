package cashier

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/skip2/go-qrcode"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/order"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
)

type orderPage struct {
	Order      store.Order
	Open       bool
	QR         template.URL // data:image/png;base64,...
	SandboxURL string
	ExpiresAt  string
	BillURL    string
}

// getOrder is GET /q/{token}/order/{order_no}: the QR code of the order's code_url, polling
// for the payment.
func (h *Handler) getOrder(c echo.Context) error {
	token := c.Param("token")
	o, _, err := h.cfg.Orders.Get(c.Request().Context(), token, c.Param("order_no"))
	switch {
	case errors.Is(err, bill.ErrNotFound), errors.Is(err, order.ErrNotFound):
		return errNotFound
	case err != nil:
		return err
	}
	if o.Status == store.OrderPaid {
		return c.Redirect(http.StatusSeeOther, resultURL(token))
	}
	p := orderPage{Order: o, BillURL: billURL(token),
		ExpiresAt: o.ExpiresAt.In(bizdate.Location).Format("2006-01-02 15:04:05"),
		Open:      o.Status == store.OrderCreated && h.cfg.Now().Before(o.ExpiresAt) && o.CodeURL != ""}
	var pl *poll
	if p.Open {
		png, err := qrcode.Encode(o.CodeURL, qrcode.Medium, 256)
		if err != nil {
			return err
		}
		p.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
		p.SandboxURL = h.sandboxLink(o.CodeURL)
		pl = &poll{StatusURL: statusURL(token), NextURL: resultURL(token), Want: "paid"}
	}
	return h.render(c, http.StatusOK, "order", page{Title: "微信扫码支付", Poll: pl, Data: p})
}

// sandboxLink is <SandboxPayURL>?pr=<pr of code_url>, or "" when not configured.
func (h *Handler) sandboxLink(codeURL string) string {
	if h.cfg.SandboxPayURL == "" {
		return ""
	}
	u, err := url.Parse(codeURL)
	if err != nil || u.Query().Get("pr") == "" {
		return ""
	}
	sep := "?"
	if strings.Contains(h.cfg.SandboxPayURL, "?") {
		sep = "&"
	}
	return h.cfg.SandboxPayURL + sep + url.Values{"pr": {u.Query().Get("pr")}}.Encode()
}
