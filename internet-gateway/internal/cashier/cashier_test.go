package cashier_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/goleak"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/cashier"
	"finepay/internet-gateway/internal/fixture"
	"finepay/shared/envelope"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// site is the gateway's HTTP surface over a fixture, and a browser with cookies.
type site struct {
	*fixture.Env
	e       *echo.Echo
	cookies map[string]string
	ua      string // the browser's User-Agent
}

func setup(t *testing.T, db *sqldb.DB, cfg cashier.Config) *site {
	t.Helper()
	env := fixture.New(t, db, fixture.Options{})
	e, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
	e.IPExtractor = echo.ExtractIPDirect()
	cfg.Bills, cfg.Orders, cfg.Limiter, cfg.Now = env.Bills, env.Orders, env.KV, env.Clock.Now
	h, err := cashier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Register(e)
	e.POST("/notify/wechat", env.Notes.HandleWeChatHTTP)
	e.POST("/notify/alipay", env.Notes.HandleAlipayHTTP)
	e.POST("/notify/unionpay", env.Notes.HandleUnionPayHTTP)
	return &site{Env: env, e: e, cookies: map[string]string{}, ua: desktopUA}
}

func (s *site) do(method, path string, form url.Values) *httptest.ResponseRecorder {
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	for k, v := range s.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	req.Header.Set("User-Agent", s.ua)
	rec := httptest.NewRecorder()
	s.e.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		s.cookies[c.Name] = c.Value
	}
	return rec
}

// text returns the text of the element with id in an HTML body.
func text(t *testing.T, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no element %q in\n%s", id, body)
	}
	return strings.TrimSpace(m[1])
}

func attr(t *testing.T, body, id, name string) string {
	t.Helper()
	m := regexp.MustCompile(`<[^>]*id="` + regexp.QuoteMeta(id) + `"[^>]*>`).FindString(body)
	v := regexp.MustCompile(name + `="([^"]*)"`).FindStringSubmatch(m)
	if v == nil {
		t.Fatalf("no %s on %q in\n%s", name, id, body)
	}
	return strings.ReplaceAll(v[1], "&amp;", "&")
}

