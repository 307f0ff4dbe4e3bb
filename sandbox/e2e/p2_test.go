package e2e

import (
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
func TestP2DecisionNoticeQRPayment(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			sys := startSystem(t, b)
			ctx := browser(t)

			today := bizdate.Of(time.Now())
			served := today.AddDays(-20) // five days past the 15-day limit
			const fine = money.Fen(20000)
			_, lateFee, total := penalty.Due(fine, served, today, true)
			decisionNo := fmt.Sprintf("2301021%09d", time.Now().UnixNano()%1e9)

			// The clerk logs in and creates the bill.
			err := chromedp.Do(ctx,
				chromedp.Navigate(sys.CoreURL+"/console/login"),
				chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)),
				chromedp.SetValue(chromedp.CSS(`input[name=username]`), "clerk"),
				chromedp.SetValue(chromedp.CSS(`input[name=password]`), "Clerk-e2e-Pass1"),
				chromedp.Submit(chromedp.CSS(`input[name=password]`)),
				chromedp.WaitVisible(chromedp.ID("create-bill")),
				chromedp.SetValue(chromedp.ID("decision-no"), decisionNo),
				chromedp.SetValue(chromedp.ID("violation-serial"), "V"+decisionNo),
				chromedp.SetValue(chromedp.ID("party-name"), "张三丰"),
				chromedp.SetValue(chromedp.ID("plate"), "黑A12345"),
				chromedp.SetValue(chromedp.ID("fine"), fine.Yuan()),
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
			qrURL := href.Value
			if !strings.HasPrefix(qrURL, sys.GatewayURL+"/q/") {
				t.Fatalf("QR URL %q is not a cashier URL on the gateway", qrURL)
			}
			token := strings.TrimPrefix(qrURL, sys.GatewayURL+"/q/")
			if strings.Contains(token, decisionNo) || len(token) < 22 {
				t.Fatalf("QR token %q must be random (≥128 bits) and not carry the decision number", token)
			}

			// The bill crosses to the gateway through the ferry; the payer scans the QR code.
			eventually(t, "the bill to reach the gateway", 30*time.Second, func() bool {
				resp, err := http.Get(qrURL)
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})
			if err := chromedp.Do(ctx, chromedp.Navigate(qrURL), chromedp.WaitVisible(chromedp.ID("total"))); err != nil {
				t.Fatalf("cashier page: %v", err)
			}
			party, plate := text(t, ctx, "party"), text(t, ctx, "plate")
			if strings.Contains(party, "三丰") || !strings.HasPrefix(party, "张") || !strings.Contains(party, "*") {
				t.Errorf("party shown as %q: want the masked name", party)
			}
			if strings.Contains(plate, "12345") || !strings.HasPrefix(plate, "黑A") {
				t.Errorf("plate shown as %q: want the masked plate", plate)
			}
			if got := text(t, ctx, "decision-no"); got != decisionNo {
				t.Errorf("decision number shown as %q", got)
			}
			for _, c := range []struct {
				id   string
				want money.Fen
			}{{"fine", fine}, {"late-fee", lateFee}, {"total", total}} {
				if got := text(t, ctx, c.id); !strings.Contains(got, c.want.String()) {
					t.Errorf("#%s shown as %q, want %s", c.id, got, c.want)
				}
			}

			// The payer chooses WeChat Pay and pays in the simulator.
			err = chromedp.Do(ctx,
				chromedp.Click(chromedp.ID("pay-wechat")),
				chromedp.WaitVisible(chromedp.ID("sandbox-pay")),
				chromedp.Click(chromedp.ID("sandbox-pay")),
				chromedp.WaitVisible(chromedp.ID("pay")),
				chromedp.Click(chromedp.ID("pay")),
				chromedp.WaitVisible(chromedp.ID("paid")),
			)
			if err != nil {
				t.Fatalf("pay in the WeChat Pay simulator: %v", err)
			}

			// Back on the cashier: the payment, then the e-receipt that crossed the ferry back.
			err = chromedp.Do(ctx,
				chromedp.Navigate(sys.GatewayURL+"/q/"+token+"/result"),
				chromedp.WaitVisible(chromedp.ID("paid-amount")),
				chromedp.WaitVisible(chromedp.ID("receipt-code")),
			)
			if err != nil {
				t.Fatalf("result page: %v", err)
			}
			if got := text(t, ctx, "paid-amount"); !strings.Contains(got, total.String()) {
				t.Errorf("paid amount shown as %q, want %s", got, total)
			}
			receiptCode, receiptNo, checkCode := text(t, ctx, "receipt-code"), text(t, ctx, "receipt-no"), text(t, ctx, "check-code")
			if !regexp.MustCompile(`^\d{8}$`).MatchString(receiptCode) || !regexp.MustCompile(`^\d{10}$`).MatchString(receiptNo) || len(checkCode) != 6 {
				t.Errorf("receipt shown as code %q number %q check %q", receiptCode, receiptNo, checkCode)
			}

			// The outside parties saw what P2 owes them: the non-tax report, the window
			// platform's result, one receipt.
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
			if state.Payments[0].Amount != int64(total) {
				t.Errorf("non-tax got amount %d, want %d", state.Payments[0].Amount, total)
			}
			if state.WindowResults[0].DecisionNo != decisionNo {
				t.Errorf("window platform got decision %q", state.WindowResults[0].DecisionNo)
			}
			if len(state.Receipts) != 1 || state.Receipts[0].ReceiptNo != receiptNo {
				t.Errorf("receipts issued %+v, shown %q", state.Receipts, receiptNo)
			}

			// Every process serves its metrics.
			checkMetrics(t, sys)
		})
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
