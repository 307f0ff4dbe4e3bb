package cashier

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
	"finepay/shared/money"
)

type resultPage struct {
	bill.Outcome
	PaidAt string
	Token  string
	// IssuedDate is the receipt's issue date (Asia/Shanghai), an element of verification.
	IssuedDate string
	Refunds    []refundView
}

// refundView is a refund of the payment as the payer sees it.
type refundView struct {
	RefundNo string
	Amount   money.Fen
	Status   string // in words
	Final    bool
	At       string // when the money went back (Asia/Shanghai), once it did
}

// refundWords says a gateway refund status in the payer's words.
var refundWords = map[string]string{
	store.RefundPending:    "退款处理中",
	store.RefundProcessing: "退款处理中",
	store.RefundUnknown:    "退款处理中",
	store.RefundSuccess:    "已退款，款项已退回原支付账户",
	store.RefundFailed:     "退款未成功，请联系缴款所在地交警部门",
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
	for _, r := range out.Refunds {
		v := refundView{RefundNo: r.RefundNo, Amount: r.Amount, Status: refundWords[r.Status],
			Final: r.Status == store.RefundSuccess || r.Status == store.RefundFailed}
		if r.Status == store.RefundSuccess {
			v.Amount = r.RefundedAmount
			if !r.RefundedAt.IsZero() {
				v.At = r.RefundedAt.In(bizdate.Location).Format("2006-01-02 15:04:05")
			}
		}
		rp.Refunds = append(rp.Refunds, v)
	}
	if out.Receipt != nil {
		rp.IssuedDate = bizdate.Of(out.Receipt.IssuedAt).String()
	}
	return h.render(c, http.StatusOK, "result", page{Title: "缴款结果", Poll: pl, Data: rp})
}
