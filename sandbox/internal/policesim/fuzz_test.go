package policesim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
)

func fuzzServer() (*Sim, *echo.Echo) {
	s := New(Config{})
	e := echo.New()
	e.HTTPErrorHandler = apierr.Handler(nil)
	s.Register(e.Group("/police/v1"))
	s.RegisterSandbox(e)
	return s, e
}

// FuzzPaymentResult: the payment-result decoder answers 200 or a 4xx, never panics, and keeps
// nothing it refused.
func FuzzPaymentResult(f *testing.F) {
	f.Add(`{"decision_no":"230100123456789012","violation_serial":"2301001","form_no":"23010020261127000001","pay_code":"23010026112700000016","order_no":"BK-104-1","channel":"bank","channel_trade_no":"104-1","amount":23000,"fine":20000,"late_fee":3000,"paid_at":"2026-11-27T10:05:00+08:00"}`)
	f.Add(`{"amount":1e99}`)
	f.Add(`{"decision_no":"230100123456789012"} []`)
	f.Fuzz(func(t *testing.T, body string) {
		s, e := fuzzServer()
		s.Add(AddRequest{DecisionNo: "230100123456789012", ViolationSerial: "2301001"})
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/police/v1/payment-results", strings.NewReader(body)))
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && len(s.Snapshot().Results) != 0 {
			t.Fatalf("refused (%d) but recorded", rec.Code)
		}
	})
}

// FuzzAddDecision: the sandbox decision decoder never panics and answers 200 or a 4xx.
func FuzzAddDecision(f *testing.F) {
	f.Add(`{"fine":20000,"served_date":"2026-11-07"}`)
	f.Add(`{"late_fee_applies":"yes"}`)
	f.Add(`{"decision_no":"1"}`)
	f.Fuzz(func(t *testing.T, body string) {
		_, e := fuzzServer()
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/_sandbox/police/decisions", strings.NewReader(body)))
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
