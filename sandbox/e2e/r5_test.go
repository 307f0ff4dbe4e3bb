package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestR5DuplicatePaymentRefundedAutomatically: the payer opens two channel orders for one bill
// (WeChat Pay in one tab, Alipay in another) and pays both. The first confirmation to reach the
// core pays the bill; the second is a duplicate of the same violation, recorded and refunded
// without anyone asking: the core applies to the e-receipt platform, waits for the non-tax
// review, instructs the gateway through the ferry, the gateway refunds at the channel, the result
// crosses back, and the non-tax system and the unified payment platform are told. The bill's
// receipt stays as it is: the payment that paid it was not refunded.
func TestR5DuplicatePaymentRefundedAutomatically(t *testing.T) {
	sys := startSystem(t, backends[0])
	ctx := browser(t)
	bill := createBill(t, ctx, sys)
	openCashier(t, ctx, bill)

	links := map[string]string{}
	for _, channel := range []string{"wechat", "alipay"} {
		err := chromedp.Do(ctx, chromedp.Navigate(bill.qrURL), chromedp.WaitVisible(chromedp.ID("pay-"+channel)),
			chromedp.Click(chromedp.ID("pay-"+channel)), chromedp.WaitVisible(chromedp.ID("sandbox-pay")))
		if err != nil {
			t.Fatalf("open the %s order: %v", channel, err)
		}
		href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("sandbox-pay"), "href"))
		if err != nil || href.Value == "" {
			t.Fatalf("%s simulator link: %v", channel, err)
		}
		links[channel] = href.Value
	}
	for _, channel := range []string{"alipay", "wechat"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(links[channel]), chromedp.WaitVisible(chromedp.ID("pay")),
			chromedp.Click(chromedp.ID("pay")), chromedp.WaitVisible(chromedp.ID("paid"))); err != nil {
			t.Fatalf("pay the %s order: %v", channel, err)
		}
	}
	checkResult(t, ctx, sys, bill)

	type order struct {
		OutTradeNo string `json:"out_trade_no"`
		Refunded   int64  `json:"refunded"`
	}
	var state struct {
		WeChat   []order `json:"wechat_orders"`
		Alipay   []order `json:"alipay_orders"`
		Outcomes []struct {
			Party  string `json:"party"`
			Status string `json:"status"`
			Route  string `json:"route"`
			Amount int64  `json:"amount"`
		} `json:"refund_outcomes"`
		Applications []struct {
			Route  string `json:"route"`
			Amount int64  `json:"amount"`
		} `json:"refund_applications"`
		Receipts []struct {
			ReceiptNo string `json:"receipt_no"`
		} `json:"receipts"`
	}
	eventually(t, "the duplicate to be refunded and the parties told", 90*time.Second, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
		return len(state.Outcomes) == 2
	})
	if len(state.Applications) != 1 || state.Applications[0].Route != "R5" || state.Applications[0].Amount != int64(bill.total) {
		t.Errorf("refund applications %+v", state.Applications)
	}
	for _, o := range state.Outcomes {
		if o.Status != "refunded" || o.Route != "R5" || o.Amount != int64(bill.total) || (o.Party != "nontax" && o.Party != "unified") {
			t.Errorf("outcome %+v", o)
		}
	}
	// Exactly one of the two orders got its money back, in full.
	var refunded []string
	for _, o := range append(state.WeChat, state.Alipay...) {
		if o.Refunded != 0 {
			refunded = append(refunded, o.OutTradeNo)
			if o.Refunded != int64(bill.total) {
				t.Errorf("order %s refunded %d, want %d", o.OutTradeNo, o.Refunded, bill.total)
			}
		}
	}
	if len(refunded) != 1 {
		t.Errorf("orders refunded: %v, want exactly one", refunded)
	}
	if len(state.Receipts) != 1 {
		t.Errorf("receipts %+v: want the one of the bill", state.Receipts)
	}
	if body := getText(t, sys.CoreURL+"/metrics"); !strings.Contains(body, `core_payments_recorded_total{result="duplicate"} 1`) {
		t.Errorf("core metrics lack one duplicate payment")
	}
}
