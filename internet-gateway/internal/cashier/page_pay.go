package cashier

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/order"
	"finepay/shared/httpx"
)

// postPay is POST /q/{token}/pay/{channel}: create (or reuse) the bill's order at the channel
// and go to its QR page.
func (h *Handler) postPay(c echo.Context) error {
	token := c.Param("token")
	if !csrfOK(c) {
		return errCSRF
	}
	o, err := h.cfg.Orders.Create(c.Request().Context(), token, c.Param("channel"))
	switch {
	case errors.Is(err, bill.ErrNotFound), errors.Is(err, order.ErrUnknownChannel):
		return errNotFound
	case errors.Is(err, order.ErrBillPaid):
		return c.Redirect(http.StatusSeeOther, resultURL(token))
	case errors.Is(err, order.ErrBusy):
		return errBusy
	case errors.Is(err, order.ErrChannel):
		return httpx.Wrap(errChannel.Status, errChannel.Code, errChannel.Message, err)
	case err != nil:
		return err
	}
	return c.Redirect(http.StatusSeeOther, orderURL(token, o.OrderNo))
}
