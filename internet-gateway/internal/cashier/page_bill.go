package cashier

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/skip2/go-qrcode"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
	"finepay/shared/penalty"
)

type billPage struct {
	bill.View
	LateDays int
	Channels []payButton
	CSRF     string
	// PageQR is the QR code of this page, shown on a desktop to be scanned with a phone.
	PageQR template.URL
}

type payButton struct {
	Name, Label, PayURL string
}

// getBill is GET /q/{token}: the bill and what is due today, with a pay button per channel
// offered to this browser; a paid bill goes to its result.
func (h *Handler) getBill(c echo.Context) error {
	token := c.Param("token")
	v, err := h.cfg.Bills.View(c.Request().Context(), token)
	switch {
	case errors.Is(err, bill.ErrNotFound):
		return errNotFound
	case err != nil:
		return err
	}
	if v.Bill.Status == store.BillPaid {
		return c.Redirect(http.StatusSeeOther, resultURL(token))
	}
	late := 0
	if v.Bill.LateFeeApplies {
		if served, err := bizdate.Parse(v.Bill.ServedDate); err == nil {
			late = penalty.DaysLate(served, v.Due.Day)
		}
	}
	p := billPage{View: v, LateDays: late, CSRF: h.csrfToken(c)}
	ag := agentOf(c.Request().UserAgent())
	for _, ch := range ag.offer(h.cfg.Orders.Channels()) {
		p.Channels = append(p.Channels, payButton{Name: ch, Label: textOf(ch).Label, PayURL: billURL(token) + "/pay/" + ch})
	}
	if !ag.mobile {
		base := strings.TrimRight(h.cfg.PublicURL, "/")
		if base == "" {
			base = c.Scheme() + "://" + c.Request().Host
		}
		png, err := qrcode.Encode(base+billURL(token), qrcode.Medium, 256)
		if err != nil {
			return err
		}
		p.PageQR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
	}
	return h.render(c, http.StatusOK, "bill", page{Title: "罚款缴纳", Data: p})
}
