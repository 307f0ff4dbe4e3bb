package server_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"finepay/sandbox/internal/ereceiptsim"
	"finepay/sandbox/internal/nontaxsim"
	"finepay/sandbox/internal/shanghai"
	"finepay/shared/gm"
)

// stock takes the unit's first allocation into stock, as the core does, and returns its receipt
// code and a function that gives its numbers in order.
func (e *env) stock(t *testing.T, unit string) (string, func() string) {
	t.Helper()
	c := e.core
	a := c.call(t, "GET", "/ereceipt/v1/stock/allocations", "stock-list", nil)
	if a.status != http.StatusOK {
		t.Fatalf("allocations: %d %s", a.status, a.body)
	}
	for _, al := range decodeJSON[ereceiptsim.AllocationsResponse](t, a.body).Allocations {
		if al.UnitCode != unit {
			continue
		}
		acc := c.call(t, "POST", "/ereceipt/v1/stock/acceptances", "accept-"+al.AllocationID, map[string]any{
			"allocation_id": al.AllocationID, "unit_code": al.UnitCode, "receipt_code": al.ReceiptCode,
			"start_no": al.StartNo, "end_no": al.EndNo})
		if acc.status != http.StatusOK || decodeJSON[ereceiptsim.Allocation](t, acc.body).Status != "in_stock" {
			t.Fatalf("acceptance: %d %s", acc.status, acc.body)
		}
		n, _ := strconv.ParseInt(al.StartNo, 10, 64)
		return al.ReceiptCode, func() string { n++; return fmt.Sprintf("%010d", n-1) }
	}
	t.Fatalf("no allocation for unit %s", unit)
	return "", nil
}

// unitSign signs receipt data with the test PKI's unit key.
func (e *env) unitSign(t *testing.T, data map[string]any) (string, string) {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := e.pki.Unit.Key.Sign(rand.Reader, raw)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(raw), base64.StdEncoding.EncodeToString(sig)
}

// sign adds a receipt number and the unit's signed data, built from the request itself, to an
// issue request.
func (e *env) sign(t *testing.T, body map[string]any, code, number string) map[string]any {
	t.Helper()
	fine, _ := body["fine"].(int)
	late, _ := body["late_fee"].(int)
	items := []map[string]any{{"item_code": body["item_code"], "item_name": "公安交通违法罚没收入", "amount": fine}}
	if late > 0 {
		items = append(items, map[string]any{"item_code": "103050102", "item_name": "公安交通违法加处罚款收入", "amount": late})
	}
	data := map[string]any{
		"version": 1, "kind": "blue", "name": "黑龙江省非税收入一般缴款书（电子）", "receipt_code": code, "receipt_no": number,
		"form_no": body["form_no"], "pay_code": body["pay_code"], "order_no": body["order_no"], "payer": "张*",
		"unit_code": body["unit_code"], "unit_name": "哈尔滨市公安局交通警察支队", "items": items, "amount": body["amount"],
		"paid_at": body["paid_at"], "issuer": "FinePay", "signed_at": shanghai.Time(time.Now()),
	}
	out := map[string]any{}
	for k, v := range body {
		out[k] = v
	}
	out["receipt_code"], out["receipt_no"] = code, number
	out["data"], out["unit_signature"] = e.unitSign(t, data)
	return out
}

// redBody is a red-flush request for the receipt r with the red number given.
func (e *env) redBody(t *testing.T, r ereceiptsim.IssueResponse, code, number, reason string) map[string]any {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	data["kind"], data["receipt_code"], data["receipt_no"] = "red", code, number
	data["original_code"], data["original_no"], data["reason"] = r.ReceiptCode, r.ReceiptNo, reason
	data["signed_at"] = shanghai.Time(time.Now())
	d, sig := e.unitSign(t, data)
	return map[string]any{"original_code": r.ReceiptCode, "original_no": r.ReceiptNo, "receipt_code": code,
		"receipt_no": number, "reason": reason, "data": d, "unit_signature": sig}
}

