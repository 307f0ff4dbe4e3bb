package ispsim

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
)

// RefundInstruction is what the platform tells the core to refund (flow R1).
type RefundInstruction struct {
	ISPRefundNo string `json:"isp_refund_no"`
	ISPOrderNo  string `json:"isp_order_no"`
	Amount      int64  `json:"amount"`
	Reason      string `json:"reason"`
}

// Refund sends a refund instruction to the core, signed as the platform. The same
// isp_refund_no again is the same refund at the core.
func (s *Sim) Refund(ctx context.Context, r RefundInstruction) (Answer, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Answer{}, err
	}
	rid, err := s.newID("isr-", 12)
	if err != nil {
		return Answer{}, err
	}
	a, err := s.call(ctx, http.MethodPost, "/partner/v1/isp/refunds", rid, body)
	if err == nil {
		s.cfg.Log.Info("12123 refund instructed", "isp_refund_no", r.ISPRefundNo, "isp_order_no", r.ISPOrderNo, "status", a.Status)
	}
	return a, err
}

// handleRefundJSON is POST /_sandbox/isp/refunds: the platform instructs a refund.
func (s *Sim) handleRefundJSON(c echo.Context) error {
	var r RefundInstruction
	if err := field.DecodeJSON(c.Request().Body, &r); err != nil {
		return err
	}
	var v field.Checker
	v.Match("isp_refund_no", r.ISPRefundNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Match("isp_order_no", r.ISPOrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Positive("amount", r.Amount)
	v.Required("reason", r.Reason)
	if err := v.Err(); err != nil {
		return err
	}
	a, err := s.Refund(c.Request().Context(), r)
	if err != nil {
		return apierr.Wrap(err, http.StatusBadGateway, "CORE_UNAVAILABLE", "%s", err.Error())
	}
	return c.JSON(http.StatusOK, map[string]any{"core": a})
}
