package unionpay_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/internet-gateway/internal/channel"
	"finepay/internet-gateway/internal/unionpay"
	"finepay/internet-gateway/internal/unionpay/unionpaytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2025, 3, 1, 2, 30, 0, 0, time.UTC) // 10:30 in Shanghai

func clock() time.Time { return now }

func setup(t *testing.T) (*unionpay.Client, *unionpaytest.Server) {
	t.Helper()
	pki := unionpaytest.NewPKI(t)
	srv := unionpaytest.NewServer(t, pki, clock)
	c, err := unionpay.New(unionpay.Config{BaseURL: srv.URL, MerID: unionpaytest.MerID, Keys: pki.Keys(t), Now: clock, RetryWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func consume(no string) unionpay.ConsumeRequest {
	return unionpay.ConsumeRequest{OrderID: no, TxnTime: now, Amount: 27800, PayTimeout: time.Date(2025, 3, 1, 15, 59, 59, 0, time.UTC),
		Subject: "交通违法罚款", BackURL: "https://gw.example/notify/unionpay"}
}

func TestP2UnionPayConsumeAndQuery(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	ctx := context.Background()
	qr, err := c.Consume(ctx, consume("FP20250301103000000000000001"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(qr, "https://qr.95516.com/") {
		t.Fatalf("qrCode %q", qr)
	}
	o := srv.Order("FP20250301103000000000000001")
	if o == nil || o.TxnAmt != "27800" || o.TxnTime != "20250301103000" || o.PayTimeout != "20250301235959" ||
		o.BackURL != "https://gw.example/notify/unionpay" || o.RiskInfo != "{commodityName=交通违法罚款}" {
		t.Fatalf("server saw %+v", o)
	}
	if _, _, err := c.Query(ctx, "FP20250301103000000000000001", now); !errors.Is(err, unionpay.ErrNoSuchTransaction) {
		t.Fatalf("query before paying: %v", err)
	}
	paid := srv.Pay("FP20250301103000000000000001")
	r, stored, err := c.Query(ctx, "FP20250301103000000000000001", now)
	if err != nil || !r.Paid() || r.QueryID != paid.QueryID || r.TxnAmt != 27800 || !r.PaidAt.Equal(paid.PaidAt) {
		t.Fatalf("query after paying: %+v %v", r, err)
	}
	if _, ok := stored["accNo"]; ok || stored["signature"] != "" || stored["queryId"] != paid.QueryID {
		t.Fatalf("stored answer %v", stored)
	}
	if _, err := c.Consume(ctx, consume("short")); !errors.Is(err, unionpay.ErrInvalid) {
		t.Fatalf("a 5-character orderId: %v", err)
	}
	if srv.Requests("unauthorized") != 0 {
		t.Fatal("the server refused a signature")
	}
}

func TestP2UnionPayAdapter(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	a := unionpay.NewAdapter(c, "https://gw.example/notify/unionpay")
	ctx := context.Background()
	o := channel.Order{OrderNo: "FP20250301103000000000000002", BillNo: "B1", Subject: "罚款", Amount: 20600, CreatedAt: now,
		ExpiresAt: time.Date(2025, 3, 1, 15, 59, 59, 0, time.UTC)}
	if _, err := a.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	if tr, err := a.Query(ctx, o); err != nil || tr.State != channel.StateNotFound {
		t.Fatalf("before paying: %+v %v", tr, err)
	}
	if err := a.Close(ctx, o); err != nil {
		t.Fatalf("close an unpaid code: %v", err)
	}
	srv.SetResult(o.OrderNo, "05")
	if tr, err := a.Query(ctx, o); err != nil || tr.State != channel.StateOpen {
		t.Fatalf("processing: %+v %v", tr, err)
	}
	p := srv.Pay(o.OrderNo)
	tr, err := a.Query(ctx, o)
	if err != nil || tr.State != channel.StatePaid || tr.TradeNo != p.QueryID || tr.Amount != 20600 || !tr.PaidAt.Equal(p.PaidAt) {
		t.Fatalf("paid: %+v %v", tr, err)
	}
	if !strings.Contains(string(tr.Raw), p.QueryID) || strings.Contains(string(tr.Raw), "accNo") {
		t.Fatalf("raw %s", tr.Raw)
	}
	if err := a.Close(ctx, o); !errors.Is(err, channel.ErrPaid) {
		t.Fatalf("close a paid order: %v", err)
	}
}

func TestP2UnionPayForgedAnswer(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	srv.Forge.Store(true)
	_, err := c.Consume(context.Background(), consume("FP20250301103000000000000003"))
	if !errors.Is(err, unionpay.ErrForged) || !errors.Is(err, unionpay.ErrCertificate) {
		t.Fatalf("forged consume: %v", err)
	}
	_, _, err = c.Query(context.Background(), "FP20250301103000000000000009", now)
	if errors.Is(err, unionpay.ErrNoSuchTransaction) {
		t.Fatal("a forged 34 was believed")
	}
}

func TestP2UnionPayRetriesOnlyQueries(t *testing.T) {
	t.Parallel()
	c, srv := setup(t)
	ctx := context.Background()
	srv.Fail5xx.Store(2)
	if _, _, err := c.Query(ctx, "FP20250301103000000000000004", now); !errors.Is(err, unionpay.ErrNoSuchTransaction) {
		t.Fatalf("query after two 5xx: %v", err)
	}
	srv.Fail5xx.Store(1)
	if _, err := c.Consume(ctx, consume("FP20250301103000000000000005")); err == nil {
		t.Fatal("consume after a 5xx succeeded")
	}
	if srv.Order("FP20250301103000000000000005") != nil || srv.Requests("failed") != 3 {
		t.Fatal("a consume was retried")
	}
}

func TestP2UnionPayParseResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     map[string]string
	}{
		{"ok", "a=1&b=&c=x=y", map[string]string{"a": "1", "b": "", "c": "x=y"}},
		{"ok/braces", "reserved={x=1&y={z=2&w=3}}&respCode=00", map[string]string{"reserved": "{x=1&y={z=2&w=3}}", "respCode": "00"}},
		{"ok/pem", "signPubKeyCert=-----BEGIN CERTIFICATE-----\r\nMII+/==\r\n-----END CERTIFICATE-----\r\n&x=1",
			map[string]string{"signPubKeyCert": "-----BEGIN CERTIFICATE-----\r\nMII+/==\r\n-----END CERTIFICATE-----\r\n", "x": "1"}},
		{"fail/empty", "", nil},
		{"fail/no-equals", "a=1&b", nil},
		{"fail/empty-name", "=1", nil},
		{"fail/unclosed", "a={1&b=2", nil},
		{"fail/unbalanced", "a=}&b=2", nil},
		{"fail/duplicate", "a=1&a=2", nil},
		{"fail/trailing-and", "a=1&", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := unionpay.ParseResponse([]byte(tt.in))
			if tt.want == nil {
				if !errors.Is(err, unionpay.ErrInvalid) {
					t.Fatalf("got %v, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || len(got) != len(tt.want) {
				t.Fatalf("got %v, %v", got, err)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestP2UnionPayNotification(t *testing.T) {
	t.Parallel()
	pki := unionpaytest.NewPKI(t)
	c, err := unionpay.New(unionpay.Config{BaseURL: "http://127.0.0.1:1", MerID: unionpaytest.MerID, Keys: pki.Keys(t), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	paidAt := now.Add(3 * time.Minute)
	paid := unionpaytest.Paid{OrderID: "FP20250301103000000000000001", TxnTime: now, QueryID: "202503011033000000001", Amount: 27800, PaidAt: paidAt}
	with := func(f func(m map[string]string)) []byte {
		m := paid.Fields()
		f(m)
		return unionpaytest.Form(unionpaytest.SignWith(pki.UnionPay, m))
	}
	signedBy := func(c unionpaytest.Chain) []byte { return unionpaytest.Form(unionpaytest.SignWith(c, paid.Fields())) }
	good := pki.NotificationBody(paid)
	tampered := strings.Replace(string(good), "txnAmt=27800", "txnAmt=1", 1)
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"ok", good, nil},
		{"ok/partial-success-A6", with(func(m map[string]string) { m["respCode"] = "A6" }), nil},
		{"fail/amount-changed", []byte(tampered), unionpay.ErrSignature},
		{"fail/stranger-chain", signedBy(pki.Stranger), unionpay.ErrCertificate},
		{"fail/impostor-owner", signedBy(pki.Impostor), unionpay.ErrCertificate},
		{"fail/no-certificate", []byte("signMethod=01&signature=AAAA&merId=" + unionpaytest.MerID), unionpay.ErrCertificate},
		{"fail/sign-method-11", []byte(strings.Replace(string(good), "signMethod=01", "signMethod=11", 1)), unionpay.ErrSignature},
		{"fail/duplicate-field", append(append([]byte{}, good...), "&txnAmt=1"...), unionpay.ErrInvalid},
		{"fail/other-merchant", with(func(m map[string]string) { m["merId"] = "777290058110099" }), unionpay.ErrInvalid},
		{"fail/version", with(func(m map[string]string) { m["version"] = "5.0.0" }), unionpay.ErrInvalid},
		{"fail/order-id", with(func(m map[string]string) { m["orderId"] = "FP-1" }), unionpay.ErrInvalid},
		{"fail/amount-format", with(func(m map[string]string) { m["txnAmt"] = "278.00" }), unionpay.ErrInvalid},
		{"fail/trace-time", with(func(m map[string]string) { m["traceTime"] = "1301" }), unionpay.ErrInvalid},
		{"fail/currency", with(func(m map[string]string) { m["currencyCode"] = "840" }), unionpay.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := c.OpenNotification(tt.body)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (n.OrderID != paid.OrderID || n.QueryID != paid.QueryID || n.TxnAmt != 27800 || !n.PaidAt.Equal(paidAt) || !n.Succeeded()) {
				t.Fatalf("opened %+v", n)
			}
		})
	}
	// A failure notification verifies and does not succeed.
	n, err := c.OpenNotification(with(func(m map[string]string) { m["respCode"] = "03" }))
	if err != nil || n.Succeeded() {
		t.Fatalf("respCode 03: %+v %v", n, err)
	}
	// A certificate that has expired is not trusted (the clock a year on).
	late, err := unionpay.New(unionpay.Config{BaseURL: "http://127.0.0.1:1", MerID: unionpaytest.MerID, Keys: pki.Keys(t),
		Now: func() time.Time { return time.Now().AddDate(1, 0, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.OpenNotification(good); !errors.Is(err, unionpay.ErrCertificate) {
		t.Fatalf("expired certificate: %v", err)
	}
}
