package alipay_test

import (
	"net/url"
	"testing"

	"finepay/internet-gateway/internal/alipay"
	"finepay/internet-gateway/internal/alipay/alipaytest"
)

// FuzzAlipayNotification feeds arbitrary form bodies to the notification parser and verifier.
// When sign is set the body's fields (as the parser reads them) are signed anew with Alipay's
// key, so that inputs get past the signature into the content checks. It must never panic, and
// must accept only a well-formed notification of ours.
func FuzzAlipayNotification(f *testing.F) {
	pki := alipaytest.NewPKI(f)
	c, err := alipay.New(alipay.Config{GatewayURL: "http://127.0.0.1:1/gateway.do", AppID: alipaytest.AppID, Keys: pki.Keys(f), Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	paid := alipaytest.Paid{OutTradeNo: "FP0001", TradeNo: "2025030122001400000000000001", Total: 27800, PaidAt: now}
	f.Add(pki.NotificationBody(paid), false)
	f.Add(pki.NotificationBody(paid), true)
	f.Add([]byte("app_id=2021004100000001&notify_type=trade_status_sync&trade_status=TRADE_SUCCESS&total_amount=1&gmt_payment=x"), true)
	f.Add([]byte("a=1&a=2"), true)
	f.Add([]byte("sign=%zz&sign_type=RSA2"), false)
	f.Add([]byte("total_amount=-0.00&trade_status=TRADE_FINISHED"), true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		if sign {
			if vs, err := url.ParseQuery(string(body)); err == nil {
				m := map[string]string{}
				for k := range vs {
					m[k] = vs.Get(k)
				}
				body = alipaytest.SignForm(pki.PlatformKey, m)
			}
		}
		n, err := c.OpenNotification(body)
		if err != nil {
			return
		}
		if n.AppID != alipaytest.AppID || n.OutTradeNo == "" || n.TradeNo == "" || n.TotalAmount <= 0 || (n.Paid() && n.PaidAt.IsZero()) {
			t.Fatalf("accepted an invalid notification %+v", n)
		}
	})
}
