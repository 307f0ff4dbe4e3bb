package unionpaysim_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/sandbox/internal/unionpaysim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var qrPattern = regexp.MustCompile(`^https://qr\.95516\.com/00010000/(\d{20})$`)

func TestConsumePayNotifyQuery(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, http.StatusOK)
	at := f.clock.Now()
	a := f.merchant.consume(t, "FP20261127100000000000000001", at, "27800", rcv.url)
	if a["respCode"] != "00" || !qrPattern.MatchString(a["qrCode"]) || a["orderId"] != "FP20261127100000000000000001" || a["txnTime"] != txnTime(at) {
		t.Fatalf("consume: %v", a)
	}
	if again := f.merchant.consume(t, "FP20261127100000000000000001", at, "27800", rcv.url); again["qrCode"] != a["qrCode"] {
		t.Fatalf("repeat: %v", again)
	}
	if other := f.merchant.consume(t, "FP20261127100000000000000001", at, "100", rcv.url); other["respCode"] != "12" {
		t.Fatalf("same order, another amount: %v", other)
	}
	if q := f.merchant.query(t, "FP20261127100000000000000001", at); q["respCode"] != "34" {
		t.Fatalf("query before paying: %v", q)
	}

	code := qrPattern.FindStringSubmatch(a["qrCode"])[1]
	status, body := f.post(t, "/unionpay/robot/pay", "application/json", `{"code":"`+code+`"}`)
	if status != http.StatusOK {
		t.Fatalf("robot pay: %d %s", status, body)
	}
	var paid map[string]string
	json.Unmarshal([]byte(body), &paid)
	if !regexp.MustCompile(`^\d{21}$`).MatchString(paid["queryId"]) || paid["respCode"] != "00" {
		t.Fatalf("paid %v", paid)
	}

	d := rcv.next(t)
	n := formMap(d.form)
	if err := f.merchant.verifyUnionPay(n); err != nil {
		t.Fatalf("notification signature: %v", err)
	}
	for k, want := range map[string]string{"version": "5.1.0", "merId": unionpaysim.DefaultMerID, "orderId": "FP20261127100000000000000001",
		"txnTime": txnTime(at), "txnType": "01", "txnSubType": "07", "txnAmt": "27800", "respCode": "00", "queryId": paid["queryId"],
		"currencyCode": "156", "signMethod": "01"} {
		if n[k] != want {
			t.Errorf("%s = %q, want %q", k, n[k], want)
		}
	}
	if !regexp.MustCompile(`^\d{10}$`).MatchString(n["traceTime"]) || len(n["settleDate"]) != 4 || len(n["traceNo"]) != 6 {
		t.Errorf("trace %q %q %q", n["traceTime"], n["settleDate"], n["traceNo"])
	}
	waitDone(t, f.sim, "FP20261127100000000000000001")
	rec, err := f.sim.Notification("FP20261127100000000000000001")
	if err != nil || !rec.Acknowledged || len(rec.Attempts) != 1 || rec.Body != d.raw {
		t.Fatalf("record %+v, %v", rec, err)
	}
	q := f.merchant.query(t, "FP20261127100000000000000001", at)
	if q["respCode"] != "00" || q["origRespCode"] != "00" || q["queryId"] != paid["queryId"] || q["txnAmt"] != "27800" || q["traceTime"] != n["traceTime"] {
		t.Fatalf("query after paying: %v", q)
	}
	if q := f.merchant.query(t, "FP20261127100000000000000001", at.Add(time.Second)); q["respCode"] != "34" {
		t.Fatalf("another txnTime is another order: %v", q)
	}
	if n := rcv.requests(); n != 1 {
		t.Errorf("%d notifications", n)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	at := f.clock.Now()
	tests := []struct {
		name, code string
		tamper     func(url.Values)
	}{
		{"fail/changed-after-signing", "11", func(v url.Values) { v.Set("txnAmt", "1") }},
		{"fail/other-cert-id", "11", func(v url.Values) { v.Set("certId", "12345") }},
		{"fail/sign-method-11", "11", func(v url.Values) { v.Set("signMethod", "11") }},
		{"fail/version-5.0.0", "10", func(v url.Values) { v.Set("version", "5.0.0") }},
		{"fail/other-merchant", "31", func(v url.Values) { v.Set("merId", "777290058110099") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := *f.merchant
			m.tamper = tt.tamper
			if a := m.consume(t, "FP20261127100000000000000002", at, "100", "https://gw.example/n"); a["respCode"] != tt.code || a["respMsg"] == "" {
				t.Fatalf("answer %v, want %s", a, tt.code)
			}
		})
	}
	for _, b := range []struct{ name, orderID, amount string }{{"fail/short-order-id", "FP1", "100"}, {"fail/order-id-dash", "FP-2026112710000000", "100"},
		{"fail/amount-yuan", "FP20261127100000000000000003", "1.00"}} {
		if a := f.merchant.consume(t, b.orderID, at, b.amount, "https://gw.example/n"); a["respCode"] != "10" {
			t.Fatalf("%s: %v", b.name, a)
		}
	}
	if n := len(f.sim.Snapshot()); n != 0 {
		t.Fatalf("%d orders after refusals", n)
	}
}