func TestP2CashierPage(t *testing.T) {
	t.Parallel()
	s := setup(t, sqltest.Open(t, sqldb.Postgres), cashier.Config{})
	tok := fixture.Token()
	s.Publish(t, fixture.Bill("B1", tok))
	rec := s.do(http.MethodGet, "/q/"+tok, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	for id, want := range map[string]string{"party": "张*明", "plate": "黑A·1***5", "decision-no": "2301021234567890",
		"fine": "¥200.00", "late-fee": "¥78.00", "total": "¥278.00", "unit": "哈尔滨市公安局交通警察支队", "pay-wechat": "微信支付"} {
		if got := text(t, body, id); got != want {
			t.Errorf("#%s = %q, want %q", id, got, want)
		}
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"} {
		if rec.Header().Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "<script src") {
		t.Error("the page loads something from elsewhere")
	}
	if s.cookies["fp_csrf"] == "" || attr(t, body, "pay-wechat", "type") != "submit" || !strings.Contains(body, `value="`+s.cookies["fp_csrf"]+`"`) {
		t.Error("no CSRF token in cookie and form")
	}
	// Within the 15 days of grace there is no late fee (same page, another day).
	s.Clock.Set(time.Date(2025, 2, 10, 4, 0, 0, 0, time.UTC))
	body = s.do(http.MethodGet, "/q/"+tok, nil).Body.String()
	if text(t, body, "late-fee") != "¥0.00" || text(t, body, "total") != "¥200.00" {
		t.Errorf("within grace: late fee %s total %s", text(t, body, "late-fee"), text(t, body, "total"))
	}
}

func TestP2CashierUnknownToken(t *testing.T) {
	t.Parallel()
	s := setup(t, sqltest.Open(t, sqldb.SQLite), cashier.Config{})
	s.Publish(t, fixture.Bill("B1", fixture.Token()))
	nonce := regexp.MustCompile(`nonce="[^"]*"`)
	var first string
	for _, p := range []string{"/q/" + fixture.Token(), "/q/short", "/q/" + fixture.Token() + "/result", "/q/" + fixture.Token() + "/order/FP1"} {
		rec := s.do(http.MethodGet, p, nil)
		if rec.Code != http.StatusNotFound {
			t.Fatalf("%s: %d", p, rec.Code)
		}
		body := nonce.ReplaceAllString(rec.Body.String(), "")
		if first == "" {
			first = body
		} else if body != first {
			t.Errorf("%s: the 404 page differs from another 404 page", p)
		}
		for _, leak := range []string{"B1", "缴款人", "张*", "2301", strings.TrimPrefix(p, "/q/")} {
			if strings.Contains(body, leak) {
				t.Errorf("%s: the 404 page mentions %q", p, leak)
			}
		}
	}
	if rec := s.do(http.MethodGet, "/q/"+fixture.Token()+"/status", nil); rec.Code != http.StatusNotFound {
		t.Fatalf("status of an unknown token: %d", rec.Code)
	}
}

func TestP2CashierPayFlow(t *testing.T) {
	t.Parallel()
	s := setup(t, sqltest.Open(t, sqldb.Postgres), cashier.Config{SandboxPay: map[string]string{"wechat": "http://127.0.0.1:8070/wechat/pay"}})
	tok := fixture.Token()
	s.Publish(t, fixture.Bill("B1", tok))
	body := s.do(http.MethodGet, "/q/"+tok, nil).Body.String()
	if rec := s.do(http.MethodPost, "/q/"+tok+"/pay/wechat", url.Values{"csrf": {"forged-token-forged-token"}}); rec.Code != http.StatusForbidden {
		t.Fatalf("POST without the page's token: %d", rec.Code)
	}
	rec := s.do(http.MethodPost, "/q/"+tok+"/pay/wechat", url.Values{"csrf": {s.cookies["fp_csrf"]}})
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/q/"+tok+"/order/FP") {
		t.Fatalf("pay: %d %s", rec.Code, rec.Header().Get("Location"))
	}
	orderPath := rec.Header().Get("Location")
	orderNo := strings.TrimPrefix(orderPath, "/q/"+tok+"/order/")
	body = s.do(http.MethodGet, orderPath, nil).Body.String()
	if text(t, body, "amount") != "¥278.00" || !strings.Contains(body, "请使用微信扫码支付") ||
		!strings.HasPrefix(attr(t, body, "qr", "src"), "data:image/png;base64,") {
		t.Fatalf("order page:\n%s", body)
	}
	pay := attr(t, body, "sandbox-pay", "href")
	wo := s.WeChat.Order(orderNo)
	pr := strings.TrimPrefix(strings.Split(wo.CodeURL, "&")[0], "weixin://wxpay/bizpayurl/up?pr=")
	if pay != "http://127.0.0.1:8070/wechat/pay?pr="+pr {
		t.Fatalf("sandbox link %q, code_url %q", pay, wo.CodeURL)
	}
	if !strings.Contains(body, `data-status="/q/`+tok+`/status"`) {
		t.Fatal("the order page does not poll")
	}
	status := func() cashier.Status {
		rec := s.do(http.MethodGet, "/q/"+tok+"/status", nil)
		var st cashier.Status
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatalf("status %d %s", rec.Code, rec.Body)
		}
		return st
	}
	if st := status(); st.Paid || st.Status != "payable" {
		t.Fatalf("status before payment %+v", st)
	}
	// Before payment the result page sends the payer back to the bill.
	if rec := s.do(http.MethodGet, "/q/"+tok+"/result", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/q/"+tok {
		t.Fatalf("result before payment: %d", rec.Code)
	}

	p := s.WeChat.Pay(orderNo)
	note := s.PKI.NotificationBody("EV-1", p)
	req := httptest.NewRequest(http.MethodPost, "/notify/wechat", strings.NewReader(string(note)))
	for k, v := range s.PKI.Sign(s.Clock.Now(), note) {
		req.Header[k] = v
	}
	nrec := httptest.NewRecorder()
	s.e.ServeHTTP(nrec, req)
	if nrec.Code != http.StatusNoContent {
		t.Fatalf("notification: %d %s", nrec.Code, nrec.Body)
	}
	if st := status(); !st.Paid || st.Receipt || st.Status != "paid" {
		t.Fatalf("status after payment %+v", st)
	}
	for _, p := range []string{"/q/" + tok, orderPath} {
		if rec := s.do(http.MethodGet, p, nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/q/"+tok+"/result" {
			t.Fatalf("%s after payment: %d %s", p, rec.Code, rec.Header().Get("Location"))
		}
	}
	body = s.do(http.MethodGet, "/q/"+tok+"/result", nil).Body.String()
	if text(t, body, "paid-amount") != "¥278.00" || text(t, body, "order-no") != orderNo || text(t, body, "paid-at") != "2025-03-01 10:30:00" {
		t.Fatalf("result:\n%s", body)
	}
	text(t, body, "receipt-pending")
	if !strings.Contains(body, `data-want="receipt"`) {
		t.Fatal("the result page does not poll for the receipt")
	}
	s.Deliver(t, "receipt:"+orderNo, &envelope.ReceiptIssued{BillNo: "B1", OrderNo: orderNo, ReceiptCode: "23010125",
		ReceiptNo: "0000000042", CheckCode: "8f3a1c", Amount: 27800, PayerMasked: "张*明", IssuedAt: s.Clock.Now()}, "B1")
	if st := status(); !st.Receipt {
		t.Fatalf("status after the receipt %+v", st)
	}
	body = s.do(http.MethodGet, "/q/"+tok+"/result", nil).Body.String()
	if text(t, body, "receipt-code") != "23010125" || text(t, body, "receipt-no") != "0000000042" || text(t, body, "check-code") != "8f3a1c" {
		t.Fatalf("receipt:\n%s", body)
	}
	if strings.Contains(body, "receipt-pending") || strings.Contains(body, "<script") {
		t.Fatal("the receipt page still waits")
	}
	// Paying again after payment goes to the result, no new order.
	if rec := s.do(http.MethodPost, "/q/"+tok+"/pay/wechat", url.Values{"csrf": {s.cookies["fp_csrf"]}}); rec.Code != http.StatusSeeOther ||
		!strings.HasSuffix(rec.Header().Get("Location"), "/result") {
		t.Fatalf("pay a paid bill: %d", rec.Code)
	}
}

