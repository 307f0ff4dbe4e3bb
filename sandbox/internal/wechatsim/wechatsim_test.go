package wechatsim_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/sandbox/internal/wechatsim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var codeURLPattern = regexp.MustCompile(`^weixin://wxpay/bizpayurl/up\?pr=([A-Za-z0-9]+)$`)

func TestNativeOrderPayAndNotify(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, http.StatusNoContent)
	body := orderBody("FP20261127000001", rcv.url, 20000)

	r := f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", body)
	if r.status != http.StatusOK {
		t.Fatalf("native: %d %s", r.status, r.body)
	}
	code := decodeJSON[wechatsim.NativeResponse](t, r.body).CodeURL
	if !codeURLPattern.MatchString(code) {
		t.Fatalf("code_url %q", code)
	}

	// The same request again is answered with the same code_url.
	r = f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", body)
	if again := decodeJSON[wechatsim.NativeResponse](t, r.body).CodeURL; r.status != http.StatusOK || again != code {
		t.Fatalf("repeat: %d %s, want the same code_url %s", r.status, r.body, code)
	}

	r = f.merchant.do(t, http.MethodGet, "/v3/pay/transactions/out-trade-no/FP20261127000001?mchid=1900000001", nil)
	if tx := decodeJSON[wechatsim.Transaction](t, r.body); r.status != http.StatusOK || tx.TradeState != "NOTPAY" || tx.Amount.Total != 20000 {
		t.Fatalf("query before paying: %d %s", r.status, r.body)
	}

	// The robot pays by pr, as a payer scanning the code would.
	pr := codeURLPattern.FindStringSubmatch(code)[1]
	r = f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"pr":"`+pr+`"}`))
	if r.status != http.StatusOK {
		t.Fatalf("robot pay: %d %s", r.status, r.body)
	}
	paid := decodeJSON[wechatsim.Transaction](t, r.body)
	if !regexp.MustCompile(`^4200\d{24}$`).MatchString(paid.TransactionID) {
		t.Errorf("transaction_id %q", paid.TransactionID)
	}
	if st, err := time.Parse(time.RFC3339, paid.SuccessTime); err != nil || !strings.HasSuffix(paid.SuccessTime, "+08:00") || time.Since(st) > time.Minute {
		t.Errorf("success_time %q", paid.SuccessTime)
	}
	if paid.TradeState != "SUCCESS" || paid.Payer == nil || paid.Payer.OpenID == "" || paid.Amount.PayerTotal == nil || *paid.Amount.PayerTotal != 20000 {
		t.Errorf("paid transaction %+v", paid)
	}

	// The notification: platform-signed over the raw body, the resource opens with the APIv3 key.
	d := rcv.next(t)
	if err := verifyPlatform(f.pki.Platform.Cert, d.header, d.body, time.Now()); err != nil {
		t.Fatalf("notification signature: %v", err)
	}
	if d.header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", d.header.Get("Content-Type"))
	}
	ev := decodeJSON[wechatsim.Event](t, d.body)
	if ev.EventType != "TRANSACTION.SUCCESS" || ev.ResourceType != "encrypt-resource" || ev.ID == "" ||
		ev.Resource.OriginalType != "transaction" || ev.Resource.AssociatedData != "transaction" || !strings.HasSuffix(ev.CreateTime, "+08:00") {
		t.Errorf("event %+v", ev)
	}
	tx := decodeJSON[wechatsim.Transaction](t, openResource(t, f.pki.APIv3Key, ev))
	if tx.OutTradeNo != "FP20261127000001" || tx.TransactionID != paid.TransactionID || tx.TradeState != "SUCCESS" ||
		tx.Attach != "bill-42" || tx.AppID != wechatsim.DefaultAppID || tx.MchID != wechatsim.DefaultMchID || tx.TradeType != "NATIVE" {
		t.Errorf("plaintext %+v", tx)
	}
	waitDone(t, f.sim, "FP20261127000001")
	rec, err := f.sim.Notification("FP20261127000001")
	if err != nil || !rec.Acknowledged || len(rec.Attempts) != 1 || rec.Attempts[0].Status != http.StatusNoContent {
		t.Fatalf("record %+v, %v", rec, err)
	}

	r = f.merchant.do(t, http.MethodGet, "/v3/pay/transactions/out-trade-no/FP20261127000001?mchid=1900000001", nil)
	if q := decodeJSON[wechatsim.Transaction](t, r.body); q.TradeState != "SUCCESS" || q.TransactionID != paid.TransactionID {
		t.Errorf("query after paying: %s", r.body)
	}
	r = f.merchant.do(t, http.MethodGet, "/v3/pay/transactions/id/"+paid.TransactionID+"?mchid=1900000001", nil)
	if q := decodeJSON[wechatsim.Transaction](t, r.body); r.status != http.StatusOK || q.OutTradeNo != "FP20261127000001" {
		t.Errorf("query by transaction_id: %d %s", r.status, r.body)
	}

	// Once paid, the order can be neither placed again nor closed; paying again sends nothing.
	wantError(t, f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", body), http.StatusBadRequest, "ORDERPAID")
	wantError(t, f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/out-trade-no/FP20261127000001/close",
		map[string]string{"mchid": "1900000001"}), http.StatusBadRequest, "ORDERPAID")
	r = f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"FP20261127000001"}`))
	if again := decodeJSON[wechatsim.Transaction](t, r.body); r.status != http.StatusOK || again.TransactionID != paid.TransactionID {
		t.Errorf("paying twice: %d %s", r.status, r.body)
	}
	if n := rcv.requests(); n != 1 {
		t.Errorf("%d notifications, want 1", n)
	}
}