func TestScheduleAndAbandon(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusOK)
	f.merchant.consume(t, "FP20261127100000000000000004", f.clock.Now(), "100", rcv.url)
	f.post(t, "/unionpay/robot/pay", "application/json", `{"order_id":"FP20261127100000000000000004"}`)
	waitDone(t, f.sim, "FP20261127100000000000000004")
	rec, _ := f.sim.Notification("FP20261127100000000000000004")
	if !rec.Acknowledged || len(rec.Attempts) != 3 || rec.Attempts[2].Status != 200 {
		t.Fatalf("record %+v", rec)
	}

	never := newReceiver(t, http.StatusInternalServerError)
	f.merchant.consume(t, "FP20261127100000000000000005", f.clock.Now(), "100", never.url)
	f.post(t, "/unionpay/robot/pay", "application/json", `{"order_id":"FP20261127100000000000000005"}`)
	waitDone(t, f.sim, "FP20261127100000000000000005")
	rec, _ = f.sim.Notification("FP20261127100000000000000005")
	if rec.Acknowledged || !rec.Abandoned || len(rec.Attempts) != 4 {
		t.Fatalf("abandoned record %+v", rec)
	}
}

func TestParseSchedule(t *testing.T) {
	t.Parallel()
	d, err := unionpaysim.ParseSchedule(unionpaysim.DefaultSchedule)
	if err != nil || len(d) != 28 || d[0] != time.Minute || d[4] != 16*time.Minute || d[27] != time.Hour {
		t.Fatalf("%v %v", d, err)
	}
	var total time.Duration
	for _, x := range d {
		total += x
	}
	if total > 24*time.Hour {
		t.Fatalf("the default schedule runs %s, past 24 h", total)
	}
	for _, bad := range []string{"", "1m,,2m", "0s", "x*1m", "2*", "-1m"} {
		if _, err := unionpaysim.ParseSchedule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDuplicatesOutOfOrderAndDrop(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *unionpaysim.Config) {
		c.DuplicateRate, c.OutOfOrderRate = 1, 1
		c.Float = func() float64 { return 0.5 }
		c.Schedule = []time.Duration{400 * time.Millisecond}
	})
	rcv := newReceiver(t, http.StatusOK)
	// The notification is held back (half the first resend interval) and its first round is sent
	// twice.
	f.merchant.consume(t, "FP20261127100000000000000006", f.clock.Now(), "100", rcv.url)
	f.post(t, "/unionpay/robot/pay", "application/json", `{"order_id":"FP20261127100000000000000006"}`)
	seen := map[string]int{}
	for range 2 {
		d := rcv.next(t)
		seen[d.form.Get("orderId")]++
	}
	if seen["FP20261127100000000000000006"] != 2 {
		t.Fatalf("deliveries %v, want the notification twice", seen)
	}
	waitDone(t, f.sim, "FP20261127100000000000000006")

	// Dropped: paid, but the notification never leaves; the query finds the payment.
	at := f.clock.Now()
	f.merchant.consume(t, "FP20261127100000000000000007", at, "100", rcv.url)
	if status, _ := f.post(t, "/_sandbox/unionpay/orders/FP20261127100000000000000007/drop-notifications", "", ""); status != 200 {
		t.Fatalf("drop: %d", status)
	}
	f.post(t, "/unionpay/robot/pay", "application/json", `{"order_id":"FP20261127100000000000000007"}`)
	waitDone(t, f.sim, "FP20261127100000000000000007")
	rec, _ := f.sim.Notification("FP20261127100000000000000007")
	if !rec.Dropped || len(rec.Attempts) != 0 {
		t.Fatalf("dropped record %+v", rec)
	}
	if q := f.merchant.query(t, "FP20261127100000000000000007", at); q["origRespCode"] != "00" {
		t.Fatalf("query %v", q)
	}
	if status, body := f.get(t, "/_sandbox/unionpay/notifications/FP20261127100000000000000007"); status != 200 || !strings.Contains(body, `"dropped":true`) {
		t.Fatalf("inspection %d %s", status, body)
	}
}

