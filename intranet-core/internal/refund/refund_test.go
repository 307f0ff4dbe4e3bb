package refund_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/coredb"
	"finepay/intranet-core/internal/refund"
)

func setup(t *testing.T, db *sqldb.DB) *refund.Store {
	t.Helper()
	sqltest.Must(t, coredb.Migrate(context.Background(), db))
	return refund.NewStore(db, nil)
}

// pay inserts a recorded payment of amount and returns its ID.
func pay(t *testing.T, db *sqldb.DB, orderNo string, amount int64) int64 {
	t.Helper()
	var id int64
	now := time.Now().UTC()
	err := db.QueryRowContext(context.Background(), `INSERT INTO payments (message_id, bill_no, violation_serial, order_no, channel,
		channel_trade_no, amount, fine, late_fee, paid_at, notification_id, result, recorded_at)
		VALUES ($1, $2, $3, $4, 'wechat', $5, $6, $6, 0, $7, 'n', 'recorded', $7) RETURNING id`,
		"pay:"+orderNo, "B"+orderNo, "V"+orderNo, orderNo, "T"+orderNo, amount, now).Scan(&id)
	sqltest.Must(t, err)
	return id
}

func inTx[T any](t *testing.T, db *sqldb.DB, fn func(tx *sql.Tx) (T, error)) (T, error) {
	t.Helper()
	var out T
	err := db.Tx(context.Background(), func(tx *sql.Tx) error {
		var err error
		out, err = fn(tx)
		return err
	})
	return out, err
}

func TestRefundStateMachine(t *testing.T) {
	for from, tos := range map[refund.State][]refund.State{
		refund.Requested: {refund.Reviewed, refund.Applied, refund.Rejected},
		refund.Approved:  {refund.Sent, refund.Unknown, refund.Refunded, refund.Failed},
		refund.Unknown:   {refund.Sent, refund.Refunded, refund.Failed},
	} {
		for _, to := range tos {
			if !refund.Allowed(from, to) {
				t.Errorf("%s → %s refused", from, to)
			}
		}
	}
	for _, bad := range [][2]refund.State{
		{refund.Requested, refund.Sent}, {refund.Applied, refund.Sent}, {refund.Refunded, refund.Failed},
		{refund.Failed, refund.Sent}, {refund.Rejected, refund.Applied}, {refund.Sent, refund.Approved},
	} {
		if refund.Allowed(bad[0], bad[1]) {
			t.Errorf("%s → %s allowed", bad[0], bad[1])
		}
	}
	for _, s := range []refund.State{refund.Refunded, refund.Failed, refund.Rejected} {
		if !s.Final() {
			t.Errorf("%s not final", s)
		}
	}
}

func TestRefundNumberIsStableAndNarrow(t *testing.T) {
	if a, b := refund.Number("FP20261127-0001", 1), refund.Number("FP20261127-0001", 1); a != b || a != "RFFP202611270001R001" {
		t.Fatalf("number %q %q", a, b)
	}
	long := refund.Number("FP2026112700000000000000000000000000000000001", 12)
	if len(long) != 40 || long == refund.Number("FP2026112700000000000000000000000000000000002", 12) {
		t.Fatalf("long order number gives %q (%d)", long, len(long))
	}
}