func TestNotificationResentUntilAcknowledged(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, http.StatusInternalServerError, http.StatusInternalServerError, http.StatusNoContent)
	if r := f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody("FP-retry-01", rcv.url, 100)); r.status != http.StatusOK {
		t.Fatalf("native: %d %s", r.status, r.body)
	}
	if r := f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"FP-retry-01"}`)); r.status != http.StatusOK {
		t.Fatalf("pay: %d %s", r.status, r.body)
	}
	var bodies [][]byte
	for range 3 {
		d := rcv.next(t)
		if err := verifyPlatform(f.pki.Platform.Cert, d.header, d.body, time.Now()); err != nil {
			t.Fatalf("resend signature: %v", err)
		}
		bodies = append(bodies, d.body)
	}
	waitDone(t, f.sim, "FP-retry-01")
	if !bytes.Equal(bodies[0], bodies[1]) || !bytes.Equal(bodies[1], bodies[2]) {
		t.Error("a resend changed the notification body")
	}
	rec, err := f.sim.Notification("FP-retry-01")
	if err != nil {
		t.Fatal(err)
	}
	var statuses []int
	for _, a := range rec.Attempts {
		statuses = append(statuses, a.Status)
	}
	if len(statuses) != 3 || statuses[0] != 500 || statuses[1] != 500 || statuses[2] != 204 || !rec.Acknowledged {
		t.Fatalf("attempts %v, acknowledged %v; want [500 500 204] acknowledged", statuses, rec.Acknowledged)
	}
	if rec.Attempts[2].Round != 2 {
		t.Errorf("third attempt is round %d, want 2", rec.Attempts[2].Round)
	}
	if n := rcv.requests(); n != 3 {
		t.Errorf("%d requests, want exactly 3", n)
	}
}

func TestNotificationAbandonedAfterSchedule(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *wechatsim.Config) { c.ScheduleScale = 0.00001 })
	rcv := newReceiver(t, http.StatusServiceUnavailable)
	f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody("FP-never-ok", rcv.url, 100))
	f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"FP-never-ok"}`))
	waitDone(t, f.sim, "FP-never-ok")
	rec, _ := f.sim.Notification("FP-never-ok")
	if want := 1 + len(wechatsim.Schedule); len(rec.Attempts) != want || rec.Acknowledged {
		t.Fatalf("%d attempts, acknowledged %v; want %d, not acknowledged", len(rec.Attempts), rec.Acknowledged, want)
	}
	for _, o := range f.sim.Snapshot() {
		if o.OutTradeNo == "FP-never-ok" && (o.Notification == nil || !o.Notification.Abandoned) {
			t.Errorf("state %+v, want abandoned", o.Notification)
		}
	}
}

