package relay

import (
	"context"
	"fmt"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/inbox"
	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
)

// On PostgreSQL each of the relay's three steps (a bundle announced, a bundle received, an
// acknowledgement retired) is one statement run on its own: data-modifying WITH clauses write
// the step's effect, its evidence and its audit records, so that they commit together in one
// round trip. The receiving and retiring statements go by the lane's mark as the relay last
// committed it (laneMarks) and fail as a whole when the stored mark differs. Whenever a
// statement fails, nothing of it was applied, and the step runs again as a transaction of
// several statements (through audit.Log.Commit), which reads the marks, tells the step's own
// failures from the audit trail's, and is what SQLite uses.

// StatementEvidence is TxEvidence that can also write its rows as WITH clauses of a relay's
// PostgreSQL statement (package evidence's Store is one), each numbering its arguments from
// first.
type StatementEvidence interface {
	TxEvidence
	SentClauses(b *bundle.Parsed, ids []string, first int) (string, []any, error)
	ReceivedClauses(b *bundle.Parsed, msgs []inbox.Incoming, ack []byte, first int) (string, []any, error)
	AcknowledgedClauses(raw []byte, a bundle.Ack, first int) (string, []any)
}

// statements reports whether steps can be single statements, and the evidence store to write
// them with (nil when no evidence is kept).
func (r *Relay) statements() (StatementEvidence, bool) {
	if r.cfg.DB.Dialect != sqldb.Postgres {
		return nil, false
	}
	if r.cfg.Evidence == nil {
		return nil, true
	}
	ev, ok := r.cfg.Evidence.(StatementEvidence)
	return ev, ok
}

// with builds a statement of WITH clauses, each numbering its arguments after the ones before.
type with struct {
	query string
	args  []any
	next  int
}

func newWith(records string, first int) *with { return &with{query: "WITH " + records, next: first} }

func (w *with) add(clauses string, args []any) {
	w.query += ",\n" + clauses
	w.args = append(w.args, args...)
	w.next += len(args)
}

// guarded ends the statement with a SELECT that returns value when the WITH clause named guard
// returned exactly one row, and otherwise fails the whole statement (a cast that cannot
// succeed; it depends on the clause's rows, so the planner cannot evaluate it beforehand).
func (w *with) guarded(guard, value string) (string, []any, error) {
	return w.query + fmt.Sprintf(`
		SELECT CASE WHEN (SELECT count(*) FROM %[1]s) = 1 THEN %[2]s
			ELSE ('ferry relay: the lane moved (%[1]s: ' || (SELECT count(*) FROM %[1]s) || ' rows)')::bigint END`, guard, value), w.args, nil
}

// announceStatement records o as sent (its record, the lane's last sequence sent and its
// evidence) in one statement.
func (r *Relay) announceStatement(ctx context.Context, ev StatementEvidence, o *outgoing, rec audit.Record) error {
	var one int
	return r.cfg.Audit.CommitStatement(ctx, []audit.Record{rec}, func(records string, first int) (string, []any, error) {
		w := newWith(records, first)
		w.add(outbox.SentClauses(o.Header.Lane, o.Header.LastSeq, w.next))
		if ev != nil {
			q, args, err := ev.SentClauses(o.Parsed, o.ids, w.next)
			if err != nil {
				return "", nil, err
			}
			w.add(q, args)
		}
		return w.query + "\nSELECT 1", w.args, nil
	}, &one)
}

// receiveStatement commits a bundle that continues its lane from hwm, its evidence with ack and
// its bundle.received record in one statement, and returns how many messages it applied.
func (r *Relay) receiveStatement(ctx context.Context, ev StatementEvidence, b *bundle.Parsed, msgs []inbox.Incoming,
	ack []byte, hwm int64, rec audit.Record) (applied int, err error) {
	h := b.Header
	err = r.cfg.Audit.CommitStatement(ctx, []audit.Record{rec}, func(records string, first int) (string, []any, error) {
		w := newWith(records, first)
		q, args, err := inbox.ReceiveClauses(r.cfg.Peer, h.Lane, h.BundleID, msgs, r.now(), hwm, w.next)
		if err != nil {
			return "", nil, err
		}
		w.add(q, args)
		if ev != nil {
			q, args, err := ev.ReceivedClauses(b, msgs, ack, w.next)
			if err != nil {
				return "", nil, err
			}
			w.add(q, args)
		}
		return w.guarded("inbox_mark", "(SELECT count(*) FROM inbox_rows)")
	}, &applied)
	return applied, err
}

// ackStatement retires what a verified acknowledgement covers on a lane acknowledged up to
// before, with its evidence and records, in one statement.
func (r *Relay) ackStatement(ctx context.Context, ev StatementEvidence, raw []byte, a bundle.Ack, before int64, recs []audit.Record) error {
	var one int
	return r.cfg.Audit.CommitStatement(ctx, recs, func(records string, first int) (string, []any, error) {
		w := newWith(records, first)
		w.add(outbox.AckClauses(a.Lane, before, a.Seq, r.now(), w.next))
		if ev != nil {
			w.add(ev.AcknowledgedClauses(raw, a, w.next))
		}
		return w.guarded("ack_lane", "1")
	}, &one)
}
