package server_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"finepay/sandbox/internal/ereceiptsim"
	"finepay/sandbox/internal/nontaxsim"
	"finepay/sandbox/internal/shanghai"
	"finepay/sandbox/internal/windowsim"
)

var (
	twentyDigits = regexp.MustCompile(`^\d{20}$`)
	eightDigits  = regexp.MustCompile(`^\d{8}$`)
	tenDigits    = regexp.MustCompile(`^\d{10}$`)
	checkCode    = regexp.MustCompile(`^[0-9A-Za-z]{6}$`)
)

// TestPartnerFlow walks the finance and police side of P2: form, payment report, receipt,
// verification, window result, with the idempotency rules of each step.
func TestPartnerFlow(t *testing.T) {
	t.Parallel()
	e := start(t)
	c := e.core
	const decision = "230102100012345"

	// Non-tax: a form for the decision, the same form for the same decision.
	a := c.call(t, "POST", "/nontax/v1/forms", "form-1", formBody(t, c, decision))
	if a.status != http.StatusOK {
		t.Fatalf("form: %d %s", a.status, a.body)
	}
	form := decodeJSON[nontaxsim.FormResponse](t, a.body)
	served := time.Now().AddDate(0, 0, -7)
	if !twentyDigits.MatchString(form.FormNo) || !twentyDigits.MatchString(form.PayCode) || form.FormNo == form.PayCode ||
		form.Fine != 20000 || form.UnitName == "" || form.ItemName == "" || !strings.HasSuffix(form.IssuedAt, "+08:00") ||
		form.DueDate != served.AddDate(0, 0, 15).Format("2006-01-02") {
		t.Fatalf("form %+v", form)
	}
	if !strings.HasPrefix(form.FormNo, "230100"+time.Now().In(shanghai.Location).Format("20060102")) {
		t.Errorf("form_no %s: want unit code and issue date first", form.FormNo)
	}
	a = c.call(t, "POST", "/nontax/v1/forms", "form-2", formBody(t, c, decision))
	if again := decodeJSON[nontaxsim.FormResponse](t, a.body); a.status != http.StatusOK || again != form {
		t.Fatalf("second request for the decision: %d %s, want the first form", a.status, a.body)
	}
	a = c.call(t, "POST", "/nontax/v1/forms", "form-3", formBody(t, c, "230102100012399"))
	if other := decodeJSON[nontaxsim.FormResponse](t, a.body); other.FormNo == form.FormNo || other.PayCode == form.PayCode {
		t.Fatalf("another decision got the same form: %s", a.body)
	}

	// Non-tax: the payment report; a retry with the same ID is replayed; a second report of
	// the same order changes nothing; a different amount conflicts.
	pay := map[string]any{
		"form_no": form.FormNo, "pay_code": form.PayCode, "order_no": "FP20261127000001", "amount": 20000,
		"fine": 20000, "late_fee": 0, "channel": "wechat", "channel_trade_no": "4200000000202611271234567890",
		"paid_at": shanghai.Time(time.Now().Add(-time.Minute)),
	}
	a = c.call(t, "POST", "/nontax/v1/payments", "pay-1", pay)
	if a.status != http.StatusOK || string(a.body) != fmt.Sprintf(`{"status":"accepted","form_no":"%s"}`, form.FormNo)+"\n" {
		t.Fatalf("payment: %d %q", a.status, a.body)
	}
	replay := c.call(t, "POST", "/nontax/v1/payments", "pay-1", pay)
	if replay.status != a.status || string(replay.body) != string(a.body) || replay.header.Get("X-FP-Replayed") != "true" {
		t.Fatalf("replay: %d %s (replayed %q)", replay.status, replay.body, replay.header.Get("X-FP-Replayed"))
	}
	if a := c.call(t, "POST", "/nontax/v1/payments", "pay-2", pay); a.status != http.StatusOK {
		t.Fatalf("second report: %d %s", a.status, a.body)
	}
	pay["amount"], pay["late_fee"] = 20600, 600
	wantError(t, c.call(t, "POST", "/nontax/v1/payments", "pay-3", pay), http.StatusConflict, "AMOUNT_CONFLICT")
	pay["order_no"] = "FP20261127000002"
	wantError(t, c.call(t, "POST", "/nontax/v1/payments", "pay-4", pay), http.StatusConflict, "AMOUNT_CONFLICT")
	pay["amount"], pay["late_fee"] = 20000, 0
	a = c.call(t, "POST", "/nontax/v1/payments", "pay-5", pay)
	if dup := decodeJSON[nontaxsim.PaymentResponse](t, a.body); a.status != http.StatusOK || !dup.Duplicate || dup.Status != "accepted" {
		t.Fatalf("a second order for a paid form: %d %s, want accepted as a duplicate", a.status, a.body)
	}
	pay["form_no"] = "99999999999999999999"
	wantError(t, c.call(t, "POST", "/nontax/v1/payments", "pay-6", pay), http.StatusNotFound, "NOT_FOUND")

	// E-receipt: one receipt per form, sealed by the sandbox's signing key.
	rcpt := map[string]any{
		"form_no": form.FormNo, "pay_code": form.PayCode, "order_no": "FP20261127000001",
		"payer_name_enc": c.name(t, "张三"), "unit_code": "230100", "item_code": "103050101",
		"amount": 20000, "fine": 20000, "late_fee": 0, "paid_at": shanghai.Time(time.Now().Add(-time.Minute)),
	}
	code, next := e.stock(t, "230100")
	rcpt = e.sign(t, rcpt, code, next())
	a = c.call(t, "POST", "/ereceipt/v1/receipts", "rcpt-1", rcpt)
	if a.status != http.StatusOK {
		t.Fatalf("receipt: %d %s", a.status, a.body)
	}
	r := decodeJSON[ereceiptsim.IssueResponse](t, a.body)
	if !eightDigits.MatchString(r.ReceiptCode) || !tenDigits.MatchString(r.ReceiptNo) || !checkCode.MatchString(r.CheckCode) ||
		r.Amount != 20000 || r.PayerMasked != "张*" || !strings.HasSuffix(r.IssuedAt, "+08:00") {
		t.Fatalf("receipt %+v", r)
	}
	if want := "2301" + "01" + time.Now().In(shanghai.Location).Format("06"); r.ReceiptCode != want {
		t.Errorf("receipt code %s, want %s", r.ReceiptCode, want)
	}
	seal, err := base64.StdEncoding.DecodeString(r.Seal)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := base64.StdEncoding.DecodeString(r.Data)
	sealed := strings.Join([]string{r.ReceiptCode, r.ReceiptNo, r.CheckCode, strconv.FormatInt(r.Amount, 10), r.IssuedAt,
		hexSM3(data), r.UnitSignature}, "\n")
	if err := e.pki.Box.Sign.Cert.PublicKey().Verify([]byte(sealed), seal); err != nil {
		t.Fatalf("the seal does not verify with the sandbox's signing certificate: %v", err)
	}
	a = c.call(t, "POST", "/ereceipt/v1/receipts", "rcpt-2", rcpt)
	if again := decodeJSON[ereceiptsim.IssueResponse](t, a.body); again != r {
		t.Fatalf("second request for the form: %s, want the first receipt", a.body)
	}

	// Verification (查验).
	q := url.Values{"code": {r.ReceiptCode}, "number": {r.ReceiptNo}, "check_code": {r.CheckCode}, "amount": {"20000"}}
	a = c.call(t, "GET", "/ereceipt/v1/verify?"+q.Encode(), "verify-1", nil)
	if v := decodeJSON[ereceiptsim.VerifyResponse](t, a.body); a.status != http.StatusOK || !v.Valid || v.ReceiptNo != r.ReceiptNo || v.Seal != r.Seal {
		t.Fatalf("verify: %d %s", a.status, a.body)
	}
	q.Set("date", shanghai.Date(time.Now()))
	if a := c.call(t, "GET", "/ereceipt/v1/verify?"+q.Encode(), "verify-2", nil); a.status != http.StatusOK {
		t.Fatalf("verify with date: %d %s", a.status, a.body)
	}
	for name, change := range map[string][2]string{
		"check code": {"check_code", strings.Repeat("z", 6)}, "amount": {"amount", "19999"},
		"number": {"number", "9999999999"}, "date": {"date", "2001-01-01"},
	} {
		bad := url.Values{}
		for k, v := range q {
			bad[k] = v
		}
		bad.Set(change[0], change[1])
		a := c.call(t, "GET", "/ereceipt/v1/verify?"+bad.Encode(), "verify-x", nil)
		if a.status != http.StatusNotFound || decodeJSON[apiErr](t, a.body).Code != "NOT_FOUND" {
			t.Errorf("verify with a wrong %s: %d %s", name, a.status, a.body)
		}
	}

	// Window platform: the result, idempotently.
	res := map[string]any{
		"decision_no": decision, "violation_serial": "2301021000000001", "form_no": form.FormNo,
		"order_no": "FP20261127000001", "amount": 20000, "paid_at": shanghai.Time(time.Now()),
		"receipt_code": r.ReceiptCode, "receipt_no": r.ReceiptNo,
	}
	for i := range 2 {
		a = c.call(t, "POST", "/window/v1/payment-results", fmt.Sprintf("win-%d", i), res)
		if w := decodeJSON[windowsim.ResultResponse](t, a.body); a.status != http.StatusOK || w.Status != "accepted" {
			t.Fatalf("window result %d: %d %s", i, a.status, a.body)
		}
	}
	res["amount"] = 1
	wantError(t, c.call(t, "POST", "/window/v1/payment-results", "win-9", res), http.StatusConflict, "RESULT_CONFLICT")

	st := e.state(t)
	if len(st.Forms) != 2 || len(st.Payments) != 2 || len(st.Receipts) != 1 || len(st.WindowResults) != 1 {
		t.Fatalf("state: %d forms, %d payments, %d receipts, %d window results", len(st.Forms), len(st.Payments), len(st.Receipts), len(st.WindowResults))
	}
	if st.Payments[0].Reports != 2 || st.Payments[0].Duplicate || !st.Payments[1].Duplicate {
		t.Errorf("payments %+v", st.Payments)
	}
	if st.Forms[0].PayerMasked != "张*" || st.Receipts[0].Requests != 2 || st.WindowResults[0].Reports != 2 {
		t.Errorf("state %+v", st)
	}
}

