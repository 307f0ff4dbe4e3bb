package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"finepay/sandbox/launch"
	"finepay/shared/bizdate"
	"finepay/shared/money"
	"finepay/shared/penalty"
)

// p3Answer is the core's answer as the adapter simulator passes it on.
type p3Answer struct {
	Status   int             `json:"status"`
	Replayed bool            `json:"replayed"`
	Body     json.RawMessage `json:"body"`
}

func (a p3Answer) field(t *testing.T) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(a.Body, &m); err != nil {
		t.Fatalf("answer body %s: %v", a.Body, err)
	}
	return m
}

type p3Pay struct {
	Query      *p3Answer  `json:"query"`
	BankSerial string     `json:"bank_serial"`
	Results    []p3Answer `json:"results"`
}

// p3State is the part of /_sandbox/state flow P3 looks at.
type p3State struct {
	Payments []struct {
		FormNo  string `json:"form_no"`
		OrderNo string `json:"order_no"`
		Amount  int64  `json:"amount"`
		Fine    int64  `json:"fine"`
		LateFee int64  `json:"late_fee"`
		Channel string `json:"channel"`
		Reports int    `json:"reports"`
	} `json:"payments"`
	Receipts []struct {
		FormNo string `json:"form_no"`
	} `json:"receipts"`
	PoliceResults []struct {
		DecisionNo   string `json:"decision_no"`
		OrderNo      string `json:"order_no"`
		Amount       int64  `json:"amount"`
		LateFee      int64  `json:"late_fee"`
		NonTaxBefore bool   `json:"nontax_before"`
	} `json:"police_results"`
	Reconciliations []struct {
		ReconID        string `json:"recon_id"`
		Status         string `json:"status"`
		Matched        int    `json:"matched"`
		BankOnly       int    `json:"bank_only"`
		CoreOnly       int    `json:"core_only"`
		AmountMismatch int    `json:"amount_mismatch"`
		Items          []struct {
			Class      string `json:"class"`
			BankSerial string `json:"bank_serial"`
			BankAmount int64  `json:"bank_amount"`
			CoreAmount int64  `json:"core_amount"`
		} `json:"items"`
	} `json:"nontax_reconciliations"`
}

func postJSON(t *testing.T, url string, in, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("POST %s: %v: %s", url, err, body)
	}
}

// p3Decision puts a decision served 20 days ago (five days late: late fee 3%×5 of ¥200) into
// the police business system simulator and returns its number and what it owes today.
func p3Decision(t *testing.T, sys *launch.System) (string, money.Fen, money.Fen) {
	t.Helper()
	today := bizdate.Of(time.Now())
	served := today.AddDays(-20)
	var d struct {
		DecisionNo string `json:"decision_no"`
	}
	postJSON(t, sys.SandboxURL+"/_sandbox/police/decisions", map[string]any{"fine": 20000, "served_date": served.String()}, &d)
	_, late, total := penalty.Due(20000, served, today, true)
	return d.DecisionNo, late, total
}

