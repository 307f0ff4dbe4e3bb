package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"finepay/sandbox/launch"
	"finepay/shared/money"
)

// windowAnswer is the window simulator's answer to POST /_sandbox/window/refunds.
type windowAnswer struct {
	Core struct {
		Status int `json:"status"`
		Body   struct {
			RefundNo    string `json:"refund_no"`
			State       string `json:"state"`
			RequestedBy string `json:"requested_by"`
		} `json:"answer"`
	} `json:"core"`
}

// windowInstructs has the window platform simulator send the core an R2 refund instruction of
// the whole amount, asked for by the window user asker.
func windowInstructs(t *testing.T, sys *launch.System, decisionNo string, amount money.Fen, reason, requestID, asker string) windowAnswer {
	t.Helper()
	var a windowAnswer
	postJSON(t, sys.SandboxURL+"/_sandbox/window/refunds", map[string]any{"decision_no": decisionNo, "amount": int64(amount),
		"reason": reason, "request_id": requestID, "requested_by": asker}, &a)
	return a
}

// reviewInConsole has the user logged in review a refund from the list of refunds awaiting
// review on the console's home page: decision "approve" or "reject".
func reviewInConsole(t *testing.T, ctx context.Context, sys *launch.System, refundNo, decision, note string) {
	t.Helper()
	row := "#awaiting-" + refundNo
	err := chromedp.Do(ctx,
		chromedp.Navigate(sys.CoreURL+"/console"),
		chromedp.WaitVisible(chromedp.CSS(row+" form.review-form")),
		chromedp.SetValue(chromedp.CSS(row+" form.review-form input[name=note]"), note),
		chromedp.Click(chromedp.CSS(row+" form.review-form button[value="+decision+"]")),
		chromedp.WaitVisible(chromedp.ID("refund-"+refundNo)),
	)
	if err != nil {
		t.Fatalf("%s refund %s in the console: %v", decision, refundNo, err)
	}
}

