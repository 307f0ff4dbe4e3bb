package wechat_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"finepay/internet-gateway/internal/wechat"
	"finepay/internet-gateway/internal/wechat/wechattest"
)

var now = time.Date(2025, 3, 1, 10, 30, 0, 0, time.UTC)

func clock() time.Time { return now }

func setup(t *testing.T) (*wechat.Client, *wechattest.Server) {
	t.Helper()
	pki := wechattest.NewPKI(t)
	srv := wechattest.NewServer(t, pki, clock)
	c, err := wechat.New(wechat.Config{BaseURL: srv.URL, AppID: wechattest.AppID, MchID: wechattest.MchID,
		Keys: pki.Keys(t), Now: clock, RetryWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func native(no string) wechat.NativeOrder {
	return wechat.NativeOrder{OutTradeNo: no, Description: "交通违法罚款", Attach: "B1", NotifyURL: "https://gw.example/notify/wechat",
		Total: 20000, TimeExpire: time.Date(2025, 3, 1, 15, 59, 59, 0, time.UTC)}
}

func TestP2NativeOrderSigned(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	ctx := context.Background()
	code, err := c.CreateNative(ctx, native("FP0001"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(code, "weixin://wxpay/bizpayurl/up?pr=") {
		t.Fatalf("code_url = %q", code)
	}
	o := srv.Order("FP0001")
	if o == nil || o.Total != 20000 || o.TimeExpire != "2025-03-01T23:59:59+08:00" || o.NotifyURL != "https://gw.example/notify/wechat" {
		t.Fatalf("server saw %+v", o)
	}
	tx, _, err := c.QueryOrder(ctx, "FP0001")
	if err != nil || tx.TradeState != wechat.StateNotPay || tx.Paid() {
		t.Fatalf("query = %+v, %v", tx, err)
	}
	srv.Pay("FP0001")
	tx, _, err = c.QueryOrder(ctx, "FP0001")
	if err != nil || !tx.Paid() || tx.TransactionID == "" {
		t.Fatalf("query after pay = %+v, %v", tx, err)
	}
	if _, err := tx.CheckPaid(wechattest.AppID, wechattest.MchID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.QueryOrder(ctx, "FP-UNKNOWN"); !errors.Is(err, wechat.ErrOrderNotExist) {
		t.Fatalf("unknown order: %v", err)
	}
	if _, err := c.CreateNative(ctx, native("FP0002")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseOrder(ctx, "FP0002"); err != nil {
		t.Fatal(err)
	}
	if o := srv.Order("FP0002"); o.State != "CLOSED" {
		t.Fatalf("closed order is %s", o.State)
	}
	var ae *wechat.APIError
	if err := c.CloseOrder(ctx, "FP0001"); !errors.As(err, &ae) || ae.Code != "ORDERPAID" || !ae.Verified {
		t.Fatalf("close a paid order: %v", err)
	}
	if srv.Requests("POST unauthorized")+srv.Requests("GET unauthorized") != 0 {
		t.Fatal("the server refused a signature")
	}
}

func TestP2ForgedResponse(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	srv.Forge.Store(true)
	_, err := c.CreateNative(context.Background(), native("FP0003"))
	if !errors.Is(err, wechat.ErrForged) || !errors.Is(err, wechat.ErrSignature) {
		t.Fatalf("forged answer: err = %v", err)
	}
	_, _, err = c.QueryOrder(context.Background(), "FP-NONE")
	if errors.Is(err, wechat.ErrOrderNotExist) {
		t.Fatal("an unsigned ORDER_NOT_EXIST was believed")
	}
}

func TestP2RetriesOnlyIdempotent(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	ctx := context.Background()
	if _, err := c.CreateNative(ctx, native("FP0004")); err != nil {
		t.Fatal(err)
	}
	srv.Fail5xx.Store(2)
	if _, _, err := c.QueryOrder(ctx, "FP0004"); err != nil {
		t.Fatalf("query after two 5xx: %v", err)
	}
	if n := srv.Requests("GET failed"); n != 2 {
		t.Fatalf("%d failed queries, want 2", n)
	}
	srv.Fail5xx.Store(1)
	var ae *wechat.APIError
	if _, err := c.CreateNative(ctx, native("FP0005")); !errors.As(err, &ae) || ae.Status != 500 {
		t.Fatalf("native after a 5xx: %v", err)
	}
	if srv.Order("FP0005") != nil || srv.Requests("POST failed") != 1 {
		t.Fatal("a native order was retried")
	}
}

func TestP2OpenNotification(t *testing.T) {
	t.Parallel()
	pki := wechattest.NewPKI(t)
	c, err := wechat.New(wechat.Config{BaseURL: "http://127.0.0.1:1", AppID: wechattest.AppID, MchID: wechattest.MchID,
		Keys: pki.Keys(t), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	paid := wechattest.Paid{OutTradeNo: "FP0001", TransactionID: "4200000001202503011234567890", Total: 20600, SuccessTime: now}
	good := pki.NotificationBody("EV-1", paid)
	tamper := func(body []byte) []byte {
		var m map[string]any
		json.Unmarshal(body, &m)
		res := m["resource"].(map[string]any)
		ct, _ := base64.StdEncoding.DecodeString(res["ciphertext"].(string))
		ct[3] ^= 0x40
		res["ciphertext"] = base64.StdEncoding.EncodeToString(ct)
		out, _ := json.Marshal(m)
		return out
	}
	withPaid := func(f func(p *wechattest.Paid)) []byte {
		p := paid
		f(&p)
		return pki.NotificationBody("EV-2", p)
	}
	signed := func(body []byte) func() (http.Header, []byte) {
		return func() (http.Header, []byte) { return pki.Sign(now, body), body }
	}
	with := func(h http.Header, body []byte) func() (http.Header, []byte) {
		return func() (http.Header, []byte) { return h, body }
	}
	badSig := pki.Sign(now, good)
	badSig.Set("Wechatpay-Signature", base64.StdEncoding.EncodeToString(make([]byte, 256)))
	tests := []struct {
		name string
		in   func() (http.Header, []byte)
		want error
	}{
		{"ok", signed(good), nil},
		{"ok/clock-skew-4m", with(pki.Sign(now.Add(4*time.Minute), good), good), nil},
		{"fail/bad-signature", with(badSig, good), wechat.ErrSignature},
		{"fail/body-changed", with(pki.Sign(now, good), append([]byte(" "), good...)), wechat.ErrSignature},
		{"fail/no-headers", with(http.Header{}, good), wechat.ErrSerial},
		{"fail/unknown-serial", with(wechattest.SignWith(pki.StrangerKey, "ABCDEF", now, good), good), wechat.ErrSerial},
		{"fail/timestamp-10m-old", with(pki.Sign(now.Add(-10*time.Minute), good), good), wechat.ErrTimestamp},
		{"fail/timestamp-future", with(pki.Sign(now.Add(6*time.Minute), good), good), wechat.ErrTimestamp},
		{"fail/tampered-ciphertext", signed(tamper(good)), wechat.ErrDecrypt},
		{"fail/not-json", signed([]byte("hello")), wechat.ErrInvalid},
		{"fail/other-merchant", signed(withPaid(func(p *wechattest.Paid) { p.MchID = "1900000002" })), wechat.ErrInvalid},
		{"fail/not-paid", signed(withPaid(func(p *wechattest.Paid) { p.TradeState = "NOTPAY" })), wechat.ErrInvalid},
		{"fail/currency", signed(withPaid(func(p *wechattest.Paid) { p.Currency = "USD" })), wechat.ErrInvalid},
		{"fail/bad-transaction-id", signed(withPaid(func(p *wechattest.Paid) { p.TransactionID = "42/00" })), wechat.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body := tt.in()
			n, tx, err := c.OpenNotification(h, body)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (n.ID != "EV-1" || tx.OutTradeNo != "FP0001" || tx.Amount.Total != 20600) {
				t.Fatalf("opened %+v %+v", n, tx)
			}
		})
	}
}
