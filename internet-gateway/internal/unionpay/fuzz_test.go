package unionpay_test

import (
	"net/url"
	"testing"

	"finepay/internet-gateway/internal/unionpay"
	"finepay/internet-gateway/internal/unionpay/unionpaytest"
)

// FuzzUnionPayNotification feeds arbitrary form bodies to the notification parser and verifier.
// When sign is set the body's fields (as the parser reads them) are signed anew by UnionPay's
// trusted signing certificate, so that inputs get past the signature into the content checks.
// It must never panic, and must accept only a well-formed notification of ours.
func FuzzUnionPayNotification(f *testing.F) {
	pki := unionpaytest.NewPKI(f)
	c, err := unionpay.New(unionpay.Config{BaseURL: "http://127.0.0.1:1", MerID: unionpaytest.MerID, Keys: pki.Keys(f), Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	paid := unionpaytest.Paid{OrderID: "FP20250301103000000000000001", TxnTime: now, QueryID: "202503011033000000001", Amount: 27800, PaidAt: now}
	f.Add(pki.NotificationBody(paid), false)
	f.Add(pki.NotificationBody(paid), true)
	f.Add([]byte("merId=777290058110048&version=5.1.0&orderId=12345678&txnTime=20251231235959&txnAmt=1&queryId=1&respCode=00&traceTime=0101000000"), true)
	f.Add([]byte("txnTime=20250230000000&respCode=A6&traceTime=9999999999"), true)
	f.Add([]byte("signPubKeyCert=-----BEGIN%20CERTIFICATE-----%0AAA%3D%3D%0A-----END%20CERTIFICATE-----&signMethod=01"), false)
	f.Add([]byte("a=1&a=2"), true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		if sign {
			if vs, err := url.ParseQuery(string(body)); err == nil {
				m := map[string]string{}
				for k := range vs {
					m[k] = vs.Get(k)
				}
				body = unionpaytest.Form(unionpaytest.SignWith(pki.UnionPay, m))
			}
		}
		n, err := c.OpenNotification(body)
		if err != nil {
			return
		}
		if n.MerID != unionpaytest.MerID || len(n.OrderID) < 8 || n.QueryID == "" || n.TxnAmt <= 0 || (n.Succeeded() && n.PaidAt.IsZero()) {
			t.Fatalf("accepted an invalid notification %+v", n)
		}
	})
}