func TestPartnerEnvelope(t *testing.T) {
	t.Parallel()
	e := start(t)
	body := []byte(`{"decision_no":"230102100012345"}`)
	cases := []struct {
		name   string
		status int
		code   string
		send   func(t *testing.T) answer
	}{
		{"fail/other-key", 401, "SIGNATURE_INVALID", func(t *testing.T) answer {
			c := *e.core
			c.key = e.pki.Rogue.Sign.Key
			return c.send(t, "POST", "/nontax/v1/forms", "env-1", body, nil)
		}},
		{"fail/body-changed", 401, "SIGNATURE_INVALID", func(t *testing.T) answer {
			return e.core.send(t, "POST", "/nontax/v1/forms", "env-2", body, func(r *http.Request) {
				r.Body = nopBody(`{"decision_no":"230102100012346"}`)
			})
		}},
		{"fail/query-changed", 401, "SIGNATURE_INVALID", func(t *testing.T) answer {
			return e.core.send(t, "GET", "/ereceipt/v1/verify?code=1", "env-3", nil, func(r *http.Request) {
				r.URL.RawQuery = "code=2"
			})
		}},
		{"fail/old-timestamp", 401, "TIMESTAMP_OUT_OF_WINDOW", func(t *testing.T) answer {
			c := *e.core
			c.now = func() time.Time { return time.Now().Add(-301 * time.Second) }
			return c.send(t, "POST", "/nontax/v1/forms", "env-4", body, nil)
		}},
		{"fail/future-timestamp", 401, "TIMESTAMP_OUT_OF_WINDOW", func(t *testing.T) answer {
			c := *e.core
			c.now = func() time.Time { return time.Now().Add(301 * time.Second) }
			return c.send(t, "POST", "/nontax/v1/forms", "env-5", body, nil)
		}},
		{"fail/no-signature", 401, "UNAUTHENTICATED", func(t *testing.T) answer {
			return e.core.send(t, "POST", "/nontax/v1/forms", "env-6", body, func(r *http.Request) { r.Header.Del("X-FP-Signature") })
		}},
		{"fail/unknown-app", 401, "UNAUTHENTICATED", func(t *testing.T) answer {
			c := *e.core
			c.app = "gateway"
			return c.send(t, "POST", "/nontax/v1/forms", "env-7", body, nil)
		}},
		{"fail/bad-request-id", 400, "INVALID_REQUEST_ID", func(t *testing.T) answer {
			return e.core.send(t, "POST", "/nontax/v1/forms", "id with spaces", body, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.send(t), tc.status, tc.code)
		})
	}
	if st := e.state(t); len(st.Forms) != 0 || st.PartnerRequests != 0 {
		t.Fatalf("refused requests changed the state: %+v", st)
	}

	// The same request ID with a different body is refused; the first answer stands.
	first := e.core.call(t, "POST", "/nontax/v1/forms", "env-same", formBody(t, e.core, "230102100012345"))
	if first.status != http.StatusOK {
		t.Fatalf("form: %d %s", first.status, first.body)
	}
	wantError(t, e.core.call(t, "POST", "/nontax/v1/forms", "env-same", formBody(t, e.core, "230102100054321")),
		http.StatusConflict, "REQUEST_ID_CONFLICT")
	if st := e.state(t); len(st.Forms) != 1 {
		t.Fatalf("%d forms, want 1", len(st.Forms))
	}
	// An ID is the caller's: a request ID used on one path and reused on another conflicts too.
	wantError(t, e.core.call(t, "POST", "/window/v1/payment-results", "env-same", map[string]any{}),
		http.StatusConflict, "REQUEST_ID_CONFLICT")
}