func TestDuplicateDeliveries(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *wechatsim.Config) { c.Duplicates = 3 })
	rcv := newReceiver(t, http.StatusOK)
	f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody("FP-dup-0001", rcv.url, 100))
	f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"FP-dup-0001"}`))
	first := rcv.next(t)
	for range 2 {
		if d := rcv.next(t); !bytes.Equal(d.body, first.body) || d.header.Get("Wechatpay-Signature") != first.header.Get("Wechatpay-Signature") {
			t.Error("a duplicate differs from the first copy")
		}
	}
	waitDone(t, f.sim, "FP-dup-0001")
	if rec, _ := f.sim.Notification("FP-dup-0001"); len(rec.Attempts) != 3 {
		t.Errorf("%d attempts recorded, want 3", len(rec.Attempts))
	}
}

func TestNotificationRecordReplays(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, http.StatusOK)
	f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody("FP-replay-1", rcv.url, 100))
	f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"FP-replay-1"}`))
	sent := rcv.next(t)
	waitDone(t, f.sim, "FP-replay-1")

	r := f.get(t, "/_sandbox/wechat/notifications/FP-replay-1")
	if r.status != http.StatusOK {
		t.Fatalf("record: %d %s", r.status, r.body)
	}
	rec := decodeJSON[wechatsim.NotificationRecord](t, r.body)
	if rec.URL != rcv.url || rec.Body != string(sent.body) || len(rec.Attempts) != 1 || rec.Attempts[0].Status != 200 {
		t.Fatalf("record %+v", rec)
	}
	h := http.Header{}
	for k, v := range rec.Headers {
		h.Set(k, v)
	}
	if err := verifyPlatform(f.pki.Platform.Cert, h, []byte(rec.Body), time.Now()); err != nil {
		t.Fatalf("the recorded request does not verify: %v", err)
	}
	if h.Get("Wechatpay-Signature") != sent.header.Get("Wechatpay-Signature") {
		t.Error("the recorded headers are not those sent")
	}
	if r := f.get(t, "/_sandbox/wechat/notifications/unknown-order"); r.status != http.StatusNotFound {
		t.Errorf("unknown order: %d", r.status)
	}
}

func TestBadMerchantSignature(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, http.StatusOK)
	cases := []struct {
		name  string
		tweak func(m *merchant)
	}{
		{"fail/other-key", func(m *merchant) { m.key = f.pki.Platform.Key }},
		{"fail/wrong-serial", func(m *merchant) { m.serial = "0123456789ABCDEF" }},
		{"fail/wrong-mchid", func(m *merchant) { m.mchid = "1900000002" }},
		{"fail/old-timestamp", func(m *merchant) { m.timestampOffset = -6 * time.Minute }},
		{"fail/future-timestamp", func(m *merchant) { m.timestampOffset = 6 * time.Minute }},
		{"fail/body-changed", func(m *merchant) {
			m.tamper = func(r *http.Request) {
				b := orderBody("FP-badsig-01", rcv.url, 1)
				raw, _ := json.Marshal(b)
				r.Body = ioNopCloser(raw)
				r.ContentLength = int64(len(raw))
			}
		}},
		{"fail/path-changed", func(m *merchant) {
			m.tamper = func(r *http.Request) { r.URL.Path = "/v3/pay/transactions/native/" }
		}},
		{"fail/no-header", func(m *merchant) { m.tamper = func(r *http.Request) { r.Header.Del("Authorization") } }},
		{"fail/other-scheme", func(m *merchant) {
			m.tamper = func(r *http.Request) {
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SM2-WITH-SM3", 1))
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := *f.merchant
			tc.tweak(&m)
			wantError(t, m.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody("FP-badsig-01", rcv.url, 20000)),
				http.StatusUnauthorized, "SIGN_ERROR")
		})
	}
	wantError(t, f.merchant.do(t, http.MethodGet, "/v3/pay/transactions/out-trade-no/FP-badsig-01?mchid=1900000001", nil),
		http.StatusNotFound, "ORDER_NOT_EXIST")
}

