package alipaysim_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/sandbox/internal/alipaysim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var qrPattern = regexp.MustCompile(`^https://qr\.alipay\.com/(bax[0-9a-z]{22})$`)

func TestPrecreatePayNotify(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, "success")
	biz, extra := precreate("FP20261127000001", rcv.url, "278.00")

	a := f.app.call(t, "alipay.trade.precreate", biz, extra)
	qr, _ := a["qr_code"].(string)
	if a["code"] != "10000" || a["out_trade_no"] != "FP20261127000001" || !qrPattern.MatchString(qr) {
		t.Fatalf("precreate: %v", a)
	}
	// The same order again: the same code; another amount: refused.
	if again := f.app.call(t, "alipay.trade.precreate", biz, extra); again["qr_code"] != qr {
		t.Fatalf("repeat: %v", again)
	}
	biz2, _ := precreate("FP20261127000001", rcv.url, "1.00")
	wantSub(t, f.app.call(t, "alipay.trade.precreate", biz2, extra), "40004", "ACQ.CONTEXT_INCONSISTENT")

	q := f.app.call(t, "alipay.trade.query", map[string]string{"out_trade_no": "FP20261127000001"}, nil)
	if q["code"] != "10000" || q["trade_status"] != "WAIT_BUYER_PAY" || q["total_amount"] != "278.00" {
		t.Fatalf("query before paying: %v", q)
	}

	// The robot pays by the code of the QR, as a payer scanning it would.
	code := qrPattern.FindStringSubmatch(qr)[1]
	status, body := f.post(t, "/alipay/robot/pay", "application/json", `{"code":"`+code+`"}`)
	if status != http.StatusOK {
		t.Fatalf("robot pay: %d %s", status, body)
	}
	var paid map[string]string
	json.Unmarshal([]byte(body), &paid)
	if !regexp.MustCompile(`^\d{8}22\d{18}$`).MatchString(paid["trade_no"]) || paid["trade_status"] != "TRADE_SUCCESS" {
		t.Fatalf("paid %v", paid)
	}

	// The notification: a form signed RSA2 by Alipay over the sorted fields but sign and sign_type.
	d := rcv.next(t)
	if err := verifyNotification(f.pki.AlipayPlatform.Cert, d.form); err != nil {
		t.Fatalf("notification sign: %v\n%s", err, d.raw)
	}
	if !strings.HasPrefix(d.header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		t.Errorf("Content-Type %q", d.header.Get("Content-Type"))
	}
	for k, want := range map[string]string{"notify_type": "trade_status_sync", "app_id": alipaysim.DefaultAppID, "trade_status": "TRADE_SUCCESS",
		"out_trade_no": "FP20261127000001", "trade_no": paid["trade_no"], "total_amount": "278.00", "seller_id": alipaysim.DefaultSellerID,
		"charset": "utf-8", "version": "1.0", "subject": "交通违法罚款", "gmt_payment": paid["gmt_payment"]} {
		if got := d.form.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if len(d.form.Get("notify_id")) != 34 || !strings.HasPrefix(d.form.Get("buyer_logon_id"), "159****") {
		t.Errorf("notify_id %q buyer_logon_id %q", d.form.Get("notify_id"), d.form.Get("buyer_logon_id"))
	}
	waitDone(t, f.sim, "FP20261127000001")
	rec, err := f.sim.Notification("FP20261127000001")
	if err != nil || !rec.Acknowledged || len(rec.Attempts) != 1 || rec.Attempts[0].Answer != "success" || rec.Body != d.raw {
		t.Fatalf("record %+v, %v", rec, err)
	}

	q = f.app.call(t, "alipay.trade.query", map[string]string{"out_trade_no": "FP20261127000001"}, nil)
	if q["trade_status"] != "TRADE_SUCCESS" || q["trade_no"] != paid["trade_no"] || q["send_pay_date"] != paid["gmt_payment"] {
		t.Fatalf("query after paying: %v", q)
	}
	if q = f.app.call(t, "alipay.trade.query", map[string]string{"trade_no": paid["trade_no"]}, nil); q["out_trade_no"] != "FP20261127000001" {
		t.Fatalf("query by trade_no: %v", q)
	}
	wantSub(t, f.app.call(t, "alipay.trade.close", map[string]string{"out_trade_no": "FP20261127000001"}, nil), "40004", "ACQ.TRADE_STATUS_ERROR")
	wantSub(t, f.app.call(t, "alipay.trade.precreate", biz, extra), "40004", "ACQ.TRADE_HAS_SUCCESS")
	wantSub(t, f.app.call(t, "alipay.trade.query", map[string]string{"out_trade_no": "FP-NONE"}, nil), "40004", "ACQ.TRADE_NOT_EXIST")

	// Paying again answers the trade again and notifies nothing.
	if status, _ := f.post(t, "/alipay/robot/pay", "application/json", `{"out_trade_no":"FP20261127000001"}`); status != http.StatusOK {
		t.Fatalf("paying twice: %d", status)
	}
	if n := rcv.requests(); n != 1 {
		t.Errorf("%d notifications, want 1", n)
	}
}

