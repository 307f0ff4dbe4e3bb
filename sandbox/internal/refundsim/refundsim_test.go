package refundsim_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/refundsim"
)

func newServer(t *testing.T) (*refundsim.Sim, func(method, path, body string) (int, map[string]any)) {
	t.Helper()
	s := refundsim.New(refundsim.Config{})
	e := echo.New()
	e.HTTPErrorHandler = apierr.Handler(nil)
	s.RegisterApplications(e.Group("/ereceipt/v1"))
	s.RegisterReviews(e.Group("/nontax/v1"))
	s.RegisterOutcomes(e.Group("/nontax/v1"), "nontax")
	s.RegisterOutcomes(e.Group("/unified/v1"), "unified")
	s.RegisterControl(e.Group("/_sandbox"))
	do := func(method, path, body string) (int, map[string]any) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		var out map[string]any
		json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out
	}
	return s, do
}

const app = `{"refund_no":"RFFP1R001","route":"R5","form_no":"23010020261127000001","order_no":"FP1","receipt_code":"23010126",
	"receipt_no":"0000000001","paid_amount":20000,"amount":20000,"reason":"duplicate payment"}`

func TestR5RefundApplicationReviewAndOutcome(t *testing.T) {
	s, do := newServer(t)
	for range 2 {
		if code, out := do(http.MethodPost, "/ereceipt/v1/refund-applications", app); code != 200 || out["status"] != "accepted" {
			t.Fatalf("apply: %d %v", code, out)
		}
	}
	if code, out := do(http.MethodPost, "/ereceipt/v1/refund-applications", strings.Replace(app, `"amount":20000`, `"amount":10000`, 1)); code != 409 || out["code"] != "APPLICATION_CONFLICT" {
		t.Fatalf("conflicting application: %d %v", code, out)
	}
	for i, want := range []string{"pending", "approved", "approved"} {
		if code, out := do(http.MethodGet, "/nontax/v1/refund-reviews/RFFP1R001", ""); code != 200 || out["status"] != want {
			t.Fatalf("look %d: %d %v", i, code, out)
		}
	}
	if code, _ := do(http.MethodGet, "/nontax/v1/refund-reviews/RFUNKNOWN1", ""); code != 404 {
		t.Fatalf("unknown review: %d", code)
	}
	outcome := `{"refund_no":"RFFP1R001","route":"R5","form_no":"23010020261127000001","order_no":"FP1","amount":20000,"status":"refunded","channel_refund_id":"x","at":"2026-11-27T10:00:00+08:00"}`
	for range 3 {
		if code, _ := do(http.MethodPost, "/unified/v1/refund-results", outcome); code != 200 {
			t.Fatalf("outcome: %d", code)
		}
	}
	if code, out := do(http.MethodPost, "/unified/v1/refund-results", strings.Replace(outcome, "refunded", "failed", 1)); code != 409 {
		t.Fatalf("conflicting outcome: %d %v", code, out)
	}
	st := s.Snapshot()
	if len(st.Applications) != 1 || st.Applications[0].Repeats != 1 || len(st.Outcomes) != 1 || st.Outcomes[0].Reports != 3 || st.Outcomes[0].Party != "unified" {
		t.Fatalf("state %+v", st)
	}
}

func TestR2RefundReviewRejected(t *testing.T) {
	_, do := newServer(t)
	body := strings.Replace(strings.Replace(app, "duplicate payment", "please reject", 1), `"route":"R5"`, `"route":"R2"`, 1)
	if code, _ := do(http.MethodPost, "/ereceipt/v1/refund-applications", body); code != 200 {
		t.Fatal(code)
	}
	if _, out := do(http.MethodGet, "/nontax/v1/refund-reviews/RFFP1R001", ""); out["status"] != "rejected" {
		t.Fatalf("review %v", out)
	}
}

func TestRefundApplicationValidation(t *testing.T) {
	_, do := newServer(t)
	bad := strings.NewReplacer(`"amount":20000`, `"amount":30000`, `"route":"R5"`, `"route":"R9"`, `"refund_no":"RFFP1R001"`, `"refund_no":"RF-1"`).Replace(app)
	code, out := do(http.MethodPost, "/ereceipt/v1/refund-applications", bad)
	msg, _ := out["message"].(string)
	if code != 400 || out["code"] != "INVALID_ARGUMENT" || !strings.Contains(msg, "amount") || !strings.Contains(msg, "route") || !strings.Contains(msg, "refund_no") {
		t.Fatalf("%d %v", code, out)
	}
	if code, out := do(http.MethodPost, "/_sandbox/refund-reviews/RFFP1R001", `{"decision":"approved"}`); code != 404 {
		t.Fatalf("decide unknown: %d %v", code, out)
	}
}
