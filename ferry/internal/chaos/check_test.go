package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"finepay/ferry/internal/fixture"
	"finepay/ferry/sqldb"
)

// The invariant check passes on a clean delivery and names each kind of violation: a message
// missing, one out of lane order, a sequence gap, an outbox not retired.
func TestCheckFindsViolations(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T, inbox [][3]any, outboxLeft bool) (gw, core *sqldb.DB) {
		gw, core = fixture.DB(t), fixture.DB(t)
		for _, db := range []*sqldb.DB{gw, core} {
			if _, err := db.ExecContext(ctx, producedTable); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			if _, err := core.ExecContext(ctx, `INSERT INTO chaos_produced (i, message_id) VALUES ($1, $2)`, i, idOf(i)); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range inbox {
			if _, err := gw.ExecContext(ctx, `INSERT INTO ferry_inbox (message_id, peer, lane, seq, type, msg_key, created_at, envelope, bundle_id, received_at)
				VALUES ($1, 'ferry-intranet', $2, $3, 'bill.published', 'k', $4, $5, 'b', $4)`, r[0], r[1], r[2], time.Now(), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if outboxLeft {
			for _, stmt := range []string{`SELECT setval('"ferry_lane_seq:to-gateway.0"', 3)`,
				`INSERT INTO ferry_lane_acked (lane, acked_seq) VALUES ('to-gateway.0', 2)`} {
				if _, err := core.ExecContext(ctx, stmt); err != nil {
					t.Fatal(err)
				}
			}
		}
		return gw, core
	}
	for _, tc := range []struct {
		name       string
		inbox      [][3]any
		outboxLeft bool
		want       string // "" for no problem
	}{
		{"ok", [][3]any{{idOf(0), "to-gateway.0", 1}, {idOf(1), "to-gateway.0", 2}, {idOf(2), "to-gateway.1", 1}}, false, ""},
		{"fail/missing", [][3]any{{idOf(0), "to-gateway.0", 1}, {idOf(2), "to-gateway.0", 2}}, false, "produced but not delivered"},
		{"fail/out-of-order", [][3]any{{idOf(1), "to-gateway.0", 1}, {idOf(0), "to-gateway.0", 2}, {idOf(2), "to-gateway.1", 1}}, false, "out of order"},
		{"fail/sequence-gap", [][3]any{{idOf(0), "to-gateway.0", 1}, {idOf(1), "to-gateway.0", 3}, {idOf(2), "to-gateway.1", 1}}, false, "sequence 3 follows 1"},
		{"fail/not-retired", [][3]any{{idOf(0), "to-gateway.0", 1}, {idOf(1), "to-gateway.0", 2}, {idOf(2), "to-gateway.1", 1}}, true, "not acknowledged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw, core := setup(t, tc.inbox, tc.outboxLeft)
			_, problems, err := Check(ctx, gw, core)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(problems, "\n")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("problems:\n%s\nwant %q", got, tc.want)
			}
		})
	}
}

func idOf(i int) string {
	e, err := Message(Core, int64(i))
	if err != nil {
		panic(err)
	}
	return e.ID
}
