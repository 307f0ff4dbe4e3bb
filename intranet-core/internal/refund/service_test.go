package refund_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/refund"
	"finepay/intranet-core/internal/task"
	"finepay/shared/envelope"
	"finepay/shared/logging"
)

// parties plays the e-receipt platform, the non-tax system, a route's party and the channel:
// outside systems, recorded call by call.
type parties struct {
	mu        sync.Mutex
	applyIDs  []string
	applyFail int // fail this many application calls with a timeout first
	decision  string
	reports   map[string][]refund.Outcome // by reporter
	reportIDs map[string]string           // request ID per reporter and refund
	instructs []string
	flushed   []string
}

func (p *parties) ApplyRefund(_ context.Context, rid string, a refund.Application) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applyIDs = append(p.applyIDs, rid)
	if p.applyFail > 0 {
		p.applyFail--
		return errors.New("timeout")
	}
	if a.Amount <= 0 || a.FormNo == "" {
		return errors.New("bad application")
	}
	return nil
}

func (p *parties) RefundReview(context.Context, string, string) (string, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.decision, "by finance", nil
}

type reporter struct {
	p    *parties
	name string
}

func (r reporter) ReportRefund(_ context.Context, rid string, o refund.Outcome) error {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	key := r.name + "/" + o.RefundNo
	if old, ok := r.p.reportIDs[key]; ok && old != rid {
		return errors.New("a second report under another request ID")
	}
	r.p.reportIDs[key] = rid
	r.p.reports[r.name] = append(r.p.reports[r.name], o)
	return nil
}

func (p *parties) InstructRefund(_ context.Context, _ *sql.Tx, r refund.Refund) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.instructs = append(p.instructs, r.RefundNo)
	return nil
}

type harness struct {
	db     *sqldb.DB
	svc    *refund.Service
	runner *task.Runner
	p      *parties
	now    time.Time
}

func newHarness(t *testing.T) *harness {
	db := sqltest.Open(t, sqldb.Postgres)
	setup(t, db)
	h := &harness{db: db, p: &parties{decision: refund.ReviewPending, reports: map[string][]refund.Outcome{}, reportIDs: map[string]string{}},
		now: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return h.now }
	h.svc = refund.NewService(refund.Config{DB: db, Applier: h.p, Reviewer: h.p,
		Instructors: map[string]refund.Instructor{"": h.p}, NonTax: reporter{h.p, "nontax"},
		Route: map[refund.Route]refund.Reporter{refund.R5: reporter{h.p, "unified"}, refund.R2: reporter{h.p, "window"}},
		Facts: func(ctx context.Context, q refund.Querier, r refund.Refund) (string, string, string, int64, error) {
			return "F" + r.OrderNo, "23010126", "0000000001", 20000, nil
		},
		OnRefunded: func(_ context.Context, _ *sql.Tx, r refund.Refund) error {
			h.p.mu.Lock()
			defer h.p.mu.Unlock()
			h.p.flushed = append(h.p.flushed, r.RefundNo)
			return nil
		},
		Now: clock, Logger: logging.Discard()})
	h.runner = task.NewRunner(task.Config{DB: db, Handlers: h.svc.Handlers(), Now: clock, Jitter: func() float64 { return 0 }, Logger: logging.Discard()})
	return h
}

// start starts a refund in a transaction of its own.
func (h *harness) start(t *testing.T, req refund.Request) refund.Refund {
	t.Helper()
	var ref refund.Refund
	sqltest.Must(t, h.db.Tx(context.Background(), func(tx *sql.Tx) error {
		var err error
		ref, _, err = h.svc.Start(context.Background(), tx, req)
		return err
	}))
	return ref
}

// moveToSent moves a refund to sent as review, application and the instruct task would.
func (h *harness) moveToSent(t *testing.T, refundNo string) {
	t.Helper()
	for _, st := range []refund.State{refund.Reviewed, refund.Applied, refund.Approved, refund.Sent} {
		sqltest.Must(t, h.db.Tx(context.Background(), func(tx *sql.Tx) error {
			_, err := h.svc.Store().Move(context.Background(), tx, refundNo, st, "test", "", "")
			return err
		}))
	}
}

