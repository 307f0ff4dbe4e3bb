package isp_test

import (
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/isp"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/partnerin"
	"finepay/shared/bizdate"
	"finepay/shared/gm"
)

// FuzzSubmitRequest feeds the decoder and validator of POST /partner/v1/isp/payments arbitrary
// bodies: they must never panic, and whatever passes must hold only well-formed fields and a
// name that opened with the core's key.
func FuzzSubmitRequest(f *testing.F) {
	key, err := gm.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	enc, err := partner.EncryptName(key.Public(), rand.Reader, "张三丰")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(`{"isp_order_no":"ISP1","decision_no":"2301021000123456","violation_serial":"2301021000000001","party_name_enc":"` + enc +
		`","plate":"黑A12345","fine":20000,"served_date":"2026-11-20","unit_code":"230100","item_code":"103050101","amount_due":20000}`)
	f.Add(`{"isp_order_no":"ISP1","party_name_enc":"` + enc + `","late_fee_applies":false,"amount_due":1e400}`)
	f.Add(`{"party_name_enc":"5byg5LiJ","fine":-1}`)
	f.Add(`{"isp_order_no":"ISP1"} {}`)
	f.Add(`[]`)
	f.Add(`{"amount_due":"20000"}`)
	e := echo.New()
	today := bizdate.Date{Year: 2026, Month: 11, Day: 27}
	f.Fuzz(func(t *testing.T, body string) {
		c := e.NewContext(httptest.NewRequest(http.MethodPost, "/partner/v1/isp/payments", strings.NewReader(body)), httptest.NewRecorder())
		var r isp.SubmitRequest
		if err := partnerin.Decode(c, &r); err != nil {
			return
		}
		breq, err := r.Check(today, key)
		if err != nil {
			return
		}
		if !isp.ValidOrderNo(r.ISPOrderNo) || r.AmountDue <= 0 || breq.Fine <= 0 || breq.Fine > bill.MaxFine ||
			len(breq.DecisionNo) < 15 || breq.PartyName == "" || breq.Validate(today) != nil {
			t.Fatalf("validated %+v / %+v", r, breq)
		}
	})
}

// FuzzOrderNoParam feeds the look-up's {isp_order_no} check arbitrary strings: it accepts
// exactly the well-formed order numbers.
func FuzzOrderNoParam(f *testing.F) {
	for _, s := range []string{"ISP20261127001", "", strings.Repeat("a", 65), "a/b", "订单", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := isp.CheckOrderNoParam(s)
		if (err == nil) != isp.ValidOrderNo(s) || (err == nil && (len(s) == 0 || len(s) > 64)) {
			t.Fatalf("%q: %v", s, err)
		}
	})
}

// FuzzRefundRequest feeds the decoder and validator of POST /partner/v1/isp/refunds (R1)
// arbitrary bodies: they must never panic, and whatever passes holds well-formed numbers, a
// positive bounded amount and a reason.
func FuzzRefundRequest(f *testing.F) {
	f.Add(`{"isp_refund_no":"IR1","isp_order_no":"ISP1","amount":23000,"reason":"处罚决定撤销"}`)
	f.Add(`{"isp_refund_no":"IR1","isp_order_no":"ISP1","amount":0,"reason":""}`)
	f.Add(`{"isp_refund_no":"I R","isp_order_no":"ISP1","amount":1e12,"reason":"x"}`)
	f.Add(`{"isp_refund_no":"IR1"}{}`)
	f.Add(`{"amount":"1"}`)
	e := echo.New()
	f.Fuzz(func(t *testing.T, body string) {
		c := e.NewContext(httptest.NewRequest(http.MethodPost, "/partner/v1/isp/refunds", strings.NewReader(body)), httptest.NewRecorder())
		r, err := isp.DecodeRefund(c)
		if err != nil {
			return
		}
		if !isp.ValidOrderNo(r.ISPRefundNo) || !isp.ValidOrderNo(r.ISPOrderNo) || r.Amount <= 0 || r.Amount > 100_000_000 ||
			r.Reason == "" || len(r.Reason) > 240 {
			t.Fatalf("validated %+v", r)
		}
	})
}
