package bankrefund_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bankrefund"
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/partner/partnertest"
	"finepay/intranet-core/internal/partnerin"
	"finepay/intranet-core/internal/refund"
	"finepay/intranet-core/internal/refundflow"
	"finepay/intranet-core/internal/task"
	"finepay/shared/gm"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

const (
	bankCode   = "104100000004"
	bankSerial = "BS20261127000001"
	pathPolice = "/police/v1/refund-results"
)

// adapter plays the finance adapter: it records the instructions and answers the state of each
// refund as set by the test.
type adapter struct {
	mu         sync.Mutex
	ids        []string
	bodies     []bankrefund.Instruction
	failFirst  int  // answer this many instructions with no answer (a timeout)
	refuse     bool // refuse every instruction outright (a final answer)
	state      map[string]bankrefund.Result
	stateCalls int
}

func (a *adapter) Instruct(_ context.Context, rid string, in bankrefund.Instruction) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids = append(a.ids, rid)
	a.bodies = append(a.bodies, in)
	if a.failFirst > 0 {
		a.failFirst--
		return fmt.Errorf("%w: timeout", partner.ErrTransport)
	}
	if a.refuse {
		return &partner.Error{Status: http.StatusUnprocessableEntity, Code: "ACCOUNT_CLOSED", Message: "the payer's account is closed"}
	}
	if _, ok := a.state[in.RefundNo]; !ok {
		a.state[in.RefundNo] = bankrefund.Result{RefundNo: in.RefundNo, BankCode: in.BankCode, BankSerial: in.BankSerial,
			Status: bankrefund.StatusProcessing, At: "2026-11-27T10:20:00+08:00"}
	}
	return nil
}

func (a *adapter) Status(_ context.Context, _, refundNo string) (bankrefund.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stateCalls++
	r, ok := a.state[refundNo]
	if !ok {
		return r, &partner.Error{Status: http.StatusNotFound, Code: "NOT_FOUND"}
	}
	return r, nil
}

func (a *adapter) set(r bankrefund.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state[r.RefundNo] = r
}

type fixture struct {
	env     *coretest.Env
	db      *sqldb.DB
	refunds *refund.Service
	bank    *bankrefund.Service
	adapter *adapter
	runner  *task.Runner
	url     string         // the partner API, /partner/v1
	caller  *gm.PrivateKey // the adapter's signing key
	ref     refund.Refund
}