// drain runs every due task, moving the clock past any backoff, until nothing is due.
func (h *harness) drain(t *testing.T) {
	t.Helper()
	for range 20 {
		n, err := h.runner.RunDue(context.Background())
		sqltest.Must(t, err)
		if n == 0 {
			return
		}
		h.now = h.now.Add(11 * time.Minute)
	}
}

func (h *harness) state(t *testing.T, no string) refund.State {
	t.Helper()
	r, err := refund.Get(context.Background(), h.db, no)
	sqltest.Must(t, err)
	return r.State
}

func TestR5RefundOfDuplicateThroughEveryStep(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	pid := pay(t, h.db, "FPDUP", 20000)
	h.p.applyFail = 2
	var ref refund.Refund
	for range 5 { // the duplicate confirmation delivered five times
		ref = h.start(t, refund.Request{PaymentID: pid, Route: refund.R5, InstructionID: "dup:FPDUP",
			Amount: 20000, Reason: "duplicate payment", RequestedBy: "core:r5"})
	}
	h.drain(t)
	if got := h.state(t, ref.RefundNo); got != refund.Applied {
		t.Fatalf("after applying with review pending: %s", got)
	}
	if len(h.p.applyIDs) != 3 || h.p.applyIDs[0] != h.p.applyIDs[2] {
		t.Fatalf("application attempts %v: want three with one request ID", h.p.applyIDs)
	}
	h.p.decision = refund.ReviewApproved
	h.drain(t)
	if got := h.state(t, ref.RefundNo); got != refund.Sent || len(h.p.instructs) != 1 {
		t.Fatalf("after approval: %s, instructed %v", got, h.p.instructs)
	}
	// The channel's results, repeated and out of order.
	for _, res := range []string{refund.ResultProcessing, refund.ResultUnknown, refund.ResultSuccess, refund.ResultSuccess, refund.ResultProcessing} {
		sqltest.Must(t, h.db.Tx(ctx, func(tx *sql.Tx) error {
			return h.svc.ApplyResult(ctx, tx, ref.RefundNo, res, "wx-r-1", "gateway", "")
		}))
	}
	h.drain(t)
	if got := h.state(t, ref.RefundNo); got != refund.Refunded {
		t.Fatalf("final state %s", got)
	}
	if len(h.p.flushed) != 1 || len(h.p.reports["nontax"]) != 1 || len(h.p.reports["unified"]) != 1 || h.p.reports["unified"][0].Status != "refunded" {
		t.Fatalf("red-flushed %v, reports %v", h.p.flushed, h.p.reports)
	}
}

func TestR2RejectedReviewEndsWithNothingRefunded(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	pid := pay(t, h.db, "FPWIN", 20000)
	ref := h.start(t, refund.Request{PaymentID: pid, Route: refund.R2, InstructionID: "win-1",
		Amount: 20000, Reason: "asked at the window", RequestedBy: "console:alice"})
	h.drain(t)
	if len(h.p.applyIDs) != 0 {
		t.Fatal("applied before the clerk's review")
	}
	_, err := h.svc.Review(ctx, ref.RefundNo, "console:bob", true, "ok", nil)
	sqltest.Must(t, err)
	h.p.decision = refund.ReviewRejected
	h.drain(t)
	if got := h.state(t, ref.RefundNo); got != refund.Rejected {
		t.Fatalf("state %s", got)
	}
	if len(h.p.instructs) != 0 || len(h.p.flushed) != 0 || len(h.p.reports["window"]) != 1 || h.p.reports["window"][0].Status != "rejected" {
		t.Fatalf("instructed %v, flushed %v, reports %v", h.p.instructs, h.p.flushed, h.p.reports)
	}
}

