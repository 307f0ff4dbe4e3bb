package isp_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/isp"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/partner/partnertest"
	"finepay/intranet-core/internal/partnerin"
	"finepay/intranet-core/internal/payment"
	"finepay/intranet-core/internal/receipt"
	"finepay/intranet-core/internal/task"
	"finepay/intranet-core/internal/window"
	"finepay/shared/envelope"
	"finepay/shared/gm"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

// fixture is the core's P1 side over a coretest.Env: the partner API behind the real guard,
// a payment service routing results through the isp service, and a task runner with every
// handler; the Env's partner server plays the non-tax system, the e-receipt platform, the
// window platform and the 12123 platform's result endpoint.
type fixture struct {
	env      *coretest.Env
	svc      *isp.Service
	payments *payment.Service
	runner   *task.Runner
	encKey   *gm.PrivateKey // the core's encryption key
	platform *partner.Client
	pushes   atomic.Int64
}

func newFixture(t *testing.T, db *sqldb.DB) *fixture {
	t.Helper()
	env := coretest.New(t, db, coretest.Options{})
	f := &fixture{env: env}
	var err error
	f.encKey, err = gm.GenerateKey(rand.Reader)
	sqltest.Must(t, err)
	callerKey, err := gm.GenerateKey(rand.Reader)
	sqltest.Must(t, err)
	newClient := func() *partner.Client {
		c, err := partner.New(partner.Config{BaseURL: env.Partner.URL, App: "core", Signer: env.PKI.Core.Key,
			PartnerKey: env.PKI.PartnerSign.Cert.PublicKey(), PartnerApp: "sandbox"})
		sqltest.Must(t, err)
		return c
	}
	env.SetReply(isp.PathResults, func(partnertest.Request) partnertest.Reply {
		f.pushes.Add(1)
		return partnertest.Reply{Body: map[string]string{"status": "accepted"}}
	})
	log := logging.Discard()
	f.svc = isp.NewService(isp.Config{DB: db, Bills: env.Bills, Vault: env.Vault, Key: f.encKey, Platform: newClient(),
		Now: env.Clock.Now, Logger: log})
	handlers := map[string]task.Handler{}
	f.runner = task.NewRunner(task.Config{DB: db, Handlers: handlers, Now: env.Clock.Now, Jitter: func() float64 { return 0 }, Logger: log})
	f.payments = payment.NewService(payment.Config{DB: db, Vault: env.Vault, PartnerEncKey: env.PKI.PartnerEnc.Cert.PublicKey(),
		NonTax: nontax.New(newClient()), Window: window.New(newClient()), Now: env.Clock.Now, Logger: log,
		Routers: []payment.ResultRouter{f.svc}})
	handlers[payment.KindNonTaxReport] = f.payments.HandleNonTaxReport
	handlers[payment.KindWindowReport] = f.payments.HandleWindowReport
	handlers[receipt.KindIssue] = env.Receipts.HandleIssue
	handlers[isp.KindResultPush] = f.svc.HandlePush

	guard, err := partnerin.New(partnerin.Config{DB: db, Node: "core", Key: env.PKI.Core.Key, Now: env.Clock.Now,
		Callers: []partnerin.Caller{{Name: "isp12123", Key: callerKey.Public()}}})
	sqltest.Must(t, err)
	e, _ := httpx.New(httpx.Options{Service: "test", Logger: log})
	isp.Routes(e.Group("/partner/v1", guard.Middleware).Group("/isp"), f.svc)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	f.platform, err = partner.New(partner.Config{BaseURL: srv.URL, App: "isp12123", Signer: callerKey,
		PartnerKey: env.PKI.Core.Key.Public(), PartnerApp: "core", Now: env.Clock.Now})
	sqltest.Must(t, err)
	return f
}

// request is a valid submission for the decision of coretest.ValidRequest, served on
// 2026-11-20: on the test day (11-27) no late fee is due.
func (f *fixture) request(t *testing.T, orderNo string) map[string]any {
	t.Helper()
	enc, err := partner.EncryptName(f.encKey.Public(), rand.Reader, "张三丰")
	sqltest.Must(t, err)
	v := coretest.ValidRequest()
	return map[string]any{"isp_order_no": orderNo, "decision_no": v.DecisionNo, "violation_serial": v.ViolationSerial,
		"party_name_enc": enc, "plate": v.Plate, "fine": v.Fine, "served_date": v.ServedDate, "unit_code": v.UnitCode,
		"item_code": v.ItemCode, "amount_due": v.Fine}
}

