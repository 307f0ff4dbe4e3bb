package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/console"
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/refund"
)

// paidBill creates the test bill, pays it by WeChat Pay and lets the receipt be issued.
func (fx *fixture) paidBill(t *testing.T) bill.View {
	t.Helper()
	v := fx.env.CreateBill(t, coretest.ValidRequest())
	fx.env.Deliver(t, fx.env.Confirmation(t, v, "ORD001", "WX001"))
	fx.env.Runner.RunDue(context.Background())
	v, err := fx.env.Bills.Get(context.Background(), v.BillNo)
	sqltest.Must(t, err)
	if v.Payment == nil || v.Receipt == nil {
		t.Fatalf("bill %s not paid or without receipt", v.BillNo)
	}
	return v
}

var (
	reInstructionField = regexp.MustCompile(`name="instruction_id" value="([^"]+)"`)
	rePaymentField     = regexp.MustCompile(`name="payment_id" value="([0-9]+)"`)
	reAmountField      = regexp.MustCompile(`name="amount" value="([^"]*)"`)
)

// refundForm reads the refund form of a bill page: its fields with the default amount.
func refundForm(t *testing.T, page string) url.Values {
	t.Helper()
	in, pid, amount := reInstructionField.FindStringSubmatch(page), rePaymentField.FindStringSubmatch(page), reAmountField.FindStringSubmatch(page)
	bn := regexp.MustCompile(`name="bill_no" value="([^"]+)"`).FindStringSubmatch(page)
	if in == nil || pid == nil || amount == nil || bn == nil {
		t.Fatalf("no refund form on the page:\n%s", page)
	}
	return url.Values{"csrf": {csrf(t, page)}, "bill_no": {bn[1]}, "payment_id": {pid[1]}, "instruction_id": {in[1]}, "amount": {amount[1]}, "reason": {"当事人申请退款"}}
}

func (fx *fixture) refunds(t *testing.T, billNo string) []refund.Refund {
	t.Helper()
	v, err := fx.env.Bills.Get(context.Background(), billNo)
	sqltest.Must(t, err)
	var pid int64
	sqltest.Must(t, fx.env.DB.QueryRow(`SELECT id FROM payments WHERE bill_no = $1 AND result = 'recorded'`, v.BillNo).Scan(&pid))
	refs, err := refund.ListByPayment(context.Background(), fx.env.DB, pid)
	sqltest.Must(t, err)
	return refs
}

func (fx *fixture) audit(t *testing.T, event string) []console.AuditEntry {
	t.Helper()
	all, err := console.AuditList(context.Background(), fx.env.DB)
	sqltest.Must(t, err)
	var out []console.AuditEntry
	for _, a := range all {
		if a.Event == event {
			out = append(out, a)
		}
	}
	return out
}

// startR3 looks the decision up as the clerk and starts a full refund from the bill page; it
// returns the clerk's browser and the form it sent.
func (fx *fixture) startR3(t *testing.T, v bill.View) (*browser, url.Values) {
	t.Helper()
	clerk := fx.browser(t)
	clerk.login("clerk", password)
	code, page := clerk.get("/console/search?decision_no=" + v.DecisionNo)
	if code != 200 || !strings.Contains(page, `id="bill-no">`+v.BillNo+`<`) {
		t.Fatalf("lookup: %d\n%s", code, page)
	}
	form := refundForm(t, page)
	if form.Get("amount") != "200.00" {
		t.Errorf("default amount %q, want the full 200.00", form.Get("amount"))
	}
	code, page = clerk.post("/console/refunds", form)
	if code != 200 || !strings.Contains(page, `id="notice"`) || !strings.Contains(page, "待审核") {
		t.Fatalf("start refund: %d\n%s", code, page)
	}
	return clerk, form
}