func TestOrderValidation(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	const notify = "https://merchant.example/notify/wechat"
	with := func(change func(map[string]any)) map[string]any {
		b := orderBody("FP-valid-001", notify, 20000)
		change(b)
		return b
	}
	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"fail/short-out-trade-no", with(func(b map[string]any) { b["out_trade_no"] = "12345" }), 400, "PARAM_ERROR"},
		{"fail/long-out-trade-no", with(func(b map[string]any) { b["out_trade_no"] = strings.Repeat("9", 33) }), 400, "PARAM_ERROR"},
		{"fail/out-trade-no-charset", with(func(b map[string]any) { b["out_trade_no"] = "FP 2026/11" }), 400, "PARAM_ERROR"},
		{"fail/zero-amount", with(func(b map[string]any) { b["amount"] = map[string]any{"total": 0} }), 400, "PARAM_ERROR"},
		{"fail/usd", with(func(b map[string]any) { b["amount"] = map[string]any{"total": 1, "currency": "USD"} }), 400, "PARAM_ERROR"},
		{"fail/yuan-not-fen", with(func(b map[string]any) { b["amount"] = map[string]any{"total": 200.5} }), 400, "PARAM_ERROR"},
		{"fail/notify-not-url", with(func(b map[string]any) { b["notify_url"] = "merchant.example/notify" }), 400, "PARAM_ERROR"},
		{"fail/notify-ftp", with(func(b map[string]any) { b["notify_url"] = "ftp://merchant.example/notify" }), 400, "PARAM_ERROR"},
		{"fail/notify-query", with(func(b map[string]any) { b["notify_url"] = notify + "?token=1" }), 400, "PARAM_ERROR"},
		{"fail/no-description", with(func(b map[string]any) { delete(b, "description") }), 400, "PARAM_ERROR"},
		{"fail/time-expire-format", with(func(b map[string]any) { b["time_expire"] = "2026-11-27 23:59:59" }), 400, "PARAM_ERROR"},
		{"fail/time-expire-past", with(func(b map[string]any) { b["time_expire"] = "2020-01-01T00:00:00+08:00" }), 400, "PARAM_ERROR"},
		{"fail/unknown-field", with(func(b map[string]any) { b["total_fee"] = 1 }), 400, "PARAM_ERROR"},
		{"fail/other-appid", with(func(b map[string]any) { b["appid"] = "wx0000000000000000" }), 400, "APPID_MCHID_NOT_MATCH"},
		{"fail/other-mchid", with(func(b map[string]any) { b["mchid"] = "1900000002" }), 400, "MCH_NOT_EXISTS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", tc.body), tc.status, tc.code)
		})
	}

	ok := with(func(b map[string]any) {
		b["out_trade_no"] = "FP_valid|*-2"
		b["time_expire"] = time.Now().Add(time.Hour).Format(time.RFC3339)
	})
	if r := f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", ok); r.status != http.StatusOK {
		t.Fatalf("valid order with every allowed character: %d %s", r.status, r.body)
	}
	ok["amount"] = map[string]any{"total": 19900, "currency": "CNY"}
	wantError(t, f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", ok), http.StatusBadRequest, "INVALID_REQUEST")
	ok["amount"] = map[string]any{"total": 20000, "currency": "CNY"}
	ok["description"] = "另一个描述"
	wantError(t, f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", ok), http.StatusBadRequest, "INVALID_REQUEST")
	r := f.merchant.do(t, http.MethodGet, "/v3/pay/transactions/out-trade-no/"+url.PathEscape("FP_valid|*-2")+"?mchid=1900000001", nil)
	if r.status != http.StatusOK {
		t.Errorf("query with escaped characters: %d %s", r.status, r.body)
	}
	wantError(t, f.merchant.do(t, http.MethodGet, "/v3/pay/transactions/out-trade-no/FP-valid-001", nil), http.StatusBadRequest, "PARAM_ERROR")
}

func TestCloseOrder(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, http.StatusOK)
	f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody("FP-close-01", rcv.url, 5000))
	closeBody := map[string]string{"mchid": wechatsim.DefaultMchID}
	for range 2 { // closing twice changes nothing
		r := f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/out-trade-no/FP-close-01/close", closeBody)
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("close: %d %q", r.status, r.body)
		}
	}
	r := f.merchant.do(t, http.MethodGet, "/v3/pay/transactions/out-trade-no/FP-close-01?mchid=1900000001", nil)
	if tx := decodeJSON[wechatsim.Transaction](t, r.body); tx.TradeState != "CLOSED" || tx.TradeStateDesc == "" {
		t.Fatalf("query after close: %s", r.body)
	}
	wantError(t, f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"FP-close-01"}`)), http.StatusBadRequest, "ORDER_CLOSED")
	wantError(t, f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/out-trade-no/FP-nobody-01/close", closeBody), http.StatusNotFound, "ORDER_NOT_EXIST")
	wantError(t, f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody("FP-close-01", rcv.url, 5000)), http.StatusBadRequest, "ORDER_CLOSED")
	if n := rcv.requests(); n != 0 {
		t.Errorf("%d notifications for a closed order", n)
	}
}

func TestExpiredOrderCannotBePaid(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	b := orderBody("FP-expire-01", "https://merchant.example/notify", 5000)
	b["time_expire"] = f.clock.Now().Add(10 * time.Minute).Format(time.RFC3339)
	r := f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", b)
	if r.status != http.StatusOK {
		t.Fatalf("native: %d %s", r.status, r.body)
	}
	pr := codeURLPattern.FindStringSubmatch(decodeJSON[wechatsim.NativeResponse](t, r.body).CodeURL)[1]
	f.clock.Advance(11 * time.Minute)
	wantError(t, f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"FP-expire-01"}`)), http.StatusBadRequest, "ORDER_EXPIRED")
	page := f.get(t, "/wechat/pay?pr="+pr)
	if page.status != http.StatusOK || bytes.Contains(page.body, []byte(`id="pay"`)) || !bytes.Contains(page.body, []byte("过期")) {
		t.Errorf("page of an expired order: %d %s", page.status, page.body)
	}
}

