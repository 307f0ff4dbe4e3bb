package console

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/refund"
	"finepay/shared/bizdate"
	"finepay/shared/clip"
	"finepay/shared/money"
)

// maxReason bounds a refund reason or review note, in bytes.
const maxReason = 240

var (
	reDecisionNo  = regexp.MustCompile(`^[0-9]{15,20}$`)
	reInstruction = regexp.MustCompile(`^console:[A-Za-z0-9_-]{16,64}$`)
)

// windowRoute is the route of a refund started at the window for a payment of channel: R3 for a
// channel payment (a decision-notice QR bill paid by WeChat Pay, Alipay or UnionPay), R4 for an
// agency-bank payment; "" when the window cannot refund it.
func windowRoute(channel string) refund.Route {
	switch channel {
	case "wechat", "alipay", "unionpay":
		return refund.R3
	case "bank":
		return refund.R4
	}
	return ""
}

var channelNames = map[string]string{"wechat": "微信支付", "alipay": "支付宝", "unionpay": "银联", "bank": "代收银行"}

var stateNames = map[refund.State]string{
	refund.Requested: "待审核", refund.Reviewed: "已审核", refund.Applied: "已申请", refund.Approved: "财政已批准",
	refund.Sent: "退付中", refund.Unknown: "结果待查", refund.Refunded: "已退款", refund.Failed: "退款失败", refund.Rejected: "已驳回",
}

// paymentView is a payment of a bill as the bill page shows it.
type paymentView struct {
	ID             int64
	OrderNo        string
	Channel        string
	ChannelName    string
	ChannelTradeNo string
	Amount         money.Fen
	PaidAt         string
	Result         string
	Route          refund.Route
	Remaining      money.Fen // paid less refunded
	Refundable     bool      // a refund can be started now
	Why            string    // why not, when it cannot
	Instruction    string    // the instruction ID of the refund form
	FormAmount     string
	FormReason     string
	Refunds        []refundView
}

// refundView is a refund with its history.
type refundView struct {
	RefundNo    string
	BillNo      string
	Route       refund.Route
	Channel     string
	Amount      money.Fen
	Reason      string
	State       refund.State
	StateName   string
	RequestedBy string
	ReviewedBy  string
	CreatedAt   string
	History     []transitionView
	Own         bool // the user looking asked for it, so cannot review it
}

type transitionView struct {
	At, Actor, From, To, Detail string
}

// redReceiptView is the red-flush of a bill's receipt.
type redReceiptView struct {
	FlushedAt                     string
	ReceiptCode, ReceiptNo, Check string
}

func fmtTime(t time.Time) string { return t.In(bizdate.Location).Format(time.DateTime) }

// toRefundView shows r to user.
func toRefundView(r refund.Refund, user string) refundView {
	return refundView{RefundNo: r.RefundNo, BillNo: r.BillNo, Route: r.Route, Channel: channelNames[r.Channel], Amount: money.Fen(r.Amount),
		Reason: r.Reason, State: r.State, StateName: stateNames[r.State], RequestedBy: r.RequestedBy, ReviewedBy: r.ReviewedBy,
		CreatedAt: fmtTime(r.CreatedAt), Own: person(r.RequestedBy) == user}
}

type paymentRow struct {
	ID                                       int64
	BillNo, OrderNo, Channel, ChannelTradeNo string
	Amount                                   int64
	PaidAt                                   time.Time
	Result                                   string
}

const paymentColumns = `id, bill_no, order_no, channel, channel_trade_no, amount, paid_at, result`

func scanPayment(sc interface{ Scan(...any) error }) (paymentRow, error) {
	var p paymentRow
	err := sc.Scan(&p.ID, &p.BillNo, &p.OrderNo, &p.Channel, &p.ChannelTradeNo, &p.Amount, &p.PaidAt, &p.Result)
	return p, err
}

