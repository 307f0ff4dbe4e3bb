package isp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/partnerin"
	"finepay/intranet-core/internal/refund"
	"finepay/shared/httpx"
)

// RefundStarter starts refunds; *refund.Service is one.
type RefundStarter interface {
	Start(ctx context.Context, tx *sql.Tx, r refund.Request) (refund.Refund, bool, error)
}

// RefundAPI takes the platform's refund instructions (flow R1).
type RefundAPI struct {
	DB      *sqldb.DB
	Refunds RefundStarter
}

// RefundRoutes mounts the platform's refund API on g (normally /partner/v1/isp):
//
//	POST /refunds                  instruct the refund of a paid 12123 order (201 new, 200 repeated)
//	GET  /refunds/{isp_refund_no}  the state of a refund
func RefundRoutes(g *echo.Group, a *RefundAPI) {
	g.POST("/refunds", a.handleRefund)
	g.GET("/refunds/:isp_refund_no", a.handleGetRefund)
}

// RefundRequest is the body of POST /refunds.
type RefundRequest struct {
	ISPRefundNo string `json:"isp_refund_no"`
	ISPOrderNo  string `json:"isp_order_no"`
	Amount      int64  `json:"amount"`
	Reason      string `json:"reason"`
}

// RefundJSON is the answer: the refund's number (the one the channel sees) and state.
type RefundJSON struct {
	ISPRefundNo string `json:"isp_refund_no"`
	ISPOrderNo  string `json:"isp_order_no"`
	RefundNo    string `json:"refund_no"`
	Amount      int64  `json:"amount"`
	State       string `json:"state"`
}

// DecodeRefund reads and validates a refund instruction.
func DecodeRefund(c echo.Context) (RefundRequest, error) {
	var r RefundRequest
	if err := partnerin.Decode(c, &r); err != nil {
		return r, err
	}
	p := partnerin.Problems{}
	p.Add(!ValidOrderNo(r.ISPRefundNo), "isp_refund_no", "must be 1 to 64 characters [A-Za-z0-9_-]")
	p.Add(!ValidOrderNo(r.ISPOrderNo), "isp_order_no", "must be 1 to 64 characters [A-Za-z0-9_-]")
	p.Add(r.Amount <= 0 || r.Amount > 100_000_000, "amount", "must be 1 to 100000000 fen")
	p.Add(r.Reason == "" || len(r.Reason) > 240, "reason", "must be 1 to 240 bytes")
	return r, p.Err()
}

// instructionID ties a refund to the platform's own refund number: the same number again is
// the same refund.
func instructionID(caller, ispRefundNo string) string { return "isp:" + caller + ":" + ispRefundNo }

func (a *RefundAPI) handleRefund(c echo.Context) error {
	r, err := DecodeRefund(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	caller := partnerin.CallerOf(c)
	row, err := ispGet(ctx, a.DB, caller, r.ISPOrderNo)
	if err != nil {
		return HTTPError(err)
	}
	var ref refund.Refund
	var created bool
	err = a.DB.Tx(ctx, func(tx *sql.Tx) error {
		var pid int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM payments WHERE bill_no = $1 AND result = 'recorded'`, row.billNo).Scan(&pid)
		if errors.Is(err, sql.ErrNoRows) {
			return httpx.NewError(http.StatusConflict, "NOT_PAID", fmt.Sprintf("order %s is not paid", r.ISPOrderNo))
		}
		if err != nil {
			return err
		}
		ref, created, err = a.Refunds.Start(ctx, tx, refund.Request{PaymentID: pid, Route: refund.R1,
			InstructionID: instructionID(caller, r.ISPRefundNo), Amount: r.Amount, Reason: r.Reason, RequestedBy: Actor(caller)})
		return err
	})
	switch {
	case errors.Is(err, refund.ErrInFlight):
		return httpx.Wrap(http.StatusConflict, "REFUND_IN_FLIGHT", "another refund of this payment is in progress", err)
	case errors.Is(err, refund.ErrExceedsPaid):
		return httpx.Wrap(http.StatusUnprocessableEntity, "AMOUNT_EXCEEDS_PAID", "the amount exceeds what was paid and not yet refunded", err)
	case err != nil:
		return err
	}
	if !created && (ref.Amount != r.Amount || ref.BillNo != row.billNo) {
		return httpx.NewError(http.StatusConflict, "REFUND_CONFLICT",
			fmt.Sprintf("refund %s was instructed for another order or amount", r.ISPRefundNo))
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, RefundJSON{ISPRefundNo: r.ISPRefundNo, ISPOrderNo: r.ISPOrderNo, RefundNo: ref.RefundNo, Amount: ref.Amount, State: string(ref.State)})
}

func (a *RefundAPI) handleGetRefund(c echo.Context) error {
	no := c.Param("isp_refund_no")
	p := partnerin.Problems{}
	p.Add(!ValidOrderNo(no), "isp_refund_no", "must be 1 to 64 characters [A-Za-z0-9_-]")
	if err := p.Err(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var ref refund.Refund
	err := a.DB.QueryRowContext(ctx, `SELECT refund_no FROM refunds WHERE route = 'R1' AND instruction_id = $1`,
		instructionID(partnerin.CallerOf(c), no)).Scan(&ref.RefundNo)
	if errors.Is(err, sql.ErrNoRows) {
		return httpx.NewError(http.StatusNotFound, "NOT_FOUND", "no such refund")
	}
	if err != nil {
		return err
	}
	if ref, err = refund.Get(ctx, a.DB, ref.RefundNo); err != nil {
		return err
	}
	var orderNo string
	_ = a.DB.QueryRowContext(ctx, `SELECT isp_order_no FROM isp_payments WHERE caller = $1 AND bill_no = $2 ORDER BY created_at LIMIT 1`,
		partnerin.CallerOf(c), ref.BillNo).Scan(&orderNo)
	return c.JSON(http.StatusOK, RefundJSON{ISPRefundNo: no, ISPOrderNo: orderNo, RefundNo: ref.RefundNo, Amount: ref.Amount, State: string(ref.State)})
}
