package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"finepay/ferry/merkle"
	"finepay/ferry/sqldb"
)

// Writing a record and numbering it into the log are two steps.
//
// A record is first written to ferry_audit_pending: in the transaction of the work it describes
// (Commit), or alone (Record). That write is what makes the record durable and the work
// fail-closed, and it takes no lock that other writers wait for, so the steps of different lanes
// commit in parallel, each with its own transaction.
//
// The sequencer then moves pending records into ferry_audit, in pending-ID order, under the lock
// of the head row: it gives each its ID in the log (no gaps), stamps none earlier than the one
// before it, and computes its leaf hash. One sequencing transaction numbers every record
// committed meanwhile. A record committed before another was written has the lower pending ID,
// so it is numbered first: the log keeps the order of cause and effect.
//
// A Log sequences in the background after each Commit, and before Record returns; readers of the
// log (Recent, Range, Matching, Export, checkpoints) sequence first, so that they see every
// record written.

// seqBatch bounds the records one sequencing transaction moves.
const seqBatch = 1024

// insertChunk bounds the rows of one INSERT statement (13 or 14 parameters each).
const insertChunk = 256

// seqPause spaces background sequencing runs while records keep coming.
const seqPause = 20 * time.Millisecond

// sequenceTimeout bounds a background sequencing run.
const sequenceTimeout = 30 * time.Second

// Step is work a caller commits together with the audit records it returns (see Commit). It
// may run more than once (the transaction is retried after a serialization failure), so it must
// only talk to the database through tx.
type Step func(ctx context.Context, tx *sql.Tx) ([]Record, error)

// stepFailed carries a step's own error out of its transaction.
type stepFailed struct{ err error }

func (e *stepFailed) Error() string { return e.err.Error() }
func (e *stepFailed) Unwrap() error { return e.err }

const pendingColumns = `at, node, actor, event, result, bundle_id, lane, first_seq, last_seq, peer, digests, reason`

// insertPending writes recs (filled in and normalized) to ferry_audit_pending through q.
func insertPending(ctx context.Context, q interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, recs []Record) error {
	for start := 0; start < len(recs); start += insertChunk {
		chunk := recs[start:min(len(recs), start+insertChunk)]
		if _, err := q.ExecContext(ctx, pendingInsert(len(chunk)), pendingArgs(chunk)...); err != nil {
			return err
		}
	}
	return nil
}

// pendingInsert inserts n records into ferry_audit_pending from pendingArgs, numbered from $1.
func pendingInsert(n int) string {
	return `INSERT INTO ferry_audit_pending (` + pendingColumns + `) VALUES ` + placeholders(n, 12)
}

// pendingArgs are the arguments of pendingInsert for recs.
func pendingArgs(recs []Record) []any {
	args := make([]any, 0, 12*len(recs))
	for _, r := range recs {
		args = append(args, r.At, r.Node, r.Actor, r.Event, r.Result, r.BundleID, r.Lane, r.FirstSeq, r.LastSeq,
			r.Peer, strings.Join(r.Digests, ","), r.Reason)
	}
	return args
}