// submit posts body under request ID rid and returns the status and the decoded answer (or
// the error's code).
func (f *fixture) submit(t *testing.T, rid string, body any) (int, isp.StateJSON, string) {
	t.Helper()
	raw, err := json.Marshal(body)
	sqltest.Must(t, err)
	return f.call(t, http.MethodPost, "/partner/v1/isp/payments", rid, raw)
}

func (f *fixture) get(t *testing.T, orderNo string) (int, isp.StateJSON, string) {
	t.Helper()
	return f.call(t, http.MethodGet, "/partner/v1/isp/payments/"+orderNo, "q-"+time.Now().Format("150405.000000000")[7:], nil)
}

func (f *fixture) call(t *testing.T, method, path, rid string, body []byte) (int, isp.StateJSON, string) {
	t.Helper()
	resp, err := f.platform.Do(context.Background(), method, path, rid, body)
	var pe *partner.Error
	if errors.As(err, &pe) {
		return pe.Status, isp.StateJSON{}, pe.Code + ": " + pe.Message
	}
	sqltest.Must(t, err)
	var st isp.StateJSON
	sqltest.Must(t, json.Unmarshal(resp.Body, &st))
	return resp.Status, st, ""
}

// pay delivers the channel's confirmation of v's payment to the payment service, as the inbox
// consumer would, and runs the tasks due.
func (f *fixture) pay(t *testing.T, billNo, orderNo, tradeNo string) {
	t.Helper()
	v, err := f.env.Bills.Get(context.Background(), billNo)
	sqltest.Must(t, err)
	conf := f.env.Confirmation(t, v, orderNo, tradeNo)
	for range 2 { // a redelivery changes nothing
		sqltest.Must(t, f.env.DB.Tx(context.Background(), func(tx *sql.Tx) error {
			return f.payments.HandleConfirmed(context.Background(), tx, conf)
		}))
	}
}

func (f *fixture) runTasks(t *testing.T) {
	t.Helper()
	_, err := f.runner.RunDue(context.Background())
	sqltest.Must(t, err)
}

func (f *fixture) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	sqltest.Must(t, f.env.DB.QueryRow(query, args...).Scan(&n))
	return n
}

