package relay

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/outbox"
	"finepay/shared/envelope"
)

// Lane gaps. On PostgreSQL a producer takes its lane's next number from the lane's sequence
// without a lock (package outbox), so numbers may commit out of order, and a number whose
// producer rolled back or died never commits at all. The sender reads a lane only as far as its
// numbers are contiguous; when the next one has been missing for GapGrace while a later one is
// committed (or was handed out), the sender closes the gap: it inserts a filler message
// (envelope.TypeLaneGap) at each missing number, in one transaction with its audit record
// (lane.gap). The insert skips numbers whose row exists and waits for a producer still
// committing one, so a row that commits is never replaced; a producer that took its number
// GapGrace or more before inserting its row (a statement stalled that long between the two) finds
// the number taken and fails, its transaction rolled back, and is told so (outbox.ErrNumberTaken):
// fillers stay in the outbox for outbox.KeepFillers after they are acknowledged, so that their
// rows keep holding the numbers. Only numbers that were handed out when the first missing one
// was first seen are filled: each filled number has been missing for the whole grace. The
// receiving inbox stores fillers as consumed: services never see them.

// LaneGap is the audit event of a gap closed with fillers.
const LaneGap = "lane.gap"

// gapMarks remembers, per lane, the first missing number seen, since when, and the last number
// handed out then.
type gapMarks struct {
	mu sync.Mutex
	m  map[string]gapMark
}

type gapMark struct {
	seq   int64
	since time.Time
	last  int64
}

// seen records that lane's numbers from seq to last are missing or handed out at now, and
// returns since when seq has been missing and the last number handed out then.
func (g *gapMarks) seen(lane string, seq, last int64, now time.Time) (time.Time, int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]gapMark{}
	}
	m, ok := g.m[lane]
	if !ok || m.seq != seq {
		m = gapMark{seq, now, last}
		g.m[lane] = m
	}
	return m.since, m.last
}

// clear forgets lane's missing number and reports whether there was one.
func (g *gapMarks) clear(lane string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.m[lane]
	delete(g.m, lane)
	return ok
}

// gapClosed forgets lane's missing number, which has arrived or was filled.
func (r *Relay) gapClosed(lane string) {
	if r.gaps.clear(lane) {
		r.m.GapWaiting.WithLabelValues(lane).Set(0)
	}
}

// closeGap handles rows read after after that do not start at after+1 (rows may be empty; last is
// the lane's last number handed out as last seen). It returns true when it filled the missing
// numbers, so that the lane should be read again; false when they may still commit (the relay
// is woken when GapGrace is up) or nothing is missing.
func (r *Relay) closeGap(ctx context.Context, lane string, after int64, rows []outbox.Row, last int64) (bool, error) {
	end := last
	if len(rows) > 0 {
		end = rows[0].Seq - 1
	}
	if end <= after {
		return false, nil
	}
	now := r.now()
	since, then := r.gaps.seen(lane, after+1, max(last, end), now)
	if wait := r.cfg.GapGrace - now.Sub(since); wait > 0 {
		// Look again after a poll (the number may commit any moment) or when the grace is up.
		r.m.GapWaiting.WithLabelValues(lane).Set(1)
		time.AfterFunc(min(wait, r.cfg.Poll), r.watch.notify)
		return false, nil
	}
	// A number handed out after the first sighting has not been missing for the grace.
	end = min(end, then, after+int64(r.cfg.Limits.MaxMessages))
	var filled []int64
	err := r.cfg.Audit.Commit(ctx, func(ctx context.Context, tx *sql.Tx) ([]audit.Record, error) {
		filled = filled[:0]
		var acked int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT acked_seq FROM ferry_lane_acked WHERE lane = $1), 0)`, lane).Scan(&acked); err != nil {
			return nil, err
		}
		if after < acked {
			return nil, fmt.Errorf("%w: lane %s: %d is acknowledged, %d was asked for", errRetired, lane, acked, after+1)
		}
		if _, err := outbox.PruneFillers(ctx, tx, lane, acked, now.Add(-outbox.KeepFillers)); err != nil {
			return nil, err
		}
		for seq := after + 1; seq <= end; seq++ {
			env, err := envelope.NewLaneGap(lane, seq, now)
			if err != nil {
				return nil, err
			}
			raw, err := env.Marshal()
			if err != nil {
				return nil, err
			}
			// Waits for a producer still committing this number; skips it when its row is there.
			res, err := tx.ExecContext(ctx, `INSERT INTO ferry_outbox (lane, seq, message_id, type, msg_key, created_at, envelope)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`, lane, seq, env.ID, env.Type, env.Key, env.CreatedAt, raw)
			if err != nil {
				return nil, err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				filled = append(filled, seq)
			}
		}
		if len(filled) == 0 {
			return nil, nil
		}
		return []audit.Record{{Event: LaneGap, Result: audit.OK, Lane: lane, FirstSeq: filled[0], LastSeq: filled[len(filled)-1],
			Reason: fmt.Sprintf("%d numbers handed out but never committed (missing for %s) filled", len(filled), now.Sub(since).Round(time.Millisecond))}}, nil
	})
	if errors.Is(err, errRetired) {
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("%w: lane %s: filling numbers %d..%d: %w", ErrUnavailable, lane, after+1, end, err)
	}
	r.gapClosed(lane)
	if len(filled) > 0 {
		r.m.GapsFilled.WithLabelValues(lane).Add(float64(len(filled)))
		r.log.Warn("relay: lane gap filled", "lane", lane, "first", filled[0], "last", filled[len(filled)-1], "count", len(filled))
	}
	return true, nil
}
