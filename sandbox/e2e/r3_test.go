package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"finepay/sandbox/launch"
)

// TestR3QRPaymentRefundedAtTheWindow: a decision-notice QR payment (WeChat Pay, on SQLite) is
// refunded at the window. The clerk finds the payment by decision number in the console and
// starts the refund; a second person, the reviewer, approves it in the console; the core applies
// to the e-receipt platform, the non-tax system approves, the gateway calls WeChat Pay, whose
// first answer never comes (the refund is made at the channel all the same). The refund ends
// refunded with exactly one refund at the channel, the receipt is red-flushed, and the non-tax
// system and the window platform are told.
func TestR3QRPaymentRefundedAtTheWindow(t *testing.T) {
	sys := startSystem(t, backends[1])
	var mode map[string]any
	postJSON(t, sys.SandboxURL+"/_sandbox/wechat/refund-mode", map[string]string{"mode": "timeout"}, &mode)
	ctx := browser(t)
	bill := createBill(t, ctx, sys)
	openCashier(t, ctx, bill)
	payInSimulator(t, ctx, "wechat")
	receiptNo := checkResult(t, ctx, sys, bill)

	// The clerk (still logged in from creating the bill) finds the payment and starts the refund.
	err := chromedp.Do(ctx,
		chromedp.Navigate(sys.CoreURL+"/console"),
		chromedp.WaitVisible(chromedp.ID("search-decision-no")),
		chromedp.SetValue(chromedp.ID("search-decision-no"), bill.decisionNo),
		chromedp.Click(chromedp.ID("search")),
		chromedp.WaitVisible(chromedp.CSS(`form.refund-form`)),
		chromedp.SetValue(chromedp.CSS(`form.refund-form input[name=reason]`), "处罚决定变更"),
		chromedp.Click(chromedp.CSS(`form.refund-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`div.refund`)),
	)
	if err != nil {
		t.Fatalf("the clerk starts the refund: %v", err)
	}
	// The clerk cannot approve it: the review is someone else's.
	consoleLogin(t, ctx, sys, "reviewer", "Reviewer-e2e-Pass1")
	err = chromedp.Do(ctx,
		chromedp.Navigate(sys.CoreURL+"/console"),
		chromedp.WaitVisible(chromedp.CSS(`#awaiting-review form.review-form`)),
		chromedp.SetValue(chromedp.CSS(`#awaiting-review form.review-form input[name=note]`), "同意"),
		chromedp.Click(chromedp.CSS(`#awaiting-review form.review-form button[value=approve]`)),
		chromedp.WaitVisible(chromedp.CSS(`div.refund`)),
	)
	if err != nil {
		t.Fatalf("the reviewer approves: %v", err)
	}

	var state struct {
		WeChat []struct {
			Refunded int64 `json:"refunded"`
			Refunds  []struct {
				OutRefundNo string `json:"out_refund_no"`
			} `json:"refunds"`
		} `json:"wechat_orders"`
		Outcomes []struct {
			Party  string `json:"party"`
			Status string `json:"status"`
			Route  string `json:"route"`
		} `json:"refund_outcomes"`
		Receipts []struct {
			ReceiptNo  string `json:"receipt_no"`
			RedNo      string `json:"red_no"`
			OriginalNo string `json:"original_no"`
		} `json:"receipts"`
	}
	eventually(t, "the refund to end and the parties told", 2*time.Minute, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
		return len(state.Outcomes) == 2 && len(state.Receipts) == 2
	})
	for _, o := range state.Outcomes {
		if o.Status != "refunded" || o.Route != "R3" || (o.Party != "nontax" && o.Party != "window") {
			t.Errorf("outcome %+v", o)
		}
	}
	if len(state.WeChat) != 1 || state.WeChat[0].Refunded != int64(bill.total) || len(state.WeChat[0].Refunds) != 1 {
		t.Errorf("wechat orders %+v: want one refund of %d", state.WeChat, bill.total)
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
	// The bill's page in the console shows the refund done and the receipt red-flushed.
	err = chromedp.Do(ctx, chromedp.Navigate(sys.CoreURL+"/console"), chromedp.WaitVisible(chromedp.ID("search-decision-no")),
		chromedp.SetValue(chromedp.ID("search-decision-no"), bill.decisionNo), chromedp.Click(chromedp.ID("search")),
		chromedp.WaitVisible(chromedp.ID("red-flush")))
	if err != nil {
		t.Fatalf("the bill page after the refund: %v", err)
	}
	if got := text(t, ctx, "red-flush"); !strings.Contains(got, "已红冲") {
		t.Errorf("the bill page shows the red-flush as %q", got)
	}
	// The payer's result page shows the money back.
	if len(state.WeChat) != 1 || len(state.WeChat[0].Refunds) != 1 {
		return
	}
	refundNo := state.WeChat[0].Refunds[0].OutRefundNo
	err = chromedp.Do(ctx, chromedp.Navigate(sys.GatewayURL+"/q/"+bill.token+"/result"),
		chromedp.WaitVisible(chromedp.ID("refund-status-"+refundNo)))
	if err != nil {
		t.Fatalf("the payer's result page after the refund: %v", err)
	}
	if got := text(t, ctx, "refund-status-"+refundNo); !strings.HasPrefix(got, "已退款") {
		t.Errorf("the payer's result page shows the refund as %q", got)
	}
}

// consoleLogin logs out whoever is logged in and logs user in.
func consoleLogin(t *testing.T, ctx context.Context, sys *launch.System, user, password string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(sys.CoreURL+"/console"),
		chromedp.WaitVisible(chromedp.ID("logout")),
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)),
		chromedp.SetValue(chromedp.CSS(`input[name=username]`), user),
		chromedp.SetValue(chromedp.CSS(`input[name=password]`), password),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.ID("search-decision-no")),
	)
	if err != nil {
		t.Fatalf("log in as %s: %v", user, err)
	}
}