// TestP1SubmitPayAndPushResult: the platform submits a payment; the core gets the form, builds
// and publishes the bill and answers the cashier URL; a repeated submission (new request ID)
// answers the same bill and asks for no second form; the payment's result is pushed to the
// platform once, instead of the window report, and the platform's query shows it all.
func TestP1SubmitPayAndPushResult(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		f := newFixture(t, db)
		req := f.request(t, "ISP20261127001")
		status, st, code := f.submit(t, "r1", req)
		if status != http.StatusCreated {
			t.Fatalf("submit: %d %s", status, code)
		}
		if !strings.HasPrefix(st.CashierURL, coretest.GatewayURL+"/q/") || st.Status != bill.StatusUnpaid || st.AmountDue != 20000 ||
			st.LateFee != 0 || st.ISPOrderNo != "ISP20261127001" || st.FormNo == "" || st.PayCode == "" || !strings.HasPrefix(st.PartyMasked, "张*") || strings.Contains(st.PartyMasked, "三") {
			t.Fatalf("answer %+v", st)
		}
		if pub := f.env.OutboxMessages(t, envelope.TypeBillPublished); len(pub) != 1 {
			t.Fatalf("%d bill.published messages", len(pub))
		}
		// A retry of the same order with a new request ID (and a new encryption of the name):
		// the same bill, no second form.
		status2, st2, code2 := f.submit(t, "r2", f.request(t, "ISP20261127001"))
		if status2 != http.StatusOK || st2.BillNo != st.BillNo || st2.CashierURL != st.CashierURL {
			t.Fatalf("repeat: %d %s %+v", status2, code2, st2)
		}
		// Another platform order for the same decision: the same bill too.
		status3, st3, _ := f.submit(t, "r3", f.request(t, "ISP20261127002"))
		if status3 != http.StatusCreated || st3.BillNo != st.BillNo {
			t.Fatalf("second order: %d %+v", status3, st3)
		}
		if n := len(f.env.Requests(nontax.PathForms)); n != 1 {
			t.Fatalf("%d form requests, want 1", n)
		}
		if n := f.count(t, `SELECT count(*) FROM bills`); n != 1 {
			t.Fatalf("%d bills", n)
		}

		if _, q, _ := f.get(t, "ISP20261127001"); q.Status != bill.StatusUnpaid || q.Payment != nil || q.ResultPush != "" {
			t.Fatalf("query before payment %+v", q)
		}

		f.pay(t, st.BillNo, "ORD001", "WX001")
		kinds := map[string]int{}
		for _, r := range f.env.Tasks(t, "") {
			kinds[r.Kind]++
		}
		if kinds[isp.KindResultPush] != 1 || kinds[payment.KindWindowReport] != 0 || kinds[payment.KindNonTaxReport] != 1 || kinds[receipt.KindIssue] != 1 {
			t.Fatalf("tasks %v: want the 12123 push instead of the window report", kinds)
		}
		f.runTasks(t)
		f.runTasks(t)
		pushes := f.env.Requests(isp.PathResults)
		if len(pushes) != 1 || f.pushes.Load() != 1 || !pushes[0].SignatureOK || pushes[0].RequestID != "isp-ORD001" {
			t.Fatalf("pushes %+v", pushes)
		}
		var got isp.Result
		sqltest.Must(t, pushes[0].JSON(&got))
		if got.ISPOrderNo != "ISP20261127001" || got.OrderNo != "ORD001" || got.Amount != 20000 || got.BillNo != st.BillNo ||
			got.DecisionNo != st.DecisionNo || got.Channel != "wechat" || got.ChannelTradeNo != "WX001" || got.FormNo != st.FormNo {
			t.Fatalf("pushed %+v", got)
		}
		_, q, _ := f.get(t, "ISP20261127001")
		if q.Status != bill.StatusPaid || q.Payment == nil || q.Payment.OrderNo != "ORD001" || q.Payment.Amount != 20000 ||
			q.ResultPush != task.StatusDone || q.Receipt == nil || q.Receipt.ReceiptNo == "" {
			t.Fatalf("query after payment %+v", q)
		}
		// The same order submitted again now answers the paid bill; a new one is refused.
		if s, st4, _ := f.submit(t, "r4", f.request(t, "ISP20261127001")); s != http.StatusOK || st4.Status != bill.StatusPaid {
			t.Fatalf("repeat after payment: %d %+v", s, st4)
		}
		if s, _, code := f.submit(t, "r5", f.request(t, "ISP20261127003")); s != http.StatusConflict || !strings.HasPrefix(code, "ALREADY_PAID") {
			t.Fatalf("new order after payment: %d %s", s, code)
		}
	})
}

// TestP1ResultPushRetried: the platform fails the first push (503, then an unsigned answer);
// the durable task retries with backoff, the same request ID and the same body, until accepted.
func TestP1ResultPushRetried(t *testing.T) {
	db := sqltest.Open(t, sqldb.Postgres)
	f := newFixture(t, db)
	var n atomic.Int64
	f.env.SetReply(isp.PathResults, func(partnertest.Request) partnertest.Reply {
		switch n.Add(1) {
		case 1:
			return partnertest.Reply{Status: http.StatusServiceUnavailable, Body: map[string]string{"code": "UNAVAILABLE"}}
		case 2:
			return partnertest.Reply{Body: map[string]string{"status": "accepted"}, Unsigned: true}
		}
		return partnertest.Reply{Body: map[string]string{"status": "accepted"}}
	})
	_, st, code := f.submit(t, "r1", f.request(t, "ISP1"))
	if st.BillNo == "" {
		t.Fatalf("submit: %s", code)
	}
	f.pay(t, st.BillNo, "ORD9", "WX9")
	for i := 1; i <= 3; i++ {
		f.runTasks(t)
		rows := f.env.Tasks(t, isp.KindResultPush)
		if len(rows) != 1 {
			t.Fatalf("%d push tasks", len(rows))
		}
		if want := map[int]string{1: task.StatusPending, 2: task.StatusPending, 3: task.StatusDone}[i]; rows[0].Status != want {
			t.Fatalf("after attempt %d: %s (%s), want %s", i, rows[0].Status, rows[0].LastError, want)
		}
		f.env.Clock.Advance(f.runner.Backoff(rows[0].Attempts) + time.Second)
	}
	reqs := f.env.Requests(isp.PathResults)
	if len(reqs) != 3 {
		t.Fatalf("%d pushes", len(reqs))
	}
	for _, r := range reqs[1:] {
		if r.RequestID != reqs[0].RequestID || string(r.Body) != string(reqs[0].Body) {
			t.Fatalf("a retry changed the request: %s %s / %s %s", r.RequestID, r.Body, reqs[0].RequestID, reqs[0].Body)
		}
	}
}

