package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"finepay/sandbox/launch"
	"finepay/shared/bizdate"
	"finepay/shared/penalty"
)

// TestP1WeChat12123Payment drives flow P1 through the real pages with WeChat Pay: the payer
// starts in the 12123 app (the sandbox's platform simulator), which submits the payment to the
// core's partner API (SM2-signed, the name SM2-encrypted to the core); the core gets the form
// from the non-tax system, builds and publishes the bill and answers the cashier URL; the app
// sends the payer there; the payer pays in the channel's simulator; the core records the
// payment, reports it to the non-tax system, has the e-receipt issued and pushes the result to
// the 12123 platform (a durable task), which the platform can also query. On PostgreSQL.
func TestP1WeChat12123Payment(t *testing.T) { p1Payment(t, "wechat", backends[0]) }

// TestP1Alipay12123Payment is flow P1 paid with Alipay (notifications sent twice, out of
// order), on SQLite.
func TestP1Alipay12123Payment(t *testing.T) { p1Payment(t, "alipay", backends[1]) }

// TestP1UnionPay12123Payment is flow P1 paid with UnionPay (the notification confirmed by a
// query first), on PostgreSQL.
func TestP1UnionPay12123Payment(t *testing.T) { p1Payment(t, "unionpay", backends[0]) }

func p1Payment(t *testing.T, channel string, b backend) {
	t.Run(b.name, func(t *testing.T) {
		sys := startSystem(t, b)
		ctx := browser(t)
		bill, orderNo := startIn12123(t, ctx, sys)
		openCashier(t, ctx, bill)
		payInSimulator(t, ctx, channel)
		receiptNo := checkResult(t, ctx, sys, bill)
		check12123Result(t, ctx, sys, bill, orderNo, channel, receiptNo)
		checkP1Repeats(t, sys, bill, orderNo)
		checkChannelMetrics(t, sys, channel, 1, -1)
	})
}

// startIn12123 is the payer in the 12123 app: a decision served 20 days ago (five days late),
// "确认缴款"; the platform submits it to the core and shows the order with the cashier link. It
// returns the bill as the payer should see it on the cashier, once it crossed the ferry.
func startIn12123(t *testing.T, ctx context.Context, sys *launch.System) (p2Bill, string) {
	t.Helper()
	today := bizdate.Of(time.Now())
	served := today.AddDays(-20)
	b := p2Bill{decisionNo: fmt.Sprintf("2301021%09d", time.Now().UnixNano()%1e9), fine: 20000}
	_, b.lateFee, b.total = penalty.Due(b.fine, served, today, true)
	err := chromedp.Do(ctx,
		chromedp.Navigate(sys.SandboxURL+"/isp/"),
		chromedp.WaitVisible(chromedp.ID("isp-form")),
		chromedp.SetValue(chromedp.ID("decision-no"), b.decisionNo),
		chromedp.SetValue(chromedp.ID("violation-serial"), "V"+b.decisionNo),
		chromedp.SetValue(chromedp.ID("party-name"), "张三丰"),
		chromedp.SetValue(chromedp.ID("plate"), "黑A12345"),
		chromedp.SetValue(chromedp.ID("fine"), b.fine.Yuan()),
		chromedp.SetValue(chromedp.ID("served-date"), served.String()),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("cashier-url")),
	)
	if err != nil {
		t.Fatalf("the payer starts payment in the 12123 app: %v", err)
	}
	orderNo := text(t, ctx, "isp-order-no")
	if got := text(t, ctx, "amount-due"); !strings.Contains(got, b.total.String()) {
		t.Errorf("the 12123 app shows %q due, want %s", got, b.total)
	}
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("cashier-url"), "href"))
	if err != nil {
		t.Fatalf("cashier URL: %v", err)
	}
	b.qrURL = href.Value
	if !strings.HasPrefix(b.qrURL, sys.GatewayURL+"/q/") {
		t.Fatalf("cashier URL %q is not on the gateway", b.qrURL)
	}
	b.token = strings.TrimPrefix(b.qrURL, sys.GatewayURL+"/q/")
	if strings.Contains(b.token, b.decisionNo) || len(b.token) < 22 {
		t.Fatalf("cashier token %q must be random (≥128 bits) and not carry the decision number", b.token)
	}
	eventually(t, "the bill to reach the gateway", 30*time.Second, func() bool {
		resp, err := http.Get(b.qrURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return b, orderNo
}

// p1State is what the sandbox shows of P1.
type p1State struct {
	Payments []struct {
		FormNo string `json:"form_no"`
		Amount int64  `json:"amount"`
	} `json:"payments"`
	Receipts []struct {
		ReceiptNo string `json:"receipt_no"`
	} `json:"receipts"`
	WindowResults []struct {
		DecisionNo string `json:"decision_no"`
	} `json:"window_results"`
	ISPResults []struct {
		ISPOrderNo string `json:"isp_order_no"`
		DecisionNo string `json:"decision_no"`
		OrderNo    string `json:"order_no"`
		Channel    string `json:"channel"`
		Amount     int64  `json:"amount"`
		LateFee    int64  `json:"late_fee"`
		Reports    int    `json:"reports"`
	} `json:"isp_results"`
}

// coreState is the core's answer to the platform (submit and query).
type coreState struct {
	BillNo     string `json:"bill_no"`
	Status     string `json:"status"`
	CashierURL string `json:"cashier_url"`
	AmountDue  int64  `json:"amount_due"`
	ResultPush string `json:"result_push"`
	Payment    *struct {
		OrderNo string `json:"order_no"`
		Channel string `json:"channel"`
		Amount  int64  `json:"amount"`
	} `json:"payment"`
	Receipt *struct {
		ReceiptNo string `json:"receipt_no"`
	} `json:"receipt"`
	Code string `json:"code"`
}

// check12123Result checks what P1 owes the outside parties: the 12123 platform got the result
// pushed (once, instead of the window platform), the non-tax system one report, one receipt;
// the platform's query shows the payment, the receipt and the push done; the app shows the
// order paid.
func check12123Result(t *testing.T, ctx context.Context, sys *launch.System, b p2Bill, orderNo, channel, receiptNo string) {
	t.Helper()
	var st p1State
	eventually(t, "the result pushed to the 12123 platform and the non-tax report", 30*time.Second, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &st)
		return len(st.ISPResults) == 1 && len(st.Payments) == 1
	})
	r := st.ISPResults[0]
	if r.ISPOrderNo != orderNo || r.DecisionNo != b.decisionNo || r.Amount != int64(b.total) || r.LateFee != int64(b.lateFee) ||
		r.Channel != channel || r.Reports != 1 {
		t.Errorf("the 12123 platform got %+v, want order %s, decision %s, amount %d via %s, once", r, orderNo, b.decisionNo, b.total, channel)
	}
	if st.Payments[0].Amount != int64(b.total) {
		t.Errorf("non-tax got amount %d, want %d", st.Payments[0].Amount, b.total)
	}
	if len(st.WindowResults) != 0 {
		t.Errorf("a P1 payment was reported to the window platform: %+v", st.WindowResults)
	}
	if len(st.Receipts) != 1 || st.Receipts[0].ReceiptNo != receiptNo {
		t.Errorf("receipts issued %+v, shown %q", st.Receipts, receiptNo)
	}

	var q struct {
		Core struct {
			Status int       `json:"status"`
			Body   coreState `json:"answer"`
		} `json:"core"`
	}
	eventually(t, "the core's answer to the platform's query to show the push done", 30*time.Second, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/isp/payments/"+orderNo, &q)
		return q.Core.Body.ResultPush == "done"
	})
	a := q.Core.Body
	if q.Core.Status != http.StatusOK || a.Status != "paid" || a.Payment == nil || a.Payment.Amount != int64(b.total) ||
		a.Payment.OrderNo != r.OrderNo || a.Payment.Channel != channel || a.Receipt == nil || a.Receipt.ReceiptNo != receiptNo {
		t.Errorf("the core answered the platform's query %d %+v", q.Core.Status, a)
	}

	err := chromedp.Do(ctx, chromedp.Navigate(sys.SandboxURL+"/isp/orders/"+orderNo), chromedp.WaitVisible(chromedp.ID("result")))
	if err != nil {
		t.Fatalf("the 12123 app's order page: %v", err)
	}
	if got := text(t, ctx, "order-status"); got != "已缴款" {
		t.Errorf("the 12123 app shows the order as %q", got)
	}
	if got := text(t, ctx, "result-amount"); !strings.Contains(got, b.total.String()) {
		t.Errorf("the 12123 app shows %q paid, want %s", got, b.total)
	}
}