// setup pays the test bill, makes the payment a bank payment (bank_payments), starts an R4
// refund of all of it and has a second user review it.
func setup(t *testing.T, db *sqldb.DB, a *adapter) *fixture {
	t.Helper()
	ctx := context.Background()
	env := coretest.New(t, db, coretest.Options{})
	v := env.CreateBill(t, coretest.ValidRequest())
	env.Deliver(t, env.Confirmation(t, v, "BK-"+bankCode+"-"+bankSerial, bankCode+"-"+bankSerial))
	_, err := env.Runner.RunDue(ctx)
	sqltest.Must(t, err)
	var pid int64
	sqltest.Must(t, db.QueryRow(`SELECT id FROM payments WHERE bill_no = $1`, v.BillNo).Scan(&pid))
	_, err = db.Exec(`UPDATE payments SET channel = 'bank' WHERE id = $1`, pid)
	sqltest.Must(t, err)
	_, err = db.Exec(`INSERT INTO bank_payments (bank_code, bank_serial, decision_no, bill_no, pay_code, order_no, amount, fine, late_fee,
		paid_at, biz_date, input_hash, payment_id, result, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		bankCode, bankSerial, v.DecisionNo, v.BillNo, v.PayCode, "BK-"+bankCode+"-"+bankSerial, int64(v.TotalDueToday), int64(v.Fine),
		int64(v.LateFee), env.Clock.Now().UTC(), "2026-11-27", "h", pid, "recorded", env.Clock.Now().UTC())
	sqltest.Must(t, err)

	client, err := partner.New(partner.Config{BaseURL: env.Partner.URL, App: "core", Signer: env.PKI.Core.Key,
		PartnerKey: env.PKI.PartnerSign.Cert.PublicKey(), PartnerApp: "sandbox"})
	sqltest.Must(t, err)
	env.SetReply(pathPolice, func(partnertest.Request) partnertest.Reply {
		return partnertest.Reply{Body: map[string]string{"status": "accepted"}}
	})
	f := &fixture{env: env, db: db, adapter: a}
	f.refunds = refund.NewService(refund.Config{DB: db, Applier: ereceipt.New(client, nil), Reviewer: nontax.New(client),
		Instructors: map[string]refund.Instructor{"bank": bankrefund.Instructor{Now: env.Clock.Now}},
		NonTax:      nontax.NewReporter(client, nontax.PathRefundResults),
		Route:       map[refund.Route]refund.Reporter{refund.R4: nontax.NewReporter(client, pathPolice)},
		Facts:       refundflow.Facts, OnRefunded: refundflow.RedFlushOnRefund(env.Clock.Now), Now: env.Clock.Now, Logger: logging.Discard()})
	f.bank = bankrefund.NewService(bankrefund.Config{DB: db, Adapter: a, Refunds: f.refunds, Now: env.Clock.Now, Logger: logging.Discard()})
	handlers := f.refunds.Handlers()
	for kind, h := range env.Receipts.Handlers() {
		handlers[kind] = h
	}
	handlers[bankrefund.KindInstruct] = f.bank.HandleInstruct
	f.runner = task.NewRunner(task.Config{DB: db, Handlers: handlers, Now: env.Clock.Now, Jitter: func() float64 { return 0 },
		Logger: logging.Discard()})

	// The partner API as the core serves it: the guard knows the adapter and the 12123 platform.
	f.caller, err = gm.GenerateKey(rand.Reader)
	sqltest.Must(t, err)
	guard, err := partnerin.New(partnerin.Config{DB: db, Node: "core", Key: env.PKI.Core.Key, Now: env.Clock.Now,
		Callers: []partnerin.Caller{{Name: "bankadapter", Key: f.caller.Public()}, {Name: "isp12123", Key: f.caller.Public()}}})
	sqltest.Must(t, err)
	e, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
	bankrefund.Routes(e.Group("/partner/v1", guard.Middleware).Group("/bank"), f.bank)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	f.url = srv.URL

	err = db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		f.ref, _, err = f.refunds.Start(ctx, tx, refund.Request{PaymentID: pid, Route: refund.R4, InstructionID: "console:r4test",
			Amount: int64(v.TotalDueToday), Reason: "处罚决定撤销", RequestedBy: "console:clerk"})
		return err
	})
	sqltest.Must(t, err)
	_, err = f.refunds.Review(ctx, f.ref.RefundNo, "console:reviewer", true, "核实无误", nil)
	sqltest.Must(t, err)
	return f
}

// drain runs the due tasks rounds times, moving the clock past the backoff after each round.
func (f *fixture) drain(t *testing.T, rounds int) {
	t.Helper()
	for range rounds {
		_, err := f.runner.RunDue(context.Background())
		sqltest.Must(t, err)
		f.env.Clock.Advance(11 * time.Minute)
	}
}

func (f *fixture) state(t *testing.T) refund.Refund {
	t.Helper()
	r, err := refund.Get(context.Background(), f.db, f.ref.RefundNo)
	sqltest.Must(t, err)
	return r
}

// transitions counts the refund's transitions into each state.
func (f *fixture) transitions(t *testing.T) map[refund.State]int {
	t.Helper()
	h, err := refund.History(context.Background(), f.db, f.ref.RefundNo)
	sqltest.Must(t, err)
	out := map[refund.State]int{}
	for _, tr := range h {
		out[tr.To]++
	}
	return out
}

// results counts bank_refund_results by outcome and code.
func (f *fixture) results(t *testing.T) map[string]int {
	t.Helper()
	rows, err := f.db.Query(`SELECT outcome, code FROM bank_refund_results`)
	sqltest.Must(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var o, c string
		sqltest.Must(t, rows.Scan(&o, &c))
		out[o+"/"+c]++
	}
	return out
}

// push posts a result to the partner API as app, signed with key, under request ID rid.
func (f *fixture) push(t *testing.T, app string, key *gm.PrivateKey, rid string, r bankrefund.Result) (int, string, bankrefund.ResultAnswer) {
	t.Helper()
	c, err := partner.New(partner.Config{BaseURL: f.url, App: app, Signer: key, PartnerKey: f.env.PKI.Core.Cert.PublicKey(),
		PartnerApp: "core", Now: f.env.Clock.Now})
	sqltest.Must(t, err)
	var ans bankrefund.ResultAnswer
	err = c.PostJSON(context.Background(), "/partner/v1/bank/refund-results", rid, r, &ans)
	var pe *partner.Error
	if errors.As(err, &pe) {
		return pe.Status, pe.Code, ans
	}
	sqltest.Must(t, err)
	return http.StatusOK, "", ans
}

func (f *fixture) success() bankrefund.Result {
	return bankrefund.Result{RefundNo: f.ref.RefundNo, BankCode: bankCode, BankSerial: bankSerial, Status: bankrefund.StatusSuccess,
		BankRefundNo: "BR20261127000001", RefundedAmount: f.ref.Amount, At: "2026-11-27T10:20:00+08:00"}
}

// TestR4BankRefundResultPushed: the approved refund is instructed to the bank (one request ID,
// one body, however often the task runs); the adapter's pushed result is validated and checked:
// bad signatures, other callers, wrong amounts, another payment's serial and unknown refunds are
// refused, recorded and change nothing; the good result makes the refund refunded once,
// red-flushes the receipt and reports to the non-tax system and the police business system; a
// repeated result changes nothing, and a contradicting one is refused.
func TestR4BankRefundResultPushed(t *testing.T) {
	db := sqltest.Open(t, sqldb.Postgres)
	a := &adapter{state: map[string]bankrefund.Result{}}
	f := setup(t, db, a)
	f.drain(t, 4)
	if s := f.state(t).State; s != refund.Sent {
		t.Fatalf("state %s, want sent", s)
	}
	if len(a.ids) < 2 {
		t.Fatalf("%d instructions: the processing refund is not followed", len(a.ids))
	}
	for i := range a.ids {
		if a.ids[i] != a.ids[0] || a.bodies[i] != a.bodies[0] {
			t.Fatalf("instruction %d: %s %+v, the first %s %+v", i, a.ids[i], a.bodies[i], a.ids[0], a.bodies[0])
		}
	}
	if in := a.bodies[0]; in.BankCode != bankCode || in.BankSerial != bankSerial || in.Amount != f.ref.Amount ||
		in.PaidAmount != f.ref.Amount || in.RefundNo != f.ref.RefundNo || in.OrderNo != f.ref.OrderNo {
		t.Fatalf("instruction %+v", in)
	}

	wrongKey, err := gm.GenerateKey(rand.Reader)
	sqltest.Must(t, err)
	good := f.success()
	wrongAmount := good
	wrongAmount.RefundedAmount--
	otherSerial := good
	otherSerial.BankSerial = "BS20261127000002"
	unknown := good
	unknown.RefundNo = "RFNOSUCHREFUNDR001"
	invalid := good
	invalid.Status = bankrefund.StatusProcessing
	for _, c := range []struct {
		name   string
		app    string
		key    *gm.PrivateKey
		r      bankrefund.Result
		status int
		code   string
	}{
		{"fail/bad-signature", "bankadapter", wrongKey, good, http.StatusUnauthorized, "SIGNATURE_INVALID"},
		{"fail/other-caller", "isp12123", f.caller, good, http.StatusForbidden, bankrefund.CodeCallerNotAllowed},
		{"fail/invalid", "bankadapter", f.caller, invalid, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"fail/amount", "bankadapter", f.caller, wrongAmount, http.StatusUnprocessableEntity, bankrefund.CodeAmountMismatch},
		{"fail/other-payment", "bankadapter", f.caller, otherSerial, http.StatusConflict, bankrefund.CodeRefundMismatch},
		{"fail/unknown-refund", "bankadapter", f.caller, unknown, http.StatusNotFound, bankrefund.CodeRefundNotFound},
	} {
		status, code, _ := f.push(t, c.app, c.key, "rid-"+c.name[5:], c.r)
		if status != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, code, c.status, c.code)
		}
	}
	if s := f.state(t).State; s != refund.Sent {
		t.Fatalf("state %s after refused results", s)
	}
	want := map[string]int{"refused/" + bankrefund.CodeAmountMismatch: 1, "refused/" + bankrefund.CodeRefundMismatch: 1,
		"refused/" + bankrefund.CodeRefundNotFound: 1}
	if got := f.results(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("bank_refund_results %v, want %v", got, want)
	}
	var audited int
	sqltest.Must(t, db.QueryRow(`SELECT count(*) FROM partner_audit WHERE path = '/partner/v1/bank/refund-results' AND status >= 400`).Scan(&audited))
	if audited != 6 {
		t.Errorf("%d refused requests audited, want 6", audited)
	}

	// The good result, three times: once under its request ID again, once under another.
	for i, rid := range []string{"rid-good", "rid-good", "rid-again"} {
		status, code, ans := f.push(t, "bankadapter", f.caller, rid, good)
		if status != http.StatusOK || ans.State != string(refund.Refunded) || ans.Repeated != (i == 2) {
			t.Fatalf("result %d: %d %s %+v", i, status, code, ans)
		}
	}
	r := f.state(t)
	if r.State != refund.Refunded || r.ChannelRef != good.BankRefundNo {
		t.Fatalf("refund %+v", r)
	}
	if n := f.transitions(t)[refund.Refunded]; n != 1 {
		t.Fatalf("%d transitions to refunded", n)
	}
	failed := good
	failed.Status, failed.BankRefundNo, failed.RefundedAmount = bankrefund.StatusFailed, "", 0
	if status, code, _ := f.push(t, "bankadapter", f.caller, "rid-failed", failed); status != http.StatusConflict || code != bankrefund.CodeResultConflict {
		t.Errorf("a failed result after success: %d %s", status, code)
	}
	if got := f.results(t); got["applied/"] != 1 || got["repeated/"] != 1 || got["refused/"+bankrefund.CodeResultConflict] != 1 {
		t.Errorf("bank_refund_results %v", got)
	}

	// The task ends; the receipt is red-flushed; the non-tax system and the police system are told.
	f.drain(t, 3)
	for _, kind := range []string{bankrefund.KindInstruct, refund.KindReport} {
		for _, row := range f.env.Tasks(t, kind) {
			if row.Status != task.StatusDone {
				t.Errorf("task %s/%s is %s: %s", kind, row.Key, row.Status, row.LastError)
			}
		}
	}
	for _, path := range []string{nontax.PathRefundResults, pathPolice} {
		reqs := f.env.Requests(path)
		var o refund.Outcome
		if len(reqs) != 1 || reqs[0].JSON(&o) != nil || o.Status != string(refund.Refunded) || o.Route != "R4" || o.ChannelRef != good.BankRefundNo {
			t.Errorf("%s: %d reports %+v", path, len(reqs), o)
		}
	}
	if reqs := f.env.Requests(ereceipt.PathRedReceipts); len(reqs) != 1 {
		t.Errorf("%d red-flush requests", len(reqs))
	}
}

// TestR4BankInstructionTimeoutRepeatsTheSameRefund: the adapter does not answer the first
// instruction; the refund is unknown and the instruction is repeated with the same request ID
// and refund number; the bank's state, read back, makes the refund refunded.
func TestR4BankInstructionTimeoutRepeatsTheSameRefund(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		a := &adapter{state: map[string]bankrefund.Result{}, failFirst: 1}
		f := setup(t, db, a)
		for f.state(t).State != refund.Unknown {
			if len(a.ids) > 0 {
				t.Fatalf("state %s after %d instructions, want unknown", f.state(t).State, len(a.ids))
			}
			f.drain(t, 1)
		}
		a.set(f.success())
		f.drain(t, 2)
		if r := f.state(t); r.State != refund.Refunded || r.ChannelRef != "BR20261127000001" {
			t.Fatalf("refund %+v", r)
		}
		if len(a.ids) != 2 || a.ids[0] != a.ids[1] || a.bodies[0] != a.bodies[1] {
			t.Fatalf("instructions %v %+v: want the same one twice", a.ids, a.bodies)
		}
		tr := f.transitions(t)
		if tr[refund.Unknown] != 1 || tr[refund.Refunded] != 1 {
			t.Fatalf("transitions %v", tr)
		}
		if got := f.results(t); got["applied/"] != 1 {
			t.Errorf("bank_refund_results %v", got)
		}
	})
}

// TestR4BankInstructionRefusedLeavesTheRefundUnknownForAnOperator: the adapter refuses the
// instruction outright; it is not repeated, and the refund is no longer shown as sent but as
// unknown, with the refusal in its history, for an operator to settle.
func TestR4BankInstructionRefusedLeavesTheRefundUnknownForAnOperator(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		a := &adapter{state: map[string]bankrefund.Result{}, refuse: true}
		f := setup(t, db, a)
		f.drain(t, 4)
		if len(a.ids) != 1 {
			t.Fatalf("%d instructions, want one: a refusal is not repeated", len(a.ids))
		}
		if r := f.state(t); r.State != refund.Unknown {
			t.Fatalf("state %s after the refusal, want unknown", r.State)
		}
		h, err := refund.History(context.Background(), f.db, f.ref.RefundNo)
		sqltest.Must(t, err)
		last := h[len(h)-1]
		if last.To != refund.Unknown || !strings.Contains(last.Detail, "ACCOUNT_CLOSED") {
			t.Fatalf("last transition %+v: want unknown, naming the refusal", last)
		}
		var dead int
		sqltest.Must(t, db.QueryRow(`SELECT count(*) FROM tasks WHERE kind = $1 AND status = 'dead'`, bankrefund.KindInstruct).Scan(&dead))
		if dead != 1 {
			t.Fatalf("%d dead instruction tasks, want 1", dead)
		}
	})
}
