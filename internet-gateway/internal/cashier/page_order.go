package cashier

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/skip2/go-qrcode"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/channel"
	"finepay/internet-gateway/internal/order"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
)

type orderPage struct {
	Order      store.Order
	Text       channelText
	Open       bool
	QR         template.URL // data:image/png;base64,...
	SandboxURL string
	// AppURL opens the QR code's URL in the payment app the page runs in (Alipay's and
	// UnionPay's codes are https URLs their apps open); LongPress says that WeChat recognises
	// the QR image when pressed.
	AppURL    template.URL
	LongPress bool
	ExpiresAt string
	BillURL   string
}

// getOrder is GET /q/{token}/order/{order_no}: the QR code of the order, polling for the
// payment.
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
	p := orderPage{Order: o, Text: textOf(o.Channel), BillURL: billURL(token),
		ExpiresAt: o.ExpiresAt.In(bizdate.Location).Format("2006-01-02 15:04:05"),
		Open:      o.Status == store.OrderCreated && h.cfg.Now().Before(o.ExpiresAt) && o.CodeURL != ""}
	var pl *poll
	if p.Open {
		png, err := qrcode.Encode(o.CodeURL, qrcode.Medium, 256)
		if err != nil {
			return err
		}
		p.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
		p.SandboxURL = h.sandboxLink(o.Channel, o.CodeURL)
		if ag := agentOf(c.Request().UserAgent()); ag.app == o.Channel {
			if o.Channel == channel.WeChat {
				p.LongPress = true
			} else if strings.HasPrefix(o.CodeURL, "https://") {
				p.AppURL = template.URL(o.CodeURL)
			}
		}
		pl = &poll{StatusURL: statusURL(token), NextURL: resultURL(token), Want: "paid"}
	}
	return h.render(c, http.StatusOK, "order", page{Title: p.Text.Title, Poll: pl, Data: p})
}

// sandboxLink is the link to the channel's simulator for a QR code, or "" when none is
// configured: <url>?pr=<pr of code_url> for WeChat, <url>?code=<last path segment> for Alipay
// and UnionPay.
func (h *Handler) sandboxLink(ch, code string) string {
	base := h.cfg.SandboxPay[ch]
	if base == "" {
		return ""
	}
	u, err := url.Parse(code)
	if err != nil {
		return ""
	}
	q := url.Values{}
	switch ch {
	case channel.WeChat:
		if u.Query().Get("pr") == "" {
			return ""
		}
		q.Set("pr", u.Query().Get("pr"))
	default:
		seg := path.Base(u.Path)
		if seg == "" || seg == "/" || seg == "." {
			return ""
		}
		q.Set("code", seg)
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + q.Encode()
}
