package server_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWeChatThroughTheServer checks the WeChat simulator as wired in the server: an order, a
// robot payment, the notification, and what the state and the metrics show of it.
func TestWeChatThroughTheServer(t *testing.T) {
	t.Parallel()
	e := start(t)
	got := make(chan string, 4)
	notify := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(notify.Close)

	body := fmt.Sprintf(`{"appid":"wxd678efh567hg6787","mchid":"1900000001","description":"交通违法罚款","out_trade_no":"FP-server-01",`+
		`"notify_url":%q,"amount":{"total":20000,"currency":"CNY"}}`, notify.URL+"/notify")
	ts, nonce := strconv.FormatInt(time.Now().Unix(), 10), "N0NCE"
	digest := sha256.Sum256([]byte("POST\n/v3/pay/transactions/native\n" + ts + "\n" + nonce + "\n" + body + "\n"))
	sig, err := rsa.SignPKCS1v15(nil, e.pki.Merchant.Key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", e.url+"/v3/pay/transactions/native", strings.NewReader(body))
	req.Header.Set("Authorization", fmt.Sprintf(`WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="%s",timestamp="%s",serial_no="%s",signature="%s"`,
		nonce, ts, e.pki.Merchant.Serial(), base64.StdEncoding.EncodeToString(sig)))
	resp, err := e.core.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Wechatpay-Serial") != e.pki.Platform.Serial() {
		t.Fatalf("native: %d, serial %q", resp.StatusCode, resp.Header.Get("Wechatpay-Serial"))
	}
	resp, err = e.core.client.Post(e.url+"/wechat/robot/pay", "application/json", bytes.NewReader([]byte(`{"out_trade_no":"FP-server-01"}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("robot pay: %d", resp.StatusCode)
	}
	select {
	case b := <-got:
		if !strings.Contains(b, `"TRANSACTION.SUCCESS"`) {
			t.Fatalf("notification %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	done, err := e.srv.WeChat.Done("FP-server-01")
	if err != nil {
		t.Fatal(err)
	}
	<-done

	st := e.state(t)
	if len(st.WeChatOrders) != 1 {
		t.Fatalf("wechat orders %+v", st.WeChatOrders)
	}
	o := st.WeChatOrders[0]
	if o.TradeState != "SUCCESS" || o.Notification == nil || !o.Notification.Acknowledged || len(o.Notification.Attempts) != 1 ||
		o.Notification.Attempts[0].Status != 204 || !strings.HasPrefix(o.PayURL, "http://127.0.0.1:8070/wechat/pay?pr=") {
		t.Errorf("state %+v %+v", o, o.Notification)
	}
	metrics := string(e.get(t, "/metrics").body)
	for _, want := range []string{"\nsandbox_wechat_notifications_sent_total 1\n", "\nsandbox_wechat_notifications_acknowledged_total 1\n",
		`sandbox_wechat_orders_total{event="paid"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