func TestPartnerUntrustedFingerprint(t *testing.T) {
	t.Parallel()
	e := start(t, "-partner-fingerprints", "sm3:"+strings.Repeat("ab", 32))
	wantError(t, e.core.call(t, "POST", "/nontax/v1/forms", "fp-1", formBody(t, e.core, "230102100012345")),
		http.StatusUnauthorized, "UNAUTHENTICATED")

	fp := strings.ToUpper(e.pki.Core.Sign.Cert.Fingerprint())
	e = start(t, "-partner-fingerprints", fp)
	if a := e.core.call(t, "POST", "/nontax/v1/forms", "fp-2", formBody(t, e.core, "230102100012345")); a.status != http.StatusOK {
		t.Fatalf("listed fingerprint: %d %s", a.status, a.body)
	}
}

func TestPartnerConcurrentRetries(t *testing.T) {
	t.Parallel()
	e := start(t)
	body := formBody(t, e.core, "230102100077777")
	const n = 8
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = e.core.call(t, "POST", "/nontax/v1/forms", "same-id", body) })
	}
	wg.Wait()
	for i, a := range answers {
		if a.status != http.StatusOK || string(a.body) != string(answers[0].body) {
			t.Errorf("answer %d: %d %s, want %s", i, a.status, a.body, answers[0].body)
		}
	}
	if st := e.state(t); len(st.Forms) != 1 || st.PartnerRequests != 1 {
		t.Errorf("%d forms, %d request IDs; want 1 and 1", len(st.Forms), st.PartnerRequests)
	}
}