func TestR3ConsoleClerkStartsReviewerApproves(t *testing.T) {
	fx := setup(t)
	v := fx.paidBill(t)
	clerk := fx.browser(t)
	clerk.login("clerk", password)
	_, page := clerk.get("/console/search?decision_no=" + v.DecisionNo)
	for _, want := range []string{v.Receipt.ReceiptCode + "-" + v.Receipt.ReceiptNo, v.Receipt.CheckCode, "微信支付 WX001", "¥200.00", "申请退款(R3)"} {
		if !strings.Contains(page, want) {
			t.Errorf("bill page lacks %q", want)
		}
	}
	form := refundForm(t, page)
	code, page := clerk.post("/console/refunds", form)
	if code != 200 || !strings.Contains(page, "待审核") {
		t.Fatalf("start: %d\n%s", code, page)
	}
	// A second submit of the same form is the same refund.
	if code, _ := clerk.post("/console/refunds", form); code != 200 {
		t.Fatalf("second submit: %d", code)
	}
	refs := fx.refunds(t, v.BillNo)
	if len(refs) != 1 {
		t.Fatalf("%d refunds after a double submit", len(refs))
	}
	r := refs[0]
	if r.Route != refund.R3 || r.State != refund.Requested || r.Amount != 20000 || r.RequestedBy != "console:clerk" || r.InstructionID != form.Get("instruction_id") {
		t.Fatalf("refund %+v", r)
	}
	if len(fx.env.Tasks(t, refund.KindApply)) != 0 {
		t.Fatal("an R3 refund went on before its review")
	}

	// The clerk may not review it: reviewing is the reviewer's role (and the refund is the
	// clerk's own).
	_, home := clerk.get("/console")
	if !strings.Contains(home, `id="awaiting-`+r.RefundNo+`"`) {
		t.Fatalf("home does not list the refund awaiting review:\n%s", home)
	}
	code, page = clerk.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"approve"}, "note": {"ok"}})
	if code != http.StatusForbidden || !strings.Contains(page, "须由审核人员办理") {
		t.Fatalf("self-review: %d\n%s", code, page)
	}
	if got, _ := refund.Get(context.Background(), fx.env.DB, r.RefundNo); got.State != refund.Requested {
		t.Fatalf("state after self-review %s", got.State)
	}

	// The reviewer approves; the refund goes on to the e-receipt platform by itself.
	rev := fx.browser(t)
	_, home = rev.login("reviewer", reviewerPassword)
	if !strings.Contains(home, `id="awaiting-`+r.RefundNo+`"`) {
		t.Fatalf("reviewer's home does not list the refund:\n%s", home)
	}
	code, page = rev.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"approve"}, "note": {"核实无误"}})
	if code != 200 || !strings.Contains(page, "已审核") || !strings.Contains(page, "console:reviewer") {
		t.Fatalf("review: %d\n%s", code, page)
	}
	got, err := refund.Get(context.Background(), fx.env.DB, r.RefundNo)
	sqltest.Must(t, err)
	if got.State != refund.Reviewed || got.ReviewedBy != "console:reviewer" {
		t.Fatalf("after review %+v", got)
	}
	if tasks := fx.env.Tasks(t, refund.KindApply); len(tasks) != 1 || tasks[0].Key != r.RefundNo {
		t.Fatalf("apply tasks %+v", tasks)
	}
	// Approving twice is refused.
	if code, _ := rev.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"approve"}}); code != http.StatusConflict {
		t.Fatalf("second review: %d", code)
	}
	// The history shows who did what.
	_, page = clerk.get("/console/bills/" + v.BillNo)
	for _, want := range []string{"console:clerk", "console:reviewer", "review: 核实无误"} {
		if !strings.Contains(page, want) {
			t.Errorf("history lacks %q", want)
		}
	}

	// Every action is audited.
	var got1 []string
	for _, ev := range []string{"lookup", "refund.start", "refund.review"} {
		for _, a := range fx.audit(t, ev) {
			got1 = append(got1, a.Actor+" "+a.Event+":"+a.Result)
		}
	}
	want := "clerk lookup:success,clerk refund.start:success,clerk refund.start:success,clerk refund.review:refused,reviewer refund.review:success,reviewer refund.review:refused"
	if g := strings.Join(got1, ","); g != want {
		t.Errorf("audit\n got %s\nwant %s", g, want)
	}
	if starts := fx.audit(t, "refund.start"); !strings.Contains(starts[0].Detail, r.RefundNo) || !strings.Contains(starts[1].Detail, "repeated") {
		t.Errorf("refund.start details %q / %q", starts[0].Detail, starts[1].Detail)
	}
}

