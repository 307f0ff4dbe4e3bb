package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"finepay/sandbox/launch"
	"finepay/shared/bizdate"
	"finepay/shared/money"
	"finepay/shared/penalty"
)

// TestP2DecisionNoticeQRPayment drives flow P2 through the real pages: a clerk creates a bill in
// the core console; the payer opens its QR URL on the gateway, sees the masked bill and the
// amount due today, pays with WeChat Pay in the simulator; the notification is verified, the
// payment crosses the ferry, the core records it and reports it, the e-receipt is issued and
// crosses back, and the cashier's result page shows it.
func TestP2DecisionNoticeQRPayment(t *testing.T) { p2QRPayment(t, "wechat") }

// TestP2AlipayDecisionNoticeQRPayment is flow P2 paid with Alipay: the precreated QR order, the
// RSA2-signed notification (here sent twice, TRADE_FINISHED before TRADE_SUCCESS), the rest as
// with WeChat Pay.
func TestP2AlipayDecisionNoticeQRPayment(t *testing.T) { p2QRPayment(t, "alipay") }

// TestP2UnionPayDecisionNoticeQRPayment is flow P2 paid with UnionPay: the consume QR code, the
// backUrl notification confirmed by a query before it is recorded, the rest as with WeChat Pay.
func TestP2UnionPayDecisionNoticeQRPayment(t *testing.T) { p2QRPayment(t, "unionpay") }

// p2QRPayment is flow P2 with one channel, on every backend.
func p2QRPayment(t *testing.T, channel string) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			sys := startSystem(t, b)
			ctx := browser(t)
			bill := createBill(t, ctx, sys)
			openCashier(t, ctx, bill)
			payInSimulator(t, ctx, channel)
			receiptNo := checkResult(t, ctx, sys, bill)
			checkPartners(t, sys, bill, receiptNo)
			checkChannelMetrics(t, sys, channel, 1, -1)
			checkMetrics(t, sys)
		})
	}
}

// TestP2NotificationNeverArrives: the channel never delivers the payment's notification (the
// sandbox drops it); the gateway's active query finds the payment, records it as a notification
// would have been, and the flow completes: result page, receipt, reports. Alipay on PostgreSQL,
// UnionPay on SQLite.
func TestP2NotificationNeverArrives(t *testing.T) {
	for i, channel := range []string{"alipay", "unionpay"} {
		b := backends[i%len(backends)]
		t.Run(channel+"/"+b.name, func(t *testing.T) {
			sys := startSystem(t, b)
			ctx := browser(t)
			bill := createBill(t, ctx, sys)
			openCashier(t, ctx, bill)
			if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("pay-"+channel)), chromedp.WaitVisible(chromedp.ID("sandbox-pay"))); err != nil {
				t.Fatalf("choose %s: %v", channel, err)
			}
			orderNo := text(t, ctx, "order-no")
			resp, err := http.Post(sys.SandboxURL+"/_sandbox/"+channel+"/orders/"+orderNo+"/drop-notifications", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("drop notifications of %s: %d", orderNo, resp.StatusCode)
			}
			payAtSandboxLink(t, ctx, channel)
			receiptNo := checkResult(t, ctx, sys, bill)
			checkPartners(t, sys, bill, receiptNo)
			// Nothing reached the gateway from the channel: the payment came from the query.
			checkChannelMetrics(t, sys, channel, 1, 0)
			var rec struct {
				Dropped  bool  `json:"dropped"`
				Attempts []any `json:"attempts"`
			}
			getJSON(t, sys.SandboxURL+"/_sandbox/"+channel+"/notifications/"+orderNo, &rec)
			if !rec.Dropped || len(rec.Attempts) != 0 {
				t.Errorf("the sandbox sent the notification: %+v", rec)
			}
		})
	}
}

// p2Bill is a bill the clerk created, as the payer should see it.
type p2Bill struct {
	decisionNo, qrURL, token string
	fine, lateFee, total     money.Fen
}