// TestP3AgencyBankByDecisionNumber drives flow P3 through the real binaries: the bank simulator
// asks the finance adapter simulator what a decision owes; the adapter asks the core (signed
// envelope, caller bankadapter); the core asks the police business system simulator, has the
// non-tax simulator issue the form and answers the payment code and the amount due today with
// its late fee. The bank collects and reports the result five times: one payment. The core
// tells the police system, then the non-tax system, and the e-receipt is issued. A result whose
// amount differs from what is owed is refused; a second bank payment of a decision already paid
// is a duplicate (R5), recorded; an unknown decision is refused. The day's file then reconciles
// balanced, and the result reaches the non-tax simulator. On PostgreSQL and SQLite.
func TestP3AgencyBankByDecisionNumber(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			sys := startSystem(t, b)
			decision, late, total := p3Decision(t, sys)

			var pay p3Pay
			postJSON(t, sys.SandboxURL+"/_sandbox/bank/pay", map[string]any{"decision_no": decision, "repeat": 5}, &pay)
			if pay.Query == nil || pay.Query.Status != http.StatusOK {
				t.Fatalf("query: %+v", pay.Query)
			}
			q := pay.Query.field(t)
			if q["amount"] != float64(total) || q["late_fee"] != float64(late) || q["fine"] != float64(20000) ||
				!regexp.MustCompile(`^[0-9]{20}$`).MatchString(fmt.Sprint(q["pay_code"])) || q["business_date"] != bizdate.Of(time.Now()).String() {
				t.Fatalf("query answer %s: want amount %d with late fee %d, a 20-digit pay code, today", pay.Query.Body, total, late)
			}
			if len(pay.Results) != 5 {
				t.Fatalf("%d results", len(pay.Results))
			}
			var orderNo string
			for i, r := range pay.Results {
				f := r.field(t)
				if r.Status != http.StatusOK || f["result"] != "paid" || f["repeated"] != (i > 0) {
					t.Fatalf("result %d: %d %s", i, r.Status, r.Body)
				}
				if i == 0 {
					orderNo = fmt.Sprint(f["order_no"])
				} else if f["order_no"] != orderNo {
					t.Fatalf("result %d names order %v, the first %s", i, f["order_no"], orderNo)
				}
			}

			// Police first, then non-tax; one report each; the receipt.
			formNo := fmt.Sprint(q["form_no"])
			var st p3State
			eventually(t, "the non-tax report and the e-receipt", 30*time.Second, func() bool {
				st = p3State{}
				getJSON(t, sys.SandboxURL+"/_sandbox/state", &st)
				paid, receipt := 0, false
				for _, p := range st.Payments {
					if p.OrderNo == orderNo {
						paid++
					}
				}
				for _, r := range st.Receipts {
					receipt = receipt || r.FormNo == formNo
				}
				return paid == 1 && receipt
			})
			police := 0
			for _, r := range st.PoliceResults {
				if r.OrderNo == orderNo {
					police++
					if r.NonTaxBefore || r.Amount != int64(total) || r.LateFee != int64(late) || r.DecisionNo != decision {
						t.Errorf("police result %+v: want told first, amount %d, late fee %d", r, total, late)
					}
				}
			}
			if police != 1 {
				t.Fatalf("the police system got %d results for %s: %+v", police, orderNo, st.PoliceResults)
			}
			for _, p := range st.Payments {
				if p.OrderNo == orderNo && (p.Channel != "bank" || p.Amount != int64(total) || p.Fine != 20000 || p.LateFee != int64(late) || p.FormNo != formNo) {
					t.Errorf("non-tax payment %+v: want channel bank, fine and late fee %d apart", p, late)
				}
			}

			// A bank result whose amount is not what is owed: refused, nothing recorded.
			other, _, _ := p3Decision(t, sys)
			var bad p3Pay
			postJSON(t, sys.SandboxURL+"/_sandbox/bank/pay", map[string]any{"decision_no": other, "late_fee_delta": 100}, &bad)
			if len(bad.Results) != 1 || bad.Results[0].Status != http.StatusUnprocessableEntity || !strings.Contains(string(bad.Results[0].Body), `"AMOUNT_MISMATCH"`) {
				t.Fatalf("wrong amount: %+v", bad.Results)
			}

			// Another bank payment of the paid decision (the payer was quoted before): a duplicate.
			var dup p3Pay
			postJSON(t, sys.SandboxURL+"/_sandbox/bank/pay", map[string]any{"quote": json.RawMessage(pay.Query.Body)}, &dup)
			if len(dup.Results) != 1 || dup.Results[0].Status != http.StatusOK || dup.Results[0].field(t)["result"] != "duplicate" {
				t.Fatalf("second payment of a paid decision: %+v", dup.Results)
			}
			// The decision is paid: a new query says so.
			var again p3Pay
			postJSON(t, sys.SandboxURL+"/_sandbox/bank/pay", map[string]any{"decision_no": decision}, &again)
			if again.Query == nil || again.Query.Status != http.StatusConflict || !strings.Contains(string(again.Query.Body), `"DECISION_PAID"`) {
				t.Fatalf("query of a paid decision: %+v", again.Query)
			}
			// An unknown decision.
			var unknown p3Pay
			postJSON(t, sys.SandboxURL+"/_sandbox/bank/pay", map[string]any{"decision_no": "230100999999999999"}, &unknown)
			if unknown.Query == nil || unknown.Query.Status != http.StatusNotFound || !strings.Contains(string(unknown.Query.Body), `"DECISION_NOT_FOUND"`) {
				t.Fatalf("query of an unknown decision: %+v", unknown.Query)
			}

			m := getText(t, sys.CoreURL+"/metrics")
			for _, want := range []string{`core_payments_recorded_total{result="recorded"} 1`, `core_payments_recorded_total{result="duplicate"} 1`} {
				if !strings.Contains(m, want) {
					t.Errorf("core metrics lack %s", want)
				}
			}

			// End of day: the bank's two accepted payments (the paid one and the duplicate) match.
			var eod struct {
				File   string   `json:"file"`
				Answer p3Answer `json:"answer"`
			}
			postJSON(t, sys.SandboxURL+"/_sandbox/bank/eod", map[string]any{}, &eod)
			r := eod.Answer.field(t)
			if eod.Answer.Status != http.StatusOK || r["status"] != "balanced" || r["matched"] != float64(2) {
				t.Fatalf("end of day: %d %s\nfile:\n%s", eod.Answer.Status, eod.Answer.Body, eod.File)
			}
			eventually(t, "the reconciliation at the non-tax system", 30*time.Second, func() bool {
				st = p3State{}
				getJSON(t, sys.SandboxURL+"/_sandbox/state", &st)
				return len(st.Reconciliations) == 1 && st.Reconciliations[0].Status == "balanced" && st.Reconciliations[0].Matched == 2
			})
		})
	}
}