func TestR2RefundLifecycle(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := setup(t, db)
		ctx := context.Background()
		pid := pay(t, db, "FP1", 20000)
		req := refund.Request{PaymentID: pid, Route: refund.R2, InstructionID: "win-1", Amount: 20000, Reason: "paid twice", RequestedBy: "console:alice"}
		ref, err := inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) { r, _, err := s.Create(ctx, tx, req); return r, err })
		sqltest.Must(t, err)
		if ref.State != refund.Requested || ref.RefundNo != "RFFP1R001" || ref.Channel != "wechat" {
			t.Fatalf("created %+v", ref)
		}
		// The same instruction again is the same refund; another one is refused while this one flies.
		again, err := inTx(t, db, func(tx *sql.Tx) (bool, error) { _, c, err := s.Create(ctx, tx, req); return c, err })
		if err != nil || again {
			t.Fatalf("repeat instruction: created=%v err=%v", again, err)
		}
		other := req
		other.InstructionID = "win-2"
		if _, err := inTx(t, db, func(tx *sql.Tx) (bool, error) { _, c, err := s.Create(ctx, tx, other); return c, err }); !errors.Is(err, refund.ErrInFlight) {
			t.Fatalf("second refund in flight: %v", err)
		}
		// The requester cannot review their own request; a skipped step is refused.
		if _, err := inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) {
			return s.Review(ctx, tx, ref.RefundNo, "console:alice", true, "")
		}); !errors.Is(err, refund.ErrSameReviewer) {
			t.Fatalf("self review: %v", err)
		}
		if _, err := inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) {
			return s.Move(ctx, tx, ref.RefundNo, refund.Sent, "gateway", "", "")
		}); !errors.Is(err, refund.ErrTransition) {
			t.Fatalf("requested → sent: %v", err)
		}
		steps := []struct {
			to    refund.State
			actor string
		}{{refund.Applied, "core"}, {refund.Approved, "nontax"}, {refund.Unknown, "gateway"}, {refund.Sent, "gateway"}, {refund.Refunded, "gateway"}}
		_, err = inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) {
			return s.Review(ctx, tx, ref.RefundNo, "console:bob", true, "ok")
		})
		sqltest.Must(t, err)
		for _, st := range steps {
			_, err := inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) {
				return s.Move(ctx, tx, ref.RefundNo, st.to, st.actor, "", "wx-refund-1")
			})
			sqltest.Must(t, err)
		}
		// A repeated final message changes nothing; leaving a final state is refused.
		_, err = inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) {
			return s.Move(ctx, tx, ref.RefundNo, refund.Refunded, "gateway", "", "")
		})
		sqltest.Must(t, err)
		if _, err := inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) {
			return s.Move(ctx, tx, ref.RefundNo, refund.Failed, "gateway", "", "")
		}); !errors.Is(err, refund.ErrTransition) {
			t.Fatalf("refunded → failed: %v", err)
		}
		h, err := refund.History(ctx, db, ref.RefundNo)
		sqltest.Must(t, err)
		want := []string{"→requested:console:alice", "requested→reviewed:console:bob", "reviewed→applied:core", "applied→approved:nontax",
			"approved→unknown:gateway", "unknown→sent:gateway", "sent→refunded:gateway"}
		if len(h) != len(want) {
			t.Fatalf("history %+v", h)
		}
		for i, tr := range h {
			if got := fmt.Sprintf("%s→%s:%s", tr.From, tr.To, tr.Actor); got != want[i] {
				t.Errorf("transition %d: %s, want %s", i, got, want[i])
			}
		}
		got, err := refund.Get(ctx, db, ref.RefundNo)
		sqltest.Must(t, err)
		if got.State != refund.Refunded || got.ReviewedBy != "console:bob" || got.ChannelRef != "wx-refund-1" {
			t.Fatalf("final %+v", got)
		}
		// Everything was refunded: nothing more can be.
		if _, err := inTx(t, db, func(tx *sql.Tx) (bool, error) { _, c, err := s.Create(ctx, tx, other); return c, err }); !errors.Is(err, refund.ErrExceedsPaid) {
			t.Fatalf("refund beyond paid: %v", err)
		}
	})
}

