package cashier

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/bill"
	"finepay/shared/httpx"
)

// Status is the JSON of GET /q/{token}/status.
type Status struct {
	Status  string `json:"status"`  // the bill's status: payable or paid
	Paid    bool   `json:"paid"`    // a payment was recorded
	Receipt bool   `json:"receipt"` // its e-receipt arrived
}

// getStatus is GET /q/{token}/status, polled by the order and result pages.
func (h *Handler) getStatus(c echo.Context) error {
	out, err := h.cfg.Bills.Outcome(c.Request().Context(), c.Param("token"))
	switch {
	case errors.Is(err, bill.ErrNotFound):
		return httpx.NewError(http.StatusNotFound, "NOT_FOUND", "not found")
	case err != nil:
		return err
	}
	st := Status{Status: out.Bill.Status, Paid: out.Paid(), Receipt: out.Receipt != nil}
	if st.Paid {
		st.Status = "paid"
	}
	return c.JSON(http.StatusOK, st)
}
