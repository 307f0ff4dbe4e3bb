package relay_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"finepay/ferry/audit"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/outbox"
	"finepay/ferry/relay"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
)

// On PostgreSQL a producer takes its lane number without a lock, so a number can be missing for
// two reasons: its producer rolled back (it never commits) or is still committing. The sender
// closes the first with a filler after the grace, audited and stored consumed by the receiver,
// and waits for the second, whose message then arrives in its place and in order.
func TestLaneGapOfARolledBackProducerIsFilledAndOneStillCommittingIsAwaited(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	ob := outbox.New(1)
	fixture.Put(t, s.core, 1, fixture.Bill(t, 0)) // seq 1
	errBusiness := errors.New("business change failed")
	err := s.core.Tx(ctx, func(tx *sql.Tx) error { // seq 2, rolled back
		if _, err := ob.Put(ctx, tx, fixture.Bill(t, 1)); err != nil {
			return err
		}
		return errBusiness
	})
	if !errors.Is(err, errBusiness) {
		t.Fatal(err)
	}
	fixture.Put(t, s.core, 1, fixture.Bill(t, 2)) // seq 3
	slow, err := s.core.BeginTx(ctx, nil)         // seq 4, committed only later
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback()
	if p, err := ob.Put(ctx, slow, fixture.Bill(t, 3)); err != nil || p.Seq != 4 {
		t.Fatalf("slow producer: %+v %v", p, err)
	}
	fixture.Put(t, s.core, 1, fixture.Bill(t, 4)) // seq 5

	run(t, s, &lossy{dmz: s.dmz})
	fixture.Eventually(t, 30*time.Second, "the lane delivered up to the number still committing", func() bool {
		return count(t, s.gw, `SELECT count(*) FROM ferry_inbox`) == 3
	})
	if n := count(t, s.gw, `SELECT count(*) FROM ferry_inbox WHERE seq > 3`); n != 0 {
		t.Fatalf("%d messages after the number still committing were delivered before it", n)
	}
	if err := slow.Commit(); err != nil {
		t.Fatal(err)
	}
	fixture.Eventually(t, 30*time.Second, "every number delivered and acknowledged", func() bool {
		return count(t, s.gw, `SELECT count(*) FROM ferry_inbox`) == 5 && count(t, s.core, `SELECT count(*) FROM ferry_outbox WHERE type <> '`+envelope.TypeLaneGap+`'`) == 0
	})
	want := map[int64]string{1: fixture.Bill(t, 0).ID, 3: fixture.Bill(t, 2).ID, 4: fixture.Bill(t, 3).ID, 5: fixture.Bill(t, 4).ID}
	rows, err := s.gw.QueryContext(ctx, `SELECT seq, message_id, type, consumed_at IS NOT NULL FROM ferry_inbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var id, typ string
		var consumed bool
		if err := rows.Scan(&seq, &id, &typ, &consumed); err != nil {
			t.Fatal(err)
		}
		switch {
		case seq == 2:
			if typ != envelope.TypeLaneGap || !consumed {
				t.Errorf("seq 2 is %s %s (consumed %t), want a consumed filler", typ, id, consumed)
			}
		case want[seq] != id || consumed:
			t.Errorf("seq %d is %s (consumed %t), want %s waiting for its service", seq, id, consumed, want[seq])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	recs, err := audit.Recent(ctx, s.core, 100)
	if err != nil {
		t.Fatal(err)
	}
	gaps := 0
	for _, r := range recs {
		if r.Record.Event == relay.LaneGap {
			gaps++
			if r.Record.Lane != "to-gateway.0" || r.Record.FirstSeq != 2 || r.Record.LastSeq != 2 {
				t.Errorf("gap record %+v, want to-gateway.0 2..2", r.Record)
			}
		}
	}
	if gaps != 1 {
		t.Fatalf("%d lane.gap records, want 1", gaps)
	}
}

// stallProducer makes the insert of the outbox row of message id wait, after its statement took
// the lane's number, until the returned function is called: a producer's statement stalled
// between its number and its row.
func stallProducer(t *testing.T, db *sqldb.DB, id string) (release func()) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`CREATE FUNCTION test_stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
			IF NEW.message_id = '` + id + `' THEN PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242); END IF;
			RETURN NEW; END $$`,
		`CREATE TRIGGER test_stall BEFORE INSERT ON ferry_outbox FOR EACH ROW EXECUTE FUNCTION test_stall()`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(4242)`); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			conn.ExecContext(ctx, `SELECT pg_advisory_unlock(4242)`)
			conn.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// A producer whose statement took its number and stalled past the grace finds, when its row