func TestR3ConsoleRejectEndsTheRefund(t *testing.T) {
	fx := setup(t)
	v := fx.paidBill(t)
	clerk, _ := fx.startR3(t, v)
	r := fx.refunds(t, v.BillNo)[0]
	rev := fx.browser(t)
	_, home := rev.login("reviewer", reviewerPassword)
	if code, page := rev.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"reject"}}); code != http.StatusBadRequest || !strings.Contains(page, "审核意见") {
		t.Fatalf("reject without a note: %d", code)
	}
	code, page := rev.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"reject"}, "note": {"材料不全"}})
	if code != 200 || !strings.Contains(page, "已驳回") {
		t.Fatalf("reject: %d\n%s", code, page)
	}
	got, _ := refund.Get(context.Background(), fx.env.DB, r.RefundNo)
	if got.State != refund.Rejected || got.ReviewedBy != "console:reviewer" {
		t.Fatalf("after reject %+v", got)
	}
	if len(fx.env.Tasks(t, refund.KindApply)) != 0 || len(fx.env.Tasks(t, refund.KindReport)) != 1 {
		t.Fatal("a rejected refund was applied for, or its outcome not queued for report")
	}
	// Once rejected, the clerk can start a new refund from the page; the reviewer is shown none.
	if _, page := clerk.get("/console/bills/" + v.BillNo); !strings.Contains(page, "申请退款(R3)") {
		t.Fatal("no refund form after a rejected refund")
	}
	if _, page := rev.get("/console/bills/" + v.BillNo); strings.Contains(page, `name="instruction_id"`) || !strings.Contains(page, "退款由窗口人员申请") {
		t.Fatal("the reviewer is offered a refund form")
	}
}

func TestR3ConsoleRefusalsShowOnThePage(t *testing.T) {
	fx := setup(t)
	v := fx.paidBill(t)
	clerk := fx.browser(t)
	clerk.login("clerk", password)
	_, page := clerk.get("/console/bills/" + v.BillNo)
	form := refundForm(t, page)
	for _, c := range []struct {
		amount string
		code   int
		msg    string
	}{
		{"abc", http.StatusBadRequest, "退款金额应为大于0"},
		{"0", http.StatusBadRequest, "退款金额应为大于0"},
		{"1.001", http.StatusBadRequest, "退款金额应为大于0"},
		{"200.01", http.StatusUnprocessableEntity, "退款金额超过可退金额"},
	} {
		f := url.Values{}
		for k, vs := range form {
			f[k] = vs
		}
		f.Set("amount", c.amount)
		code, page := clerk.post("/console/refunds", f)
		if code != c.code || !strings.Contains(page, c.msg) || !strings.Contains(page, `value="`+c.amount+`"`) {
			t.Errorf("amount %q: %d, want %d %q\n%s", c.amount, code, c.code, c.msg, page)
		}
	}
	noReason := url.Values{}
	for k, vs := range form {
		noReason[k] = vs
	}
	noReason.Set("reason", " ")
	if code, page := clerk.post("/console/refunds", noReason); code != http.StatusBadRequest || !strings.Contains(page, "退款原因") {
		t.Errorf("no reason: %d", code)
	}
	if len(fx.refunds(t, v.BillNo)) != 0 {
		t.Fatal("a refused form made a refund")
	}
	// A partial refund, then another form while it is in flight.
	form.Set("amount", "50")
	if code, _ := clerk.post("/console/refunds", form); code != 200 {
		t.Fatalf("partial refund: %d", code)
	}
	if _, page := clerk.get("/console/bills/" + v.BillNo); strings.Contains(page, `name="instruction_id"`) || !strings.Contains(page, "已有退款正在办理") {
		t.Error("the page offers a refund while one is in flight")
	}
	form.Set("instruction_id", "console:another-instruction-0001")
	code, page := clerk.post("/console/refunds", form)
	if code != http.StatusConflict || !strings.Contains(page, "已有退款正在办理") {
		t.Fatalf("second refund in flight: %d\n%s", code, page)
	}
	if refs := fx.refunds(t, v.BillNo); len(refs) != 1 || refs[0].Amount != 5000 {
		t.Fatalf("refunds %+v", refs)
	}
	var refused int
	for _, a := range fx.audit(t, "refund.start") {
		if a.Result == "refused" {
			refused++
		}
	}
	if refused != 6 {
		t.Errorf("%d refused refund.start audit records, want 6", refused)
	}
}