func TestRefundRejectedReviewEndsCleanly(t *testing.T) {
	db := sqltest.Open(t, sqldb.Postgres)
	s := setup(t, db)
	ctx := context.Background()
	pid := pay(t, db, "FP2", 5000)
	ref, err := inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) {
		r, _, err := s.Create(ctx, tx, refund.Request{PaymentID: pid, Route: refund.R3, InstructionID: "w-9", Amount: 5000, Reason: "x", RequestedBy: "console:alice"})
		return r, err
	})
	sqltest.Must(t, err)
	r, err := inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) {
		return s.Review(ctx, tx, ref.RefundNo, "console:bob", false, "not eligible")
	})
	sqltest.Must(t, err)
	if r.State != refund.Rejected {
		t.Fatalf("state %s", r.State)
	}
	// Rejected is final, so a new refund of the payment may be asked for.
	_, err = inTx(t, db, func(tx *sql.Tx) (refund.Refund, error) {
		r, _, err := s.Create(ctx, tx, refund.Request{PaymentID: pid, Route: refund.R3, InstructionID: "w-10", Amount: 5000, Reason: "x", RequestedBy: "console:alice"})
		return r, err
	})
	sqltest.Must(t, err)
}

// TestRefundNeverExceedsPaid runs random interleavings of refund requests (full and partial,
// repeated instructions) and state moves from concurrent workers over a few payments, and checks
// that what is refunded or in flight never exceeds what was paid, and that each payment has at
// most one refund in flight.
func TestRefundNeverExceedsPaid(t *testing.T) {
	db := sqltest.Open(t, sqldb.Postgres)
	s := setup(t, db)
	ctx := context.Background()
	const payments = 4
	ids := make([]int64, payments)
	for i := range ids {
		ids[i] = pay(t, db, fmt.Sprintf("FPX%d", i), 10000)
	}
	routes := []refund.Route{refund.R1, refund.R5}
	path := []refund.State{refund.Applied, refund.Approved, refund.Sent, refund.Unknown, refund.Refunded, refund.Failed, refund.Rejected}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range 60 {
				pid := ids[rng.IntN(payments)]
				if rng.IntN(3) == 0 {
					_ = db.Tx(ctx, func(tx *sql.Tx) error {
						_, _, err := s.Create(ctx, tx, refund.Request{PaymentID: pid, Route: routes[rng.IntN(2)],
							InstructionID: fmt.Sprintf("i-%d", rng.IntN(12)), Amount: int64(1 + rng.IntN(6000)), Reason: "p", RequestedBy: "test"})
						return err
					})
					continue
				}
				refs, err := refund.ListByPayment(ctx, db, pid)
				if err != nil || len(refs) == 0 {
					continue
				}
				ref := refs[rng.IntN(len(refs))]
				to := path[rng.IntN(len(path))]
				_ = db.Tx(ctx, func(tx *sql.Tx) error {
					_, err := s.Move(ctx, tx, ref.RefundNo, to, "test", "", "")
					return err
				})
			}
		})
	}
	wg.Wait()
	for _, pid := range ids {
		refs, err := refund.ListByPayment(ctx, db, pid)
		sqltest.Must(t, err)
		var refunded, flying int64
		var inFlight int
		for _, r := range refs {
			switch {
			case r.State == refund.Refunded:
				refunded += r.Amount
			case !r.State.Final():
				flying += r.Amount
				inFlight++
			}
		}
		if refunded+flying > 10000 || inFlight > 1 {
			t.Errorf("payment %d: refunded %d of 10000, %d in flight (%d)", pid, refunded, inFlight, flying)
		}
		for _, r := range refs {
			h, err := refund.History(ctx, db, r.RefundNo)
			sqltest.Must(t, err)
			if h[len(h)-1].To != r.State {
				t.Errorf("%s: state %s, last transition to %s", r.RefundNo, r.State, h[len(h)-1].To)
			}
			for i := 1; i < len(h); i++ {
				if h[i].From != h[i-1].To || !refund.Allowed(h[i].From, h[i].To) {
					t.Errorf("%s: transition %d %s→%s breaks the chain", r.RefundNo, i, h[i].From, h[i].To)
				}
			}
		}
	}
}
