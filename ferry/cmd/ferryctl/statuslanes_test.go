package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"finepay/ferry/internal/fixture"
	"finepay/ferry/outbox"
	"finepay/shared/envelope"
)

// status names each outgoing lane's state: stuck (an old message, no acknowledgement), moving
// (a recent message) and idle (all acknowledged), with the oldest message's age and the peer's
// last acknowledgement.
func TestStatusLaneStates(t *testing.T) {
	ctx := context.Background()
	db := fixture.DB(t)
	old := fixture.Bill(t, 1) // created in 2025: older than stuckAfter
	fresh := fixture.Bill(t, 2)
	fresh.CreatedAt = time.Now().UTC().Truncate(time.Microsecond)
	fixture.Put(t, db, 4, old, fresh)
	laneOf := func(e envelope.Envelope) string {
		l, err := envelope.Lane(e.Type, e.Key, 4)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if laneOf(old) == laneOf(fresh) {
		t.Fatal("fixture bills 1 and 2 share a lane; pick others")
	}
	code, out, errs := ferryctl(t, "-db", db.URL, "status")
	if code != 0 {
		t.Fatalf("status %d: %s", code, errs)
	}
	for _, want := range []string{laneOf(old) + " ", "STUCK", "moving", "peer: last acknowledgement never", "1 lanes STUCK"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if err := outbox.Sent(ctx, db, laneOf(old), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.Ack(ctx, db, laneOf(old), 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, out, _ = ferryctl(t, "-db", db.URL, "status")
	if strings.Contains(out, "STUCK") || !strings.Contains(out, "idle") || !strings.Contains(out, "ago)") {
		t.Errorf("after the acknowledgement:\n%s", out)
	}
}