func paymentGet(ctx context.Context, q refund.Querier, id int64) (paymentRow, error) {
	return scanPayment(q.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = $1`, id))
}

func paymentsOfBill(ctx context.Context, q refund.Querier, billNo string) ([]paymentRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE bill_no = $1 AND result IN ('recorded', 'duplicate') ORDER BY id`, billNo)
	if err != nil {
		return nil, fmt.Errorf("console: payments of %s: %w", billNo, err)
	}
	defer rows.Close()
	var out []paymentRow
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, fmt.Errorf("console: payments of %s: %w", billNo, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// payments reads the payments of a bill with their refunds and the refund history, as user sees
// them.
func (c *Console) payments(ctx context.Context, billNo, user string) ([]paymentView, error) {
	rows, err := paymentsOfBill(ctx, c.cfg.DB, billNo)
	if err != nil {
		return nil, err
	}
	out := make([]paymentView, 0, len(rows))
	for _, p := range rows {
		v := paymentView{ID: p.ID, OrderNo: p.OrderNo, Channel: p.Channel, ChannelName: channelNames[p.Channel], ChannelTradeNo: p.ChannelTradeNo,
			Amount: money.Fen(p.Amount), PaidAt: fmtTime(p.PaidAt), Result: p.Result, Route: windowRoute(p.Channel)}
		if v.ChannelName == "" {
			v.ChannelName = p.Channel
		}
		refunded, flying := int64(0), false
		if c.cfg.Refunds != nil {
			refs, err := refund.ListByPayment(ctx, c.cfg.DB, p.ID)
			if err != nil {
				return nil, err
			}
			for _, r := range refs {
				rv := toRefundView(r, user)
				hist, err := refund.History(ctx, c.cfg.DB, r.RefundNo)
				if err != nil {
					return nil, err
				}
				for _, t := range hist {
					from := stateNames[t.From]
					if t.From == "" {
						from = "—"
					}
					rv.History = append(rv.History, transitionView{At: fmtTime(t.At), Actor: t.Actor, From: from, To: stateNames[t.To], Detail: t.Detail})
				}
				v.Refunds = append(v.Refunds, rv)
				switch {
				case r.State == refund.Refunded:
					refunded += r.Amount
				case !r.State.Final():
					flying = true
				}
			}
		}
		v.Remaining = money.Fen(p.Amount - refunded)
		switch {
		case c.cfg.Refunds == nil:
			v.Why = "本系统未开启退款"
		case v.Route == "":
			v.Why = "该渠道的缴款不能在窗口退款"
		case flying:
			v.Why = "已有退款正在办理"
		case v.Remaining <= 0:
			v.Why = "已全额退款"
		default:
			v.Refundable = true
			v.Instruction = "console:" + c.random(18)
			v.FormAmount = v.Remaining.Yuan()
		}
		out = append(out, v)
	}
	return out, nil
}

// redReceipt reads the red-flush of a bill's receipt, if any.
func (c *Console) redReceipt(ctx context.Context, billNo string) (*redReceiptView, error) {
	var at sql.NullTime
	var code, no, check string
	err := c.cfg.DB.QueryRowContext(ctx, `SELECT rc.red_flushed_at, COALESCE(rr.receipt_code, ''), COALESCE(rr.receipt_no, ''), COALESCE(rr.check_code, '')
		FROM receipts rc LEFT JOIN red_receipts rr ON rr.bill_no = rc.bill_no WHERE rc.bill_no = $1`, billNo).Scan(&at, &code, &no, &check)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !at.Valid && code == "") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("console: red receipt of %s: %w", billNo, err)
	}
	v := &redReceiptView{ReceiptCode: code, ReceiptNo: no, Check: check}
	if at.Valid {
		v.FlushedAt = fmtTime(at.Time)
	}
	return v, nil
}

// awaitingReview lists the refunds waiting for a clerk's review, as user sees them.
func (c *Console) awaitingReview(ctx context.Context, user string) ([]refundView, error) {
	if c.cfg.Refunds == nil {
		return nil, nil
	}
	refs, err := refund.ListAwaitingReview(ctx, c.cfg.DB, 50)
	if err != nil {
		return nil, err
	}
	out := make([]refundView, 0, len(refs))
	for _, r := range refs {
		out = append(out, toRefundView(r, user))
	}
	return out, nil
}

func (c *Console) audit(ec echo.Context, q execer, event, result, detail string) error {
	return auditInsert(ec.Request().Context(), q, AuditEntry{At: c.cfg.Now(), Actor: sessionOf(ec).Username, Event: event,
		Result: result, Source: ec.RealIP(), Detail: detail})
}

