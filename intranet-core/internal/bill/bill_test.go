package bill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner/partnertest"
	"finepay/shared/envelope"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

// api serves the window API of env without authentication (the caller is "test-window").
func api(env *coretest.Env) *echo.Echo {
	e, _ := httpx.New(httpx.Options{Service: "core", Logger: logging.Discard()})
	g := e.Group("/api/v1", func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { c.Set(bill.ActorKey, "test-window"); return next(c) }
	})
	bill.Routes(g, env.Bills)
	return e
}

func post(t *testing.T, e *echo.Echo, body any) (int, map[string]any) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/bills", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	var out map[string]any
	json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func asMap(r bill.CreateRequest) map[string]any {
	b, _ := json.Marshal(r)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func TestP2CreateBillValidation(t *testing.T) {
	env := coretest.New(t, sqltest.Open(t, sqldb.Postgres), coretest.Options{})
	e := api(env)
	for _, tc := range []struct {
		name  string
		field string
		value any
	}{
		{"fail/decision-no-short", "decision_no", "23010210001234"},
		{"fail/decision-no-long", "decision_no", "230102100012345678901"},
		{"fail/decision-no-letters", "decision_no", "2301021000A23456"},
		{"fail/decision-no-missing", "decision_no", ""},
		{"fail/violation-serial-empty", "violation_serial", ""},
		{"fail/violation-serial-long", "violation_serial", strings.Repeat("1", 33)},
		{"fail/violation-serial-symbols", "violation_serial", "2301-0001"},
		{"fail/party-name-empty", "party_name", "  "},
		{"fail/party-name-long", "party_name", strings.Repeat("张", 33)},
		{"fail/party-name-control", "party_name", "张\x00三"},
		{"fail/plate-short", "plate", "黑A1234"},
		{"fail/plate-long", "plate", "黑A1234567"},
		{"fail/plate-no-province", "plate", "XA12345"},
		{"fail/plate-lowercase-office", "plate", "黑12345A"},
		{"fail/fine-zero", "fine", 0},
		{"fail/fine-negative", "fine", -100},
		{"fail/fine-too-large", "fine", bill.MaxFine + 1},
		{"fail/fine-not-integer", "fine", 200.5},
		{"fail/fine-string", "fine", "200"},
		{"fail/served-date-format", "served_date", "2026/11/20"},
		{"fail/served-date-invalid", "served_date", "2026-02-30"},
		{"fail/served-date-future", "served_date", "2026-11-28"},
		{"fail/unit-code-short", "unit_code", "23010"},
		{"fail/unit-code-letters", "unit_code", "23010A"},
		{"fail/item-code-empty", "item_code", ""},
		{"fail/item-code-long", "item_code", strings.Repeat("1", 21)},
		{"fail/unknown-field", "id_number", "230102199001011234"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := asMap(coretest.ValidRequest())
			m[tc.field] = tc.value
			code, out := post(t, e, m)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %v", code, out)
			}
			if msg, _ := out["message"].(string); !strings.Contains(msg, tc.field+":") || out["code"] != "INVALID_REQUEST" {
				t.Fatalf("error %v does not name %s", out, tc.field)
			}
		})
	}
	t.Run("fail/not-json", func(t *testing.T) {
		if code, _ := post(t, e, "decision_no=1"); code != http.StatusBadRequest {
			t.Fatalf("status %d", code)
		}
	})
	if n := len(env.Requests(nontax.PathForms)); n != 0 {
		t.Fatalf("invalid requests reached the non-tax system %d times", n)
	}
	t.Run("ok/today-and-new-energy-plate", func(t *testing.T) {
		r := coretest.ValidRequest()
		r.ServedDate, r.Plate = "2026-11-27", "黑AD12345"
		if code, out := post(t, e, r); code != http.StatusCreated {
			t.Fatalf("status %d: %v", code, out)
		}
	})
}