// checkReceiptSignatures verifies a receipt as anyone can with the sandbox's certificates: the
// unit's signature over the data, and the seal over the seal string.
func checkReceiptSignatures(t *testing.T, e *env, r ereceiptsim.IssueResponse) {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	usig, _ := base64.StdEncoding.DecodeString(r.UnitSignature)
	if err := e.pki.Unit.Cert.PublicKey().Verify(data, usig); err != nil {
		t.Errorf("unit signature: %v", err)
	}
	seal, _ := base64.StdEncoding.DecodeString(r.Seal)
	msg := strings.Join([]string{r.ReceiptCode, r.ReceiptNo, r.CheckCode, strconv.FormatInt(r.Amount, 10), r.IssuedAt,
		hexSM3(data), r.UnitSignature}, "\n")
	if err := e.pki.Box.Sign.Cert.PublicKey().Verify([]byte(msg), seal); err != nil {
		t.Errorf("the seal does not verify with the sandbox's signing certificate: %v", err)
	}
	layout, err := base64.StdEncoding.DecodeString(r.Layout)
	if err != nil || !bytes.HasPrefix(layout, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(layout, []byte("%%EOF\n")) {
		t.Errorf("layout is not a PDF: %v %.20q", err, layout)
	}
}

// TestE1ReceiptLifecycle walks the e-receipt platform's side of E1: master data, stock handed
// down and taken into stock, a receipt issued from the unit's signed data (and refused when the
// signature, the number or the stock is wrong), verification, red-flush (idempotent), the check
// page and the write-off report.
func TestE1ReceiptLifecycle(t *testing.T) {
	t.Parallel()
	e := start(t)
	c := e.core

	md := decodeJSON[ereceiptsim.MasterData](t, c.call(t, "GET", "/ereceipt/v1/master-data", "md-1", nil).body)
	if len(md.Units) < 3 || len(md.Items) < 2 || md.Version == "" || md.Units[0].UnitName == "" {
		t.Fatalf("master data %+v", md)
	}

	// A handed-down range cannot be used before it is taken into stock.
	form := decodeJSON[nontaxsim.FormResponse](t, c.call(t, "POST", "/nontax/v1/forms", "form-1", formBody(t, c, "230102100012345")).body)
	req := map[string]any{
		"form_no": form.FormNo, "pay_code": form.PayCode, "order_no": "FP20261127000001",
		"payer_name_enc": c.name(t, "张三"), "unit_code": "230100", "item_code": "103050101",
		"amount": 20600, "fine": 20000, "late_fee": 600, "paid_at": shanghai.Time(time.Now().Add(-time.Minute)),
	}
	all := decodeJSON[ereceiptsim.AllocationsResponse](t, c.call(t, "GET", "/ereceipt/v1/stock/allocations", "stock-0", nil).body)
	var first ereceiptsim.Allocation
	for _, a := range all.Allocations {
		if a.UnitCode == "230100" {
			first = a
		}
	}
	if first.Status != "handed" || first.ReceiptCode != "2301"+"01"+time.Now().In(shanghai.Location).Format("06") {
		t.Fatalf("allocation %+v", first)
	}
	wantError(t, c.call(t, "POST", "/ereceipt/v1/receipts", "rcpt-early", e.sign(t, req, first.ReceiptCode, first.StartNo)),
		http.StatusBadRequest, "INVALID_ARGUMENT")
	code, next := e.stock(t, "230100")
	no1 := next()

	// Refused: a signature by another key, data that is not this request's, a number outside
	// the unit's stock.
	other, _ := gm.GenerateKey(rand.Reader)
	forged := e.sign(t, req, code, no1)
	raw, _ := base64.StdEncoding.DecodeString(forged["data"].(string))
	sig, _ := other.Sign(rand.Reader, raw)
	forged["unit_signature"] = base64.StdEncoding.EncodeToString(sig)
	wantError(t, c.call(t, "POST", "/ereceipt/v1/receipts", "rcpt-forged", forged), http.StatusBadRequest, "UNIT_SIGNATURE_INVALID")
	changed := e.sign(t, req, code, no1)
	changed["amount"], changed["late_fee"] = 20300, 300
	wantError(t, c.call(t, "POST", "/ereceipt/v1/receipts", "rcpt-changed", changed), http.StatusBadRequest, "INVALID_ARGUMENT")
	wantError(t, c.call(t, "POST", "/ereceipt/v1/receipts", "rcpt-outside", e.sign(t, req, code, "9999999999")), http.StatusBadRequest, "INVALID_ARGUMENT")

	// Issued: the unit's number, a check code, both signatures, a PDF; one receipt per form.
	a := c.call(t, "POST", "/ereceipt/v1/receipts", "rcpt-1", e.sign(t, req, code, no1))
	if a.status != http.StatusOK {
		t.Fatalf("receipt: %d %s", a.status, a.body)
	}
	r := decodeJSON[ereceiptsim.IssueResponse](t, a.body)
	if r.ReceiptCode != code || r.ReceiptNo != no1 || !checkCode.MatchString(r.CheckCode) || r.Amount != 20600 || r.Kind != "blue" || r.PayerMasked != "张*" {
		t.Fatalf("receipt %+v", r)
	}
	checkReceiptSignatures(t, e, r)
	again := decodeJSON[ereceiptsim.IssueResponse](t, c.call(t, "POST", "/ereceipt/v1/receipts", "rcpt-2", e.sign(t, req, code, next())).body)
	if again.ReceiptNo != r.ReceiptNo || again.CheckCode != r.CheckCode || again.Seal != r.Seal {
		t.Fatalf("a second request for the form got %+v, want the first receipt", again)
	}

	// Check page: the elements → valid; one changed element, or an unknown receipt, → the same
	// "no match" answer.
	date := shanghai.Date(time.Now())
	page := func(number, check, amount string) string {
		t.Helper()
		a := e.get(t, "/ereceipt/check?"+url.Values{"code": {code}, "number": {number}, "check_code": {check}, "date": {date}, "amount": {amount}}.Encode())
		if a.status != http.StatusOK || !strings.Contains(a.header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Fatalf("check page: %d %v", a.status, a.header)
		}
		return string(a.body)
	}
	if p := page(no1, r.CheckCode, "206.00"); !strings.Contains(p, `data-valid="true"`) || !strings.Contains(p, `data-status="valid"`) {
		t.Fatalf("check page for the receipt:\n%s", p)
	}
	noMatch := func(p string) string {
		i := strings.Index(p, `<div id="check-result"`)
		if i < 0 {
			t.Fatalf("no result on:\n%s", p)
		}
		return p[i:]
	}
	want := noMatch(page(no1, r.CheckCode, "206.01"))
	if !strings.Contains(want, `data-valid="false"`) {
		t.Fatalf("a changed amount passed:\n%s", want)
	}
	for name, p := range map[string]string{
		"check code": page(no1, "zzzzzz", "206.00"), "unknown number": page("0000099999", r.CheckCode, "206.00"),
	} {
		if got := noMatch(p); got != want {
			t.Errorf("%s: answer differs from a changed amount's:\n%s\n%s", name, got, want)
		}
	}
	if p := e.get(t, "/ereceipt/check").body; !bytes.Contains(p, []byte(`id="check-form"`)) || bytes.Contains(p, []byte("check-result")) {
		t.Errorf("the empty check page:\n%s", p)
	}

	// Red-flush: a red receipt with its own number and check code; the original is kept and
	// marked; a repeated red-flush, under another request ID, answers the same red receipt.
	redNo := next()
	a = c.call(t, "POST", "/ereceipt/v1/red-receipts", "red-1", e.redBody(t, r, code, redNo, "退付"))
	if a.status != http.StatusOK {
		t.Fatalf("red: %d %s", a.status, a.body)
	}
	red := decodeJSON[ereceiptsim.IssueResponse](t, a.body)
	if red.Kind != "red" || red.ReceiptNo != redNo || red.OriginalNo != r.ReceiptNo || red.Amount != r.Amount || red.CheckCode == "" {
		t.Fatalf("red receipt %+v", red)
	}
	checkReceiptSignatures(t, e, red)
	again = decodeJSON[ereceiptsim.IssueResponse](t, c.call(t, "POST", "/ereceipt/v1/red-receipts", "red-2", e.redBody(t, r, code, next(), "退付")).body)
	if again.ReceiptNo != red.ReceiptNo || again.CheckCode != red.CheckCode {
		t.Fatalf("a repeated red-flush got %+v, want %+v", again, red)
	}
	wantError(t, c.call(t, "POST", "/ereceipt/v1/red-receipts", "red-x", e.redBody(t,
		ereceiptsim.IssueResponse{ReceiptCode: code, ReceiptNo: "0000077777", Data: r.Data}, code, next(), "退付")), http.StatusNotFound, "NOT_FOUND")
	q := url.Values{"code": {code}, "number": {r.ReceiptNo}, "check_code": {r.CheckCode}, "amount": {"20600"}}
	v := decodeJSON[ereceiptsim.VerifyResponse](t, c.call(t, "GET", "/ereceipt/v1/verify?"+q.Encode(), "verify-1", nil).body)
	if !v.Valid || v.Status != "red-flushed" || v.RedNo != red.ReceiptNo {
		t.Fatalf("verify the original after red-flush: %+v", v)
	}
	if p := page(red.ReceiptNo, red.CheckCode, "206.00"); !strings.Contains(p, `data-kind="red"`) {
		t.Errorf("check page of the red receipt:\n%s", p)
	}

	// Write-off: the day's usage as the unit reports it; a wrong count is named.
	report := map[string]any{"period": date, "usage": []map[string]any{{"unit_code": "230100", "receipt_code": code,
		"first_no": no1, "last_no": redNo, "issued": 1, "red": 1, "void": 0, "amount": 20600, "red_amount": 20600}}}
	w := decodeJSON[ereceiptsim.WriteOff](t, c.call(t, "POST", "/ereceipt/v1/writeoffs", "wo-1", report).body)
	if w.Status != "written-off" || len(w.Discrepancies) != 0 {
		t.Fatalf("write-off %+v", w)
	}
	report["usage"].([]map[string]any)[0]["issued"] = 2
	w = decodeJSON[ereceiptsim.WriteOff](t, c.call(t, "POST", "/ereceipt/v1/writeoffs", "wo-2", report).body)
	if w.Status != "discrepancies" || len(w.Discrepancies) != 1 || w.Discrepancies[0].Field != "issued" || w.Discrepancies[0].Recorded != "1" {
		t.Fatalf("write-off with a wrong count %+v", w)
	}
	report["period"] = shanghai.Date(time.Now().AddDate(0, 0, 2))
	wantError(t, c.call(t, "POST", "/ereceipt/v1/writeoffs", "wo-3", report), http.StatusBadRequest, "INVALID_ARGUMENT")

	st := e.state(t)
	if len(st.Receipts) != 2 || st.Receipts[0].Status != "red-flushed" || st.Receipts[1].Kind != "red" || len(st.WriteOffs) != 1 {
		t.Fatalf("state %+v", st)
	}
}