func TestP2CashierExpiredOrder(t *testing.T) {
	t.Parallel()
	s := setup(t, sqltest.Open(t, sqldb.SQLite), cashier.Config{})
	tok := fixture.Token()
	s.Publish(t, fixture.Bill("B1", tok))
	s.do(http.MethodGet, "/q/"+tok, nil)
	rec := s.do(http.MethodPost, "/q/"+tok+"/pay/wechat", url.Values{"csrf": {s.cookies["fp_csrf"]}})
	s.Clock.Advance(24 * time.Hour)
	body := s.do(http.MethodGet, rec.Header().Get("Location"), nil).Body.String()
	text(t, body, "order-closed")
	if strings.Contains(body, `id="qr"`) {
		t.Fatal("an expired order still shows its QR code")
	}
}

func TestP2CashierRateLimit(t *testing.T) {
	t.Parallel()
	s := setup(t, sqltest.Open(t, sqldb.SQLite), cashier.Config{PageLimit: 3})
	tok := fixture.Token()
	s.Publish(t, fixture.Bill("B1", tok))
	for i := range 3 {
		if rec := s.do(http.MethodGet, "/q/"+tok, nil); rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d", i+1, rec.Code)
		}
	}
	rec := s.do(http.MethodGet, "/q/"+fixture.Token(), nil)
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "请求过于频繁") || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("request 4: %d %s", rec.Code, rec.Body)
	}
	// Polling has its own, larger budget.
	if rec := s.do(http.MethodGet, "/q/"+tok+"/status", nil); rec.Code != http.StatusOK {
		t.Fatalf("status: %d", rec.Code)
	}
	s.Clock.Advance(time.Minute)
	if rec := s.do(http.MethodGet, "/q/"+tok, nil); rec.Code != http.StatusOK {
		t.Fatalf("next minute: %d", rec.Code)
	}
}

const (
	desktopUA  = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	androidUA  = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
	wechatUA   = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN"
	alipayUA   = "Mozilla/5.0 (Linux; U; Android 13; zh-CN; V2227A) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/69.0.3497.100 Mobile Safari/537.36 AlipayClient/10.5.36.8000 Language/zh-Hans"
	unionpayUA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 (com.unionpay.chsp) (clientVersion=10.0.0) UnionPay/1.0 CloudPay"
)

