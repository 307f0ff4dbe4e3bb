package wechat_test

import (
	"encoding/json"
	"testing"

	"finepay/internet-gateway/internal/wechat"
	"finepay/internet-gateway/internal/wechat/wechattest"
)

// FuzzWeChatRefundNotification feeds arbitrary refund plaintexts and envelopes to the refund
// notification parser. With wrap the plaintext is encrypted and signed genuinely, so that inputs
// get past the signature and decryption into validation. It must never panic and must accept
// only a well-formed refund of ours with a known status.
func FuzzWeChatRefundNotification(f *testing.F) {
	pki := wechattest.NewPKI(f)
	c, err := wechat.New(wechat.Config{BaseURL: "http://127.0.0.1:1", AppID: wechattest.AppID, MchID: wechattest.MchID,
		Keys: pki.Keys(f), Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(wechattest.Refund{OutRefundNo: "RF0001", OutTradeNo: "FP0001", TransactionID: "4200000001",
		RefundID: "50300001", Refund: 100, Total: 200, Status: "SUCCESS", SuccessTime: now}.Info(true))
	f.Add(good, "REFUND.SUCCESS", true)
	f.Add(good, "TRANSACTION.SUCCESS", true)
	f.Add([]byte(`{"mchid":"1900000001","refund_status":"ABNORMAL","out_refund_no":"R","refund_id":"1","out_trade_no":"O","transaction_id":"T","amount":{"refund":1,"total":1}}`), "REFUND.ABNORMAL", true)
	f.Add([]byte(`{"mchid":"1900000001","refund_status":"SUCCESS","success_time":"x"}`), "REFUND.SUCCESS", true)
	f.Add([]byte(`null`), "REFUND.CLOSED", true)
	f.Add(good, "REFUND.SUCCESS", false)
	f.Fuzz(func(t *testing.T, plain []byte, event string, wrap bool) {
		body := plain
		if wrap {
			body = pki.EventOf("EV-1", event, "refund", plain)
		}
		_, info, err := c.OpenRefundNotification(pki.Sign(now, body), body)
		if err != nil {
			return
		}
		if info.MchID != wechattest.MchID || info.OutRefundNo == "" || info.RefundID == "" || info.Amount.Refund <= 0 {
			t.Fatalf("accepted an invalid refund %+v", info)
		}
		switch info.RefundStatus {
		case wechat.RefundSuccess, wechat.RefundClosed, wechat.RefundAbnormal, wechat.RefundProcessing:
		default:
			t.Fatalf("accepted refund status %q", info.RefundStatus)
		}
		if _, err := info.Check(info.OutRefundNo); err != nil {
			t.Fatalf("accepted a refund that does not check: %v", err)
		}
	})
}
