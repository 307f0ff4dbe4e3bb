package e2e

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestR4BankPaymentRefundedThroughTheAdapter: a decision paid at an agency bank (flow P3) is
// refunded by the bank route. The clerk finds the payment in the console and starts the refund;
// the reviewer approves it (the console's forms submitted over HTTP); the core applies to the
// e-receipt platform, the non-tax system approves, and the core instructs the finance adapter,
// which forwards to the bank. The bank
// refunds at once but its first answer is lost (504): the core repeats the instruction with the
// same refund number, and the bank, seeing the same refund twice, refunds once. The bank pushes
// its result through the adapter; the refund ends refunded, the receipt is red-flushed, and the
// non-tax system and the police business system are told. On PostgreSQL.
func TestR4BankPaymentRefundedThroughTheAdapter(t *testing.T) {
	sys := startSystem(t, backends[0])
	var mode map[string]any
	postJSON(t, sys.SandboxURL+"/_sandbox/bank/refund-mode", map[string]string{"mode": "timeout"}, &mode)

	decision, _, total := p3Decision(t, sys)
	var pay p3Pay
	postJSON(t, sys.SandboxURL+"/_sandbox/bank/pay", map[string]any{"decision_no": decision}, &pay)
	if len(pay.Results) != 1 || pay.Results[0].Status != http.StatusOK {
		t.Fatalf("bank payment: %+v %+v", pay.Query, pay.Results)
	}
	orderNo := fmt.Sprint(pay.Results[0].field(t)["order_no"])
	formNo := fmt.Sprint(pay.Query.field(t)["form_no"])
	var receipts struct {
		Receipts []struct {
			FormNo     string `json:"form_no"`
			ReceiptNo  string `json:"receipt_no"`
			OriginalNo string `json:"original_no"`
		} `json:"receipts"`
	}
	var receiptNo string
	eventually(t, "the bank payment's e-receipt", time.Minute, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &receipts)
		for _, r := range receipts.Receipts {
			if r.FormNo == formNo {
				receiptNo = r.ReceiptNo
			}
		}
		return receiptNo != ""
	})

	// The clerk finds the payment by decision number and starts the refund (R4, the bank route);
	// the reviewer, another user, approves it. The console is driven over HTTP, as a browser
	// submits its forms.
	clerk := newConsoleClient(t, sys.CoreURL)
	clerk.login("clerk", "Clerk-e2e-Pass1")
	page := clerk.get("/console/search?decision_no=" + decision)
	form := reRefundForm.FindString(page)
	if form == "" || !strings.Contains(form, "R4") {
		t.Fatalf("the bill page has no R4 refund form:\n%s", page)
	}
	fields := url.Values{}
	for _, m := range reFormField.FindAllStringSubmatch(form, -1) {
		fields.Set(m[1], html.UnescapeString(m[2]))
	}
	fields.Set("reason", "处罚决定撤销")
	clerk.post("/console/refunds", fields)
	reviewer := newConsoleClient(t, sys.CoreURL)
	home := reviewer.login("reviewer", "Reviewer-e2e-Pass1")
	m := reReviewAction.FindStringSubmatch(home)
	if m == nil {
		t.Fatalf("the reviewer's home lists no refund awaiting review:\n%s", home)
	}
	refundNo := m[1]
	reviewer.post("/console/refunds/"+refundNo+"/review", url.Values{"csrf": {formCSRF(t, home)}, "decision": {"approve"}, "note": {"同意"}})

	type refundState struct {
		RefundNo     string `json:"refund_no"`
		BankSerial   string `json:"bank_serial"`
		Amount       int64  `json:"amount"`
		Status       string `json:"status"`
		BankRefundNo string `json:"bank_refund_no"`
		Instructions int    `json:"instructions"`
		Report       string `json:"report"`
	}
	var state struct {
		Bank struct {
			Payments []struct {
				BankSerial string `json:"bank_serial"`
				Amount     int64  `json:"amount"`
				Refunded   int64  `json:"refunded"`
			} `json:"bank_payments"`
			Refunds []refundState `json:"bank_refunds"`
			Ledger  []struct {
				Kind   string `json:"kind"`
				Amount int64  `json:"amount"`
			} `json:"ledger"`
			Balance int64 `json:"balance"`
		} `json:"bank"`
		Outcomes []struct {
			Party      string `json:"party"`
			Status     string `json:"status"`
			Route      string `json:"route"`
			RefundNo   string `json:"refund_no"`
			ChannelRef string `json:"channel_refund_id"`
		} `json:"refund_outcomes"`
		PoliceRefunds []struct {
			RefundNo   string `json:"refund_no"`
			OrderNo    string `json:"order_no"`
			DecisionNo string `json:"decision_no"`
			Status     string `json:"status"`
			Amount     int64  `json:"amount"`
		} `json:"police_refund_results"`
		Receipts []struct {
			ReceiptNo  string `json:"receipt_no"`
			OriginalNo string `json:"original_no"`
		} `json:"receipts"`
	}
	eventually(t, "the refund to end and the parties told", 2*time.Minute, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
		red := false
		for _, r := range state.Receipts {
			red = red || r.OriginalNo == receiptNo
		}
		return len(state.Outcomes) == 1 && len(state.PoliceRefunds) == 1 && red &&
			len(state.Bank.Refunds) == 1 && state.Bank.Refunds[0].Report == "accepted"
	})

	// The bank: the same refund instructed twice, refunded once; its money back once.
	br := state.Bank.Refunds[0]
	if br.Status != "success" || br.Amount != int64(total) || br.BankSerial != pay.BankSerial || br.Instructions != 2 || br.BankRefundNo == "" {
		t.Errorf("bank refund %+v: want one success of %d for %s, instructed twice", br, total, pay.BankSerial)
	}
	var refundEntries int
	for _, e := range state.Bank.Ledger {
		if e.Kind == "refund" {
			refundEntries++
			if e.Amount != -int64(total) {
				t.Errorf("ledger refund entry of %d, want %d", e.Amount, -int64(total))
			}
		}
	}
	if refundEntries != 1 || state.Bank.Balance != 0 || len(state.Bank.Payments) != 1 || state.Bank.Payments[0].Refunded != int64(total) {
		t.Errorf("bank ledger %+v, balance %d, payments %+v: want the payment refunded once", state.Bank.Ledger, state.Bank.Balance, state.Bank.Payments)
	}
	var ledger struct {
		Balance int64 `json:"balance"`
	}
	getJSON(t, sys.SandboxURL+"/_sandbox/bank/ledger", &ledger)
	if ledger.Balance != 0 {
		t.Errorf("GET /_sandbox/bank/ledger: balance %d", ledger.Balance)
	}

	// The parties: the non-tax system and the police business system, refunded, with the bank's refund number.
	if o := state.Outcomes[0]; o.Party != "nontax" || o.Status != "refunded" || o.Route != "R4" || o.RefundNo != br.RefundNo || o.ChannelRef != br.BankRefundNo {
		t.Errorf("non-tax outcome %+v", o)
	}
	if p := state.PoliceRefunds[0]; p.Status != "refunded" || p.RefundNo != br.RefundNo || p.OrderNo != orderNo || p.DecisionNo != decision || p.Amount != int64(total) {
		t.Errorf("police refund result %+v", p)
	}

	// The core: the refund is refunded, the receipt red-flushed.
	page = clerk.get("/console/search?decision_no=" + decision)
	if !regexp.MustCompile(`id="refund-`+refundNo+`"[^>]*>[\s\S]*?data-state="refunded"`).MatchString(page) || br.RefundNo != refundNo {
		t.Errorf("the bill page does not show refund %s refunded (bank refund %s):\n%s", refundNo, br.RefundNo, page)
	}
	if red := reRedFlush.FindStringSubmatch(page); red == nil || !strings.Contains(red[1], "已红冲") {
		t.Errorf("the bill page does not show the receipt red-flushed:\n%s", page)
	}
}