func TestPartnerValidation(t *testing.T) {
	t.Parallel()
	e := start(t)
	c := e.core
	form := decodeJSON[nontaxsim.FormResponse](t, c.call(t, "POST", "/nontax/v1/forms", "v-form", formBody(t, c, "230102100012345")).body)
	noLate := formBody(t, c, "230102100088888")
	noLate["late_fee_applies"] = false
	formNoLate := decodeJSON[nontaxsim.FormResponse](t, c.call(t, "POST", "/nontax/v1/forms", "v-form-2", noLate).body)

	with := func(base func() map[string]any, change func(map[string]any)) map[string]any {
		b := base()
		change(b)
		return b
	}
	formReq := func() map[string]any { return formBody(t, c, "230102100012346") }
	payReq := func() map[string]any {
		return map[string]any{
			"form_no": form.FormNo, "pay_code": form.PayCode, "order_no": "FP1", "amount": 20000, "fine": 20000,
			"late_fee": 0, "channel": "wechat", "channel_trade_no": "4200", "paid_at": shanghai.Time(time.Now()),
		}
	}
	rcptCode, rcptNext := e.stock(t, "230100")
	rcptReq := func() map[string]any {
		return map[string]any{
			"form_no": form.FormNo, "pay_code": form.PayCode, "order_no": "FP1", "payer_name_enc": c.name(t, "张三"),
			"unit_code": "230100", "item_code": "103050101", "amount": 20000, "fine": 20000, "late_fee": 0,
			"paid_at": shanghai.Time(time.Now()),
		}
	}
	winReq := func() map[string]any {
		return map[string]any{
			"decision_no": "230102100012345", "violation_serial": "1", "form_no": form.FormNo, "order_no": "FP1",
			"amount": 20000, "paid_at": shanghai.Time(time.Now()), "receipt_code": "", "receipt_no": "",
		}
	}
	cases := []struct {
		name, path string
		body       any
		status     int
		code       string
		field      string
	}{
		{"fail/form-decision-short", "/nontax/v1/forms", with(formReq, func(b map[string]any) { b["decision_no"] = "23010210001" }), 400, "INVALID_ARGUMENT", "decision_no"},
		{"fail/form-decision-letters", "/nontax/v1/forms", with(formReq, func(b map[string]any) { b["decision_no"] = "23010210001234X" }), 400, "INVALID_ARGUMENT", "decision_no"},
		{"fail/form-no-serial", "/nontax/v1/forms", with(formReq, func(b map[string]any) { delete(b, "violation_serial") }), 400, "INVALID_ARGUMENT", "violation_serial"},
		{"fail/form-zero-fine", "/nontax/v1/forms", with(formReq, func(b map[string]any) { b["fine"] = 0 }), 400, "INVALID_ARGUMENT", "fine"},
		{"fail/form-fine-yuan", "/nontax/v1/forms", with(formReq, func(b map[string]any) { b["fine"] = 200.5 }), 400, "INVALID_JSON", "fine"},
		{"fail/form-date", "/nontax/v1/forms", with(formReq, func(b map[string]any) { b["served_date"] = "2026/11/20" }), 400, "INVALID_ARGUMENT", "served_date"},
		{"fail/form-future-date", "/nontax/v1/forms", with(formReq, func(b map[string]any) { b["served_date"] = time.Now().AddDate(0, 0, 2).Format("2006-01-02") }), 400, "INVALID_ARGUMENT", "served_date"},
		{"fail/form-clear-name", "/nontax/v1/forms", with(formReq, func(b map[string]any) { b["payer_name_enc"] = "张三" }), 400, "INVALID_ARGUMENT", "payer_name_enc"},
		{"fail/form-name-other-key", "/nontax/v1/forms", with(formReq, func(b map[string]any) {
			ct, _ := e.pki.Core.Enc.Cert.PublicKey().Encrypt(rand.Reader, []byte("张三"))
			b["payer_name_enc"] = base64.StdEncoding.EncodeToString(ct)
		}), 400, "INVALID_ARGUMENT", "payer_name_enc"},
		{"fail/form-unknown-field", "/nontax/v1/forms", with(formReq, func(b map[string]any) { b["payer_name"] = "张三" }), 400, "INVALID_JSON", "payer_name"},
		{"fail/pay-amount-sum", "/nontax/v1/payments", with(payReq, func(b map[string]any) { b["amount"] = 20001 }), 400, "INVALID_ARGUMENT", "amount"},
		{"fail/pay-negative-late-fee", "/nontax/v1/payments", with(payReq, func(b map[string]any) { b["late_fee"] = -1 }), 400, "INVALID_ARGUMENT", "late_fee"},
		{"fail/pay-channel", "/nontax/v1/payments", with(payReq, func(b map[string]any) { b["channel"] = "cash" }), 400, "INVALID_ARGUMENT", "channel"},
		{"fail/pay-paid-at", "/nontax/v1/payments", with(payReq, func(b map[string]any) { b["paid_at"] = "2026-11-27 10:05:00" }), 400, "INVALID_ARGUMENT", "paid_at"},
		{"fail/pay-code-of-other-form", "/nontax/v1/payments", with(payReq, func(b map[string]any) { b["pay_code"] = formNoLate.PayCode }), 400, "INVALID_ARGUMENT", "pay_code"},
		{"fail/pay-fine-not-form", "/nontax/v1/payments", with(payReq, func(b map[string]any) { b["fine"], b["amount"] = 10000, 10000 }), 400, "INVALID_ARGUMENT", "fine"},
		{"fail/pay-late-fee-not-applicable", "/nontax/v1/payments", with(payReq, func(b map[string]any) {
			b["form_no"], b["pay_code"], b["late_fee"], b["amount"] = formNoLate.FormNo, formNoLate.PayCode, 600, 20600
		}), 400, "INVALID_ARGUMENT", "late_fee"},
		{"fail/pay-order-no", "/nontax/v1/payments", with(payReq, func(b map[string]any) { b["order_no"] = "FP 1" }), 400, "INVALID_ARGUMENT", "order_no"},
		{"fail/rcpt-unknown-form", "/ereceipt/v1/receipts", e.sign(t, with(rcptReq, func(b map[string]any) { b["form_no"] = "12345678901234567890" }), rcptCode, rcptNext()), 404, "NOT_FOUND", "form"},
		{"fail/rcpt-unit", "/ereceipt/v1/receipts", e.sign(t, with(rcptReq, func(b map[string]any) { b["unit_code"] = "230200" }), rcptCode, rcptNext()), 400, "INVALID_ARGUMENT", "unit_code"},
		{"fail/rcpt-no-name", "/ereceipt/v1/receipts", e.sign(t, with(rcptReq, func(b map[string]any) { delete(b, "payer_name_enc") }), rcptCode, rcptNext()), 400, "INVALID_ARGUMENT", "payer_name_enc"},
		{"fail/rcpt-zero-amount", "/ereceipt/v1/receipts", e.sign(t, with(rcptReq, func(b map[string]any) { b["amount"] = 0 }), rcptCode, rcptNext()), 400, "INVALID_ARGUMENT", "amount"},
		{"fail/win-receipt-half", "/window/v1/payment-results", with(winReq, func(b map[string]any) { b["receipt_code"] = "23010126" }), 400, "INVALID_ARGUMENT", "receipt_no"},
		{"fail/win-receipt-code", "/window/v1/payment-results", with(winReq, func(b map[string]any) { b["receipt_code"], b["receipt_no"] = "2301", "0000000001" }), 400, "INVALID_ARGUMENT", "receipt_code"},
		{"fail/win-amount", "/window/v1/payment-results", with(winReq, func(b map[string]any) { b["amount"] = -5 }), 400, "INVALID_ARGUMENT", "amount"},
		{"fail/win-empty", "/window/v1/payment-results", map[string]any{}, 400, "INVALID_ARGUMENT", "decision_no"},
		{"fail/verify-missing", "/ereceipt/v1/verify?code=23010126", nil, 400, "INVALID_ARGUMENT", "number"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if tc.body == nil {
				method = "GET"
			}
			got := wantError(t, c.call(t, method, tc.path, fmt.Sprintf("val-%d", i), tc.body), tc.status, tc.code)
			if !strings.Contains(got.Message, tc.field) {
				t.Errorf("message %q does not name %s", got.Message, tc.field)
			}
		})
	}
	wantError(t, c.send(t, "POST", "/nontax/v1/forms", "val-json", []byte(`{"decision_no":`), nil), 400, "INVALID_JSON")
	wantError(t, c.send(t, "POST", "/nontax/v1/forms", "val-two", []byte(`{}{}`), nil), 400, "INVALID_JSON")
	if st := e.state(t); len(st.Payments) != 0 || len(st.Receipts) != 0 || len(st.WindowResults) != 0 {
		t.Errorf("invalid requests changed the state: %+v", st)
	}
}