func TestPayerPageAndFrontTransaction(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, http.StatusOK)
	a := f.merchant.consume(t, "FP20261127100000000000000008", f.clock.Now(), "27800", rcv.url)
	code := qrPattern.FindStringSubmatch(a["qrCode"])[1]
	status, page := f.get(t, "/unionpay/pay?code="+code)
	if status != 200 || !strings.Contains(page, `id="pay"`) || !strings.Contains(page, "¥278.00") {
		t.Fatalf("page %d\n%s", status, page)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(f.url+"/unionpay/pay", url.Values{"code": {code}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay: %d", resp.StatusCode)
	}
	if _, page = f.get(t, "/unionpay/pay?code="+code); !strings.Contains(page, `id="paid"`) || !strings.Contains(page, `id="query-id"`) {
		t.Fatalf("paid page\n%s", page)
	}
	if status, page = f.get(t, "/unionpay/pay?code=0"); status != 404 || !strings.Contains(page, `id="missing"`) {
		t.Fatalf("unknown code %d", status)
	}
	waitDone(t, f.sim, "FP20261127100000000000000008")

	// A front transaction: the browser posts the signed form and gets the payer page; once paid,
	// a form returns to frontUrl with the signed result.
	fields := map[string]string{"txnType": "01", "txnSubType": "01", "bizType": "000201", "channelType": "07", "accessType": "0",
		"orderId": "FP20261127100000000000000009", "txnTime": txnTime(f.clock.Now()), "txnAmt": "500", "currencyCode": "156",
		"backUrl": rcv.url, "frontUrl": "https://gw.example/return"}
	form := f.merchant.signed(t, fields)
	resp, err = f.merchant.client.PostForm(f.url+"/unionpay/gateway/api/frontTransReq.do", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("front: %d", resp.StatusCode)
	}
	status, body := f.post(t, "/unionpay/robot/pay", "application/json", `{"order_id":"FP20261127100000000000000009"}`)
	if status != 200 {
		t.Fatalf("pay front: %d %s", status, body)
	}
	st := f.sim.Snapshot()
	code = qrPattern.FindStringSubmatch(st[len(st)-1].QRCode)[1]
	if _, page = f.get(t, "/unionpay/pay?code="+code); !strings.Contains(page, `action="https://gw.example/return"`) || !strings.Contains(page, `id="return"`) ||
		!strings.Contains(page, `name="signature"`) {
		t.Fatalf("front paid page\n%s", page)
	}
	waitDone(t, f.sim, "FP20261127100000000000000009")
	rec, _ := f.sim.Notification("FP20261127100000000000000009")
	if n, _ := url.ParseQuery(rec.Body); !rec.Acknowledged || n.Get("txnSubType") != "01" || n.Get("bizType") != "000201" {
		t.Fatalf("front notification %+v", rec)
	}
}