func TestP2CreateBillStoresSealedBillAndPublishes(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		env := coretest.New(t, db, coretest.Options{})
		req := coretest.ValidRequest()
		code, out := post(t, api(env), req)
		if code != http.StatusCreated {
			t.Fatalf("status %d: %v", code, out)
		}
		billNo, _ := out["bill_no"].(string)
		token, _ := out["token"].(string)
		for _, k := range []string{"bill_no", "token", "qr_url", "form_no", "pay_code", "fine", "late_fee", "total_due_today", "status"} {
			if _, ok := out[k]; !ok {
				t.Errorf("answer lacks %s: %v", k, out)
			}
		}
		if out["qr_url"] != coretest.GatewayURL+"/q/"+token || len(token) < 22 || strings.Contains(token, req.DecisionNo) {
			t.Errorf("qr_url %v token %q", out["qr_url"], token)
		}
		// Served 2026-11-20, paid 2026-11-27: within the 15-day grace period.
		if out["fine"] != 20000.0 || out["late_fee"] != 0.0 || out["total_due_today"] != 20000.0 || out["status"] != "unpaid" {
			t.Errorf("amounts/status %v", out)
		}

		// The non-tax system got a signed request with the name encrypted to its key.
		forms := env.Requests(nontax.PathForms)
		if len(forms) != 1 || !forms[0].SignatureOK {
			t.Fatalf("form requests %+v", forms)
		}
		var fr nontax.FormRequest
		sqltest.Must(t, forms[0].JSON(&fr))
		if name, err := env.PKI.DecryptName(fr.PayerNameEnc); err != nil || name != req.PartyName {
			t.Fatalf("payer_name_enc opens to %q, %v", name, err)
		}
		if bytes.Contains(forms[0].Body, []byte(req.PartyName)) {
			t.Fatal("the clear name was sent to the non-tax system")
		}
		if fr.DecisionNo != req.DecisionNo || fr.Fine != 20000 || !fr.LateFeeApplies || fr.ServedDate != "2026-11-20" {
			t.Errorf("form request %+v", fr)
		}

		// Stored with name and plate sealed: the clear values are nowhere in the row's bytes.
		rec, err := bill.BillGetByNo(context.Background(), db, billNo)
		sqltest.Must(t, err)
		assertNoClearText(t, db, req.PartyName, req.Plate)
		if name, err := env.Bills.PartyName(rec); err != nil || name != req.PartyName {
			t.Fatalf("sealed name opens to %q, %v", name, err)
		}
		if rec.PartyNameIdx != env.Vault.Index("name", req.PartyName) {
			t.Error("blind index of the name does not match")
		}
		byName, err := bill.BillListByNameIndex(context.Background(), db, env.Vault.Index("name", " 张三丰"))
		sqltest.Must(t, err)
		if len(byName) != 1 || byName[0].BillNo != billNo {
			t.Errorf("lookup by name found %d bills", len(byName))
		}

		// BillPublished in the outbox with masked fields only.
		msgs := env.OutboxMessages(t, envelope.TypeBillPublished)
		if len(msgs) != 1 || msgs[0].ID != "bill:"+billNo || msgs[0].Key != billNo {
			t.Fatalf("outbox %+v", msgs)
		}
		p, err := msgs[0].Decode()
		sqltest.Must(t, err)
		bp := p.(*envelope.BillPublished)
		if bp.PartyMasked != "张**" || bp.PlateMasked != "黑A****5" || bp.Token != token || bp.FormNo != rec.FormNo || bp.Fine != 20000 {
			t.Errorf("published %+v", bp)
		}
		if bytes.Contains(msgs[0].Payload, []byte(req.PartyName)) || bytes.Contains(msgs[0].Payload, []byte(req.Plate)) {
			t.Error("the published bill holds a clear personal field")
		}

		// GET shows it.
		rq := httptest.NewRequest(http.MethodGet, "/api/v1/bills/"+billNo, nil)
		rw := httptest.NewRecorder()
		api(env).ServeHTTP(rw, rq)
		var got bill.BillJSON
		json.Unmarshal(rw.Body.Bytes(), &got)
		if rw.Code != 200 || got.BillNo != billNo || got.Status != "unpaid" || got.Payment != nil || got.Receipt != nil {
			t.Errorf("GET %d %+v", rw.Code, got)
		}
		rw = httptest.NewRecorder()
		api(env).ServeHTTP(rw, httptest.NewRequest(http.MethodGet, "/api/v1/bills/B000", nil))
		if rw.Code != http.StatusNotFound {
			t.Errorf("GET unknown bill: %d", rw.Code)
		}
	})
}

// assertNoClearText looks for the values in every column of the bills table and, on SQLite,
// in the database files themselves.
func assertNoClearText(t *testing.T, db *sqldb.DB, values ...string) {
	t.Helper()
	rows, err := db.Query(`SELECT * FROM bills`)
	sqltest.Must(t, err)
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		sqltest.Must(t, rows.Scan(ptrs...))
		for i, v := range vals {
			var b []byte
			switch x := v.(type) {
			case []byte:
				b = x
			case string:
				b = []byte(x)
			}
			for _, s := range values {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("column %s holds %q in clear", cols[i], s)
				}
			}
		}
	}
	if db.Dialect == sqldb.SQLite {
		path := strings.TrimPrefix(db.URL, "sqlite:")
		for _, f := range []string{path, path + "-wal"} {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, s := range values {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("database file %s holds %q in clear", f, s)
				}
			}
		}
	}
}

