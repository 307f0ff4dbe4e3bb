package cashier

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
	"finepay/shared/penalty"
)

type billPage struct {
	bill.View
	LateDays int
	PayURL   string
	CSRF     string
}

// getBill is GET /q/{token}: the bill and what is due today, with the pay button; a paid bill
// goes to its result.
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
	return h.render(c, http.StatusOK, "bill", page{Title: "罚款缴纳", Data: billPage{
		View: v, LateDays: late, PayURL: billURL(token) + "/pay/wechat", CSRF: h.csrfToken(c)}})
}
