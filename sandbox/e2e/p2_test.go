package e2e

import (
	"fmt"
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
			var qrURL, billNo string
			err := chromedp.Run(ctx,
				chromedp.Navigate(sys.CoreURL+"/console/login"),
				chromedp.WaitVisible(`input[name=password]`, chromedp.ByQuery),
				chromedp.SetValue(`input[name=username]`, "clerk", chromedp.ByQuery),
				chromedp.SetValue(`input[name=password]`, "Clerk-e2e-Pass1", chromedp.ByQuery),
				chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
				chromedp.WaitVisible(`#create-bill`, chromedp.ByID),
				chromedp.SetValue(`#decision-no`, decisionNo, chromedp.ByID),
				chromedp.SetValue(`#violation-serial`, "V"+decisionNo, chromedp.ByID),
				chromedp.SetValue(`#party-name`, "张三丰", chromedp.ByID),
				chromedp.SetValue(`#plate`, "黑A12345", chromedp.ByID),
				chromedp.SetValue(`#fine`, fine.Yuan(), chromedp.ByID),
				chromedp.SetValue(`#served-date`, served.String(), chromedp.ByID),
				chromedp.SetValue(`#unit-code`, "230100", chromedp.ByID),
				chromedp.SetValue(`#item-code`, "103050101", chromedp.ByID),
				chromedp.Click(`#create-bill`, chromedp.ByID),
				chromedp.WaitVisible(`#qr-url`, chromedp.ByID),
				chromedp.Text(`#bill-no`, &billNo, chromedp.ByID),
				chromedp.AttributeValue(`#qr-url`, "href", &qrURL, nil, chromedp.ByID),
			)
			if err != nil {
				t.Fatalf("clerk creates the bill: %v", err)
			}
			if !strings.HasPrefix(qrURL, sys.GatewayURL+"/q/") {
				t.Fatalf("QR URL %q is not a cashier URL on the gateway", qrURL)
			}
			token := strings.TrimPrefix(qrURL, sys.GatewayURL+"/q/")
			if strings.Contains(token, decisionNo) || len(token) < 22 {
				t.Fatalf("QR token %q must be random (≥128 bits) and not carry the decision number", token)
			}

			// The payer scans it: the bill arrives at the gateway through the ferry.
			var party, plate, shownDecision, shownFine, shownLate, shownTotal string
			err = chromedp.Run(ctx,
				chromedp.Navigate(qrURL),
				chromedp.WaitVisible(`#total`, chromedp.ByID),
				chromedp.Text(`#party`, &party, chromedp.ByID),
				chromedp.Text(`#plate`, &plate, chromedp.ByID),
				chromedp.Text(`#decision-no`, &shownDecision, chromedp.ByID),
				chromedp.Text(`#fine`, &shownFine, chromedp.ByID),
				chromedp.Text(`#late-fee`, &shownLate, chromedp.ByID),
				chromedp.Text(`#total`, &shownTotal, chromedp.ByID),
			)
			if err != nil {
				t.Fatalf("cashier page: %v", err)
			}
			if strings.Contains(party, "三丰") || !strings.HasPrefix(party, "张") || !strings.Contains(party, "*") {
				t.Errorf("party shown as %q: want the masked name", party)
			}
			if strings.Contains(plate, "12345") || !strings.HasPrefix(plate, "黑A") {
				t.Errorf("plate shown as %q: want the masked plate", plate)
			}
			if strings.TrimSpace(shownDecision) != decisionNo {
				t.Errorf("decision number shown as %q", shownDecision)
			}
			for _, c := range []struct{ got, want string }{{shownFine, fine.String()}, {shownLate, lateFee.String()}, {shownTotal, total.String()}} {
				if !strings.Contains(c.got, c.want) {
					t.Errorf("amount shown as %q, want %s", c.got, c.want)
				}
			}

			// The payer chooses WeChat Pay and pays in the simulator.
			var paid string
			err = chromedp.Run(ctx,
				chromedp.Click(`#pay-wechat`, chromedp.ByID),
				chromedp.WaitVisible(`#sandbox-pay`, chromedp.ByID),
				chromedp.Click(`#sandbox-pay`, chromedp.ByID),
				chromedp.WaitVisible(`#pay`, chromedp.ByID),
				chromedp.Click(`#pay`, chromedp.ByID),
				chromedp.WaitVisible(`#paid`, chromedp.ByID),
				chromedp.Text(`#paid`, &paid, chromedp.ByID),
			)
			if err != nil {
				t.Fatalf("pay in the WeChat Pay simulator: %v", err)
			}

			// Back on the cashier: the payment, then the e-receipt that crossed the ferry back.
			var paidAmount, receiptCode, receiptNo, checkCode string
			err = chromedp.Run(ctx,
				chromedp.Navigate(sys.GatewayURL+"/q/"+token+"/result"),
				chromedp.WaitVisible(`#paid-amount`, chromedp.ByID),
				chromedp.Text(`#paid-amount`, &paidAmount, chromedp.ByID),
				chromedp.WaitVisible(`#receipt-code`, chromedp.ByID),
				chromedp.Text(`#receipt-code`, &receiptCode, chromedp.ByID),
				chromedp.Text(`#receipt-no`, &receiptNo, chromedp.ByID),
				chromedp.Text(`#check-code`, &checkCode, chromedp.ByID),
			)
			if err != nil {
				t.Fatalf("result page: %v", err)
			}
			if !strings.Contains(paidAmount, total.String()) {
				t.Errorf("paid amount shown as %q, want %s", paidAmount, total)
			}
			if !regexp.MustCompile(`^\d{8}$`).MatchString(strings.TrimSpace(receiptCode)) ||
				!regexp.MustCompile(`^\d{10}$`).MatchString(strings.TrimSpace(receiptNo)) ||
				len(strings.TrimSpace(checkCode)) != 6 {
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
			if len(state.Receipts) != 1 || state.Receipts[0].ReceiptNo != strings.TrimSpace(receiptNo) {
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