// createBill has the clerk log in to the core console and create a bill served 20 days ago;
// it returns the bill once it has crossed the ferry to the gateway.
func createBill(t *testing.T, ctx context.Context, sys *launch.System) p2Bill {
	t.Helper()
	today := bizdate.Of(time.Now())
	served := today.AddDays(-20) // five days past the 15-day limit
	b := p2Bill{decisionNo: fmt.Sprintf("2301021%09d", time.Now().UnixNano()%1e9), fine: 20000}
	_, b.lateFee, b.total = penalty.Due(b.fine, served, today, true)
	err := chromedp.Do(ctx,
		chromedp.Navigate(sys.CoreURL+"/console/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)),
		chromedp.SetValue(chromedp.CSS(`input[name=username]`), "clerk"),
		chromedp.SetValue(chromedp.CSS(`input[name=password]`), "Clerk-e2e-Pass1"),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.ID("create-bill")),
		chromedp.SetValue(chromedp.ID("decision-no"), b.decisionNo),
		chromedp.SetValue(chromedp.ID("violation-serial"), "V"+b.decisionNo),
		chromedp.SetValue(chromedp.ID("party-name"), "张三丰"),
		chromedp.SetValue(chromedp.ID("plate"), "黑A12345"),
		chromedp.SetValue(chromedp.ID("fine"), b.fine.Yuan()),
		chromedp.SetValue(chromedp.ID("served-date"), served.String()),
		chromedp.SetValue(chromedp.ID("unit-code"), "230100"),
		chromedp.SetValue(chromedp.ID("item-code"), "103050101"),
		chromedp.Click(chromedp.ID("create-bill")),
		chromedp.WaitVisible(chromedp.ID("qr-url")),
	)
	if err != nil {
		t.Fatalf("clerk creates the bill: %v", err)
	}
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("qr-url"), "href"))
	if err != nil {
		t.Fatalf("QR URL: %v", err)
	}
	b.qrURL = href.Value
	if !strings.HasPrefix(b.qrURL, sys.GatewayURL+"/q/") {
		t.Fatalf("QR URL %q is not a cashier URL on the gateway", b.qrURL)
	}
	b.token = strings.TrimPrefix(b.qrURL, sys.GatewayURL+"/q/")
	if strings.Contains(b.token, b.decisionNo) || len(b.token) < 22 {
		t.Fatalf("QR token %q must be random (≥128 bits) and not carry the decision number", b.token)
	}
	// The bill crosses to the gateway through the ferry.
	eventually(t, "the bill to reach the gateway", 30*time.Second, func() bool {
		resp, err := http.Get(b.qrURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return b
}

// openCashier is the payer scanning the QR code: the cashier page shows the masked bill, the
// amounts due today and every channel.
func openCashier(t *testing.T, ctx context.Context, b p2Bill) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(b.qrURL), chromedp.WaitVisible(chromedp.ID("total"))); err != nil {
		t.Fatalf("cashier page: %v", err)
	}
	party, plate := text(t, ctx, "party"), text(t, ctx, "plate")
	if strings.Contains(party, "三丰") || !strings.HasPrefix(party, "张") || !strings.Contains(party, "*") {
		t.Errorf("party shown as %q: want the masked name", party)
	}
	if strings.Contains(plate, "12345") || !strings.HasPrefix(plate, "黑A") {
		t.Errorf("plate shown as %q: want the masked plate", plate)
	}
	if got := text(t, ctx, "decision-no"); got != b.decisionNo {
		t.Errorf("decision number shown as %q", got)
	}
	for _, c := range []struct {
		id   string
		want money.Fen
	}{{"fine", b.fine}, {"late-fee", b.lateFee}, {"total", b.total}} {
		if got := text(t, ctx, c.id); !strings.Contains(got, c.want.String()) {
			t.Errorf("#%s shown as %q, want %s", c.id, got, c.want)
		}
	}
	for id, label := range map[string]string{"pay-wechat": "微信支付", "pay-alipay": "支付宝", "pay-unionpay": "云闪付"} {
		if got := text(t, ctx, id); got != label {
			t.Errorf("#%s shown as %q, want %s", id, got, label)
		}
	}
}

// payInSimulator is the payer choosing a channel on the cashier page and paying on the
// channel's payer page in the simulator.
func payInSimulator(t *testing.T, ctx context.Context, channel string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("pay-"+channel)),
		chromedp.WaitVisible(chromedp.ID("qr")),
		chromedp.WaitVisible(chromedp.ID("sandbox-pay")),
	)
	if err != nil {
		t.Fatalf("choose %s: %v", channel, err)
	}
	payAtSandboxLink(t, ctx, channel)
}

// payAtSandboxLink follows the order page's link to the channel simulator's payer page and pays
// there. A page that replaces its document while the browser is clicking (a redirect, a
// reload) detaches the node being clicked; the simulator pays an order once however often it
// is asked, so the attempt is simply repeated.
func payAtSandboxLink(t *testing.T, ctx context.Context, channel string) {
	t.Helper()
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("sandbox-pay"), "href"))
	if err != nil || href.Value == "" {
		t.Fatalf("%s simulator link: %v", channel, err)
	}
	for attempt := 1; ; attempt++ {
		err = chromedp.Do(ctx,
			chromedp.Navigate(href.Value),
			chromedp.WaitVisible(chromedp.ID("pay")),
			chromedp.Click(chromedp.ID("pay")),
			chromedp.WaitVisible(chromedp.ID("paid")),
		)
		if err == nil {
			return
		}
		if attempt == 3 || !strings.Contains(err.Error(), "Could not find node") {
			t.Fatalf("pay in the %s simulator (attempt %d): %v", channel, attempt, err)
		}
		t.Logf("pay in the %s simulator: the page changed under the click (%v); again", channel, err)
	}
}

