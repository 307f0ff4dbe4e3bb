package relay_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/outbox"
	"finepay/ferry/relay"
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
		return count(t, s.gw, `SELECT count(*) FROM ferry_inbox`) == 5 && count(t, s.core, `SELECT count(*) FROM ferry_outbox`) == 0
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
