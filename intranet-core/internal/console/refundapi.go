package console

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/refund"
	"finepay/shared/httpx"
)

// APIRoutes mounts the console's part of the window API on g (normally /api/v1, behind
// APIAuth):
//
//	POST /refunds   the window platform's refund instruction (flow R2): 201 new, 200 repeated;
//	                the refund waits for a review in the console by someone other than
//	                the one who asked
func (c *Console) APIRoutes(g *echo.Group) {
	g.POST("/refunds", c.apiStartRefund)
}

// RefundRequest is the body of POST /api/v1/refunds. Amount is fen; request_id is the window
// platform's ID of the instruction: the same ID again is the same refund. RequestedBy is the
// window platform's user who asked, by the user name the console knows that person by: the
// refund's requester is window:NAME, and that person cannot review it. The window platform must
// name the asker; a console session asks as its own user (the field may be left out).
type RefundRequest struct {
	DecisionNo  string `json:"decision_no"`
	Amount      int64  `json:"amount"`
	Reason      string `json:"reason"`
	RequestID   string `json:"request_id"`
	RequestedBy string `json:"requested_by,omitempty"`
}

// RefundJSON answers POST /api/v1/refunds.
type RefundJSON struct {
	RequestID   string `json:"request_id"`
	DecisionNo  string `json:"decision_no"`
	RefundNo    string `json:"refund_no"`
	BillNo      string `json:"bill_no"`
	Amount      int64  `json:"amount"`
	State       string `json:"state"`
	RequestedBy string `json:"requested_by"`
}