// TestP1Refusals: every refused request answers its code, and creates nothing.
func TestP1Refusals(t *testing.T) {
	db := sqltest.Open(t, sqldb.Postgres)
	f := newFixture(t, db)
	with := func(order string, set map[string]any) map[string]any {
		r := f.request(t, order)
		for k, v := range set {
			if v == nil {
				delete(r, k)
			} else {
				r[k] = v
			}
		}
		return r
	}
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		fields []string
	}{
		{"fail/fields", with("A1", map[string]any{"decision_no": "12", "fine": 0, "plate": "X", "served_date": "2099-01-01",
			"unit_code": "1", "isp_order_no": "bad order!", "amount_due": -1}), 400, "INVALID_ARGUMENT",
			[]string{"decision_no", "fine", "plate", "served_date", "unit_code", "isp_order_no", "amount_due"}},
		{"fail/name-not-encrypted", with("A2", map[string]any{"party_name_enc": "5byg5LiJ"}), 400, "INVALID_ARGUMENT", []string{"party_name_enc"}},
		{"fail/name-missing", with("A3", map[string]any{"party_name_enc": nil}), 400, "INVALID_ARGUMENT", []string{"party_name_enc"}},
		{"fail/unknown-field", with("A4", map[string]any{"party_name": "张三丰"}), 400, "INVALID_JSON", nil},
		{"fail/amount-as-yuan", with("A5", map[string]any{"fine": 200.5}), 400, "INVALID_JSON", nil},
		{"fail/amount-mismatch", with("A6", map[string]any{"amount_due": 19999}), 422, "AMOUNT_MISMATCH", []string{"20000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, code := f.submit(t, "rid-"+strings.ReplaceAll(tc.name, "/", "-"), tc.body)
			if status != tc.status || !strings.HasPrefix(code, tc.code+":") {
				t.Fatalf("got %d %s, want %d %s", status, code, tc.status, tc.code)
			}
			for _, fl := range tc.fields {
				if !strings.Contains(code, fl) {
					t.Errorf("the message %q does not name %s", code, fl)
				}
			}
		})
	}
	if n := f.count(t, `SELECT count(*) FROM isp_payments`); n != 0 {
		t.Fatalf("%d orders stored by refused requests", n)
	}
	if n := len(f.env.Requests(nontax.PathForms)); n != 1 { // the amount mismatch asked for the form first
		t.Fatalf("%d form requests", n)
	}

	// A good order, then the same order number with other fields, and another order for the
	// decision with other data.
	if s, _, code := f.submit(t, "g1", f.request(t, "B1")); s != http.StatusCreated {
		t.Fatalf("good order: %d %s", s, code)
	}
	if s, _, code := f.submit(t, "g2", with("B1", map[string]any{"violation_serial": "X1"})); s != 409 || !strings.HasPrefix(code, "ISP_ORDER_CONFLICT") {
		t.Fatalf("order reused: %d %s", s, code)
	}
	if s, _, code := f.submit(t, "g3", with("B2", map[string]any{"plate": "黑B54321"})); s != 409 || !strings.HasPrefix(code, "DECISION_CONFLICT") {
		t.Fatalf("decision with other data: %d %s", s, code)
	}
	// The non-tax system refuses a form: 422, nothing stored.
	f.env.SetReply(nontax.PathForms, func(partnertest.Request) partnertest.Reply {
		return partnertest.Reply{Status: 400, Body: map[string]string{"code": "INVALID_ARGUMENT", "message": "unit_code: unknown"}}
	})
	if s, _, code := f.submit(t, "g4", with("C1", map[string]any{"decision_no": "230102100099999"})); s != 422 || !strings.HasPrefix(code, "NONTAX_REFUSED") {
		t.Fatalf("non-tax refusal: %d %s", s, code)
	}
	// Look-ups.
	if s, _, code := f.get(t, "NOPE"); s != 404 || !strings.HasPrefix(code, "NOT_FOUND") {
		t.Fatalf("unknown order: %d %s", s, code)
	}
	if s, _, code := f.get(t, strings.Repeat("x", 65)); s != 400 || !strings.HasPrefix(code, "INVALID_ARGUMENT") {
		t.Fatalf("bad order number: %d %s", s, code)
	}
	if n := f.count(t, `SELECT count(*) FROM isp_payments`); n != 1 {
		t.Fatalf("%d orders stored", n)
	}
	// Every request is in the guard's audit trail.
	if n := f.count(t, `SELECT count(*) FROM partner_audit WHERE caller = 'isp12123'`); n != len(cases)+6 {
		t.Fatalf("%d audit rows", n)
	}
}

