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

type pending struct {
	rec  Record
	id   int64
	err  error
	done chan struct{} // closed when the record was written or failed
	lead chan struct{} // closed when this caller is to write the next batch
}

// append writes r as the log's next record and returns its ID.
func (l *Log) append(ctx context.Context, r Record) (int64, error) {
	p := &pending{rec: r, done: make(chan struct{}), lead: make(chan struct{})}
	b := &l.batch
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if b.writing {
		b.mu.Unlock()
		select {
		case <-p.done:
			return p.id, p.err
		case <-p.lead:
		}
	} else {
		b.writing = true
		b.mu.Unlock()
	}
	// This caller leads: write what is queued (its own record among it), then pass the lead on.
	b.mu.Lock()
	n := min(len(b.queue), maxBatch)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	b.mu.Unlock()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	ids, err := l.write(wctx, batch)
	cancel()
	for i, q := range batch {
		if err == nil {
			q.id = ids[i]
		}
		q.err = err
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
	return p.id, p.err
}

// write appends batch in one transaction and returns their IDs. The head row's lock, held until
// commit, orders the records of every writer (this process's and others'): IDs have no gaps and
// are committed in order, and no record is stamped earlier than the one before it (a clock that
// stepped back shows as equal times).
func (l *Log) write(ctx context.Context, batch []*pending) ([]int64, error) {
	ids := make([]int64, len(batch))
	err := l.db.Tx(ctx, func(tx *sql.Tx) error {
		var size, lastAt int64
		var hashName string
		err := tx.QueryRowContext(ctx, `SELECT size, last_at_us, hash FROM ferry_audit_head WHERE id = 1`+l.db.ForUpdate()).
			Scan(&size, &lastAt, &hashName)
		if err != nil {
			return err
		}
		h, err := merkle.ParseHash(hashName)
		if err != nil {
			return err
		}
		var q strings.Builder
		q.WriteString(`INSERT INTO ferry_audit (id, at, node, actor, event, result, bundle_id, lane,
			first_seq, last_seq, peer, digests, reason, leaf_hash) VALUES `)
		args := make([]any, 0, 14*len(batch))
		for i, p := range batch {
			rec := p.rec
			lastAt = max(lastAt, rec.At.UnixMicro())
			rec.At = time.UnixMicro(lastAt).UTC()
			ids[i] = size + int64(i) + 1
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
			args = append(args, ids[i], rec.At, rec.Node, rec.Actor, rec.Event, rec.Result, rec.BundleID, rec.Lane, rec.FirstSeq,
				rec.LastSeq, rec.Peer, strings.Join(rec.Digests, ","), rec.Reason, rec.LeafHashWith(h))
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE ferry_audit_head SET size = $1, last_at_us = $2 WHERE id = 1`, size+int64(len(batch)), lastAt)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("append %d records: %w", len(batch), err)
	}
	return ids, nil
}