// checkP1Repeats: the platform submitting the same order again gets the same (now paid) bill;
// a new order for the paid decision is refused ALREADY_PAID; nothing is created or pushed again.
func checkP1Repeats(t *testing.T, sys *launch.System, b p2Bill, orderNo string) {
	t.Helper()
	submit := func(ispOrderNo string) (int, coreState) {
		body, _ := json.Marshal(map[string]any{"isp_order_no": ispOrderNo, "decision_no": b.decisionNo,
			"violation_serial": "V" + b.decisionNo, "party_name": "张三丰", "plate": "黑A12345", "fine": int64(b.fine),
			"served_date": bizdate.Of(time.Now()).AddDays(-20).String(), "unit_code": "230100", "item_code": "103050101"})
		resp, err := http.Post(sys.SandboxURL+"/_sandbox/isp/payments", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out struct {
			Core struct {
				Status int       `json:"status"`
				Body   coreState `json:"answer"`
			} `json:"core"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("submit through the platform: %d %s", resp.StatusCode, raw)
		}
		return out.Core.Status, out.Core.Body
	}
	var before p1State
	getJSON(t, sys.SandboxURL+"/_sandbox/state", &before)
	if status, a := submit(orderNo); status != http.StatusOK || a.Status != "paid" || a.CashierURL != b.qrURL {
		t.Errorf("the same order again: %d %+v, want the paid bill", status, a)
	}
	if status, a := submit(orderNo + "X"); status != http.StatusConflict || a.Code != "ALREADY_PAID" {
		t.Errorf("a new order for the paid decision: %d %+v, want 409 ALREADY_PAID", status, a)
	}
	var after p1State
	getJSON(t, sys.SandboxURL+"/_sandbox/state", &after)
	if len(after.ISPResults) != 1 || after.ISPResults[0].Reports != 1 || len(after.Payments) != len(before.Payments) {
		t.Errorf("repeated submissions changed the partners' state: %+v", after)
	}
}
