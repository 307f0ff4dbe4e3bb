package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"finepay/shared/money"
)

// TestP2LateFeeDay20ViaDecisionLookup is flow P2 for a decision served 20 days ago, five days
// past the 15 days of grace: 3% of the fine a day, 15% in all. The payer has no QR code and
// finds the bill on the gateway's lookup page by the decision number and the plate's last four
// characters; the cashier page shows the fine, the late fee and their total; the WeChat Pay
// order in the simulator is for the total; the payment reaches the non-tax system with the fine
// and the late fee as separate items of the form and of the report. PostgreSQL with Redis.
func TestP2LateFeeDay20ViaDecisionLookup(t *testing.T) {
	sys := startSystem(t, backends[0])
	ctx := browser(t)
	bill := createBill(t, ctx, sys) // served 20 days ago, fine ¥200.00
	if bill.fine != 20000 || bill.lateFee != 3000 || bill.total != 23000 {
		t.Fatalf("day 20: fine %s late fee %s total %s, want ¥200.00 + ¥30.00 (15%%) = ¥230.00", bill.fine, bill.lateFee, bill.total)
	}

	// The lookup page leads to the bill's cashier page.
	err := chromedp.Do(ctx,
		chromedp.Navigate(sys.GatewayURL+"/lookup"),
		chromedp.WaitVisible(chromedp.ID("lookup-decision-no")),
		chromedp.SetValue(chromedp.ID("lookup-decision-no"), bill.decisionNo),
		chromedp.SetValue(chromedp.ID("lookup-plate-tail"), "2345"),
		chromedp.Click(chromedp.ID("lookup-submit")),
		chromedp.WaitVisible(chromedp.ID("total")),
	)
	if err != nil {
		t.Fatalf("lookup by decision number: %v", err)
	}
	here, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if here != bill.qrURL {
		t.Fatalf("the lookup led to %s, want the bill's cashier page %s", here, bill.qrURL)
	}
	if got := text(t, ctx, "late-note"); !strings.Contains(got, "5 天") {
		t.Errorf("late note %q: want 5 days late", got)
	}
	openCashier(t, ctx, bill) // fine, late fee and total shown
	payInSimulator(t, ctx, "wechat")

	var state struct {
		WeChatOrders []struct {
			OutTradeNo string `json:"out_trade_no"`
			Total      int64  `json:"total"`
		} `json:"wechat_orders"`
		Forms []struct {
			FormNo     string `json:"form_no"`
			DecisionNo string `json:"decision_no"`
			Items      []item `json:"items"`
		} `json:"forms"`
		Payments []struct {
			FormNo  string `json:"form_no"`
			Amount  int64  `json:"amount"`
			Fine    int64  `json:"fine"`
			LateFee int64  `json:"late_fee"`
			Items   []item `json:"items"`
		} `json:"payments"`
	}
	getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
	if len(state.WeChatOrders) != 1 || state.WeChatOrders[0].Total != int64(bill.total) {
		t.Fatalf("WeChat orders %+v: want one of %d fen (fine + late fee)", state.WeChatOrders, bill.total)
	}

	checkResult(t, ctx, sys, bill) // the result page shows ¥230.00 and the e-receipt
	eventually(t, "the non-tax payment report", 30*time.Second, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
		return len(state.Payments) == 1
	})
	want := []item{{"fine", "103050101", int64(bill.fine)}, {"late_fee", "103050102", int64(bill.lateFee)}}
	p := state.Payments[0]
	if p.Amount != int64(bill.total) || p.Fine != int64(bill.fine) || p.LateFee != int64(bill.lateFee) || !sameItems(p.Items, want) {
		t.Errorf("non-tax payment report %+v: want %d = fine %d + late fee %d, items %+v", p, bill.total, bill.fine, bill.lateFee, want)
	}
	if len(state.Forms) != 1 || state.Forms[0].DecisionNo != bill.decisionNo || state.Forms[0].FormNo != p.FormNo || !sameItems(state.Forms[0].Items, want) {
		t.Fatalf("non-tax forms %+v: want the decision's form with items %+v", state.Forms, want)
	}

	// The form's readable view at the non-tax simulator lists the two items.
	err = chromedp.Do(ctx, chromedp.Navigate(sys.SandboxURL+"/_sandbox/nontax/forms/"+p.FormNo), chromedp.WaitVisible(chromedp.ID("items")))
	if err != nil {
		t.Fatalf("form view: %v", err)
	}
	for id, want := range map[string]money.Fen{"item-fine-amount": bill.fine, "item-late_fee-amount": bill.lateFee, "items-total": bill.total} {
		if got := text(t, ctx, id); got != want.String() {
			t.Errorf("form view #%s = %q, want %s", id, got, want)
		}
	}
}

// item is an item of a non-tax form or payment as /_sandbox/state shows it.
type item struct {
	Kind     string `json:"kind"`
	ItemCode string `json:"item_code"`
	Amount   int64  `json:"amount"`
}

func sameItems(got, want []item) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}