var reRequestID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// decodeRefund reads and checks a refund instruction.
func decodeRefund(body io.Reader) (RefundRequest, error) {
	var r RefundRequest
	dec := json.NewDecoder(io.LimitReader(body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, httpx.Wrap(http.StatusBadRequest, "INVALID_REQUEST", "the body is not a refund instruction", err)
	}
	r.DecisionNo, r.Reason, r.RequestedBy = strings.TrimSpace(r.DecisionNo), strings.TrimSpace(r.Reason), strings.TrimSpace(r.RequestedBy)
	var bad []string
	if !reDecisionNo.MatchString(r.DecisionNo) {
		bad = append(bad, "decision_no: must be 15 to 20 digits")
	}
	if r.Amount <= 0 || r.Amount > 100_000_000 {
		bad = append(bad, "amount: must be 1 to 100000000 fen")
	}
	if r.Reason == "" || len(r.Reason) > maxReason {
		bad = append(bad, fmt.Sprintf("reason: must be 1 to %d bytes", maxReason))
	}
	if !reRequestID.MatchString(r.RequestID) {
		bad = append(bad, "request_id: must be 1 to 64 characters [A-Za-z0-9_-]")
	}
	if r.RequestedBy != "" && !reUserName.MatchString(r.RequestedBy) {
		bad = append(bad, "requested_by: must be 1 to 64 characters [A-Za-z0-9_.-]")
	}
	if len(bad) > 0 {
		return r, httpx.NewError(http.StatusBadRequest, "INVALID_REQUEST", strings.Join(bad, "; "))
	}
	return r, nil
}

func apiActor(ec echo.Context) string {
	if a, ok := ec.Get(bill.ActorKey).(string); ok && a != "" {
		return a
	}
	return WindowActor
}

// requester is the requester of an instruction from actor: window:NAME for the window platform,
// which must name who asked, console:USER for a console session, which may name only its user.
func requester(actor string, r RefundRequest) (string, error) {
	if actor == WindowActor {
		if r.RequestedBy == "" {
			return "", httpx.NewError(http.StatusBadRequest, "INVALID_REQUEST", "requested_by: the window platform must name who asked")
		}
		return "window:" + r.RequestedBy, nil
	}
	if r.RequestedBy != "" && "console:"+r.RequestedBy != actor {
		return "", httpx.NewError(http.StatusBadRequest, "INVALID_REQUEST", "requested_by: a console session asks as its own user")
	}
	return actor, nil
}

// apiStartRefund starts an R2 refund of the recorded payment of a decision's bill. The refund
// and its audit record commit together.
func (c *Console) apiStartRefund(ec echo.Context) error {
	if c.cfg.Refunds == nil {
		return httpx.NewError(http.StatusNotFound, "NOT_FOUND", "refunds are not enabled")
	}
	r, err := decodeRefund(ec.Request().Body)
	if err != nil {
		return err
	}
	ctx := ec.Request().Context()
	actor := apiActor(ec)
	audit := AuditEntry{Actor: actor, Event: "api.refund.start", Source: ec.RealIP()}
	if len(audit.Actor) > 64 {
		audit.Actor = audit.Actor[:64]
	}
	asker, err := requester(actor, r)
	if err != nil {
		a := audit
		a.At, a.Result = c.cfg.Now(), "refused"
		a.Detail = fmt.Sprintf("decision %s, request %s: INVALID_REQUEST (requester)", r.DecisionNo, r.RequestID)
		if aerr := auditInsert(ctx, c.cfg.DB, a); aerr != nil {
			return aerr
		}
		return err
	}
	var ref refund.Refund
	var created bool
	err = c.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		b, err := bill.BillGetActiveByDecision(ctx, tx, r.DecisionNo)
		if errors.Is(err, bill.ErrNotFound) || errors.Is(err, sql.ErrNoRows) {
			return httpx.NewError(http.StatusNotFound, "NOT_FOUND", "no bill of decision "+r.DecisionNo)
		}
		if err != nil {
			return err
		}
		var pid int64
		err = tx.QueryRowContext(ctx, `SELECT id FROM payments WHERE bill_no = $1 AND result = 'recorded'`, b.BillNo).Scan(&pid)
		if errors.Is(err, sql.ErrNoRows) {
			return httpx.NewError(http.StatusConflict, "NOT_PAID", "decision "+r.DecisionNo+" is not paid")
		}
		if err != nil {
			return err
		}
		ref, created, err = c.cfg.Refunds.Start(ctx, tx, refund.Request{PaymentID: pid, Route: refund.R2,
			InstructionID: "window:" + r.RequestID, Amount: r.Amount, Reason: r.Reason, RequestedBy: asker})
		if err != nil {
			return err
		}
		if !created && (ref.Amount != r.Amount || ref.PaymentID != pid || ref.RequestedBy != asker) {
			return httpx.NewError(http.StatusConflict, "REFUND_CONFLICT",
				fmt.Sprintf("request %s was a refund of another decision, amount or requester", r.RequestID))
		}
		a := audit
		a.At, a.Result = c.cfg.Now(), "success"
		a.Detail = fmt.Sprintf("R2 refund %s of %d fen for decision %s (bill %s), request %s, asked by %s: %s", ref.RefundNo, ref.Amount, r.DecisionNo, b.BillNo, r.RequestID, asker, ref.Reason)
		if !created {
			a.Detail += " (repeated)"
		}
		return auditInsert(ctx, tx, a)
	})
	if err != nil {
		var he *httpx.Error
		switch {
		case errors.Is(err, refund.ErrInFlight):
			he = httpx.Wrap(http.StatusConflict, "REFUND_IN_FLIGHT", "another refund of this payment is in progress", err)
		case errors.Is(err, refund.ErrExceedsPaid):
			he = httpx.Wrap(http.StatusUnprocessableEntity, "AMOUNT_EXCEEDS_PAID", "the amount exceeds what was paid and not yet refunded", err)
		case errors.Is(err, refund.ErrInvalid):
			he = httpx.Wrap(http.StatusBadRequest, "INVALID_REQUEST", "invalid refund instruction", err)
		case errors.As(err, &he):
		default:
			return err
		}
		a := audit
		a.At, a.Result = c.cfg.Now(), "refused"
		a.Detail = fmt.Sprintf("decision %s, request %s: %s", r.DecisionNo, r.RequestID, he.Code)
		if aerr := auditInsert(ctx, c.cfg.DB, a); aerr != nil {
			return aerr
		}
		return he
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return ec.JSON(status, RefundJSON{RequestID: r.RequestID, DecisionNo: r.DecisionNo, RefundNo: ref.RefundNo, BillNo: ref.BillNo,
		Amount: ref.Amount, State: string(ref.State), RequestedBy: ref.RequestedBy})
}
