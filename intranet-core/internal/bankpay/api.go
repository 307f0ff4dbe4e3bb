package bankpay

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/intranet-core/internal/partnerin"
)

// Routes mounts the adapter API on g (/partner/v1/bank, behind partnerin.Guard).
func Routes(g *echo.Group, s *Service) {
	g.POST("/query", func(c echo.Context) error {
		var req QueryRequest
		if err := partnerin.Decode(c, &req); err != nil {
			return err
		}
		a, err := s.Query(c.Request().Context(), partnerin.CallerOf(c), req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, a)
	})
	g.POST("/payments", func(c echo.Context) error {
		var req PaymentRequest
		if err := partnerin.Decode(c, &req); err != nil {
			return err
		}
		a, err := s.Pay(c.Request().Context(), partnerin.CallerOf(c), req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, a)
	})
	g.POST("/reconciliations", func(c echo.Context) error {
		var req ReconRequest
		if err := partnerin.Decode(c, &req); err != nil {
			return err
		}
		a, err := s.Reconcile(c.Request().Context(), partnerin.CallerOf(c), req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, a)
	})
}