func TestP2CreateBillIsIdempotent(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		env := coretest.New(t, db, coretest.Options{})
		e := api(env)
		req := coretest.ValidRequest()
		code1, first := post(t, e, req)
		req.PartyName = " 张三丰 " // the same after normalisation
		code2, second := post(t, e, req)
		if code1 != http.StatusCreated || code2 != http.StatusOK {
			t.Fatalf("statuses %d, %d", code1, code2)
		}
		if first["bill_no"] != second["bill_no"] || first["token"] != second["token"] {
			t.Fatalf("second create gave another bill: %v vs %v", first, second)
		}
		var n int
		sqltest.Must(t, db.QueryRow(`SELECT count(*) FROM bills`).Scan(&n))
		if n != 1 || len(env.OutboxMessages(t, envelope.TypeBillPublished)) != 1 || len(env.Requests(nontax.PathForms)) != 1 {
			t.Fatalf("bills %d, outbox %d, form requests %d", n, len(env.OutboxMessages(t, envelope.TypeBillPublished)), len(env.Requests(nontax.PathForms)))
		}
		req.Fine = 30000
		if code, out := post(t, e, req); code != http.StatusConflict || out["code"] != "DECISION_CONFLICT" {
			t.Fatalf("different input for the decision: %d %v", code, out)
		}
	})
}

func TestP2CreateBillConcurrentRequestsMakeOneBill(t *testing.T) {
	env := coretest.New(t, sqltest.Open(t, sqldb.Postgres), coretest.Options{})
	const n = 8
	type result struct {
		no  string
		err error
	}
	out := make(chan result, n)
	for range n {
		go func() {
			v, _, err := env.Bills.Create(context.Background(), "test", coretest.ValidRequest())
			out <- result{v.BillNo, err}
		}()
	}
	nos := map[string]bool{}
	for range n {
		r := <-out
		if r.err != nil {
			t.Fatal(r.err)
		}
		nos[r.no] = true
	}
	if len(nos) != 1 {
		t.Fatalf("%d different bills for one decision", len(nos))
	}
}

func TestP2CreateBillIsAtomicWithItsMessage(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		env := coretest.New(t, db, coretest.Options{})
		// Without an outbox the message cannot be queued: the bill must not be stored either.
		_, err := db.Exec(`DROP TABLE ferry_outbox`)
		sqltest.Must(t, err)
		if _, _, err := env.Bills.Create(context.Background(), "test", coretest.ValidRequest()); err == nil {
			t.Fatal("create succeeded without an outbox")
		}
		var n int
		sqltest.Must(t, db.QueryRow(`SELECT count(*) FROM bills`).Scan(&n))
		if n != 0 {
			t.Fatalf("%d bills stored without their BillPublished", n)
		}
	})
}

func TestP2CreateBillNonTaxFailures(t *testing.T) {
	env := coretest.New(t, sqltest.Open(t, sqldb.Postgres), coretest.Options{})
	e := api(env)
	for _, tc := range []struct {
		name  string
		reply partnertest.Reply
		code  int
		want  string
	}{
		{"fail/nontax-500", partnertest.Reply{Status: 500, Body: map[string]string{"code": "DOWN"}}, http.StatusBadGateway, "NONTAX_UNAVAILABLE"},
		{"fail/nontax-unsigned", partnertest.Reply{Body: map[string]string{"form_no": "1"}, Unsigned: true}, http.StatusBadGateway, "NONTAX_UNAVAILABLE"},
		{"fail/nontax-refuses", partnertest.Reply{Status: 422, Body: map[string]string{"code": "UNKNOWN_UNIT", "message": "unit 230100"}}, http.StatusUnprocessableEntity, "NONTAX_REFUSED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env.SetReply(nontax.PathForms, func(partnertest.Request) partnertest.Reply { return tc.reply })
			code, out := post(t, e, coretest.ValidRequest())
			if code != tc.code || out["code"] != tc.want {
				t.Fatalf("%d %v, want %d %s", code, out, tc.code, tc.want)
			}
		})
	}
	var n int
	sqltest.Must(t, env.DB.QueryRow(`SELECT count(*) FROM bills`).Scan(&n))
	if n != 0 {
		t.Fatalf("%d bills stored without a form", n)
	}
	_, _, err := env.Bills.Create(context.Background(), "t", coretest.ValidRequest())
	if !errors.Is(err, bill.ErrNonTax) {
		t.Fatalf("err %v", err)
	}
}

func TestP2BillLateFeeAccruesAfterGracePeriod(t *testing.T) {
	env := coretest.New(t, sqltest.Open(t, sqldb.SQLite), coretest.Options{})
	req := coretest.ValidRequest()
	req.ServedDate = "2026-11-01" // day 26 on 2026-11-27: 11 days late, 33%
	v := env.CreateBill(t, req)
	if v.LateFee != 6600 || v.TotalDueToday != 26600 {
		t.Fatalf("late fee %d total %d", v.LateFee, v.TotalDueToday)
	}
	no := false
	req2 := coretest.ValidRequest()
	req2.DecisionNo, req2.ServedDate, req2.LateFeeApplies = "2301021000123457", "2026-11-01", &no
	if v := env.CreateBill(t, req2); v.LateFee != 0 || v.TotalDueToday != 20000 {
		t.Fatalf("late fee %d with late fees off", v.LateFee)
	}
}
