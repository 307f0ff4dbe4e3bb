package banksim

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/adaptersim"
	"finepay/sandbox/internal/apierr"
)

// refusing is an adapter whose core refuses everything.
type refusing struct{}

func (refusing) NewRequestID() string { return "r1" }
func (refusing) answer() adaptersim.Answer {
	return adaptersim.Answer{Status: 404, Body: []byte(`{"code":"DECISION_NOT_FOUND","message":"x"}`)}
}
func (r refusing) Query(context.Context, string, any) (adaptersim.Answer, error) {
	return r.answer(), nil
}
func (r refusing) Pay(context.Context, string, any) (adaptersim.Answer, error) {
	return r.answer(), nil
}
func (r refusing) Reconcile(context.Context, string, any) (adaptersim.Answer, error) {
	return r.answer(), nil
}
func (r refusing) RefundResult(context.Context, string, adaptersim.RefundState) (adaptersim.Answer, error) {
	return r.answer(), nil
}

// FuzzDriving: the decoders of /_sandbox/bank/pay and /_sandbox/bank/eod never panic and answer
// 200 or a 4xx.
func FuzzDriving(f *testing.F) {
	f.Add("pay", `{"decision_no":"230100123456789012","repeat":5}`)
	f.Add("pay", `{"quote":{"decision_no":"230100123456789012","pay_code":"1","fine":20000,"late_fee":0,"amount":20000},"late_fee_delta":100}`)
	f.Add("pay", `{"repeat":11}`)
	f.Add("eod", `{"unknown_lines":1,"alter_amounts":{"BS1":99999}}`)
	f.Add("eod", `{"business_date":"2026-02-30"}`)
	f.Fuzz(func(t *testing.T, which, body string) {
		if which != "pay" && which != "eod" {
			return
		}
		s := New(Config{Adapter: refusing{}})
		e := echo.New()
		e.HTTPErrorHandler = apierr.Handler(nil)
		s.Register(e)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/_sandbox/bank/"+which, strings.NewReader(body)))
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
