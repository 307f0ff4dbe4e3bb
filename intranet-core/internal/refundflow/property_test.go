package refundflow_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/refund"
	"finepay/shared/envelope"
)

// TestRefundPropertyRandomInterleavings runs random interleavings of payment confirmations,
// duplicate confirmations (R5 refunds them by itself), refund instructions (R1, repeated and
// concurrent with others), the gateway's refund results (every status, repeated, out of order)
// and repeated messages, with the durable tasks run in between, over a few bills. At the end,
// after every task ran and every refund the channel holds was answered, it checks:
//   - money refunded never exceeds money paid, for every payment;
//   - each paid bill has exactly one receipt;
//   - each bill whose paying payment was refunded has exactly one red receipt, others none;
//   - each duplicate payment is refunded in full, unless the channel refused its refund;
//   - every refund is final and its history is an allowed chain ending in its state.
func TestRefundPropertyRandomInterleavings(t *testing.T) {
	for seed := range 4 {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			interleave(t, uint64(seed))
		})
	}
}

type world struct {
	t       *testing.T
	e       *coretest.Env
	rng     *rand.Rand
	bills   []bill.View
	sent    []envelope.Envelope // every message the gateway sent, for replays
	counter int
}

func interleave(t *testing.T, seed uint64) {
	db := sqltest.Open(t, sqldb.Postgres)
	w := &world{t: t, e: coretest.New(t, db, coretest.Options{}), rng: rand.New(rand.NewPCG(seed, 99))}
	for i := range 3 {
		req := coretest.ValidRequest()
		req.DecisionNo = fmt.Sprintf("23010210001234%02d", i)
		req.ViolationSerial = fmt.Sprintf("23010210000000%02d", i)
		w.bills = append(w.bills, w.e.CreateBill(t, req))
	}
	for range 80 {
		switch w.rng.IntN(6) {
		case 0:
			w.confirm()
		case 1:
			w.replay()
		case 2:
			w.instruct()
		case 3:
			w.runTasks()
		case 4:
			w.channelResult(false)
		case 5:
			w.replay()
		}
	}
	// Drain: every task runs, every refund the channel holds succeeds.
	for range 12 {
		w.runTasks()
		w.channelResult(true)
	}
	w.check()
}

func (w *world) deliver(env envelope.Envelope) {
	w.sent = append(w.sent, env)
	w.e.Deliver(w.t, env)
}

// confirm is a new channel payment of a random bill: the first pays it, later ones are duplicates.
func (w *world) confirm() {
	w.counter++
	v := w.bills[w.rng.IntN(len(w.bills))]
	w.deliver(w.e.Confirmation(w.t, v, fmt.Sprintf("FPP%04d", w.counter), fmt.Sprintf("4200%06d", w.counter)))
}

// replay delivers a message the gateway sent before, again.
func (w *world) replay() {
	if len(w.sent) == 0 {
		return
	}
	w.e.Deliver(w.t, w.sent[w.rng.IntN(len(w.sent))])
}

// instruct is the 12123 platform asking to refund part or all of a bill's paying payment; the
// instruction IDs repeat, so some instructions are the same refund again.
func (w *world) instruct() {
	ctx := context.Background()
	v := w.bills[w.rng.IntN(len(w.bills))]
	var pid, amount int64
	err := w.e.DB.QueryRowContext(ctx, `SELECT id, amount FROM payments WHERE bill_no = $1 AND result = 'recorded'`, v.BillNo).Scan(&pid, &amount)
	if errors.Is(err, sql.ErrNoRows) {
		return
	}
	sqltest.Must(w.t, err)
	req := refund.Request{PaymentID: pid, Route: refund.R1, InstructionID: fmt.Sprintf("isp:p:%d", w.rng.IntN(6)),
		Amount: 1 + w.rng.Int64N(amount), Reason: "instructed", RequestedBy: "partner:isp12123"}
	err = w.e.DB.Tx(ctx, func(tx *sql.Tx) error {
		_, _, err := w.e.Refunds.Start(ctx, tx, req)
		return err
	})
	if err != nil && !errors.Is(err, refund.ErrInFlight) && !errors.Is(err, refund.ErrExceedsPaid) {
		w.t.Fatalf("refund instruction: %v", err)
	}
}

func (w *world) runTasks() {
	_, err := w.e.Runner.RunDue(context.Background())
	sqltest.Must(w.t, err)
	w.e.Clock.Advance(11 * time.Minute)
}

