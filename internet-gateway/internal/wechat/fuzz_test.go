package wechat_test

import (
	"net/http"
	"strconv"
	"testing"

	"finepay/internet-gateway/internal/wechat"
	"finepay/internet-gateway/internal/wechat/wechattest"
)

// FuzzWeChatNotification feeds arbitrary bodies and headers to the notification verifier and
// parser. When sign is set the body is signed with the trusted platform key, so that inputs get
// past the signature into envelope parsing, decryption and validation. It must never panic,
// and must accept only what is a valid, paid transaction of ours.
func FuzzWeChatNotification(f *testing.F) {
	pki := wechattest.NewPKI(f)
	c, err := wechat.New(wechat.Config{BaseURL: "http://127.0.0.1:1", AppID: wechattest.AppID, MchID: wechattest.MchID,
		Keys: pki.Keys(f), Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	good := pki.NotificationBody("EV-1", wechattest.Paid{OutTradeNo: "FP0001", TransactionID: "4200000001", Total: 20000, SuccessTime: now})
	ts := strconv.FormatInt(now.Unix(), 10)
	goodHeader := pki.Sign(now, good)
	f.Add(good, ts, "n", goodHeader.Get("Wechatpay-Signature"), pki.PlatformSerial(), false)
	f.Add(good, ts, "", "", pki.PlatformSerial(), true)
	f.Add([]byte(`{"id":"x","event_type":"TRANSACTION.SUCCESS","resource_type":"encrypt-resource","resource":{"algorithm":"AEAD_AES_256_GCM","ciphertext":"AAAA","nonce":"123456789012"}}`), ts, "", "", pki.PlatformSerial(), true)
	f.Add([]byte(`{"resource":{"nonce":"short"}}`), ts, "", "", pki.PlatformSerial(), true)
	f.Add([]byte("null"), "-9223372036854775808", "", "!!", "", false)
	f.Add([]byte{}, "99999999999999999999", "\n", "AAAA", pki.PlatformSerial(), false)
	f.Add(pki.NotificationOf("EV-2", []byte(`{"appid":1}`)), ts, "", "", pki.PlatformSerial(), true)
	f.Add(pki.NotificationOf("EV-3", []byte(`not json`)), ts, "", "", pki.PlatformSerial(), true)
	f.Fuzz(func(t *testing.T, body []byte, timestamp, nonce, signature, serial string, sign bool) {
		h := http.Header{}
		h.Set(wechat.HeaderTimestamp, timestamp)
		h.Set(wechat.HeaderNonce, nonce)
		h.Set(wechat.HeaderSignature, signature)
		h.Set(wechat.HeaderSerial, serial)
		if sign {
			h = pki.Sign(now, body)
		}
		_, tx, err := c.OpenNotification(h, body)
		if err != nil {
			return
		}
		at, err := tx.CheckPaid(wechattest.AppID, wechattest.MchID)
		if err != nil || at.IsZero() || tx.TradeState != wechat.StateSuccess {
			t.Fatalf("accepted an invalid transaction %+v: %v", tx, err)
		}
	})
}
