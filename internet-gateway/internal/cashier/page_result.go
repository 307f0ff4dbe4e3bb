package cashier

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/bill"
	"finepay/shared/bizdate"
)

type resultPage struct {
	bill.Outcome
	PaidAt string
	Token  string
	// IssuedDate is the receipt's issue date (Asia/Shanghai), an element of verification.
	IssuedDate string
}

// getResult is GET /q/{token}/result: the payment and, once it arrived, the e-receipt; until
// then a notice and polling that reloads the page when the receipt is there. An unpaid bill
// goes back to its page.
func (h *Handler) getResult(c echo.Context) error {
	token := c.Param("token")
	out, err := h.cfg.Bills.Outcome(c.Request().Context(), token)
	switch {
	case errors.Is(err, bill.ErrNotFound):
		return errNotFound
	case err != nil:
		return err
	}
	if !out.Paid() {
		return c.Redirect(http.StatusSeeOther, billURL(token))
	}
	var pl *poll
	if out.Receipt == nil {
		pl = &poll{StatusURL: statusURL(token), NextURL: resultURL(token), Want: "receipt"}
	}
	rp := resultPage{Outcome: out, PaidAt: out.Payment.PaidAt.In(bizdate.Location).Format("2006-01-02 15:04:05"), Token: token}
	if out.Receipt != nil {
		rp.IssuedDate = bizdate.Of(out.Receipt.IssuedAt).String()
	}
	return h.render(c, http.StatusOK, "result", page{Title: "缴款结果", Poll: pl, Data: rp})
}