// TestP3EndOfDayDifferences: the bank's end-of-day file holds a payment the core never heard of
// and one whose amount differs from what the bank reported; the core's pre-reconciliation
// classifies both (bank_only, amount_mismatch) besides the matched one, answers the adapter, and
// forwards the result to the non-tax simulator. Another file for the same day is refused.
func TestP3EndOfDayDifferences(t *testing.T) {
	sys := startSystem(t, backends[0])
	var serials []string
	for range 2 {
		decision, _, _ := p3Decision(t, sys)
		var pay p3Pay
		postJSON(t, sys.SandboxURL+"/_sandbox/bank/pay", map[string]any{"decision_no": decision}, &pay)
		if len(pay.Results) != 1 || pay.Results[0].Status != http.StatusOK {
			t.Fatalf("pay %s: %+v %+v", decision, pay.Query, pay.Results)
		}
		serials = append(serials, pay.BankSerial)
	}
	req := map[string]any{"unknown_lines": 1, "alter_amounts": map[string]int64{serials[1]: 99999}}
	var eod struct {
		File   string   `json:"file"`
		Answer p3Answer `json:"answer"`
	}
	postJSON(t, sys.SandboxURL+"/_sandbox/bank/eod", req, &eod)
	r := eod.Answer.field(t)
	if eod.Answer.Status != http.StatusOK || r["status"] != "differences" || r["matched"] != float64(1) ||
		r["bank_only"] != float64(1) || r["amount_mismatch"] != float64(1) || r["core_only"] != float64(0) {
		t.Fatalf("end of day: %d %s\nfile:\n%s", eod.Answer.Status, eod.Answer.Body, eod.File)
	}
	var st p3State
	eventually(t, "the reconciliation at the non-tax system", 30*time.Second, func() bool {
		st = p3State{}
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &st)
		return len(st.Reconciliations) == 1
	})
	rc := st.Reconciliations[0]
	if rc.Status != "differences" || rc.Matched != 1 || rc.BankOnly != 1 || rc.AmountMismatch != 1 || rc.CoreOnly != 0 {
		t.Fatalf("non-tax reconciliation %+v", rc)
	}
	classes := map[string]string{}
	for _, it := range rc.Items {
		classes[it.BankSerial] = it.Class
		if it.Class == "amount_mismatch" && (it.BankAmount != 99999 || it.CoreAmount == 99999) {
			t.Errorf("amount mismatch item %+v", it)
		}
	}
	if classes[serials[0]] != "matched" || classes[serials[1]] != "amount_mismatch" {
		t.Fatalf("items %+v", rc.Items)
	}

	// Another file for the day: refused; the non-tax system still has one reconciliation.
	postJSON(t, sys.SandboxURL+"/_sandbox/bank/eod", map[string]any{}, &eod)
	if eod.Answer.Status != http.StatusConflict || !strings.Contains(string(eod.Answer.Body), `"RECONCILIATION_CONFLICT"`) {
		t.Fatalf("second file of the day: %d %s", eod.Answer.Status, eod.Answer.Body)
	}
}