// arrives, that the number was closed, delivered and acknowledged as a gap: it is told
// (ErrNumberTaken) and its transaction rolls back, rather than committing a message below the
// acknowledged sequence that would never be sent.
func TestLaneGapStalledProducerIsToldItsNumberWasClosed(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	ob := outbox.New(1)
	runWithOneDelivered(t, s)
	slow := fixture.Bill(t, 9)
	release := stallProducer(t, s.core, slow.ID)
	done := make(chan error, 1)
	go func() { // seq 2: takes its number, stalls before its row
		done <- s.core.Tx(ctx, func(tx *sql.Tx) error { _, err := ob.Put(ctx, tx, slow); return err })
	}()
	fixture.Eventually(t, 30*time.Second, "number 2 closed, delivered and acknowledged", func() bool {
		return count(t, s.core, `SELECT count(*) FROM ferry_lane_acked WHERE acked_seq >= 2`) == 1
	})
	release()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the producer did not return")
	}
	if !errors.Is(err, outbox.ErrNumberTaken) {
		t.Fatalf("the stalled producer got %v, want ErrNumberTaken", err)
	}
	if n := count(t, s.core, `SELECT count(*) FROM ferry_outbox WHERE message_id = '`+slow.ID+`'`); n != 0 {
		t.Fatalf("the stalled producer's row was committed (%d) below the acknowledged sequence", n)
	}
	// Told, it queues the message again, under a new number, and it is delivered.
	fixture.Put(t, s.core, 1, slow)
	fixture.Eventually(t, 30*time.Second, "the message queued again delivered", func() bool {
		return count(t, s.gw, `SELECT count(*) FROM ferry_inbox WHERE message_id = '`+slow.ID+`'`) == 1
	})
}

// Only numbers that have been missing for the whole grace are closed: a producer that took a
// later number a moment before the grace of an earlier one ran out keeps it.
func TestLaneGapClosesOnlyNumbersMissingForTheGrace(t *testing.T) {
	m := relay.NewMetrics(nil)
	s := setupWith(t, func(c *relay.Config) { c.Metrics = m })
	ctx := context.Background()
	ob := outbox.New(1)
	runWithOneDelivered(t, s)
	slow := fixture.Bill(t, 9)
	release := stallProducer(t, s.core, slow.ID)
	errBusiness := errors.New("business change failed")
	if err := s.core.Tx(ctx, func(tx *sql.Tx) error { // seq 2, rolled back
		if _, err := ob.Put(ctx, tx, fixture.Bill(t, 1)); err != nil {
			return err
		}
		return errBusiness
	}); !errors.Is(err, errBusiness) {
		t.Fatal(err)
	}
	// Wait until the sender has seen number 2 missing, then take number 3 and stall.
	fixture.Eventually(t, 30*time.Second, "the sender waiting on number 2", func() bool {
		return testutil.ToFloat64(m.GapWaiting.WithLabelValues("to-gateway.0")) == 1
	})
	done := make(chan error, 1)
	go func() {
		done <- s.core.Tx(ctx, func(tx *sql.Tx) error { _, err := ob.PutBatch(ctx, tx, []envelope.Envelope{slow}); return err })
	}()
	fixture.Eventually(t, 30*time.Second, "number 2 closed", func() bool {
		return count(t, s.core, `SELECT count(*) FROM ferry_audit WHERE event = '`+relay.LaneGap+`'`) == 1
	})
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the producer of number 3 lost it: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the producer did not return")
	}
	fixture.Eventually(t, 30*time.Second, "number 3 delivered", func() bool {
		return count(t, s.gw, `SELECT count(*) FROM ferry_inbox WHERE seq = 3 AND message_id = '`+slow.ID+`'`) == 1
	})
	if n := count(t, s.core, `SELECT count(*) FROM ferry_audit WHERE event = '`+relay.LaneGap+`' AND first_seq = 2 AND last_seq = 2`); n != 1 {
		t.Fatalf("the gap closed was not number 2 alone")
	}
	if g := testutil.ToFloat64(m.GapWaiting.WithLabelValues("to-gateway.0")); g != 0 {
		t.Fatalf("ferry_lane_gap_waiting is %v after the gap closed", g)
	}
}

// runWithOneDelivered queues one bill (to-gateway.0, seq 1), runs both relays and waits for its
// delivery.
func runWithOneDelivered(t *testing.T, s sides) {
	t.Helper()
	fixture.Put(t, s.core, 1, fixture.Bill(t, 0))
	run(t, s, &lossy{dmz: s.dmz})
	fixture.Eventually(t, 30*time.Second, "seq 1 delivered", func() bool {
		return count(t, s.gw, `SELECT count(*) FROM ferry_inbox`) == 1
	})
}
