package unionpay_test

import (
	"net/url"
	"testing"

	"finepay/internet-gateway/internal/unionpay"
	"finepay/internet-gateway/internal/unionpay/unionpaytest"
)

// FuzzUnionPayRefundNotification feeds arbitrary form bodies to the refund notification parser.
// With sign the fields are signed anew by UnionPay's trusted certificate, so that inputs get past
// the signature into the content checks. It must never panic and must accept only a refund
// (txnType 04) of ours with an origQryId.
func FuzzUnionPayRefundNotification(f *testing.F) {
	pki := unionpaytest.NewPKI(f)
	c, err := unionpay.New(unionpay.Config{BaseURL: "http://127.0.0.1:1", MerID: unionpaytest.MerID, Keys: pki.Keys(f), Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	good := "version=5.1.0&encoding=UTF-8&bizType=000000&txnType=04&txnSubType=00&accessType=0&merId=" + unionpaytest.MerID +
		"&orderId=RF2025030100000001&txnTime=20250301103000&txnAmt=27800&currencyCode=156&queryId=202503011030000000002" +
		"&origQryId=202503011000000000001&respCode=00&respMsg=ok&traceNo=000002&traceTime=0301103000"
	f.Add([]byte(good), true)
	f.Add([]byte(good), false)
	f.Add([]byte("txnType=01&origQryId=1"), true)
	f.Add([]byte("txnType=04&origQryId=&merId="+unionpaytest.MerID), true)
	f.Add([]byte("%zz"), true)
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
		n, err := c.OpenRefundNotification(body)
		if err != nil {
			return
		}
		fields, _ := unionpay.ParseForm(body)
		if n.TxnType != unionpay.TxnTypeRefund || n.MerID != unionpaytest.MerID || fields["origQryId"] == "" || n.TxnAmt <= 0 {
			t.Fatalf("accepted %+v", n)
		}
	})
}