func TestGatewayRefusals(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	biz, extra := precreate("FP20261127000002", "https://gw.example/notify/alipay", "200.00")
	tests := []struct {
		name, subCode string
		tamper        func(url.Values)
	}{
		{"fail/changed-after-signing", "isv.invalid-signature", func(v url.Values) { v.Set("biz_content", strings.Replace(v.Get("biz_content"), "200.00", "0.01", 1)) }},
		{"fail/sign-not-base64", "isv.invalid-signature", func(v url.Values) { v.Set("sign", "!!") }},
		{"fail/other-app", "isv.invalid-app-id", func(v url.Values) { v.Set("app_id", "2021000000000009") }},
		{"fail/sign-type-RSA", "isv.invalid-signature-type", func(v url.Values) { v.Set("sign_type", "RSA") }},
		{"fail/old-timestamp", "isv.invalid-timestamp", func(v url.Values) { v.Set("timestamp", "2020-01-01 00:00:00") }},
		{"fail/no-method", "isv.missing-method", func(v url.Values) { v.Del("method") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := *f.app
			a.tamper = tt.tamper
			method := "alipay.trade.precreate"
			got := a.call(t, method, biz, extra)
			if got["sub_code"] != tt.subCode || got["code"] == "10000" {
				t.Fatalf("answer %v, want %s", got, tt.subCode)
			}
		})
	}
	bad := []struct{ name, amount, subject string }{{"fail/amount-3-decimals", "1.001", "罚款"}, {"fail/amount-zero", "0.00", "罚款"},
		{"fail/subject-with-slash", "1.00", "a/b"}}
	for _, b := range bad {
		biz, extra := precreate("FP20261127000003", "https://gw.example/n", b.amount)
		biz["subject"] = b.subject
		wantSub(t, f.app.call(t, "alipay.trade.precreate", biz, extra), "40004", "ACQ.INVALID_PARAMETER")
	}
	if n := len(f.sim.Snapshot()); n != 0 {
		t.Fatalf("%d orders after refusals", n)
	}
}

func TestNotificationResentUntilSuccess(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	// "fail", then "SUCCESS" (not exactly success), then success.
	rcv := newReceiver(t, "fail", "SUCCESS", "success")
	biz, extra := precreate("FP20261127000004", rcv.url, "1.00")
	f.app.call(t, "alipay.trade.precreate", biz, extra)
	if status, body := f.post(t, "/alipay/robot/pay", "application/json", `{"out_trade_no":"FP20261127000004"}`); status != 200 {
		t.Fatalf("pay: %d %s", status, body)
	}
	bodies := map[string]bool{}
	for range 3 {
		bodies[rcv.next(t).raw] = true
	}
	waitDone(t, f.sim, "FP20261127000004")
	rec, _ := f.sim.Notification("FP20261127000004")
	if len(bodies) != 1 || !rec.Acknowledged || len(rec.Attempts) != 3 || rec.Attempts[2].Round != 2 {
		t.Fatalf("%d distinct bodies, record %+v", len(bodies), rec)
	}
}

func TestNotificationAbandoned(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *alipaysim.Config) { c.ScheduleScale = 0.00001 })
	rcv := newReceiver(t, "fail")
	biz, extra := precreate("FP20261127000005", rcv.url, "1.00")
	f.app.call(t, "alipay.trade.precreate", biz, extra)
	f.post(t, "/alipay/robot/pay", "application/json", `{"out_trade_no":"FP20261127000005"}`)
	waitDone(t, f.sim, "FP20261127000005")
	rec, _ := f.sim.Notification("FP20261127000005")
	if rec.Acknowledged || !rec.Abandoned || len(rec.Attempts) != 1+len(alipaysim.Schedule) {
		t.Fatalf("record: acknowledged %v abandoned %v, %d attempts", rec.Acknowledged, rec.Abandoned, len(rec.Attempts))
	}
}

// TestDuplicatesAndOutOfOrder: with both rates at 1, a payment is notified TRADE_FINISHED first
// and TRADE_SUCCESS after it, each sent twice.
func TestDuplicatesAndOutOfOrder(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *alipaysim.Config) {
		c.DuplicateRate, c.OutOfOrderRate = 1, 1
		c.Float = func() float64 { return 0.25 }
	})
	rcv := newReceiver(t, "success")
	biz, extra := precreate("FP20261127000006", rcv.url, "1.00")
	f.app.call(t, "alipay.trade.precreate", biz, extra)
	f.post(t, "/alipay/robot/pay", "application/json", `{"out_trade_no":"FP20261127000006"}`)
	var statuses []string
	ids := map[string]bool{}
	for range 4 {
		d := rcv.next(t)
		if err := verifyNotification(f.pki.AlipayPlatform.Cert, d.form); err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, d.form.Get("trade_status"))
		ids[d.form.Get("notify_id")] = true
	}
	if statuses[0] != "TRADE_FINISHED" || statuses[3] != "TRADE_SUCCESS" || len(ids) != 2 {
		t.Fatalf("arrived %v with %d notify_ids", statuses, len(ids))
	}
	waitDone(t, f.sim, "FP20261127000006")
}