// search looks a decision number up: one bill opens its page, several are listed.
func (c *Console) search(ec echo.Context) error {
	ctx := ec.Request().Context()
	no := strings.TrimSpace(ec.QueryParam("decision_no"))
	if !reDecisionNo.MatchString(no) {
		if err := c.audit(ec, c.cfg.DB, "lookup", "refused", "invalid decision number"); err != nil {
			return err
		}
		return c.homePage(ec, http.StatusBadRequest, page{Search: no, SearchError: "处罚决定书编号应为15至20位数字。"})
	}
	rows, err := c.cfg.DB.QueryContext(ctx, `SELECT bill_no FROM bills WHERE decision_no = $1 ORDER BY created_at DESC, bill_no DESC LIMIT 20`, no)
	if err != nil {
		return err
	}
	var nos []string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return err
		}
		nos = append(nos, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	result := "success"
	if len(nos) == 0 {
		result = "not found"
	}
	if err := c.audit(ec, c.cfg.DB, "lookup", result, fmt.Sprintf("decision %s: %d bill(s) %s", no, len(nos), strings.Join(nos, " "))); err != nil {
		return err
	}
	switch len(nos) {
	case 0:
		return c.homePage(ec, http.StatusNotFound, page{Search: no, SearchError: "没有该处罚决定书的账单。"})
	case 1:
		return ec.Redirect(http.StatusSeeOther, "/console/bills/"+nos[0])
	}
	var found []bill.View
	for _, b := range nos {
		v, err := c.cfg.Bills.Get(ctx, b)
		if err != nil {
			return err
		}
		found = append(found, v)
	}
	return c.homePage(ec, http.StatusOK, page{Search: no, Found: found})
}

// startRefund starts a window refund (R3 or R4) of a payment from the bill page's form. The form's
// instruction ID is fixed when the page renders, so a second submit is the same refund.
func (c *Console) startRefund(ec echo.Context) error {
	s := sessionOf(ec)
	ctx := ec.Request().Context()
	billNo := ec.FormValue("bill_no")
	if c.cfg.Refunds == nil {
		return c.render(ec, http.StatusNotFound, "error", page{Title: "退款未开启", Error: "本系统未开启退款。", User: s.Username, CSRF: s.CSRF})
	}
	if !c.has(s.Username, RoleClerk) {
		return c.denied(ec, "refund.start", RoleClerk, fmt.Sprintf("payment %q of bill %q", clip.Text(ec.FormValue("payment_id"), 20), clip.Text(billNo, 40)))
	}
	form := refundForm{Instruction: ec.FormValue("instruction_id"), Amount: strings.TrimSpace(ec.FormValue("amount")),
		Reason: strings.TrimSpace(ec.FormValue("reason"))}
	form.PaymentID, _ = strconv.ParseInt(ec.FormValue("payment_id"), 10, 64)
	refused := func(status int, msg, detail string) error {
		if err := c.audit(ec, c.cfg.DB, "refund.start", "refused", fmt.Sprintf("payment %d of bill %s: %s", form.PaymentID, billNo, detail)); err != nil {
			return err
		}
		if billNo == "" {
			return c.render(ec, status, "error", page{Title: "退款未受理", Error: msg, User: s.Username, CSRF: s.CSRF})
		}
		return c.billPage(ec, status, billNo, page{Error: msg, RefundForm: form})
	}
	p, err := paymentGet(ctx, c.cfg.DB, form.PaymentID)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && p.BillNo != billNo) {
		return refused(http.StatusNotFound, "没有这笔缴款。", "no such payment")
	}
	if err != nil {
		return err
	}
	route := windowRoute(p.Channel)
	if route == "" || (p.Result != "recorded" && p.Result != "duplicate") {
		return refused(http.StatusUnprocessableEntity, "该笔缴款不能在窗口退款。", "channel "+p.Channel+", result "+p.Result)
	}
	amount, err := money.ParseYuan(form.Amount)
	if err != nil || amount <= 0 {
		return refused(http.StatusBadRequest, "退款金额应为大于0、以元为单位的金额,例如200.00。", "invalid amount "+strconv.Quote(form.Amount))
	}
	if form.Reason == "" || len(form.Reason) > maxReason {
		return refused(http.StatusBadRequest, "请填写退款原因(不超过80个汉字)。", "invalid reason")
	}
	if !reInstruction.MatchString(form.Instruction) {
		form.Instruction = ""
		return refused(http.StatusBadRequest, "表单已失效,请刷新页面后重试。", "invalid instruction ID")
	}
	var ref refund.Refund
	var created bool
	err = c.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		ref, created, err = c.cfg.Refunds.Start(ctx, tx, refund.Request{PaymentID: p.ID, Route: route, InstructionID: form.Instruction,
			Amount: int64(amount), Reason: form.Reason, RequestedBy: "console:" + s.Username})
		if err != nil {
			return err
		}
		if !created && ref.PaymentID != p.ID {
			return errInstructionReused
		}
		detail := fmt.Sprintf("%s refund %s of %s for payment %s (bill %s): %s", route, ref.RefundNo, money.Fen(ref.Amount).Yuan(), p.OrderNo, p.BillNo, ref.Reason)
		if !created {
			detail += " (repeated submit)"
		}
		return c.audit(ec, tx, "refund.start", "success", detail)
	})
	switch {
	case errors.Is(err, refund.ErrInFlight):
		return refused(http.StatusConflict, "该笔缴款已有退款正在办理,不能重复申请。", "refund in flight")
	case errors.Is(err, refund.ErrExceedsPaid):
		return refused(http.StatusUnprocessableEntity, "退款金额超过可退金额(已缴金额减去已退金额)。", "amount exceeds what is left to refund")
	case errors.Is(err, refund.ErrInvalid):
		return refused(http.StatusBadRequest, "退款申请无效,请检查金额和原因。", err.Error())
	case errors.Is(err, errInstructionReused):
		form.Instruction = ""
		return refused(http.StatusConflict, "表单已失效,请刷新页面后重试。", "instruction ID of another payment")
	case err != nil:
		return err
	}
	c.cfg.Logger.Info("console refund started", "user", s.Username, "refund_no", ref.RefundNo, "route", string(route), "created", created)
	return ec.Redirect(http.StatusSeeOther, "/console/bills/"+p.BillNo+"?refund="+ref.RefundNo)
}

