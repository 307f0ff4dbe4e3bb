package server_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// sortedText is name=value of the non-skipped fields, sorted, joined with &.
func sortedText(f map[string]string, skipEmpty bool, skip ...string) string {
	var names []string
	for k, v := range f {
		drop := skipEmpty && v == ""
		for _, s := range skip {
			drop = drop || k == s
		}
		if !drop {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, k+"="+f[k])
	}
	return strings.Join(parts, "&")
}

// notifyReceiver answers every notification with body (status 200) and hands it to the test.
func notifyReceiver(t *testing.T, body string) (string, chan url.Values) {
	t.Helper()
	got := make(chan url.Values, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		v, _ := url.ParseQuery(string(b))
		got <- v
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/notify", got
}

func next(t *testing.T, got chan url.Values) url.Values {
	t.Helper()
	select {
	case v := <-got:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	return nil
}

// TestAlipayThroughTheServer checks the Alipay simulator as wired in the server: an order, a
// robot payment, the notification, the state and the metrics.
func TestAlipayThroughTheServer(t *testing.T) {
	t.Parallel()
	e := start(t, "-alipay-schedule-scale", "0.001")
	notify, got := notifyReceiver(t, "success")
	biz, _ := json.Marshal(map[string]string{"out_trade_no": "FP_server_ali_01", "total_amount": "200.00", "subject": "罚款",
		"timeout_express": "1c"})
	p := map[string]string{"app_id": "2021004100000001", "method": "alipay.trade.precreate", "charset": "utf-8", "sign_type": "RSA2",
		"timestamp": time.Now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02 15:04:05"), "version": "1.0",
		"biz_content": string(biz), "notify_url": notify}
	h := sha256.Sum256([]byte(sortedText(p, true, "sign")))
	sig, err := rsa.SignPKCS1v15(nil, e.pki.AlipayApp.Key, crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{}
	for k, v := range p {
		form.Set(k, v)
	}
	form.Set("sign", base64.StdEncoding.EncodeToString(sig))
	resp, err := e.core.client.PostForm(e.url+"/alipay/gateway.do", form)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(answer), `"code":"10000"`) || !strings.Contains(string(answer), "https://qr.alipay.com/bax") {
		t.Fatalf("precreate: %s", answer)
	}
	resp, err = e.core.client.Post(e.url+"/alipay/robot/pay", "application/json", strings.NewReader(`{"out_trade_no":"FP_server_ali_01"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := next(t, got); n.Get("trade_status") != "TRADE_SUCCESS" || n.Get("out_trade_no") != "FP_server_ali_01" {
		t.Fatalf("notification %v", n)
	}
	done, err := e.srv.Alipay.Done("FP_server_ali_01")
	if err != nil {
		t.Fatal(err)
	}
	<-done
	st := e.state(t)
	if len(st.AlipayOrders) != 1 || st.AlipayOrders[0].TradeStatus != "TRADE_SUCCESS" || !st.AlipayOrders[0].Notifications[0].Acknowledged ||
		!strings.HasPrefix(st.AlipayOrders[0].PayURL, "http://127.0.0.1:8070/alipay/pay?code=bax") {
		t.Fatalf("state %+v", st.AlipayOrders)
	}
	metrics := string(e.get(t, "/metrics").body)
	for _, want := range []string{"\nsandbox_alipay_notifications_acknowledged_total 1\n", `sandbox_alipay_orders_total{event="paid"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if page := string(e.get(t, "/").body); !strings.Contains(page, "FP_server_ali_01") {
		t.Error("the index page does not list the Alipay order")
	}
}

// TestUnionPayThroughTheServer: a consume QR code, a robot payment, the notification, the query.
func TestUnionPayThroughTheServer(t *testing.T) {
	t.Parallel()
	e := start(t, "-unionpay-schedule", "10ms")
	notify, got := notifyReceiver(t, "ok")
	now := time.Now().In(time.FixedZone("CST", 8*3600))
	sign := func(f map[string]string) url.Values {
		f["version"], f["encoding"], f["merId"], f["signMethod"] = "5.1.0", "UTF-8", "777290058110048", "01"
		f["certId"] = e.pki.UnionPayMerchant.Cert.SerialNumber.String()
		a := sha256.Sum256([]byte(sortedText(f, false, "signature")))
		b := sha256.Sum256([]byte(hex.EncodeToString(a[:])))
		sig, err := rsa.SignPKCS1v15(nil, e.pki.UnionPayMerchant.Key, crypto.SHA256, b[:])
		if err != nil {
			t.Fatal(err)
		}
		v := url.Values{}
		for k, x := range f {
			v.Set(k, x)
		}
		v.Set("signature", base64.StdEncoding.EncodeToString(sig))
		return v
	}
	post := func(path string, f map[string]string) string {
		resp, err := e.core.client.PostForm(e.url+"/unionpay/gateway/api/"+path, sign(f))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	a := post("backTransReq.do", map[string]string{"txnType": "01", "txnSubType": "07", "bizType": "000000", "channelType": "08",
		"accessType": "0", "orderId": "FPserverUP0000000001", "txnTime": now.Format("20060102150405"), "txnAmt": "20000",
		"currencyCode": "156", "backUrl": notify})
	if !strings.Contains(a, "respCode=00") || !strings.Contains(a, "qrCode=https://qr.95516.com/00010000/") || !strings.Contains(a, "signPubKeyCert=-----BEGIN CERTIFICATE-----") {
		t.Fatalf("consume: %s", a)
	}
	resp, err := e.core.client.Post(e.url+"/unionpay/robot/pay", "application/json", strings.NewReader(`{"order_id":"FPserverUP0000000001"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n := next(t, got)
	if n.Get("respCode") != "00" || n.Get("orderId") != "FPserverUP0000000001" {
		t.Fatalf("notification %v", n)
	}
	q := post("queryTrans.do", map[string]string{"txnType": "00", "txnSubType": "00", "bizType": "000000", "accessType": "0",
		"orderId": "FPserverUP0000000001", "txnTime": now.Format("20060102150405")})
	if !strings.Contains(q, "origRespCode=00") || !strings.Contains(q, "queryId="+n.Get("queryId")) {
		t.Fatalf("query: %s", q)
	}
	done, err := e.srv.UnionPay.Done("FPserverUP0000000001")
	if err != nil {
		t.Fatal(err)
	}
	<-done
	st := e.state(t)
	if len(st.UnionPayOrders) != 1 || !st.UnionPayOrders[0].Paid || st.UnionPayOrders[0].Notification == nil || !st.UnionPayOrders[0].Notification.Acknowledged {
		t.Fatalf("state %+v", st.UnionPayOrders)
	}
}