// placeholders returns rows groups of cols placeholders: ($1, $2), ($3, $4), ...
func placeholders(rows, cols int) string {
	var b strings.Builder
	n := 0
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range cols {
			if j > 0 {
				b.WriteString(", ")
			}
			n++
			b.WriteString("$" + strconv.Itoa(n))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// Sequence numbers the records waiting in ferry_audit_pending into the log (see above) and
// returns the log's size afterwards and how many records it numbered. Any process with the
// database may run it: the head row's lock orders them.
func Sequence(ctx context.Context, db *sqldb.DB) (size int64, n int, err error) {
	for {
		moved, s, err := sequenceOnce(ctx, db)
		n += moved
		if err != nil {
			return s, n, fmt.Errorf("audit: number pending records: %w", err)
		}
		size = s
		if moved < seqBatch {
			return size, n, nil
		}
	}
}

// sequenceOnce moves up to seqBatch pending records into the log in one transaction.
func sequenceOnce(ctx context.Context, db *sqldb.DB) (moved int, size int64, err error) {
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		moved = 0
		var lastAt int64
		var hashName string
		err := tx.QueryRowContext(ctx, `SELECT size, last_at_us, hash FROM ferry_audit_head WHERE id = 1`+db.ForUpdate()).
			Scan(&size, &lastAt, &hashName)
		if err != nil {
			return err
		}
		h, err := merkle.ParseHash(hashName)
		if err != nil {
			return err
		}
		pids, recs, err := readPending(ctx, tx)
		if err != nil || len(recs) == 0 {
			return err
		}
		for start := 0; start < len(recs); start += insertChunk {
			chunk := recs[start:min(len(recs), start+insertChunk)]
			args := make([]any, 0, 14*len(chunk))
			for i, rec := range chunk {
				lastAt = max(lastAt, rec.At.UnixMicro())
				rec.At = time.UnixMicro(lastAt).UTC()
				id := size + int64(start+i) + 1
				args = append(args, id, rec.At, rec.Node, rec.Actor, rec.Event, rec.Result, rec.BundleID, rec.Lane, rec.FirstSeq,
					rec.LastSeq, rec.Peer, strings.Join(rec.Digests, ","), rec.Reason, rec.LeafHashWith(h))
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_audit (id, `+pendingColumns+`, leaf_hash) VALUES `+
				placeholders(len(chunk), 14), args...); err != nil {
				return err
			}
			del := make([]any, len(chunk))
			for i := range chunk {
				del[i] = pids[start+i]
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM ferry_audit_pending WHERE pid IN `+placeholders(1, len(del)), del...); err != nil {
				return err
			}
		}
		size += int64(len(recs))
		moved = len(recs)
		_, err = tx.ExecContext(ctx, `UPDATE ferry_audit_head SET size = $1, last_at_us = $2 WHERE id = 1`, size, lastAt)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return moved, size, nil
}

// readPending reads up to seqBatch pending records in pending-ID order.
func readPending(ctx context.Context, tx *sql.Tx) ([]int64, []Record, error) {
	rows, err := tx.QueryContext(ctx, `SELECT pid, `+pendingColumns+` FROM ferry_audit_pending ORDER BY pid LIMIT $1`, seqBatch)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var pids []int64
	var recs []Record
	for rows.Next() {
		var pid int64
		var r Record
		var digests string
		if err := rows.Scan(&pid, &r.At, &r.Node, &r.Actor, &r.Event, &r.Result, &r.BundleID, &r.Lane,
			&r.FirstSeq, &r.LastSeq, &r.Peer, &digests, &r.Reason); err != nil {
			return nil, nil, err
		}
		if digests != "" {
			r.Digests = strings.Split(digests, ",")
		}
		pids = append(pids, pid)
		recs = append(recs, r.normalize())
	}
	return pids, recs, rows.Err()
}

// sequencer runs the Log's background sequencing: at most one run at a time, and one more when
// records were committed during a run.
type sequencer struct {
	mu      sync.Mutex
	running bool
	again   bool
}

// kick has the pending records numbered soon, in the background.
func (l *Log) kick() {
	s := &l.seq
	s.mu.Lock()
	if s.running {
		s.again = true
		s.mu.Unlock()
		return
	}
	s.running = true
	s.mu.Unlock()
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), sequenceTimeout)
			err := l.sequence(ctx)
			cancel()
			s.mu.Lock()
			if !s.again || err != nil {
				s.running, s.again = false, false
				s.mu.Unlock()
				return
			}
			s.again = false
			s.mu.Unlock()
			// Numbering is off the path of the work: gather what commits meanwhile into the
			// next run instead of running back to back.
			time.Sleep(seqPause)
		}
	}()
}

// sequence runs Sequence and reports its outcome through Err and the metrics.
func (l *Log) sequence(ctx context.Context) error {
	size, _, err := Sequence(ctx, l.db)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			l.failures.Inc()
			if l.seqErr == nil {
				l.log.Error("audit: cannot number records into the log; the ferry stops moving messages until it can", "err", err)
			}
			l.seqErr = fmt.Errorf("%w: %w", ErrUnwritable, err)
		}
		return fmt.Errorf("%w: %w", ErrUnwritable, err)
	}
	if l.seqErr != nil {
		l.log.Info("audit: records are numbered into the log again")
	}
	l.seqErr = nil
	l.size.Set(float64(size))
	return nil
}

// Statement is a step written as one PostgreSQL statement (see CommitStatement): given the WITH
// clause that writes the step's records and the number of the first parameter it may use, it
// returns the whole statement and its own arguments, numbered from there.
type Statement func(records string, first int) (query string, args []any, err error)

// CommitStatement is Commit for a step that is one PostgreSQL statement, run on its own: one
// round trip and its own transaction, with the step's records written by a WITH clause of the
// same statement, so that they and the step's effect commit together or not at all. The
// statement returns one row, scanned into dest.
//
// A failing statement applied nothing. Its error is returned as it is, with one exception: when
// the log cannot take records now (the sequencer failed and still fails), the statement is not
// run and the error wraps ErrUnwritable. Callers that cannot tell an audit failure from their
// own should run the step again through Commit, which can.
func (l *Log) CommitStatement(ctx context.Context, recs []Record, stmt Statement, dest ...any) error {
	if err := l.takesRecords(ctx); err != nil {
		return err
	}
	for i := range recs {
		recs[i] = l.fill(recs[i])
	}
	args := pendingArgs(recs)
	query, own, err := stmt(`audit_rows AS (`+pendingInsert(len(recs))+`)`, len(args)+1)
	if err != nil {
		return err
	}
	if err := l.db.QueryRowContext(ctx, query, append(args, own...)...).Scan(dest...); err != nil {
		return err
	}
	_ = l.wrote(ctx, Record{}, nil)
	l.records.Add(float64(len(recs)))
	l.kick()
	return nil
}