var errInstructionReused = errors.New("console: instruction ID of another payment")

// refundForm is what a refund form held, kept when it is shown again with an error.
type refundForm struct {
	PaymentID   int64
	Instruction string
	Amount      string
	Reason      string
}

// reviewRefund records a clerk's review of a refund waiting for one. The user must have the
// reviewer role and must not be the person who asked (in the console or at the window
// platform); the refund store refuses the same actor again too.
func (c *Console) reviewRefund(ec echo.Context) error {
	s := sessionOf(ec)
	ctx := ec.Request().Context()
	no := ec.Param("refund_no")
	if c.cfg.Refunds == nil {
		return c.render(ec, http.StatusNotFound, "error", page{Title: "退款未开启", Error: "本系统未开启退款。", User: s.Username, CSRF: s.CSRF})
	}
	decision, note := ec.FormValue("decision"), strings.TrimSpace(ec.FormValue("note"))
	refused := func(status int, msg, detail string) error {
		if err := c.audit(ec, c.cfg.DB, "refund.review", "refused", "refund "+no+": "+detail); err != nil {
			return err
		}
		return c.homePage(ec, status, page{Error: msg})
	}
	if !c.has(s.Username, RoleReviewer) {
		return c.denied(ec, "refund.review", RoleReviewer, "refund "+clip.Text(no, 40))
	}
	if decision != "approve" && decision != "reject" {
		return refused(http.StatusBadRequest, "请选择通过或驳回。", "no decision")
	}
	if len(note) > maxReason || (decision == "reject" && note == "") {
		return refused(http.StatusBadRequest, "驳回时请填写审核意见(不超过80个汉字)。", "invalid note")
	}
	approve := decision == "approve"
	ref, err := refund.Get(ctx, c.cfg.DB, no)
	if err == nil && person(ref.RequestedBy) == s.Username {
		err = refund.ErrSameReviewer
	}
	if err == nil {
		ref, err = c.cfg.Refunds.Review(ctx, no, "console:"+s.Username, approve, note, func(ctx context.Context, tx *sql.Tx, _ refund.Refund) error {
			return c.audit(ec, tx, "refund.review", "success", fmt.Sprintf("refund %s %s: %s", no, decision, note))
		})
	}
	switch {
	case errors.Is(err, refund.ErrSameReviewer):
		return refused(http.StatusForbidden, "不能审核自己申请的退款,请由另一位人员审核。", "reviewer is the requester "+ref.RequestedBy)
	case errors.Is(err, refund.ErrNotFound):
		return refused(http.StatusNotFound, "没有这笔退款。", "no such refund")
	case errors.Is(err, refund.ErrTransition):
		return refused(http.StatusConflict, "该退款已审核或不在待审核状态。", "not waiting for review")
	case err != nil:
		return err
	}
	c.cfg.Logger.Info("console refund reviewed", "user", s.Username, "refund_no", no, "decision", decision)
	return ec.Redirect(http.StatusSeeOther, "/console/bills/"+ref.BillNo+"?refund="+ref.RefundNo)
}