var (
	reRefundForm   = regexp.MustCompile(`(?s)<form[^>]*class="refund-form".*?</form>`)
	reFormField    = regexp.MustCompile(`name="([a-z_]+)" value="([^"]*)"`)
	reReviewAction = regexp.MustCompile(`action="/console/refunds/([A-Za-z0-9]+)/review"`)
	reCSRFField    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	reRedFlush     = regexp.MustCompile(`(?s)id="red-flush"[^>]*>(.*?)<`)
)

func formCSRF(t *testing.T, page string) string {
	t.Helper()
	m := reCSRFField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// consoleClient is a console user's session over HTTP (a cookie jar), submitting forms as a
// browser does.
type consoleClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newConsoleClient(t *testing.T, base string) *consoleClient {
	jar, _ := cookiejar.New(nil)
	return &consoleClient{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

func (cc *consoleClient) do(req *http.Request) string {
	cc.t.Helper()
	resp, err := cc.c.Do(req)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		cc.t.Fatalf("%s %s: %d\n%s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	return string(b)
}

func (cc *consoleClient) get(path string) string {
	cc.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, cc.base+path, nil)
	return cc.do(req)
}

func (cc *consoleClient) post(path string, form url.Values) string {
	cc.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, cc.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return cc.do(req)
}

// login logs user in and returns the home page.
func (cc *consoleClient) login(user, password string) string {
	cc.t.Helper()
	page := cc.get("/console/login")
	return cc.post("/console/login", url.Values{"csrf": {formCSRF(cc.t, page)}, "username": {user}, "password": {password}})
}