// consoleRefund opens a decision's bill page in the console and returns the state of the refund
// there and whether the page shows the receipt red-flushed.
func consoleRefund(t *testing.T, ctx context.Context, sys *launch.System, decisionNo, refundNo string) (state string, redFlushed bool) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(sys.CoreURL+"/console/search?decision_no="+decisionNo),
		chromedp.WaitVisible(chromedp.ID("refund-"+refundNo)),
	)
	if err != nil {
		t.Fatalf("the bill page of decision %s: %v", decisionNo, err)
	}
	st, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#refund-"+refundNo+" span.state"), "data-state"))
	if err != nil || !st.Exists {
		t.Fatalf("the state of refund %s: %v", refundNo, err)
	}
	redFlushed, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const e = document.getElementById("red-flush"); return e !== null && e.textContent.includes("已红冲") })()`))
	if err != nil {
		t.Fatalf("the red-flush of decision %s: %v", decisionNo, err)
	}
	return st.Value, redFlushed
}

// refundState is what the sandbox holds of refunds.
type refundState struct {
	WeChat []struct {
		Refunded int64             `json:"refunded"`
		Refunds  []json.RawMessage `json:"refunds"`
	} `json:"wechat_orders"`
	Alipay []struct {
		Refunded int64             `json:"refunded"`
		Refunds  []json.RawMessage `json:"refunds"`
	} `json:"alipay_orders"`
	UnionPay []struct {
		TxnAmt   int64             `json:"txn_amt"`
		Refunded int64             `json:"refunded"`
		Refunds  []json.RawMessage `json:"refunds"`
	} `json:"unionpay_orders"`
	Applications []struct {
		RefundNo string `json:"refund_no"`
		Decision string `json:"decision"`
	} `json:"refund_applications"`
	Outcomes []struct {
		Party    string `json:"party"`
		Status   string `json:"status"`
		Route    string `json:"route"`
		RefundNo string `json:"refund_no"`
		Amount   int64  `json:"amount"`
	} `json:"refund_outcomes"`
	Receipts []struct {
		ReceiptNo  string `json:"receipt_no"`
		RedNo      string `json:"red_no"`
		OriginalNo string `json:"original_no"`
	} `json:"receipts"`
	Instructions []struct {
		RequestID string `json:"request_id"`
		Status    int    `json:"status"`
		RefundNo  string `json:"refund_no"`
	} `json:"window_refund_instructions"`
}

// outcomes returns the parties told the outcome of refundNo, party → status.
func (s refundState) outcomes(t *testing.T, refundNo string, amount money.Fen) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range s.Outcomes {
		if o.RefundNo != refundNo {
			continue
		}
		if o.Route != "R2" || o.Amount != int64(amount) {
			t.Errorf("outcome of %s %+v: want route R2, amount %d", refundNo, o, amount)
		}
		out[o.Party] = o.Status
	}
	return out
}

// TestR2WindowRefundAfterClerkReview: a decision-notice QR payment (UnionPay, on PostgreSQL) is
// refunded on the window platform's instruction. A window user (the clerk) asks at the
// platform, which instructs the core through the window API with its token (the instruction
// sent twice is one refund); the console lists the refund waiting for review, and the clerk, who
// asked, is not offered the review; the reviewer approves it in the console. The core applies
// to the e-receipt platform, the non-tax system approves, the gateway refunds at UnionPay: the
// money is back once, the refund ends refunded, the receipt is red-flushed, and the non-tax
// system and the window platform are told.
func TestR2WindowRefundAfterClerkReview(t *testing.T) {
	sys := startSystem(t, backends[0])
	ctx := browser(t)
	bill := createBill(t, ctx, sys)
	openCashier(t, ctx, bill)
	payInSimulator(t, ctx, "unionpay")
	receiptNo := checkResult(t, ctx, sys, bill)

	requestID := "WIN-" + bill.decisionNo
	var refundNo string
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		a := windowInstructs(t, sys, bill.decisionNo, bill.total, "撤销处罚决定", requestID, "clerk")
		if a.Core.Status != want || a.Core.Body.RefundNo == "" || a.Core.Body.State != "requested" || a.Core.Body.RequestedBy != "window:clerk" ||
			(refundNo != "" && a.Core.Body.RefundNo != refundNo) {
			t.Fatalf("instruction %d: core answered %d %+v", i, a.Core.Status, a.Core.Body)
		}
		refundNo = a.Core.Body.RefundNo
	}

	// The clerk (logged in since creating the bill) sees it waiting, without a review form.
	err := chromedp.Do(ctx, chromedp.Navigate(sys.CoreURL+"/console"), chromedp.WaitVisible(chromedp.ID("awaiting-"+refundNo)))
	if err != nil {
		t.Fatalf("the console's list of refunds awaiting review: %v", err)
	}
	row, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.ID("awaiting-"+refundNo)))
	if err != nil {
		t.Fatalf("the console's list of refunds awaiting review: %v", err)
	}
	if !strings.Contains(row, "R2") || !strings.Contains(row, "window:clerk") || strings.Contains(row, "review-form") {
		t.Errorf("awaiting row %s: want R2, asked by window:clerk, no review form for the asker", row)
	}
	consoleLogin(t, ctx, sys, "reviewer", "Reviewer-e2e-Pass1")
	reviewInConsole(t, ctx, sys, refundNo, "approve", "核实无误")

	var state refundState
	eventually(t, "the refund to end and the parties told", 2*time.Minute, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
		return len(state.outcomes(t, refundNo, bill.total)) == 2 && len(state.Receipts) == 2
	})
	if got := state.outcomes(t, refundNo, bill.total); got["nontax"] != "refunded" || got["window"] != "refunded" {
		t.Errorf("outcomes %v: want nontax and window told refunded", got)
	}
	if len(state.UnionPay) != 1 || state.UnionPay[0].Refunded != int64(bill.total) || len(state.UnionPay[0].Refunds) != 1 {
		t.Errorf("unionpay orders %+v: want one refund of %d", state.UnionPay, bill.total)
	}
	red := 0
	for _, r := range state.Receipts {
		if r.OriginalNo == receiptNo {
			red++
		}
	}
	if red != 1 {
		t.Errorf("receipts %+v: want one red receipt of %s", state.Receipts, receiptNo)
	}
	if n := len(state.Instructions); n != 2 || state.Instructions[0].RefundNo != refundNo || state.Instructions[1].Status != http.StatusOK {
		t.Errorf("window instructions %+v", state.Instructions)
	}
	if st, flushed := consoleRefund(t, ctx, sys, bill.decisionNo, refundNo); st != "refunded" || !flushed {
		t.Errorf("the console shows the refund %s, red-flushed %v", st, flushed)
	}
	// The refund is final: the channel was asked once, however long one waits.
	getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
	if len(state.UnionPay[0].Refunds) != 1 || state.UnionPay[0].Refunded != int64(bill.total) {
		t.Errorf("unionpay refunds after the end %+v", state.UnionPay[0])
	}
}

// TestR2RejectedReviewRefundsNothing: two paid decision-notice bills (WeChat Pay and Alipay, on
// SQLite, one system) get R2 refund instructions from the window platform. The reviewer rejects
// the first in the console; approves the second, whose reason the non-tax system rejects. Each
// ends rejected, with the non-tax system and the window platform told so, nothing refunded at
// the channel and the receipt left as it was.
func TestR2RejectedReviewRefundsNothing(t *testing.T) {
	sys := startSystem(t, backends[1])
	ctx := browser(t)
	type refundCase struct {
		name, channel, reason, review string
		bill                          p2Bill
		receiptNo, refundNo           string
	}
	cases := []*refundCase{
		{name: "rejected in the console", channel: "wechat", reason: "当事人申请退款", review: "reject"},
		{name: "rejected by non-tax", channel: "alipay", reason: "reject: 决定未撤销", review: "approve"},
	}
	for i, c := range cases {
		if i > 0 {
			consoleLogout(t, ctx, sys) // createBill logs the clerk in
		}
		c.bill = createBill(t, ctx, sys)
		openCashier(t, ctx, c.bill)
		payInSimulator(t, ctx, c.channel)
		c.receiptNo = checkResult(t, ctx, sys, c.bill)
		a := windowInstructs(t, sys, c.bill.decisionNo, c.bill.total, c.reason, "", "clerk")
		if a.Core.Status != http.StatusCreated || a.Core.Body.State != "requested" {
			t.Fatalf("%s: instruction: core answered %d %+v", c.name, a.Core.Status, a.Core.Body)
		}
		c.refundNo = a.Core.Body.RefundNo
	}
	consoleLogin(t, ctx, sys, "reviewer", "Reviewer-e2e-Pass1")
	for _, c := range cases {
		reviewInConsole(t, ctx, sys, c.refundNo, c.review, "材料不全")
	}

	var state refundState
	eventually(t, "both refunds to end and the parties told", 2*time.Minute, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
		for _, c := range cases {
			if len(state.outcomes(t, c.refundNo, c.bill.total)) != 2 {
				return false
			}
		}
		return true
	})
	applied := map[string]string{}
	for _, a := range state.Applications {
		applied[a.RefundNo] = a.Decision
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := state.outcomes(t, c.refundNo, c.bill.total); got["nontax"] != "rejected" || got["window"] != "rejected" {
				t.Errorf("outcomes %v: want nontax and window told rejected", got)
			}
			if d, ok := applied[c.refundNo]; (c.review == "reject") == ok || (ok && d != "rejected") {
				t.Errorf("application decision %q (applied %v)", d, ok)
			}
			if st, flushed := consoleRefund(t, ctx, sys, c.bill.decisionNo, c.refundNo); st != "rejected" || flushed {
				t.Errorf("the console shows the refund %s, red-flushed %v", st, flushed)
			}
		})
	}
	if len(state.WeChat) != 1 || state.WeChat[0].Refunded != 0 || len(state.WeChat[0].Refunds) != 0 ||
		len(state.Alipay) != 1 || state.Alipay[0].Refunded != 0 || len(state.Alipay[0].Refunds) != 0 {
		t.Errorf("channel refunds: wechat %+v, alipay %+v; want none", state.WeChat, state.Alipay)
	}
	for _, r := range state.Receipts {
		if r.RedNo != "" || r.OriginalNo != "" {
			t.Errorf("receipt %+v: a receipt was red-flushed", r)
		}
	}
	if len(state.Receipts) != 2 {
		t.Errorf("receipts %+v: want the two bills' receipts only", state.Receipts)
	}
}

// consoleLogout logs out whoever is logged in to the console.
func consoleLogout(t *testing.T, ctx context.Context, sys *launch.System) {
	t.Helper()
	err := chromedp.Do(ctx, chromedp.Navigate(sys.CoreURL+"/console"), chromedp.WaitVisible(chromedp.ID("logout")),
		chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)))
	if err != nil {
		t.Fatalf("log out of the console: %v", err)
	}
}