func TestRobotPayErrors(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	wantError(t, f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"FP-nobody-02"}`)), http.StatusNotFound, "ORDER_NOT_EXIST")
	wantError(t, f.post(t, "/wechat/robot/pay", "application/json", []byte(`{}`)), http.StatusBadRequest, "PARAM_ERROR")
	wantError(t, f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"a","pr":"b"}`)), http.StatusBadRequest, "PARAM_ERROR")
}

func TestPayerPage(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rcv := newReceiver(t, http.StatusOK)
	r := f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody("FP-page-0001", rcv.url, 20000))
	pr := codeURLPattern.FindStringSubmatch(decodeJSON[wechatsim.NativeResponse](t, r.body).CodeURL)[1]

	page := f.get(t, "/wechat/pay?pr="+pr)
	html := string(page.body)
	if page.status != http.StatusOK || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %s", page.status, page.header.Get("Content-Type"))
	}
	for _, want := range []string{"¥200.00", `id="pay"`, "确认支付", wechatsim.DefaultMerchantName, "交通违法罚款", `name="viewport"`, `lang="zh-CN"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, banned := range []string{"<script", "<link", "http://", "https://", "@import", "url("} {
		if strings.Contains(html, banned) {
			t.Errorf("the page holds %q: it must not load anything from outside", banned)
		}
	}

	// The browser posts the form; the answer redirects to the page, which shows the payment.
	noFollow := &http.Client{Transport: f.merchant.client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.PostForm(f.url+"/wechat/pay", url.Values{"pr": {pr}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/wechat/pay?pr="+pr {
		t.Fatalf("form post: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	page = f.get(t, "/wechat/pay?pr="+pr)
	tx := decodeJSON[wechatsim.Transaction](t, f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"pr":"`+pr+`"}`)).body)
	html = string(page.body)
	if !strings.Contains(html, `id="paid"`) || !strings.Contains(html, "支付成功") || !strings.Contains(html, tx.TransactionID) || strings.Contains(html, `id="pay"`) {
		t.Errorf("the paid page does not show the payment: %s", html)
	}
	rcv.next(t)
	waitDone(t, f.sim, "FP-page-0001")

	if page := f.get(t, "/wechat/pay?pr=nothing"); page.status != http.StatusNotFound || !strings.Contains(string(page.body), `id="missing"`) {
		t.Errorf("unknown pr: %d", page.status)
	}
}

func TestShutdownStopsResends(t *testing.T) {
	t.Parallel()
	// A real-time schedule: after the first failure the next resend is 15 s away, and stopping
	// the simulator must not wait for it (goleak in TestMain checks that nothing is left).
	f := setup(t, func(c *wechatsim.Config) { c.ScheduleScale = 1 })
	rcv := newReceiver(t, http.StatusInternalServerError)
	f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody("FP-shutdown1", rcv.url, 100))
	f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"FP-shutdown1"}`))
	rcv.next(t)
}

func TestYuan(t *testing.T) {
	t.Parallel()
	for fen, want := range map[int64]string{20000: "¥200.00", 5: "¥0.05", 12345: "¥123.45", 0: "¥0.00", -150: "-¥1.50"} {
		if got := wechatsim.Yuan(fen); got != want {
			t.Errorf("Yuan(%d) = %q, want %q", fen, got, want)
		}
	}
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add(`WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="abc",timestamp="1795000000",serial_no="1F2E",signature="c2ln"`)
	f.Add(`WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="2"`)
	f.Add(`WECHATPAY2-SHA256-RSA2048 mchid="1900000001" nonce_str="abc"`)
	f.Add(`Bearer x`)
	f.Fuzz(func(t *testing.T, h string) {
		a, err := wechatsim.ParseAuthorization(h)
		if err == nil && (a.MchID == "" || a.NonceStr == "" || a.Timestamp == "" || a.SerialNo == "" || a.Signature == "") {
			t.Fatalf("accepted %q with a missing parameter: %+v", h, a)
		}
	})
}
