package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"finepay/ferry/merkle"
)

// Appending is group-committed: records that callers of one Log hand in while a transaction is
// being written wait, and the next transaction appends them all (up to maxBatch), so that
// concurrent callers share a commit instead of queueing one commit each behind the head row's
// lock. Each caller still returns only once its own record is committed (or failed). There is no
// background goroutine: the caller whose record starts a transaction writes it (the leader), and
// hands the lead to the first waiting caller when it is done.
const maxBatch = 256

// writeTimeout bounds one batch's transaction: it is not bound to one caller's context, since it
// carries the records of several.
const writeTimeout = 30 * time.Second

type batcher struct {
	mu      sync.Mutex
	writing bool
	queue   []*pending
}

// Step is work a caller commits together with the audit records it returns (see Commit). It
// runs inside the group's transaction and may run more than once (the transaction is retried
// after a serialization failure, and without a step that failed), so it must only talk to the
// database through tx.
type Step func(ctx context.Context, tx *sql.Tx) ([]Record, error)

type pending struct {
	rec  Record // a plain record (step == nil)
	step Step
	key  string // steps run in key order, so that the row locks they take come in one order

	recs    []Record // the records to append (rec, or what step returned)
	ids     []int64
	stepErr error         // the step failed: nothing of it was applied
	err     error         // the transaction failed
	done    chan struct{} // closed when the record was written or failed
	lead    chan struct{} // closed when this caller is to write the next batch
}

// append writes r as the log's next record and returns its ID.
func (l *Log) append(ctx context.Context, r Record) (int64, error) {
	p := &pending{rec: r}
	l.enqueue(ctx, p)
	if p.err != nil {
		return 0, p.err
	}
	return p.ids[0], nil
}

// enqueue queues p and returns once it was written or failed: either a leader's batch carried it,
// or this caller led and wrote the batch itself.
func (l *Log) enqueue(ctx context.Context, p *pending) {
	p.done, p.lead = make(chan struct{}), make(chan struct{})
	b := &l.batch
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if b.writing {
		b.mu.Unlock()
		select {
		case <-p.done:
			return
		case <-p.lead:
		}
	} else {
		b.writing = true
		b.mu.Unlock()
	}
	// This caller leads: write what is queued (its own record among it), then pass the lead on.
	b.mu.Lock()
	n, steps := 0, 0
	for n < len(b.queue) && n < maxBatch && steps < maxSteps {
		if b.queue[n].step != nil {
			steps++
		}
		n++
	}
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	b.mu.Unlock()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	l.write(wctx, batch)
	cancel()
	for _, q := range batch {
		if q != p {
			close(q.done)
		}
	}
	b.mu.Lock()
	if len(b.queue) > 0 {
		close(b.queue[0].lead)
	} else {
		b.writing = false
	}
	b.mu.Unlock()
}

// maxSteps bounds the callers whose steps share one transaction.
const maxSteps = 64

// stepFailed carries the error of the only step of a batch out of its transaction.
type stepFailed struct{ err error }

func (e *stepFailed) Error() string { return e.err.Error() }
func (e *stepFailed) Unwrap() error { return e.err }

// write runs batch's steps and appends their records and the plain ones in one transaction,
// setting each pending's ids, stepErr or err. A step that fails ends the transaction, which
// rolls back; its caller gets its error, and the transaction runs again without it for the
// others (steps may run more than once). No savepoints: each would cost two round trips a step.
func (l *Log) write(ctx context.Context, batch []*pending) {
	slices.SortStableFunc(batch, func(a, b *pending) int { return strings.Compare(a.key, b.key) })
	for len(batch) > 0 {
		failed := -1
		err := l.db.Tx(ctx, func(tx *sql.Tx) error {
			failed = -1
			var recs []Record
			for i, p := range batch {
				p.stepErr, p.recs = nil, nil
				if p.step == nil {
					p.recs = []Record{p.rec}
					recs = append(recs, p.rec)
					continue
				}
				rs, err := p.step(ctx, tx)
				if err != nil {
					failed = i
					return &stepFailed{err}
				}
				for j := range rs {
					rs[j] = l.fill(rs[j])
				}
				p.recs = rs
				recs = append(recs, rs...)
			}
			ids, err := l.appendTx(ctx, tx, recs)
			if err != nil {
				return err
			}
			for _, p := range batch {
				p.ids, ids = ids[:len(p.recs)], ids[len(p.recs):]
			}
			return nil
		})
		var sf *stepFailed
		switch {
		case errors.As(err, &sf) && failed >= 0:
			batch[failed].stepErr, batch[failed].ids, batch[failed].recs = sf.err, nil, nil
			batch = slices.Delete(slices.Clone(batch), failed, failed+1)
			continue
		case err != nil:
			err = fmt.Errorf("append %d records: %w", len(batch), err)
			for _, p := range batch {
				p.err, p.ids = err, nil
			}
		}
		return
	}
}

// appendTx appends recs (normalized) in tx as the log's next records and returns their IDs. The
// head row's lock, held until tx ends, orders the records of every writer (this process's and
// others'): IDs have no gaps and are committed in order, and no record is stamped earlier than
// the one before it (a clock that stepped back shows as equal times).
func (l *Log) appendTx(ctx context.Context, tx *sql.Tx, recs []Record) ([]int64, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(recs))
	var size, lastAt int64
	var hashName string
	err := tx.QueryRowContext(ctx, `SELECT size, last_at_us, hash FROM ferry_audit_head WHERE id = 1`+l.db.ForUpdate()).
		Scan(&size, &lastAt, &hashName)
	if err != nil {
		return nil, err
	}
	h, err := merkle.ParseHash(hashName)
	if err != nil {
		return nil, err
	}
	for start := 0; start < len(recs); start += maxBatch {
		chunk := recs[start:min(len(recs), start+maxBatch)]
		var q strings.Builder
		q.WriteString(`INSERT INTO ferry_audit (id, at, node, actor, event, result, bundle_id, lane,
			first_seq, last_seq, peer, digests, reason, leaf_hash) VALUES `)
		args := make([]any, 0, 14*len(chunk))
		for i, rec := range chunk {
			lastAt = max(lastAt, rec.At.UnixMicro())
			rec.At = time.UnixMicro(lastAt).UTC()
			id := size + int64(start+i) + 1
			ids[start+i] = id
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(")
			for j := range 14 {
				if j > 0 {
					q.WriteString(", ")
				}
				q.WriteString("$" + strconv.Itoa(len(args)+j+1))
			}
			q.WriteString(")")
			args = append(args, id, rec.At, rec.Node, rec.Actor, rec.Event, rec.Result, rec.BundleID, rec.Lane, rec.FirstSeq,
				rec.LastSeq, rec.Peer, strings.Join(rec.Digests, ","), rec.Reason, rec.LeafHashWith(h))
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return nil, err
		}
	}
	_, err = tx.ExecContext(ctx, `UPDATE ferry_audit_head SET size = $1, last_at_us = $2 WHERE id = 1`, size+int64(len(recs)), lastAt)
	if err != nil {
		return nil, err
	}
	return ids, nil
}
