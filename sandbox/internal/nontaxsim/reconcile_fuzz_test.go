package nontaxsim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
)

// FuzzReconciliation: the reconciliation decoder never panics, answers 200 or a 4xx, and keeps
// only what it accepted.
func FuzzReconciliation(f *testing.F) {
	f.Add(`{"recon_id":"R104-2026-11-27","source":"bank","bank_code":"104100000004","business_date":"2026-11-27","file_sm3":"` +
		strings.Repeat("0", 64) + `","status":"differences","matched":1,"bank_only":1,"core_only":0,"amount_mismatch":0,"total_bank":2,"total_core":1,` +
		`"items":[{"class":"matched","bank_serial":"A","decision_no":"1","pay_code":"1","bank_amount":1,"core_amount":1},{"class":"bank_only","bank_serial":"B","decision_no":"1","pay_code":"1","bank_amount":1,"core_amount":0}]}`)
	f.Add(`{"items":[{"class":"other"}]}`)
	f.Add(`{"status":"balanced","matched":-1}`)
	f.Fuzz(func(t *testing.T, body string) {
		r := NewReconciler(Config{})
		e := echo.New()
		e.HTTPErrorHandler = apierr.Handler(nil)
		r.Register(e.Group("/nontax/v1"))
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/nontax/v1/reconciliations", strings.NewReader(body)))
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if got := len(r.Reconciliations()); (rec.Code == http.StatusOK) != (got == 1) {
			t.Fatalf("status %d with %d kept", rec.Code, got)
		}
	})
}
