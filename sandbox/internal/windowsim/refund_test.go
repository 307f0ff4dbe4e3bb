package windowsim_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/windowsim"
)

// fakeCore is the core's window API as intranet-core/README.md describes POST /api/v1/refunds:
// bearer token, JSON body, 201 with the refund. Its first answer is a 503.
type fakeCore struct {
	mu     sync.Mutex
	bodies []map[string]any
	auth   []string
}

func (f *fakeCore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body map[string]any
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/refunds" || r.Header.Get("Content-Type") != "application/json" ||
		json.NewDecoder(r.Body).Decode(&body) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.bodies = append(f.bodies, body)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	if len(f.bodies) == 1 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if r.Header.Get("Authorization") != "Bearer tok-1" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"code":"UNAUTHORIZED","message":"invalid bearer token"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{"request_id": body["request_id"], "refund_no": "RF1R001", "state": "requested",
		"requested_by": "window:" + body["requested_by"].(string)})
}

func TestR2WindowPlatformInstructsRefund(t *testing.T) {
	core := &fakeCore{}
	srv := httptest.NewServer(core)
	defer srv.Close()
	sim := windowsim.New(windowsim.Config{CoreURL: srv.URL + "/", APIToken: "tok-1"})
	e := echo.New()
	e.HTTPErrorHandler = apierr.Handler(nil)
	sim.RegisterSandbox(e)

	post := func(body string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/_sandbox/window/refunds", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		e.ServeHTTP(rec, req)
		var out map[string]any
		json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out
	}
	code, out := post(`{"decision_no":"2301021000123456","amount":20000,"reason":"撤销处罚决定","requested_by":"clerk"}`)
	if code != http.StatusOK {
		t.Fatalf("instruction: %d %v", code, out)
	}
	c := out["core"].(map[string]any)
	if c["status"].(float64) != http.StatusCreated || c["answer"].(map[string]any)["refund_no"] != "RF1R001" {
		t.Fatalf("core answer %v", c)
	}
	// The 503 was tried again with the same body: the same request ID.
	if len(core.bodies) != 2 || core.bodies[0]["request_id"] != core.bodies[1]["request_id"] ||
		!strings.HasPrefix(core.bodies[0]["request_id"].(string), "WIN-") || core.auth[1] != "Bearer tok-1" || core.bodies[1]["requested_by"] != "clerk" {
		t.Fatalf("requests to the core %v %v", core.bodies, core.auth)
	}
	st := sim.Snapshot()
	if len(st.Instructions) != 1 || st.Instructions[0].RefundNo != "RF1R001" || st.Instructions[0].Status != http.StatusCreated {
		t.Fatalf("state %+v", st.Instructions)
	}
	// Who asked must be named.
	if code, _ := post(`{"decision_no":"2301021000123456","amount":20000,"reason":"x"}`); code != http.StatusBadRequest {
		t.Errorf("no requested_by: %d", code)
	}
	// Without the token the core refuses, and the simulator passes its answer on.
	noToken := windowsim.New(windowsim.Config{CoreURL: srv.URL})
	_, a, err := noToken.Refund(t.Context(), windowsim.RefundInstruction{DecisionNo: "2301021000123456", Amount: 1, Reason: "x", RequestID: "WIN-2", RequestedBy: "clerk"})
	if err != nil || a.Status != http.StatusUnauthorized || core.auth[len(core.auth)-1] != "" {
		t.Errorf("without a token: %v %+v", err, a)
	}
}
