package chaos

import (
	"context"
	"fmt"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
)

// Check checks the invariants on the two databases after a run: for each direction, every
// message the producer committed is in the receiver's inbox exactly once and nothing else is;
// each lane's inbox sequences are 1, 2, 3, ... and carry the producer's messages in the order it
// committed them; the sender's outbox is empty and every lane acknowledged up to its last
// sequence. It returns a line per direction and the problems found.
func Check(ctx context.Context, gw, core *sqldb.DB) (lines, problems []string, err error) {
	for _, d := range []struct {
		name     string
		from, to *sqldb.DB
	}{{"to-gateway (core → gateway)", core, gw}, {"to-core (gateway → core)", gw, core}} {
		p, n, err := checkDirection(ctx, d.from, d.to)
		if err != nil {
			return nil, nil, err
		}
		verdict := "ok"
		if len(p) > 0 {
			verdict = fmt.Sprintf("%d problems", len(p))
		}
		lines = append(lines, fmt.Sprintf("%s: %d produced, %d delivered once each in lane order (%d lane gaps filled): %s", d.name, n.produced, n.delivered, n.gaps, verdict))
		for _, x := range p {
			problems = append(problems, d.name+": "+x)
		}
	}
	return lines, problems, nil
}

type tally struct{ produced, delivered, gaps int }

func checkDirection(ctx context.Context, from, to *sqldb.DB) (problems []string, n tally, err error) {
	produced := map[string]bool{}
	rows, err := from.QueryContext(ctx, `SELECT message_id FROM chaos_produced`)
	if err != nil {
		return nil, n, err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, n, err
		}
		produced[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, n, err
	}
	n.produced = len(produced)

	rows, err = to.QueryContext(ctx, `SELECT message_id, lane, seq, type FROM ferry_inbox ORDER BY lane, seq`)
	if err != nil {
		return nil, n, err
	}
	defer rows.Close()
	seen := map[string]int{}
	type laneState struct {
		seq, last int64
	}
	lanes := map[string]*laneState{}
	for rows.Next() {
		var id, lane, typ string
		var seq int64
		if err := rows.Scan(&id, &lane, &seq, &typ); err != nil {
			return nil, n, err
		}
		st := lanes[lane]
		if st == nil {
			st = &laneState{last: -1}
			lanes[lane] = st
		}
		if seq != st.seq+1 {
			problems = append(problems, fmt.Sprintf("lane %s: sequence %d follows %d", lane, seq, st.seq))
		}
		st.seq = seq
		if typ == envelope.TypeLaneGap {
			// A number a killed producer took and never committed, closed by the sender.
			n.gaps++
			continue
		}
		seen[id]++
		n.delivered++
		if !produced[id] {
			problems = append(problems, fmt.Sprintf("message %s delivered but never produced", id))
		}
		i, err := index(id)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if i <= st.last {
			problems = append(problems, fmt.Sprintf("lane %s: message %d delivered after %d (out of order)", lane, i, st.last))
		}
		st.last = i
	}
	if err := rows.Err(); err != nil {
		return nil, n, err
	}
	for id, k := range seen {
		if k > 1 {
			problems = append(problems, fmt.Sprintf("message %s delivered %d times", id, k))
		}
	}
	missing := 0
	for id := range produced {
		if seen[id] == 0 {
			if missing < 5 {
				problems = append(problems, fmt.Sprintf("message %s produced but not delivered", id))
			}
			missing++
		}
	}
	if missing > 5 {
		problems = append(problems, fmt.Sprintf("... %d messages produced but not delivered in all", missing))
	}
	var left, unacked int
	if err := from.QueryRowContext(ctx, `SELECT count(*) FROM ferry_outbox WHERE type <> '`+envelope.TypeLaneGap+`'`).Scan(&left); err != nil {
		return nil, n, err
	}
	out, err := outbox.Lanes(ctx, from)
	if err != nil {
		return nil, n, err
	}
	for _, l := range out {
		if l.Backlog() != 0 {
			unacked++
		}
	}
	if left != 0 || unacked != 0 {
		problems = append(problems, fmt.Sprintf("sender's outbox holds %d rows; %d lanes not acknowledged to their end", left, unacked))
	}
	return problems, n, nil
}