// TestP2CashierChannelsByAgent: on a desktop the page offers every channel and a QR code of
// itself to scan with a phone; inside WeChat, Alipay or UnionPay's app, only that app's channel;
// in a phone's browser every channel and no QR code.
func TestP2CashierChannelsByAgent(t *testing.T) {
	t.Parallel()
	s := setup(t, sqltest.Open(t, sqldb.SQLite), cashier.Config{PublicURL: "https://pay.example"})
	tok := fixture.Token()
	s.Publish(t, fixture.Bill("B1", tok))
	buttons := regexp.MustCompile(`id="pay-([a-z]+)"`)
	for _, tt := range []struct {
		name, ua string
		want     string
		pageQR   bool
	}{
		{"desktop", desktopUA, "wechat alipay unionpay", true},
		{"android-browser", androidUA, "wechat alipay unionpay", false},
		{"wechat-app", wechatUA, "wechat", false},
		{"alipay-app", alipayUA, "alipay", false},
		{"unionpay-app", unionpayUA, "unionpay", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s.ua = tt.ua
			rec := s.do(http.MethodGet, "/q/"+tok, nil)
			body := rec.Body.String()
			var got []string
			for _, m := range buttons.FindAllStringSubmatch(body, -1) {
				got = append(got, m[1])
			}
			if strings.Join(got, " ") != tt.want {
				t.Fatalf("buttons %v, want %s", got, tt.want)
			}
			if has := strings.Contains(body, `id="page-qr"`); has != tt.pageQR {
				t.Fatalf("page QR shown: %v", has)
			}
		})
	}
	s.ua = desktopUA
	body := s.do(http.MethodGet, "/q/"+tok, nil).Body.String()
	for ch, label := range map[string]string{"wechat": "微信支付", "alipay": "支付宝", "unionpay": "云闪付"} {
		if got := text(t, body, "pay-"+ch); got != label {
			t.Errorf("#pay-%s = %q", ch, got)
		}
		if attr(t, body, "pay-"+ch, "type") != "submit" {
			t.Errorf("#pay-%s is not a submit button", ch)
		}
	}
	if !strings.HasPrefix(attr(t, body, "page-qr", "src"), "data:image/png;base64,") {
		t.Error("page QR")
	}
	if rec := s.do(http.MethodPost, "/q/"+tok+"/pay/paypal", url.Values{"csrf": {s.cookies["fp_csrf"]}}); rec.Code != http.StatusNotFound {
		t.Fatalf("an unknown channel: %d", rec.Code)
	}
}

// TestP2CashierPayOtherChannels: paying with Alipay and UnionPay goes through the same pages:
// the QR page with the channel's code and its simulator link, the notification, the result.
func TestP2CashierPayOtherChannels(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ch, title, ua, sandbox string
	}{
		{"alipay", "支付宝扫码支付", alipayUA, "http://127.0.0.1:8070/alipay/pay"},
		{"unionpay", "云闪付扫码支付", unionpayUA, "http://127.0.0.1:8070/unionpay/pay"},
	} {
		t.Run(tt.ch, func(t *testing.T) {
			t.Parallel()
			s := setup(t, sqltest.Open(t, sqldb.Postgres), cashier.Config{SandboxPay: map[string]string{tt.ch: tt.sandbox}})
			s.ua = tt.ua
			tok := fixture.Token()
			s.Publish(t, fixture.Bill("B1", tok))
			s.do(http.MethodGet, "/q/"+tok, nil)
			rec := s.do(http.MethodPost, "/q/"+tok+"/pay/"+tt.ch, url.Values{"csrf": {s.cookies["fp_csrf"]}})
			if rec.Code != http.StatusSeeOther {
				t.Fatalf("pay: %d %s", rec.Code, rec.Body)
			}
			orderPath := rec.Header().Get("Location")
			orderNo := strings.TrimPrefix(orderPath, "/q/"+tok+"/order/")
			body := s.do(http.MethodGet, orderPath, nil).Body.String()
			if text(t, body, "order-title") != tt.title || text(t, body, "amount") != "¥278.00" {
				t.Fatalf("order page:\n%s", body)
			}
			var qr string
			var note []byte
			switch tt.ch {
			case "alipay":
				qr = s.Alipay.Order(orderNo).QRCode
				note = s.AlipayPKI.NotificationBody(s.Alipay.Pay(orderNo))
			case "unionpay":
				qr = s.UnionPay.Order(orderNo).QRCode
				note = s.UnionPayPKI.NotificationBody(s.UnionPay.Pay(orderNo))
			}
			if got := attr(t, body, "sandbox-pay", "href"); got != tt.sandbox+"?code="+qr[strings.LastIndex(qr, "/")+1:] {
				t.Fatalf("sandbox link %q for %q", got, qr)
			}
			if got := attr(t, body, "open-app", "href"); got != qr {
				t.Fatalf("open-app link %q, want %q", got, qr)
			}
			req := httptest.NewRequest(http.MethodPost, "/notify/"+tt.ch, strings.NewReader(string(note)))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			nrec := httptest.NewRecorder()
			s.e.ServeHTTP(nrec, req)
			if nrec.Code != http.StatusOK {
				t.Fatalf("notification: %d %s", nrec.Code, nrec.Body)
			}
			if rec := s.do(http.MethodGet, "/q/"+tok+"/status", nil); !strings.Contains(rec.Body.String(), `"paid":true`) {
				t.Fatalf("status %s", rec.Body)
			}
			body = s.do(http.MethodGet, "/q/"+tok+"/result", nil).Body.String()
			if text(t, body, "paid-amount") != "¥278.00" || text(t, body, "order-no") != orderNo {
				t.Fatalf("result:\n%s", body)
			}
		})
	}
}
