package ispsim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/ispsim"
	"finepay/sandbox/internal/partnersig"
	"finepay/sandbox/internal/shanghai"
	"finepay/sandbox/internal/testpki"
)

// fakeCore plays the core's P1 API from the protocol document: it checks the platform's
// signature with the sandbox's key, opens the name with the core's encryption key, and answers
// signed by the core.
type fakeCore struct {
	t      *testing.T
	pki    *testpki.PKI
	mu     sync.Mutex
	bodies []map[string]any
	fail   int // answer this many requests 503 first
}

func (f *fakeCore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	env, err := partnersig.Parse(r.Header)
	if err == nil {
		err = partnersig.VerifyRequest(env, r.Method, r.URL.RequestURI(), body, time.Now(), f.pki.Box.Sign.Cert.PublicKey())
	}
	status, answer := http.StatusOK, []byte(`{}`)
	switch {
	case err != nil || env.App != ispsim.App:
		status, answer = 401, []byte(`{"code":"SIGNATURE_INVALID","message":"no"}`)
	case f.fail > 0:
		f.fail--
		status, answer = 503, []byte(`{"code":"UNAVAILABLE","message":"later"}`)
	case r.Method == http.MethodPost:
		var in map[string]any
		if err := json.Unmarshal(body, &in); err != nil {
			f.t.Errorf("body %s", body)
		}
		ct, _ := base64.StdEncoding.DecodeString(in["party_name_enc"].(string))
		name, err := f.pki.Core.Enc.Key.Decrypt(ct)
		if err != nil || string(name) != "张三丰" {
			f.t.Errorf("party_name_enc does not open to the name with the core's key: %v", err)
		}
		f.mu.Lock()
		f.bodies = append(f.bodies, in)
		f.mu.Unlock()
		status = http.StatusCreated
		answer, _ = json.Marshal(map[string]any{"isp_order_no": in["isp_order_no"], "bill_no": "B1", "status": "unpaid",
			"cashier_url": "http://gw.test/q/tok", "amount_due": in["amount_due"]})
	default:
		answer = []byte(`{"isp_order_no":"X","status":"paid"}`)
	}
	if err := partnersig.SignResponse(w.Header(), "core", env.RequestID, status, answer, time.Now(), f.pki.Core.Sign.Key, rand.Reader); err != nil {
		f.t.Fatal(err)
	}
	w.WriteHeader(status)
	w.Write(answer)
}

func newSim(t *testing.T, core http.Handler) *ispsim.Sim {
	t.Helper()
	pki, dir := testpki.Dir(t)
	keys, err := ispsim.LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(core)
	t.Cleanup(srv.Close)
	return ispsim.New(ispsim.Config{CoreURL: srv.URL, Key: pki.Box.Sign.Key, Keys: keys})
}

func payment() ispsim.Payment {
	return ispsim.Payment{DecisionNo: "2301021000123456", ViolationSerial: "V1", PartyName: "张三丰", Plate: "黑A12345",
		Fine: 20000, ServedDate: shanghai.Date(time.Now().AddDate(0, 0, -20)), UnitCode: "230100", ItemCode: "103050101"}
}

func TestSubmitSignsEncryptsAndVerifies(t *testing.T) {
	core := &fakeCore{t: t, pki: testpki.Get(t), fail: 1}
	sim := newSim(t, core)
	o, a, err := sim.Submit(context.Background(), payment())
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != http.StatusCreated || o.CashierURL != "http://gw.test/q/tok" || o.BillNo != "B1" || !strings.HasPrefix(o.ISPOrderNo, "ISP") {
		t.Fatalf("order %+v answer %+v", o, a)
	}
	// Served 20 days ago: five days late, 3% a day.
	if len(core.bodies) != 1 || core.bodies[0]["amount_due"] != float64(23000) || o.AmountDue != 23000 {
		t.Fatalf("sent %v, order %+v", core.bodies, o)
	}
	if st := sim.Snapshot(); len(st.Orders) != 1 || st.Orders[0].HTTPStatus != 201 {
		t.Fatalf("state %+v", st)
	}
	// An answer not signed by the core is no answer.
	rogue := newSim(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		partnersig.SignResponse(w.Header(), "core", r.Header.Get(partnersig.HeaderRequestID), 200, []byte(`{}`), time.Now(),
			testpki.Get(t).Box.Sign.Key, rand.Reader)
		w.Write([]byte(`{}`))
	}))
	if _, _, err := rogue.Submit(context.Background(), payment()); err == nil {
		t.Fatal("an answer signed by another key was accepted")
	}
}

func TestLateFee(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))
	for _, tc := range []struct {
		served  string
		applies bool
		want    int64
	}{
		{"2026-11-12", true, 0},   // day 15
		{"2026-11-11", true, 600}, // day 16
		{"2026-11-07", true, 3000},
		{"2026-11-07", false, 0},
		{"2026-01-01", true, 20000}, // capped at the fine
	} {
		if got := ispsim.LateFee(20000, tc.served, now, tc.applies); got != tc.want {
			t.Errorf("served %s applies %v: %d, want %d", tc.served, tc.applies, got, tc.want)
		}
	}
}

func TestResultsRecordedOnce(t *testing.T) {
	sim := newSim(t, http.NotFoundHandler())
	e := echo.New()
	e.HTTPErrorHandler = apierr.Handler(nil)
	sim.RegisterPartner(e.Group("/isp/v1"))
	push := func(body map[string]any) (int, string) {
		raw, _ := json.Marshal(body)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/isp/v1/payment-results", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		e.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	good := func() map[string]any {
		return map[string]any{"isp_order_no": "ISP1", "decision_no": "2301021000123456", "violation_serial": "V1", "bill_no": "B1",
			"form_no": "23010020261127000001", "pay_code": "23010026112700000016", "order_no": "FP1", "channel": "alipay",
			"channel_trade_no": "2026112722001", "amount": 23000, "fine": 20000, "late_fee": 3000, "paid_at": "2026-11-27T10:05:00+08:00"}
	}
	for range 2 {
		if code, body := push(good()); code != 200 || !strings.Contains(body, "accepted") {
			t.Fatalf("push: %d %s", code, body)
		}
	}
	other := good()
	other["order_no"] = "FP2"
	if code, body := push(other); code != 409 || !strings.Contains(body, "RESULT_CONFLICT") {
		t.Fatalf("conflicting push: %d %s", code, body)
	}
	bad := good()
	bad["amount"], bad["channel"] = 1, "cash"
	if code, body := push(bad); code != 400 || !strings.Contains(body, "amount") || !strings.Contains(body, "channel") {
		t.Fatalf("bad push: %d %s", code, body)
	}
	st := sim.Snapshot()
	if len(st.Results) != 1 || st.Results[0].Reports != 2 || st.Results[0].OrderNo != "FP1" {
		t.Fatalf("results %+v", st.Results)
	}
}