func TestR4ConsoleBankPaymentIsRefundedByTheBankRoute(t *testing.T) {
	fx := setup(t)
	v := fx.paidBill(t)
	_, err := fx.env.DB.Exec(`UPDATE payments SET channel = 'bank' WHERE bill_no = $1`, v.BillNo)
	sqltest.Must(t, err)
	fx.startR3(t, v)
	if r := fx.refunds(t, v.BillNo)[0]; r.Route != refund.R4 || r.Channel != "bank" {
		t.Fatalf("refund %+v", r)
	}
}

func TestConsoleLookupUnknownAndInvalid(t *testing.T) {
	fx := setup(t)
	b := fx.browser(t)
	b.login("clerk", password)
	if code, page := b.get("/console/search?decision_no=2301021000999999"); code != http.StatusNotFound || !strings.Contains(page, "没有该处罚决定书的账单") {
		t.Errorf("unknown decision: %d", code)
	}
	if code, page := b.get("/console/search?decision_no=12%3Cscript%3E"); code != http.StatusBadRequest || strings.Contains(page, "<script>") {
		t.Errorf("invalid decision: %d", code)
	}
	var results []string
	for _, a := range fx.audit(t, "lookup") {
		results = append(results, a.Result)
	}
	if strings.Join(results, ",") != "not found,refused" {
		t.Errorf("lookup audit %v", results)
	}
}

func TestConsoleRefundFormsNeedCSRF(t *testing.T) {
	fx := setup(t)
	v := fx.paidBill(t)
	clerk := fx.browser(t)
	clerk.login("clerk", password)
	_, page := clerk.get("/console/bills/" + v.BillNo)
	form := refundForm(t, page)
	form.Set("csrf", "forged")
	if code, _ := clerk.post("/console/refunds", form); code != http.StatusForbidden {
		t.Fatalf("refund without CSRF: %d", code)
	}
	form.Del("csrf")
	if code, _ := clerk.post("/console/refunds", form); code != http.StatusForbidden {
		t.Fatalf("refund with no CSRF field: %d", code)
	}
	if len(fx.refunds(t, v.BillNo)) != 0 {
		t.Fatal("a refund was made without CSRF")
	}
	fx.startR3(t, v)
	r := fx.refunds(t, v.BillNo)[0]
	rev := fx.browser(t)
	rev.login("reviewer", reviewerPassword)
	if code, _ := rev.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {"forged"}, "decision": {"approve"}}); code != http.StatusForbidden {
		t.Fatalf("review without CSRF: %d", code)
	}
	// Another user's token is not this session's.
	if code, _ := rev.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, page)}, "decision": {"approve"}}); code != http.StatusForbidden {
		t.Fatalf("review with the clerk's token: %d", code)
	}
	if got, _ := refund.Get(context.Background(), fx.env.DB, r.RefundNo); got.State != refund.Requested {
		t.Fatalf("state %s", got.State)
	}
	anon := fx.browser(t)
	if code, _ := anon.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"decision": {"approve"}}); code != http.StatusUnauthorized {
		t.Fatalf("anonymous review: %d", code)
	}
}