// checkResult waits on the cashier's result page for the payment and then the e-receipt that
// crossed the ferry back, and returns the receipt number.
func checkResult(t *testing.T, ctx context.Context, sys *launch.System, b p2Bill) string {
	t.Helper()
	// The payment reaches the gateway by notification or by its active query (seconds later).
	eventually(t, "the gateway to record the payment", time.Minute, func() bool {
		return strings.Contains(getText(t, sys.GatewayURL+"/q/"+b.token+"/status"), `"paid":true`)
	})
	err := chromedp.Do(ctx,
		chromedp.Navigate(sys.GatewayURL+"/q/"+b.token+"/result"),
		chromedp.WaitVisible(chromedp.ID("paid-amount")),
		chromedp.WaitVisible(chromedp.ID("receipt-code")),
	)
	if err != nil {
		t.Fatalf("result page: %v", err)
	}
	if got := text(t, ctx, "paid-amount"); !strings.Contains(got, b.total.String()) {
		t.Errorf("paid amount shown as %q, want %s", got, b.total)
	}
	receiptCode, receiptNo, checkCode := text(t, ctx, "receipt-code"), text(t, ctx, "receipt-no"), text(t, ctx, "check-code")
	if !regexp.MustCompile(`^\d{8}$`).MatchString(receiptCode) || !regexp.MustCompile(`^\d{10}$`).MatchString(receiptNo) || len(checkCode) != 6 {
		t.Errorf("receipt shown as code %q number %q check %q", receiptCode, receiptNo, checkCode)
	}
	return receiptNo
}

// checkPartners checks that the outside parties saw what P2 owes them: one non-tax report of
// the amount, the window platform's result, one receipt.
func checkPartners(t *testing.T, sys *launch.System, b p2Bill, receiptNo string) {
	t.Helper()
	var state struct {
		Payments []struct {
			FormNo string `json:"form_no"`
			Amount int64  `json:"amount"`
		} `json:"payments"`
		Receipts []struct {
			ReceiptCode string `json:"receipt_code"`
			ReceiptNo   string `json:"receipt_no"`
		} `json:"receipts"`
		WindowResults []struct {
			DecisionNo string `json:"decision_no"`
		} `json:"window_results"`
	}
	eventually(t, "non-tax and window reports", 30*time.Second, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
		return len(state.Payments) == 1 && len(state.WindowResults) == 1
	})
	if state.Payments[0].Amount != int64(b.total) {
		t.Errorf("non-tax got amount %d, want %d", state.Payments[0].Amount, b.total)
	}
	if state.WindowResults[0].DecisionNo != b.decisionNo {
		t.Errorf("window platform got decision %q", state.WindowResults[0].DecisionNo)
	}
	if len(state.Receipts) != 1 || state.Receipts[0].ReceiptNo != receiptNo {
		t.Errorf("receipts issued %+v, shown %q", state.Receipts, receiptNo)
	}
}

// checkChannelMetrics checks the gateway's counters of a channel: payments recorded, and
// notifications received (when received >= 0).
func checkChannelMetrics(t *testing.T, sys *launch.System, channel string, recorded, received float64) {
	t.Helper()
	body := getText(t, sys.GatewayURL+"/metrics")
	want := []string{fmt.Sprintf(`gateway_payments_recorded_total{channel=%q} %g`, channel, recorded),
		fmt.Sprintf(`gateway_channel_orders_created_total{channel=%q} 1`, channel)}
	if received >= 0 {
		want = append(want, fmt.Sprintf(`gateway_notifications_received_total{channel=%q} %g`, channel, received))
	}
	for _, w := range want {
		if !strings.Contains(body, "\n"+w+"\n") {
			t.Errorf("gateway metrics lack %s", w)
		}
	}
}

// checkMetrics asserts that every process serves the metrics an operator on call needs.
func checkMetrics(t *testing.T, sys *launch.System) {
	t.Helper()
	want := map[string][]string{
		sys.GatewayURL:         {"ferry_outbox_backlog", "gateway_notifications_received_total", "gateway_notifications_rejected_total", "http_request_duration_seconds_bucket"},
		sys.CoreURL:            {"ferry_outbox_backlog", "http_request_duration_seconds_bucket"},
		sys.DMZMetricsURL:      {"ferry_bundles_sent_total", "ferry_bundles_received_total", "ferry_bundles_rejected_total", "http_request_duration_seconds_bucket"},
		sys.IntranetMetricsURL: {"ferry_bundles_sent_total", "ferry_bundles_received_total", "ferry_bundles_rejected_total", "http_request_duration_seconds_bucket"},
		sys.SandboxURL:         {"http_request_duration_seconds_bucket"},
	}
	for base, names := range want {
		body := getText(t, base+"/metrics")
		for _, n := range names {
			if !strings.Contains(body, "\n"+n) {
				t.Errorf("%s/metrics lacks %s", base, n)
			}
		}
	}
}