func TestR3RefundCrossesToTheGatewayAndBack(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ob := outbox.New(2)
	gi := refund.GatewayInstructor{Outbox: ob, Now: func() time.Time { return h.now }}
	pid := pay(t, h.db, "FPQR1", 20000)
	var ref refund.Refund
	sqltest.Must(t, h.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		ref, _, err = h.svc.Start(ctx, tx, refund.Request{PaymentID: pid, Route: refund.R3, InstructionID: "w-1",
			Amount: 15000, Reason: "窗口退款", RequestedBy: "console:alice"})
		if err != nil {
			return err
		}
		return gi.InstructRefund(ctx, tx, ref)
	}))
	var raw []byte
	sqltest.Must(t, h.db.QueryRowContext(ctx, `SELECT envelope FROM ferry_outbox WHERE type = $1`, envelope.TypeRefundInstructed).Scan(&raw))
	env, err := envelope.Unmarshal(raw)
	sqltest.Must(t, err)
	pl, err := env.Decode()
	sqltest.Must(t, err)
	in := pl.(*envelope.RefundInstructed)
	if env.ID != "refund:"+ref.RefundNo || in.ChannelTradeNo != "TFPQR1" || in.PaidAmount != 20000 || in.Amount != 15000 || in.Channel != "wechat" {
		t.Fatalf("instruction %s %+v", env.ID, in)
	}

	// Move the refund to sent as the instruct task would, then feed the gateway's results.
	h.moveToSent(t, ref.RefundNo)
	result := func(status string, amount int64) error {
		env, err := envelope.New(envelope.RefundResultID(ref.RefundNo, status), ref.RefundNo, h.now, &envelope.RefundResult{
			RefundNo: ref.RefundNo, Channel: "wechat", Status: status, ChannelRefundNo: "wxr1", RefundedAmount: amount, At: h.now})
		sqltest.Must(t, err)
		return h.db.Tx(ctx, func(tx *sql.Tx) error { return h.svc.HandleResult(ctx, tx, env) })
	}
	// A success for another amount is not taken: the refund stays unknown for an operator.
	sqltest.Must(t, result(envelope.RefundSuccess, 20000))
	if got := h.state(t, ref.RefundNo); got != refund.Unknown {
		t.Fatalf("after a success of the wrong amount: %s", got)
	}
	sqltest.Must(t, result(envelope.RefundSuccess, 15000))
	sqltest.Must(t, result(envelope.RefundSuccess, 15000))
	if got := h.state(t, ref.RefundNo); got != refund.Refunded || len(h.p.flushed) != 1 {
		t.Fatalf("state %s, flushed %v", got, h.p.flushed)
	}
	// A result for a refund nobody asked for is an error and creates nothing.
	bad, err := envelope.New(envelope.RefundResultID("RFNOSUCH001", "success"), "RFNOSUCH001", h.now, &envelope.RefundResult{
		RefundNo: "RFNOSUCH001", Channel: "wechat", Status: "success", ChannelRefundNo: "x", RefundedAmount: 1, At: h.now})
	sqltest.Must(t, err)
	if err := h.db.Tx(ctx, func(tx *sql.Tx) error { return h.svc.HandleResult(ctx, tx, bad) }); err == nil {
		t.Fatal("a result for an unknown refund was taken")
	}
}

// A refund the channel closes as failed waits for an operator, who is alerted by
// core_refunds{state="failed"}.
func TestR3RefundFailedAtTheChannelShowsInTheMetric(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	reg.MustRegister(refund.NewStateCollector(h.db))
	pid := pay(t, h.db, "FPQR2", 20000)
	ref := h.start(t, refund.Request{PaymentID: pid, Route: refund.R3, InstructionID: "w-2",
		Amount: 20000, Reason: "窗口退款", RequestedBy: "console:alice"})
	h.moveToSent(t, ref.RefundNo)
	want := func(state string, n int) {
		t.Helper()
		if got := refundGauge(t, reg, state); got != float64(n) {
			t.Fatalf("core_refunds{state=%q} = %v, want %d", state, got, n)
		}
	}
	want("sent", 1)
	want("failed", 0)
	sqltest.Must(t, h.db.Tx(ctx, func(tx *sql.Tx) error {
		return h.svc.ApplyResult(ctx, tx, ref.RefundNo, refund.ResultFailed, "wxr2", "gateway", "closed by the channel")
	}))
	want("sent", 0)
	want("failed", 1)
	want("refunded", 0)
}

// refundGauge returns core_refunds{state} as gathered from reg.
func refundGauge(t *testing.T, reg *prometheus.Registry, state string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	sqltest.Must(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "core_refunds" && l.GetName() == "state" && l.GetValue() == state {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("core_refunds{state=%q} not exported", state)
	return 0
}