func TestDropNotifications(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, "success")
	biz, extra := precreate("FP20261127000007", rcv.url, "1.00")
	f.app.call(t, "alipay.trade.precreate", biz, extra)
	if status, body := f.post(t, "/_sandbox/alipay/orders/FP20261127000007/drop-notifications", "", ""); status != http.StatusOK {
		t.Fatalf("drop: %d %s", status, body)
	}
	if status, _ := f.post(t, "/_sandbox/alipay/orders/FP-NONE/drop-notifications", "", ""); status != http.StatusNotFound {
		t.Fatalf("drop an unknown order: %d", status)
	}
	f.post(t, "/alipay/robot/pay", "application/json", `{"out_trade_no":"FP20261127000007"}`)
	waitDone(t, f.sim, "FP20261127000007")
	status, body := f.get(t, "/_sandbox/alipay/notifications/FP20261127000007")
	var rec struct {
		Dropped  bool
		Attempts []any
		Body     string
	}
	json.Unmarshal([]byte(body), &rec)
	if status != http.StatusOK || !rec.Dropped || len(rec.Attempts) != 0 || !strings.Contains(rec.Body, "trade_status=TRADE_SUCCESS") {
		t.Fatalf("record %d %s", status, body)
	}
	if n := rcv.requests(); n != 0 {
		t.Fatalf("%d notifications of a dropped order", n)
	}
	// The trade is paid all the same: a query finds it.
	if q := f.app.call(t, "alipay.trade.query", map[string]string{"out_trade_no": "FP20261127000007"}, nil); q["trade_status"] != "TRADE_SUCCESS" {
		t.Fatalf("query: %v", q)
	}
}

func TestPayerPage(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, "success")
	biz, extra := precreate("FP20261127000008", rcv.url, "278.00")
	qr := f.app.call(t, "alipay.trade.precreate", biz, extra)["qr_code"].(string)
	code := qrPattern.FindStringSubmatch(qr)[1]
	status, page := f.get(t, "/alipay/pay?code="+code)
	if status != http.StatusOK || !strings.Contains(page, `id="pay"`) || !strings.Contains(page, "¥278.00") ||
		!strings.Contains(page, alipaysim.DefaultMerchantName) {
		t.Fatalf("page: %d\n%s", status, page)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(f.url+"/alipay/pay", url.Values{"code": {code}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/alipay/pay?code="+code {
		t.Fatalf("pay: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, page = f.get(t, "/alipay/pay?code="+code); !strings.Contains(page, `id="paid"`) || !strings.Contains(page, `id="trade-no"`) {
		t.Fatalf("paid page:\n%s", page)
	}
	if status, page = f.get(t, "/alipay/pay?code=baxnothing"); status != http.StatusNotFound || !strings.Contains(page, `id="missing"`) {
		t.Fatalf("unknown code: %d", status)
	}
	// An order whose time has passed is closed: the page says so and it cannot be paid.
	biz, extra = precreate("FP20261127000009", rcv.url, "1.00")
	qr = f.app.call(t, "alipay.trade.precreate", biz, extra)["qr_code"].(string)
	f.clock.Advance(3 * time.Hour)
	code = qrPattern.FindStringSubmatch(qr)[1]
	if _, page = f.get(t, "/alipay/pay?code="+code); !strings.Contains(page, `id="closed"`) {
		t.Fatalf("expired page:\n%s", page)
	}
	if status, _ := f.post(t, "/alipay/robot/pay", "application/json", `{"code":"`+code+`"}`); status != http.StatusBadRequest {
		t.Fatalf("robot pays an expired order: %d", status)
	}
	f.app.now = f.clock.Now
	if q := f.app.call(t, "alipay.trade.query", map[string]string{"out_trade_no": "FP20261127000009"}, nil); q["trade_status"] != "TRADE_CLOSED" {
		t.Fatalf("expired query: %v", q)
	}
	waitDone(t, f.sim, "FP20261127000008")
}

func TestCloseAndTimeoutExpress(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	biz := map[string]string{"out_trade_no": "FP20261127000010", "total_amount": "5", "subject": "罚款", "timeout_express": "1c"}
	if a := f.app.call(t, "alipay.trade.precreate", biz, nil); a["code"] != "10000" {
		t.Fatalf("precreate with 1c: %v", a)
	}
	if a := f.app.call(t, "alipay.trade.close", map[string]string{"out_trade_no": "FP20261127000010"}, nil); a["code"] != "10000" {
		t.Fatalf("close: %v", a)
	}
	if a := f.app.call(t, "alipay.trade.close", map[string]string{"out_trade_no": "FP20261127000010"}, nil); a["code"] != "10000" {
		t.Fatalf("close again: %v", a)
	}
	st := f.sim.Snapshot()
	if len(st) != 1 || st[0].TradeStatus != "TRADE_CLOSED" || st[0].Total != 500 || st[0].TimeExpire != "1c" {
		t.Fatalf("state %+v", st)
	}
	wantSub(t, f.app.call(t, "alipay.trade.precreate", biz, nil), "40004", "ACQ.TRADE_HAS_CLOSE")
}