// windowRefund sends the window platform's refund instruction body with the bearer token.
func (fx *fixture) windowRefund(t *testing.T, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fx.srv.URL+"/api/v1/refunds", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer window-token")
	resp, err := http.DefaultClient.Do(req)
	sqltest.Must(t, err)
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestR2WindowAPIRefundWaitsForReview(t *testing.T) {
	fx := setup(t)
	v := fx.paidBill(t)
	call := func(body string) (int, map[string]any) { return fx.windowRefund(t, body) }
	body := `{"decision_no":"` + v.DecisionNo + `","amount":20000,"reason":"撤销处罚决定","request_id":"WIN-0001","requested_by":"clerk"}`
	code, out := call(body)
	if code != http.StatusCreated || out["state"] != "requested" || out["refund_no"] == "" || out["bill_no"] != v.BillNo || out["requested_by"] != "window:clerk" {
		t.Fatalf("first: %d %v", code, out)
	}
	no := out["refund_no"].(string)
	if code, again := call(body); code != http.StatusOK || again["refund_no"] != no {
		t.Fatalf("same request again: %d %v", code, again)
	}
	if code, _ := call(strings.Replace(body, "20000", "10000", 1)); code != http.StatusConflict {
		t.Fatalf("same request ID, another amount: %d", code)
	}
	if code, _ := call(strings.Replace(body, `"clerk"`, `"reviewer"`, 1)); code != http.StatusConflict {
		t.Fatalf("same request ID, another requester: %d", code)
	}
	if code, _ := call(strings.Replace(body, "WIN-0001", "WIN-0002", 1)); code != http.StatusConflict {
		t.Fatalf("second refund while one is in flight: %d", code)
	}
	if code, _ := call(`{"decision_no":"2301021000999999","amount":1,"reason":"x","request_id":"WIN-0003","requested_by":"clerk"}`); code != http.StatusNotFound {
		t.Fatalf("unknown decision: %d", code)
	}
	if code, _ := call(`{"decision_no":"1","amount":0,"reason":"","request_id":"bad id"}`); code != http.StatusBadRequest {
		t.Fatalf("invalid: %d", code)
	}
	if code, out := call(strings.Replace(body, `,"requested_by":"clerk"`, "", 1)); code != http.StatusBadRequest || !strings.Contains(out["message"].(string), "requested_by") {
		t.Fatalf("the window platform names nobody: %d %v", code, out)
	}
	r, err := refund.Get(context.Background(), fx.env.DB, no)
	sqltest.Must(t, err)
	if r.Route != refund.R2 || r.State != refund.Requested || r.RequestedBy != "window:clerk" || r.InstructionID != "window:WIN-0001" {
		t.Fatalf("refund %+v", r)
	}
	if len(fx.env.Tasks(t, refund.KindApply)) != 0 {
		t.Fatal("an R2 refund went on before a clerk's review")
	}
	// The reviewer reviews it in the console.
	rev := fx.browser(t)
	_, home := rev.login("reviewer", reviewerPassword)
	if !strings.Contains(home, `id="awaiting-`+no+`"`) || !strings.Contains(home, "window:clerk") {
		t.Fatal("the R2 refund is not listed for review with its requester")
	}
	if code, _ := rev.post("/console/refunds/"+no+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"approve"}}); code != 200 {
		t.Fatalf("review: %d", code)
	}
	if r, _ := refund.Get(context.Background(), fx.env.DB, no); r.State != refund.Reviewed || r.ReviewedBy != "console:reviewer" {
		t.Fatalf("after review %+v", r)
	}
	if len(fx.env.Tasks(t, refund.KindApply)) != 1 {
		t.Fatal("no apply task after the review")
	}
	var results []string
	for _, a := range fx.audit(t, "api.refund.start") {
		results = append(results, a.Actor+":"+a.Result)
	}
	if g := strings.Join(results, ","); g != "window-api:success,window-api:success,window-api:refused,window-api:refused,window-api:refused,window-api:refused,window-api:refused" {
		t.Errorf("API audit %s", g)
	}
	if a := fx.audit(t, "api.refund.start")[0]; !strings.Contains(a.Detail, "asked by window:clerk") {
		t.Errorf("API audit detail %q", a.Detail)
	}
}

// A review and its audit row commit together: when the row cannot be written, the review is
// not applied and the refund still waits for review.
func TestR3ConsoleReviewWithoutItsAuditRowIsNotApplied(t *testing.T) {
	fx := setup(t)
	v := fx.paidBill(t)
	fx.startR3(t, v)
	r := fx.refunds(t, v.BillNo)[0]
	rev := fx.browser(t)
	_, home := rev.login("reviewer", reviewerPassword)
	_, err := fx.env.DB.Exec(`ALTER TABLE console_audit RENAME TO console_audit_away`)
	sqltest.Must(t, err)
	code, _ := rev.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"approve"}})
	_, err = fx.env.DB.Exec(`ALTER TABLE console_audit_away RENAME TO console_audit`)
	sqltest.Must(t, err)
	if code < 500 {
		t.Fatalf("review without an audit trail answered %d", code)
	}
	got, err := refund.Get(context.Background(), fx.env.DB, r.RefundNo)
	sqltest.Must(t, err)
	if got.State != r.State || got.ReviewedBy != "" || len(fx.env.Tasks(t, refund.KindApply)) != 0 {
		t.Fatalf("the review was applied without its audit row: %+v", got)
	}
	if code, page := rev.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"approve"}}); code != 200 {
		t.Fatalf("review once the audit trail is back: %d\n%s", code, page)
	}
	if reviews := fx.audit(t, "refund.review"); len(reviews) != 1 || reviews[0].Result != "success" {
		t.Fatalf("review audit rows %+v", reviews)
	}
}
