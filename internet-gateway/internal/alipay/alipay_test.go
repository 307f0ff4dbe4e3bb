package alipay_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/internet-gateway/internal/alipay"
	"finepay/internet-gateway/internal/alipay/alipaytest"
	"finepay/internet-gateway/internal/channel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2025, 3, 1, 2, 30, 0, 0, time.UTC) // 10:30 in Shanghai

func clock() time.Time { return now }

func setup(t *testing.T) (*alipay.Client, *alipaytest.Server) {
	t.Helper()
	pki := alipaytest.NewPKI(t)
	srv := alipaytest.NewServer(t, pki, clock)
	c, err := alipay.New(alipay.Config{GatewayURL: srv.GatewayURL(), AppID: alipaytest.AppID, Keys: pki.Keys(t), Now: clock,
		RetryWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func order(no string) alipay.PrecreateRequest {
	return alipay.PrecreateRequest{OutTradeNo: no, Subject: "交通违法罚款", Total: 27800, NotifyURL: "https://gw.example/notify/alipay",
		TimeExpire: time.Date(2025, 3, 1, 15, 59, 59, 0, time.UTC)}
}

func TestP2AlipayPrecreateQueryClose(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	ctx := context.Background()
	qr, err := c.Precreate(ctx, order("FP0001"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(qr, "https://qr.alipay.com/") {
		t.Fatalf("qr_code = %q", qr)
	}
	o := srv.Order("FP0001")
	if o == nil || o.TotalAmount != "278.00" || o.TimeExpire != "2025-03-01 23:59:59" || o.NotifyURL != "https://gw.example/notify/alipay" {
		t.Fatalf("server saw %+v", o)
	}
	tr, _, err := c.Query(ctx, "FP0001")
	if err != nil || tr.Paid() || tr.TradeStatus != alipay.StatusWaitBuyerPay || tr.TotalAmount != 27800 {
		t.Fatalf("query = %+v, %v", tr, err)
	}
	paid := srv.Pay("FP0001")
	tr, raw, err := c.Query(ctx, "FP0001")
	if err != nil || !tr.Paid() || tr.TradeNo != paid.TradeNo || !tr.SendPayDate.Equal(now) {
		t.Fatalf("query after pay = %+v, %v", tr, err)
	}
	if strings.Contains(string(raw), "buyer_") || !strings.Contains(string(raw), paid.TradeNo) {
		t.Fatalf("stored answer %s", raw)
	}
	if _, _, err := c.Query(ctx, "FP-UNKNOWN"); !errors.Is(err, alipay.ErrTradeNotExist) {
		t.Fatalf("unknown trade: %v", err)
	}
	if _, err := c.Precreate(ctx, order("FP0002")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx, "FP0002"); err != nil {
		t.Fatal(err)
	}
	if st := srv.Order("FP0002").Status; st != alipay.StatusTradeClosed {
		t.Fatalf("closed trade is %s", st)
	}
	var ae *alipay.APIError
	if err := c.Close(ctx, "FP0001"); !errors.As(err, &ae) || ae.SubCode != alipay.SubCodeTradeStatusError || !ae.Verified {
		t.Fatalf("close a paid trade: %v", err)
	}
	if srv.Requests("unauthorized") != 0 {
		t.Fatal("the server refused a signature")
	}
}

func TestP2AlipayAdapter(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	a := alipay.NewAdapter(c, "https://gw.example/notify/alipay")
	ctx := context.Background()
	o := channel.Order{OrderNo: "FP0003", BillNo: "B1", Subject: "交通违法罚款", Amount: 20600, CreatedAt: now,
		ExpiresAt: time.Date(2025, 3, 1, 15, 59, 59, 0, time.UTC)}
	if _, err := a.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	// Until the payer scans the code, Alipay knows no trade: not found, and nothing to close.
	srv.Unscanned.Store(true)
	if tr, err := a.Query(ctx, o); err != nil || tr.State != channel.StateNotFound {
		t.Fatalf("unscanned: %+v %v", tr, err)
	}
	if err := a.Close(ctx, o); err != nil {
		t.Fatalf("close unscanned: %v", err)
	}
	srv.Unscanned.Store(false)
	if tr, err := a.Query(ctx, o); err != nil || tr.State != channel.StateOpen {
		t.Fatalf("open: %+v %v", tr, err)
	}
	p := srv.Pay("FP0003")
	tr, err := a.Query(ctx, o)
	if err != nil || tr.State != channel.StatePaid || tr.TradeNo != p.TradeNo || tr.Amount != 20600 || !tr.PaidAt.Equal(now) {
		t.Fatalf("paid: %+v %v", tr, err)
	}
	if err := a.Close(ctx, o); !errors.Is(err, channel.ErrPaid) {
		t.Fatalf("close a paid order: %v", err)
	}
	o.OrderNo = "FP0004"
	if _, err := a.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	srv.SetStatus("FP0004", alipay.StatusTradeClosed)
	if tr, err := a.Query(ctx, o); err != nil || tr.State != channel.StateClosed {
		t.Fatalf("closed: %+v %v", tr, err)
	}
	if err := a.Close(ctx, o); err != nil {
		t.Fatalf("close a closed trade: %v", err)
	}
}

func TestP2AlipayForgedAnswer(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	srv.Forge.Store(true)
	if _, err := c.Precreate(context.Background(), order("FP0005")); !errors.Is(err, alipay.ErrForged) || !errors.Is(err, alipay.ErrSignature) {
		t.Fatalf("forged precreate: %v", err)
	}
	_, _, err := c.Query(context.Background(), "FP-NONE")
	var ae *alipay.APIError
	if errors.Is(err, alipay.ErrTradeNotExist) || !errors.As(err, &ae) || ae.Verified {
		t.Fatalf("a forged TRADE_NOT_EXIST was believed: %v", err)
	}
}

func TestP2AlipayRetriesOnlyQueries(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	ctx := context.Background()
	if _, err := c.Precreate(ctx, order("FP0006")); err != nil {
		t.Fatal(err)
	}
	srv.Fail5xx.Store(2)
	if _, _, err := c.Query(ctx, "FP0006"); err != nil {
		t.Fatalf("query after two 5xx: %v", err)
	}
	srv.Fail5xx.Store(1)
	if _, err := c.Precreate(ctx, order("FP0007")); err == nil {
		t.Fatal("precreate after a 5xx succeeded")
	}
	if srv.Order("FP0007") != nil || srv.Requests("failed") != 3 {
		t.Fatalf("a precreate was retried (%d failed requests)", srv.Requests("failed"))
	}
}

func TestP2AlipayResponseNodeIsRaw(t *testing.T) {
	t.Parallel()
	// The node keeps its bytes exactly: spacing and escapes, as Alipay signed them.
	raw := []byte(`{"alipay_trade_query_response": {"code":"10000", "msg":"Success","subject":"\u4e2d"} ,"sign":"c2ln"}`)
	node, sig, err := alipay.ResponseNode(raw, alipay.MethodQuery)
	if err != nil || string(node) != `{"code":"10000", "msg":"Success","subject":"\u4e2d"}` || sig != "c2ln" {
		t.Fatalf("node %q sign %q err %v", node, sig, err)
	}
	if _, _, err := alipay.ResponseNode([]byte(`{"other_response":{}}`), alipay.MethodQuery); !errors.Is(err, alipay.ErrInvalid) {
		t.Fatalf("missing node: %v", err)
	}
}

func TestP2AlipayNotification(t *testing.T) {
	t.Parallel()
	pki := alipaytest.NewPKI(t)
	c, err := alipay.New(alipay.Config{GatewayURL: "http://127.0.0.1:1/gateway.do", AppID: alipaytest.AppID, Keys: pki.Keys(t), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	paid := alipaytest.Paid{OutTradeNo: "FP0001", TradeNo: "2025030122001400000000000001", Total: 27800, PaidAt: now}
	with := func(f func(m map[string]string)) []byte {
		m := paid.Form()
		f(m)
		return alipaytest.SignForm(pki.PlatformKey, m)
	}
	good := pki.NotificationBody(paid)
	tamper := func(body []byte, from, to string) []byte {
		return []byte(strings.Replace(string(body), from, to, 1))
	}
	dupAmount := append(append([]byte{}, good...), "&total_amount=0.01"...)
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"ok", good, nil},
		{"ok/finished", with(func(m map[string]string) { m["trade_status"] = "TRADE_FINISHED" }), nil},
		{"ok/empty-values-not-signed", with(func(m map[string]string) { m["passback_params"] = "" }), nil},
		{"fail/amount-changed", tamper(good, "total_amount=278.00", "total_amount=2.78"), alipay.ErrSignature},
		{"fail/stranger-key", alipaytest.SignForm(pki.StrangerKey, paid.Form()), alipay.ErrSignature},
		{"fail/no-sign", []byte(url.Values{"app_id": {alipaytest.AppID}, "sign_type": {"RSA2"}}.Encode()), alipay.ErrSignature},
		{"fail/sign-type-RSA", tamper(good, "sign_type=RSA2", "sign_type=RSA"), alipay.ErrSignature},
		{"fail/duplicate-field", dupAmount, alipay.ErrInvalid},
		{"fail/bad-escape", []byte("a=%zz"), alipay.ErrInvalid},
		{"fail/other-app", with(func(m map[string]string) { m["app_id"] = "2021000000000009" }), alipay.ErrInvalid},
		{"fail/notify-type", with(func(m map[string]string) { m["notify_type"] = "refund_sync" }), alipay.ErrInvalid},
		{"fail/status", with(func(m map[string]string) { m["trade_status"] = "PAID" }), alipay.ErrInvalid},
		{"fail/amount-format", with(func(m map[string]string) { m["total_amount"] = "278.001" }), alipay.ErrInvalid},
		{"fail/no-gmt-payment", with(func(m map[string]string) { m["gmt_payment"] = "" }), alipay.ErrInvalid},
		{"fail/trade-no", with(func(m map[string]string) { m["trade_no"] = "20/25" }), alipay.ErrInvalid},
		{"fail/charset", with(func(m map[string]string) { m["charset"] = "gbk" }), alipay.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := c.OpenNotification(tt.body)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (n.OutTradeNo != "FP0001" || n.TradeNo != paid.TradeNo || n.TotalAmount != 27800 || !n.PaidAt.Equal(now) || !n.Paid()) {
				t.Fatalf("opened %+v", n)
			}
		})
	}
	// A trade that is not paid yet verifies and is not Paid.
	n, err := c.OpenNotification(with(func(m map[string]string) { m["trade_status"] = "WAIT_BUYER_PAY"; m["gmt_payment"] = "" }))
	if err != nil || n.Paid() {
		t.Fatalf("WAIT_BUYER_PAY: %+v %v", n, err)
	}
}
