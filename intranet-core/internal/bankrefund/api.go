package bankrefund

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/intranet-core/internal/partnerin"
	"finepay/intranet-core/internal/refund"
	"finepay/shared/httpx"
)

// Error codes of POST /partner/v1/bank/refund-results (besides the envelope's, docs/partners.md).
const (
	CodeRefundNotFound      = "REFUND_NOT_FOUND"
	CodeRefundMismatch      = "REFUND_MISMATCH"
	CodeRefundNotInstructed = "REFUND_NOT_INSTRUCTED"
	CodeResultConflict      = "RESULT_CONFLICT"
	CodeAmountMismatch      = "AMOUNT_MISMATCH"
	CodeCallerNotAllowed    = "CALLER_NOT_ALLOWED"
)

// MaxAmount bounds a refunded amount (the bank payments' bound, 2,000,000 yuan).
const MaxAmount = 200_000_000

var (
	reRefundNo     = regexp.MustCompile(`^[A-Za-z0-9]{8,40}$`)
	reBankCode     = regexp.MustCompile(`^[0-9]{3,12}$`)
	reSerial       = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)
	reBankRefundNo = regexp.MustCompile(`^[A-Za-z0-9]{1,40}$`)
)

// Validate names every field of a pushed result that fails.
func (r Result) Validate() error { return r.validate(true) }

// validate checks a result; a pushed one must be final (success or failed), a queried one may
// be processing.
func (r Result) validate(push bool) error {
	p := partnerin.Problems{}
	p.Add(!reRefundNo.MatchString(r.RefundNo), "refund_no", "must be 8 to 40 letters or digits")
	p.Add(!reBankCode.MatchString(r.BankCode), "bank_code", "must be 3 to 12 digits")
	p.Add(!reSerial.MatchString(r.BankSerial), "bank_serial", "must be 1 to 32 letters or digits")
	switch r.Status {
	case StatusSuccess:
		p.Add(!reBankRefundNo.MatchString(r.BankRefundNo), "bank_refund_no", "must be 1 to 40 letters or digits")
		p.Add(r.RefundedAmount <= 0 || r.RefundedAmount > MaxAmount, "refunded_amount", "must be 1 to 200000000 fen")
	case StatusFailed, StatusProcessing:
		p.Add(r.Status == StatusProcessing && push, "status", "must be success or failed")
		p.Add(r.BankRefundNo != "" && !reBankRefundNo.MatchString(r.BankRefundNo), "bank_refund_no", "must be empty or 1 to 40 letters or digits")
		p.Add(r.RefundedAmount != 0, "refunded_amount", "must be 0 unless the refund succeeded")
	default:
		if push {
			p.Add(true, "status", "must be success or failed")
		} else {
			p.Add(true, "status", "must be processing, success or failed")
		}
	}
	if _, err := time.Parse(time.RFC3339, r.At); err != nil {
		p.Add(true, "at", "must be an RFC 3339 time such as 2026-11-27T10:20:00+08:00")
	}
	p.Add(len(r.Detail) > 200, "detail", "must be at most 200 bytes")
	return p.Err()
}

// ResultAnswer answers a pushed result.
type ResultAnswer struct {
	Status   string `json:"status"` // accepted
	RefundNo string `json:"refund_no"`
	State    string `json:"state"` // the refund's state now
	// Repeated is true when the refund already recorded this result; nothing changed.
	Repeated bool `json:"repeated"`
}

// TakeResult applies a result the adapter pushed. A result that does not fit its refund is
// refused with its code and recorded; nothing changes.
func (s *Service) TakeResult(ctx context.Context, caller string, res Result) (ResultAnswer, error) {
	if !s.callers[caller] {
		return ResultAnswer{}, httpx.NewError(http.StatusForbidden, CodeCallerNotAllowed, "only the finance adapter reports bank refund results")
	}
	if err := res.Validate(); err != nil {
		return ResultAnswer{}, err
	}
	var repeated bool
	err := s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		repeated, err = s.apply(ctx, tx, "push", res)
		return err
	})
	var rf *refusal
	if errors.As(err, &rf) {
		s.record(ctx, s.cfg.DB, "push", res, "refused", rf.code, rf.msg)
		s.cfg.Logger.Warn("bank refund result refused", "caller", caller, "refund_no", res.RefundNo, "status", res.Status,
			"amount", res.RefundedAmount, "code", rf.code, "err", rf.msg)
		return ResultAnswer{}, httpx.NewError(rf.status, rf.code, rf.msg)
	}
	if err != nil {
		return ResultAnswer{}, err
	}
	ref, err := refund.Get(ctx, s.cfg.DB, res.RefundNo)
	if err != nil {
		return ResultAnswer{}, err
	}
	s.cfg.Logger.Info("bank refund result taken", "caller", caller, "refund_no", res.RefundNo, "status", res.Status,
		"bank_refund_no", res.BankRefundNo, "state", ref.State, "repeated", repeated)
	return ResultAnswer{Status: "accepted", RefundNo: res.RefundNo, State: string(ref.State), Repeated: repeated}, nil
}

// Routes mounts the adapter's refund results on g (/partner/v1/bank, behind partnerin.Guard):
//
//	POST /refund-results  a bank's result of a refund instruction (flow R4)
func Routes(g *echo.Group, s *Service) {
	g.POST("/refund-results", func(c echo.Context) error {
		var res Result
		if err := partnerin.Decode(c, &res); err != nil {
			return err
		}
		a, err := s.TakeResult(c.Request().Context(), partnerin.CallerOf(c), res)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, a)
	})
}
