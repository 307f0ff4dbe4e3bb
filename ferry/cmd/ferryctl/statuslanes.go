package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"time"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
)

// stuckAfter: an outgoing lane whose oldest unacknowledged message is older than this, with no
// acknowledgement from the peer for as long, is reported stuck (see deploy/runbook-ferry.md).
const stuckAfter = 2 * time.Minute

// laneOut is an outgoing lane as status reports it.
type laneOut struct {
	outbox.Lane           // the lane's name is l.Lane.Lane
	oldest      time.Time // creation time of the oldest unacknowledged message; zero when none
	ackedAt     time.Time // when the peer last acknowledged a bundle of the lane; zero when never
}

// state is idle (nothing to send), moving (sending, acknowledged recently) or stuck.
func (l laneOut) state(now time.Time) string {
	switch {
	case l.Backlog() == 0:
		return "idle"
	case !l.oldest.IsZero() && now.Sub(l.oldest) > stuckAfter && (l.ackedAt.IsZero() || now.Sub(l.ackedAt) > stuckAfter):
		return "STUCK"
	}
	return "moving"
}

func lanesOut(ctx context.Context, db *sqldb.DB) ([]laneOut, error) {
	lanes, err := outbox.Lanes(ctx, db)
	if err != nil {
		return nil, err
	}
	acked := map[string]time.Time{}
	err = eachRow(ctx, db, `SELECT lane, acked_at FROM ferry_lane_acked`, func(rows *sql.Rows) error {
		var lane string
		var at sql.NullTime
		if err := rows.Scan(&lane, &at); err != nil {
			return err
		}
		if at.Valid {
			acked[lane] = at.Time.UTC()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]laneOut, len(lanes))
	for i, l := range lanes {
		out[i] = laneOut{Lane: l, ackedAt: acked[l.Lane]}
		if l.Backlog() > 0 {
			if out[i].oldest, _, err = outbox.Oldest(ctx, db, l.Lane, l.AckedSeq); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// printLanesOut prints the outgoing lanes: sequences, backlog, the age of the oldest message not
// acknowledged, the last acknowledgement from the peer and the lane's state.
func printLanesOut(w io.Writer, lanes []laneOut, now time.Time) {
	fmt.Fprintln(w, "LANE OUT\tLAST\tACKED\tBACKLOG\tOLDEST UNACKED\tLAST ACK FROM PEER\tSTATE")
	for _, l := range lanes {
		oldest := "-"
		if !l.oldest.IsZero() {
			oldest = age(now, l.oldest)
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", l.Lane.Lane, l.LastSeq, l.AckedSeq, l.Backlog(), oldest, when(now, l.ackedAt), l.state(now))
	}
}

// printPeer sums up the peer's state: when it last acknowledged a bundle and last sent one.
func printPeer(out io.Writer, lanes []laneOut, lastIn time.Time, now time.Time) {
	var lastAck time.Time
	stuck := 0
	for _, l := range lanes {
		if l.ackedAt.After(lastAck) {
			lastAck = l.ackedAt
		}
		if l.state(now) == "STUCK" {
			stuck++
		}
	}
	fmt.Fprintf(out, "\npeer: last acknowledgement %s; last bundle received %s", when(now, lastAck), when(now, lastIn))
	if stuck > 0 {
		fmt.Fprintf(out, "; %d lanes STUCK (oldest message older than %s, no acknowledgement for as long: see deploy/runbook-ferry.md)", stuck, stuckAfter)
	}
	fmt.Fprintln(out)
}

func when(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return stamp(t) + " (" + age(now, t) + " ago)"
}

func age(now, t time.Time) string {
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < 48*time.Hour:
		return d.Round(time.Second).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