// TestP1ForClerkBillReportsBoth: a bill a clerk created (P2) that the platform then asks for
// reports its payment to both the window platform and the 12123 platform.
func TestP1ForClerkBillReportsBoth(t *testing.T) {
	db := sqltest.Open(t, sqldb.SQLite)
	f := newFixture(t, db)
	v := f.env.CreateBill(t, coretest.ValidRequest())
	_, st, code := f.submit(t, "r1", f.request(t, "ISP7"))
	if st.BillNo != v.BillNo {
		t.Fatalf("submit: %s %+v", code, st)
	}
	f.pay(t, v.BillNo, "ORD7", "WX7")
	f.runTasks(t)
	if len(f.env.Requests(window.PathPaymentResults)) != 1 || len(f.env.Requests(isp.PathResults)) != 1 {
		t.Fatalf("window %d, 12123 %d reports", len(f.env.Requests(window.PathPaymentResults)), len(f.env.Requests(isp.PathResults)))
	}
}

// TestP1SubmitWhileThePaymentIsRecorded: the platform submits an order for a clerk's bill while
// the payer's QR payment of that bill is being recorded. The order waits for the payment and is
// refused as paid; it is never stored as a new order that no result push would reach.
func TestP1SubmitWhileThePaymentIsRecorded(t *testing.T) {
	db := sqltest.Open(t, sqldb.Postgres)
	f := newFixture(t, db)
	ctx := context.Background()
	v := f.env.CreateBill(t, coretest.ValidRequest())
	conf := f.env.Confirmation(t, v, "ORD9", "WX9")

	// The payment's transaction: recorded, not yet committed (the bill row stays locked).
	tx, err := db.BeginTx(ctx, nil)
	sqltest.Must(t, err)
	defer tx.Rollback()
	sqltest.Must(t, f.payments.HandleConfirmed(ctx, tx, conf))

	type answer struct {
		status int
		code   string
	}
	raw, err := json.Marshal(f.request(t, "ISP9"))
	sqltest.Must(t, err)
	done := make(chan answer, 1)
	go func() {
		resp, err := f.platform.Do(ctx, http.MethodPost, "/partner/v1/isp/payments", "r9", raw)
		var pe *partner.Error
		switch {
		case errors.As(err, &pe):
			done <- answer{pe.Status, pe.Code}
		case err != nil:
			done <- answer{code: err.Error()}
		default:
			done <- answer{status: resp.Status}
		}
	}()

	// Wait until the submission waits for the bill's lock, or answers without waiting.
	var early *answer
	deadline := time.Now().Add(10 * time.Second)
	for early == nil {
		var waiting int
		sqltest.Must(t, db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting))
		if waiting > 0 {
			break
		}
		select {
		case a := <-done:
			early = &a
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the submission neither waited for the bill nor answered")
		}
	}
	sqltest.Must(t, tx.Commit())
	a := early
	if a == nil {
		got := <-done
		a = &got
	}
	pushes := f.count(t, `SELECT count(*) FROM tasks WHERE kind = $1`, isp.KindResultPush)
	orders := f.count(t, `SELECT count(*) FROM isp_payments WHERE isp_order_no = 'ISP9'`)
	if a.status != http.StatusConflict || a.code != "ALREADY_PAID" || orders != 0 {
		t.Fatalf("submission answered %d %s (before the payment committed: %t); %d orders stored, %d result pushes queued",
			a.status, a.code, early != nil, orders, pushes)
	}
}