// channelResult is the gateway reporting what the channel says of a refund it was instructed to
// make: any status at random, or (final) success for every refund still at the channel.
func (w *world) channelResult(final bool) {
	rows, err := w.e.DB.QueryContext(context.Background(), `SELECT refund_no, amount FROM refunds WHERE state IN ('sent', 'unknown') ORDER BY id`)
	sqltest.Must(w.t, err)
	type at struct {
		no     string
		amount int64
	}
	var open []at
	for rows.Next() {
		var a at
		sqltest.Must(w.t, rows.Scan(&a.no, &a.amount))
		open = append(open, a)
	}
	sqltest.Must(w.t, rows.Err())
	rows.Close()
	if len(open) == 0 {
		return
	}
	targets := open
	if !final {
		targets = []at{open[w.rng.IntN(len(open))]}
	}
	for _, a := range targets {
		status := envelope.RefundSuccess
		if !final {
			status = []string{envelope.RefundProcessing, envelope.RefundSuccess, envelope.RefundFailed, envelope.RefundUnknown}[w.rng.IntN(4)]
		}
		res := &envelope.RefundResult{RefundNo: a.no, Channel: "wechat", Status: status, At: w.e.Clock.Now(), Detail: "channel"}
		if status == envelope.RefundSuccess {
			res.ChannelRefundNo, res.RefundedAmount = "wxr"+a.no, a.amount
		}
		env, err := envelope.New(envelope.RefundResultID(a.no, status), a.no, w.e.Clock.Now(), res)
		sqltest.Must(w.t, err)
		w.deliver(env)
	}
}

func (w *world) check() {
	t, ctx, db := w.t, context.Background(), w.e.DB
	count := func(q string, args ...any) int {
		var n int
		sqltest.Must(t, db.QueryRowContext(ctx, q, args...).Scan(&n))
		return n
	}
	rows, err := db.QueryContext(ctx, `SELECT p.id, p.bill_no, p.amount, p.result,
		COALESCE((SELECT SUM(r.amount) FROM refunds r WHERE r.payment_id = p.id AND r.state = 'refunded'), 0)
		FROM payments p ORDER BY p.id`)
	sqltest.Must(t, err)
	defer rows.Close()
	payments, duplicates := 0, 0
	for rows.Next() {
		var id, paid, refunded int64
		var billNo, result string
		sqltest.Must(t, rows.Scan(&id, &billNo, &paid, &result, &refunded))
		payments++
		if refunded > paid {
			t.Errorf("payment %d: refunded %d of %d paid", id, refunded, paid)
		}
		switch result {
		case "recorded":
			if n := count(`SELECT count(*) FROM receipts WHERE bill_no = $1`, billNo); n != 1 {
				t.Errorf("bill %s: %d receipts, want 1", billNo, n)
			}
			want := 0
			if refunded > 0 {
				want = 1
			}
			if n := count(`SELECT count(*) FROM red_receipts WHERE bill_no = $1`, billNo); n != want {
				t.Errorf("bill %s: %d red receipts, want %d (refunded %d)", billNo, n, want, refunded)
			}
		case "duplicate":
			duplicates++
			// Refunded in full, or the channel refused the refund (failed, left to an operator).
			failed := count(`SELECT count(*) FROM refunds WHERE payment_id = $1 AND state = 'failed'`, id)
			if refunded != paid && (refunded != 0 || failed == 0) {
				t.Errorf("duplicate payment %d: refunded %d of %d, %d failed refunds", id, refunded, paid, failed)
			}
		}
	}
	sqltest.Must(t, rows.Err())
	refunds, err := db.QueryContext(ctx, `SELECT refund_no, state FROM refunds`)
	sqltest.Must(t, err)
	defer refunds.Close()
	n := 0
	for refunds.Next() {
		var no, state string
		sqltest.Must(t, refunds.Scan(&no, &state))
		n++
		if !refund.State(state).Final() {
			t.Errorf("refund %s left %s", no, state)
		}
		h, err := refund.History(ctx, db, no)
		sqltest.Must(t, err)
		if h[len(h)-1].To != refund.State(state) {
			t.Errorf("refund %s: state %s, history ends at %s", no, state, h[len(h)-1].To)
		}
		for i := 1; i < len(h); i++ {
			if h[i].From != h[i-1].To || !refund.Allowed(h[i].From, h[i].To) {
				t.Errorf("refund %s: transition %s→%s breaks the chain", no, h[i].From, h[i].To)
			}
		}
	}
	reds := count(`SELECT count(*) FROM red_receipts`)
	t.Logf("%d payments (%d duplicates), %d refunds, %d red receipts, %d messages", payments, duplicates, n, reds, len(w.sent))
}
