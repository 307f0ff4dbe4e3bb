package bankrefund

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/intranet-core/internal/partnerin"
)

// FuzzDecodeResult: the decoder and validator of a pushed refund result never panic, and what
// validates is a final result with consistent fields.
func FuzzDecodeResult(f *testing.F) {
	f.Add(`{"refund_no":"RFBK104100000004BS1R001","bank_code":"104100000004","bank_serial":"BS1","status":"success","bank_refund_no":"BR1","refunded_amount":23000,"at":"2026-11-27T10:20:00+08:00","detail":""}`)
	f.Add(`{"refund_no":"RFBK104100000004BS1R001","bank_code":"104100000004","bank_serial":"BS1","status":"failed","at":"2026-11-27T10:20:00+08:00","detail":"closed"}`)
	f.Add(`{"status":"processing","refunded_amount":-1}`)
	f.Add(`{"refund_no":1} {}`)
	f.Fuzz(func(t *testing.T, body string) {
		e := echo.New()
		c := e.NewContext(httptest.NewRequest("POST", "/", strings.NewReader(body)), httptest.NewRecorder())
		var r Result
		if partnerin.Decode(c, &r) != nil || r.Validate() != nil {
			return
		}
		_, err := time.Parse(time.RFC3339, r.At)
		ok := reRefundNo.MatchString(r.RefundNo) && reBankCode.MatchString(r.BankCode) && reSerial.MatchString(r.BankSerial) && err == nil
		switch r.Status {
		case StatusSuccess:
			ok = ok && r.RefundedAmount > 0 && r.RefundedAmount <= MaxAmount && reBankRefundNo.MatchString(r.BankRefundNo)
		case StatusFailed:
			ok = ok && r.RefundedAmount == 0
		default:
			ok = false
		}
		if !ok {
			t.Fatalf("validated %+v", r)
		}
	})
}
