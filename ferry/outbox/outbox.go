// Package outbox is the sending half of the ferry as the services see it. A service puts a
// message in the outbox inside the same database transaction as the business change that
// caused it, so the message exists exactly when the change does. The message gets the next
// sequence number of its lane.
//
// On PostgreSQL the number comes from the lane's own sequence (migration 0007), which takes no
// lock: producers of one lane commit in parallel instead of queueing behind each other's commits.
// Numbers may therefore commit out of order, and a number whose producer rolls back or dies is
// never committed; ferryd sends a lane only as far as its numbers are contiguous, waits for a
// missing one and, when it stays missing, closes the gap with a filler (package relay). On
// SQLite, which has one writer at a time, the number comes from the lane's counter row in
// ferry_lane_out, locked until the transaction ends, and a lane never has a gap.
//
// ferryd reads pending rows with Pending, bundles them, and retires them with Ack once the peer
// has acknowledged them.
package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
)

// ErrDuplicate is returned by Put for a message ID already in the outbox. The caller's
// transaction must be rolled back.
var ErrDuplicate = errors.New("outbox: message ID already queued")

// ErrNumberTaken is returned by Put on PostgreSQL when the lane's number the producer took was
// filled by the sender before the producer's row arrived: the producer's statement stalled for
// longer than the sender's gap grace (relay.GapGrace) between taking its number and inserting its
// row. Nothing was queued; the caller's transaction must be rolled back and may be retried.
var ErrNumberTaken = errors.New("outbox: the lane's number was closed as a gap before the message's row arrived (the statement stalled); retry")

// ErrBackpressure is returned by Put when the message's lane already holds the configured
// number of messages the peer has not acknowledged (WithMaxBacklog). Nothing was queued; the
// caller's transaction must be rolled back and the producer told to retry later (services
// answer 503). ferry_outbox_backpressure_total counts these refusals.
var ErrBackpressure = errors.New("outbox: lane backlog full; retry later")

// DefaultMaxBacklog is the backlog bound of a lane when WithMaxBacklog is not given.
const DefaultMaxBacklog = 100_000

// Outbox puts messages into lanes.
type Outbox struct {
	partitions int
	maxBacklog int64
	refused    *prometheus.CounterVec
	// engine is the SQL engine of the transactions Put is given (an Outbox serves one
	// database): engineUnknown until the first Put asks, then enginePostgres or engineSQLite.
	engine atomic.Int32
}

// Engines of Outbox.engine.
const (
	engineUnknown int32 = iota
	enginePostgres
	engineSQLite
)

// postgres reports whether tx is a PostgreSQL transaction. The first call asks the database
// with a query both engines answer, differently (PostgreSQL has a boolean type, SQLite answers
// 1); later calls reuse the answer.
func (o *Outbox) postgres(ctx context.Context, tx *sql.Tx) (bool, error) {
	switch o.engine.Load() {
	case enginePostgres:
		return true, nil
	case engineSQLite:
		return false, nil
	}
	var v any
	if err := tx.QueryRowContext(ctx, `SELECT 1 = 1`).Scan(&v); err != nil {
		return false, fmt.Errorf("outbox: engine: %w", err)
	}
	_, pg := v.(bool)
	if pg {
		o.engine.Store(enginePostgres)
	} else {
		o.engine.Store(engineSQLite)
	}
	return pg, nil
}

// Option configures an Outbox.
type Option func(*Outbox)

// WithMaxBacklog bounds the messages of one lane not yet acknowledged by the peer: Put refuses
// with ErrBackpressure once a lane holds n of them. n < 1 means DefaultMaxBacklog.
func WithMaxBacklog(n int64) Option {
	return func(o *Outbox) {
		if n >= 1 {
			o.maxBacklog = n
		}
	}
}

// WithRegistry registers ferry_outbox_backpressure_total{lane} (refusals by Put) with reg.
func WithRegistry(reg prometheus.Registerer) Option {
	return func(o *Outbox) {
		if reg != nil {
			reg.MustRegister(o.refused)
		}
	}
}

// New returns an outbox that spreads each direction over partitions lanes by message key.
func New(partitions int, opts ...Option) *Outbox {
	if partitions < 1 {
		partitions = 1
	}
	o := &Outbox{partitions: partitions, maxBacklog: DefaultMaxBacklog,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_outbox_backpressure_total",
			Help: "Messages refused by outbox.Put because their lane's backlog was full (the producer was told to retry), by lane."},
			[]string{"lane"})}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// Placed says where a message went.
type Placed struct {
	Lane string
	Seq  int64
}

// Put validates env against the catalogue and queues it in tx. It fails with ErrBackpressure,
// queueing nothing, when the lane already holds the outbox's backlog bound of messages not yet
// acknowledged.
func (o *Outbox) Put(ctx context.Context, tx *sql.Tx, env envelope.Envelope) (Placed, error) {
	q, err := o.Prepare(env)
	if err != nil {
		return Placed{}, err
	}
	pg, err := o.postgres(ctx, tx)
	if err != nil {
		return Placed{}, err
	}
	var seq int64
	if pg {
		seq, err = o.putPostgres(ctx, tx, q)
	} else {
		seq, err = o.putSQLite(ctx, tx, q)
	}
	if err != nil {
		return Placed{}, err
	}
	return Placed{Lane: q.lane, Seq: seq}, nil
}

// putPostgres takes the lane's next sequence and inserts the row in one statement (one round
// trip, the clauses of Queue). Its number may reach the peer only once the caller's transaction
// ends, and holds up the lane's later numbers until then: Put should be the caller's last
// statement before the commit.
func (o *Outbox) putPostgres(ctx context.Context, tx *sql.Tx, q Queued) (int64, error) {
	clauses, args := q.clauses(o.maxBacklog, "TRUE", 1)
	var seq int64
	if err := tx.QueryRowContext(ctx, `WITH `+clauses+` SELECT seq FROM ferry_msg`, args...).Scan(&seq); err != nil {
		return 0, o.Refused(err, q.env.ID)
	}
	return seq, nil
}

// Queued is a message checked, encoded and assigned its lane, ready to be queued by a caller's
// own statement on PostgreSQL (Clauses).
type Queued struct {
	lane string
	env  envelope.Envelope
	raw  []byte
}

// Lane is the lane the message goes to.
func (q Queued) Lane() string { return q.lane }

// Prepare validates env against the catalogue and encodes it, for Clauses.
func (o *Outbox) Prepare(env envelope.Envelope) (Queued, error) {
	if err := env.Check(); err != nil {
		return Queued{}, err
	}
	raw, err := env.Marshal()
	if err != nil {
		return Queued{}, err
	}
	lane, err := envelope.Lane(env.Type, env.Key, o.partitions)
	if err != nil {
		return Queued{}, err
	}
	return Queued{lane: lane, env: env, raw: raw}, nil
}

// backlogFull is the text of the error a queueing statement raises for a lane over its bound.
const backlogFull = "ferry outbox: backlog full on lane "

// Clauses returns two WITH clauses (ferry_lane and ferry_msg, comma-separated, without the
// WITH) that queue q on PostgreSQL when cond, a boolean SQL expression over the caller's
// earlier clauses, holds: the lane's next sequence is taken and the row inserted. Their
// parameters are numbered from first. The clauses are data-modifying, so they run whether or
// not the caller's final SELECT reads them, and a lane over its backlog bound makes the whole
// statement fail (Refused turns that error into ErrBackpressure, as it does a message ID
// already queued into ErrDuplicate). A caller can thus queue a message in the very statement
// that records the change causing it, and run that statement alone (autocommit). No lock is
// taken: the number comes from the lane's sequence.
func (o *Outbox) Clauses(q Queued, cond string, first int) (string, []any) {
	return q.clauses(o.maxBacklog, cond, first)
}

func (q Queued) clauses(maxBacklog int64, cond string, first int) (string, []any) {
	n := func(i int) string { return fmt.Sprintf("$%d", first+i) }
	// The backlog is checked before a number is taken, so that a refusal leaves no gap; producers
	// checking at the same moment may pass the bound by as many as they are. ferry_lane has no
	// number (NULL) for a refusal; the error is raised in ferry_msg, from ferry_lane's output,
	// which the planner cannot fold into a constant and raise before the check.
	sql := `ferry_lane AS (
			SELECT l.lane, CASE WHEN ` + LastSeqSQL(sqldb.Postgres, "l.lane") + ` - coalesce((SELECT a.acked_seq FROM ferry_lane_acked a WHERE a.lane = l.lane), 0)
					< ` + n(6) + `::bigint THEN nextval(` + laneSequence("l.lane") + `::regclass) END AS last_seq
			FROM (SELECT ` + n(0) + `::text AS lane) l WHERE ` + cond + `),
		ferry_msg AS (
			INSERT INTO ferry_outbox (lane, seq, message_id, type, msg_key, created_at, envelope)
			SELECT l.lane, coalesce(l.last_seq, ('` + backlogFull + `' || l.lane)::bigint),
				` + n(1) + `::text, ` + n(2) + `::text, ` + n(3) + `::text, ` + n(4) + `::timestamptz, ` + n(5) + `::bytea FROM ferry_lane l
			RETURNING seq)`
	return sql, []any{q.lane, q.env.ID, q.env.Type, q.env.Key, q.env.CreatedAt.UTC(), q.raw, maxBacklog}
}

// laneSequence is the PostgreSQL expression naming the sequence of the lane that the SQL
// expression lane names (migration 0007), quoted as an identifier.
func laneSequence(lane string) string {
	return `format('%I', 'ferry_lane_seq:' || ` + lane + `)`
}

// LastSeqSQL is an SQL expression for the last sequence handed out on the lane named by the SQL
// expression lane (0 when none): on PostgreSQL the lane sequence's last value, on SQLite the
// counter in ferry_lane_out.
func LastSeqSQL(d sqldb.Dialect, lane string) string {
	if d == sqldb.Postgres {
		return `coalesce(pg_sequence_last_value(to_regclass(` + laneSequence(lane) + `)), 0)`
	}
	return `coalesce((SELECT o.last_seq FROM ferry_lane_out o WHERE o.lane = ` + lane + `), 0)`
}

// Refused maps the error of a statement that ran Clauses for the message ID id: a lane over
// its backlog bound becomes ErrBackpressure (and is counted in
// ferry_outbox_backpressure_total), a message ID already queued ErrDuplicate; other errors are
// returned as they are.
func (o *Outbox) Refused(err error, id string) error {
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), backlogFull):
		lane := err.Error()[strings.Index(err.Error(), backlogFull)+len(backlogFull):]
		lane, _, _ = strings.Cut(lane, `"`)
		o.refused.WithLabelValues(lane).Inc()
		return fmt.Errorf("%w: lane %s holds %d or more unacknowledged messages", ErrBackpressure, lane, o.maxBacklog)
	}
	return uniqueViolation(err, id)
}

// uniqueViolation maps a unique violation of a queueing statement: on the message ID to
// ErrDuplicate, on the lane's number (a gap filler took it) to ErrNumberTaken; other errors are
// returned as they are.
func uniqueViolation(err error, id string) error {
	if !sqldb.IsUniqueViolation(err) {
		return err
	}
	// PostgreSQL names the index; SQLite the columns.
	if msg := err.Error(); strings.Contains(msg, "ferry_outbox_message_id") || strings.Contains(msg, "ferry_outbox.message_id") {
		return fmt.Errorf("%w: %s", ErrDuplicate, id)
	}
	return fmt.Errorf("%w: %s: %w", ErrNumberTaken, id, err)
}

// putSQLite takes the lane's next sequence, then inserts the row (SQLite has no data-modifying
// WITH; its immediate transactions hold the database's write lock anyway).
func (o *Outbox) putSQLite(ctx context.Context, tx *sql.Tx, q Queued) (int64, error) {
	lane, env := q.lane, q.env
	seqs, err := o.numbers(ctx, tx, false, lane, 1)
	if err != nil {
		return 0, err // a refusal's increment is undone with the caller's transaction, which must roll back
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO ferry_outbox (lane, seq, message_id, type, msg_key, created_at, envelope)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, lane, seqs[0], env.ID, env.Type, env.Key, env.CreatedAt.UTC(), q.raw)
	if err != nil {
		if sqldb.IsUniqueViolation(err) {
			return 0, uniqueViolation(err, env.ID)
		}
		return 0, fmt.Errorf("outbox: insert: %w", err)
	}
	return seqs[0], nil
}

// PutBatch queues envs in tx like Put does one by one, with one lane update per lane and
// multi-row inserts: for services (and the benchmark) that emit many messages in one
// transaction. The messages of one lane keep their order in envs. It fails as a whole, with
// ErrBackpressure when a lane would pass its backlog bound and ErrDuplicate for a message ID
// already queued; the caller's transaction must then be rolled back.
func (o *Outbox) PutBatch(ctx context.Context, tx *sql.Tx, envs []envelope.Envelope) ([]Placed, error) {
	type item struct {
		env envelope.Envelope
		raw []byte
		at  int // index in envs
	}
	byLane := map[string][]item{}
	for i, env := range envs {
		q, err := o.Prepare(env)
		if err != nil {
			return nil, err
		}
		byLane[q.lane] = append(byLane[q.lane], item{env, q.raw, i})
	}
	lanes := slices.Sorted(maps.Keys(byLane)) // one order for every caller (SQLite locks the lanes' counter rows)
	pg, err := o.postgres(ctx, tx)
	if err != nil {
		return nil, err
	}
	if pg && len(lanes) > 1 {
		// Every lane's bound before any lane's number: a refusal must leave no gap on any lane.
		for _, lane := range lanes {
			if err := o.check(ctx, tx, lane, len(byLane[lane])); err != nil {
				return nil, err
			}
		}
	}
	placed := make([]Placed, len(envs))
	for _, lane := range lanes {
		items := byLane[lane]
		seqs, err := o.numbers(ctx, tx, pg, lane, len(items))
		if err != nil {
			return nil, err
		}
		for start := 0; start < len(items); start += putChunk {
			chunk := items[start:min(len(items), start+putChunk)]
			var q strings.Builder
			q.WriteString(`INSERT INTO ferry_outbox (lane, seq, message_id, type, msg_key, created_at, envelope) VALUES `)
			args := make([]any, 0, 7*len(chunk))
			for j, it := range chunk {
				if j > 0 {
					q.WriteString(", ")
				}
				n := len(args)
				fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7)
				seq := seqs[start+j]
				args = append(args, lane, seq, it.env.ID, it.env.Type, it.env.Key, it.env.CreatedAt.UTC(), it.raw)
				placed[it.at] = Placed{Lane: lane, Seq: seq}
			}
			if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
				if sqldb.IsUniqueViolation(err) {
					return nil, uniqueViolation(err, "in the batch")
				}
				return nil, fmt.Errorf("outbox: insert: %w", err)
			}
		}
	}
	return placed, nil
}

// numbers hands out k sequence numbers of lane, in increasing order, or fails with
// ErrBackpressure when they would take the lane past its backlog bound. On PostgreSQL they come
// from the lane's sequence, without a lock (other producers' numbers may come between them), and
// the bound is checked before any is taken, so that a refusal leaves no gap; on SQLite from the
// lane's counter row, whose increment the caller's transaction keeps locked (and rolls back on a
// refusal; SQLite has one writer at a time anyway).
func (o *Outbox) numbers(ctx context.Context, tx *sql.Tx, pg bool, lane string, k int) ([]int64, error) {
	var last, acked int64
	var seqs []int64
	if pg {
		if err := o.check(ctx, tx, lane, k); err != nil {
			return nil, err
		}
		rows, err := tx.QueryContext(ctx, `SELECT nextval(`+laneSequence("$1::text")+`::regclass) FROM generate_series(1, $2::int)`, lane, k)
		if err != nil {
			return nil, fmt.Errorf("outbox: lane %s: %w", lane, err)
		}
		defer rows.Close()
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				return nil, err
			}
			seqs = append(seqs, seq)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("outbox: lane %s: %w", lane, err)
		}
		slices.Sort(seqs)
		return seqs, nil
	}
	err := tx.QueryRowContext(ctx, `INSERT INTO ferry_lane_out (lane, last_seq) VALUES ($1, $2)
		ON CONFLICT (lane) DO UPDATE SET last_seq = ferry_lane_out.last_seq + $2
		RETURNING last_seq, coalesce((SELECT acked_seq FROM ferry_lane_acked WHERE lane = $1), 0)`, lane, k).Scan(&last, &acked)
	if err != nil {
		return nil, fmt.Errorf("outbox: lane %s: %w", lane, err)
	}
	if err := o.bound(lane, last, acked, k); err != nil {
		return nil, err
	}
	for i := range int64(k) {
		seqs = append(seqs, last-int64(k)+1+i)
	}
	return seqs, nil
}

// check refuses, on PostgreSQL, k more messages of lane that would pass its backlog bound.
func (o *Outbox) check(ctx context.Context, tx *sql.Tx, lane string, k int) error {
	var last, acked int64
	err := tx.QueryRowContext(ctx, `SELECT `+LastSeqSQL(sqldb.Postgres, "$1::text")+`, coalesce((SELECT acked_seq FROM ferry_lane_acked WHERE lane = $1), 0)`, lane).Scan(&last, &acked)
	if err != nil {
		return fmt.Errorf("outbox: lane %s: %w", lane, err)
	}
	return o.bound(lane, last+int64(k), acked, k)
}

// bound refuses k messages that would take lane to sequence last with acked acknowledged past
// the backlog bound, counting the refusal.
func (o *Outbox) bound(lane string, last, acked int64, k int) error {
	if last-acked <= o.maxBacklog {
		return nil
	}
	o.refused.WithLabelValues(lane).Add(float64(k))
	return fmt.Errorf("%w: lane %s holds %d unacknowledged messages, %d more would pass the bound %d",
		ErrBackpressure, lane, last-int64(k)-acked, k, o.maxBacklog)
}

// putChunk bounds the rows of one INSERT of PutBatch (7 parameters a row).
const putChunk = 500

// Row is a queued message.
type Row struct {
	Lane      string
	Seq       int64
	MessageID string
	Type      string
	Key       string
	CreatedAt time.Time
	Envelope  []byte // canonical encoding
}

// Pending returns up to limit rows of lane after sequence after, in order, stopping before the
// total envelope size would pass maxBytes (but always returning at least one row if any).
func Pending(ctx context.Context, db *sqldb.DB, lane string, after int64, limit, maxBytes int) ([]Row, error) {
	if limit < 1 {
		return nil, nil
	}
	out, err := pendingRange(ctx, db, lane, after, limit, maxBytes)
	if err != nil || len(out) > 0 {
		return out, err
	}
	// None in the range: the lane may still hold later rows (when the rows right after after
	// were retired, or are missing: see the package comment). Only then is the rest of the lane
	// looked at; min(seq) is an index probe.
	var next sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT min(seq) FROM ferry_outbox WHERE lane = $1 AND seq > $2`, lane, after).Scan(&next); err != nil {
		return nil, fmt.Errorf("outbox: pending: %w", err)
	}
	if !next.Valid {
		return nil, nil
	}
	return pendingRange(ctx, db, lane, next.Int64-1, limit, maxBytes)
}

// pendingRange reads lane's rows in (after, after+limit]: the first limit rows after after
// unless some are missing (the caller sends only the contiguous start). Bounding the range both
// ways keeps the scan to them whatever the planner knows of the table (a range open at the top
// would read the whole backlog, one open at the bottom the retired rows not yet vacuumed).
func pendingRange(ctx context.Context, db *sqldb.DB, lane string, after int64, limit, maxBytes int) ([]Row, error) {
	rows, err := db.QueryContext(ctx, `SELECT lane, seq, message_id, type, msg_key, created_at, envelope
		FROM ferry_outbox WHERE lane = $1 AND seq > $2 AND seq <= $3 ORDER BY seq`, lane, after, after+int64(limit))
	if err != nil {
		return nil, fmt.Errorf("outbox: pending: %w", err)
	}
	defer rows.Close()
	var out []Row
	size := 0
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.Lane, &r.Seq, &r.MessageID, &r.Type, &r.Key, &r.CreatedAt, &r.Envelope); err != nil {
			return nil, err
		}
		if len(out) > 0 && size+len(r.Envelope) > maxBytes {
			break
		}
		size += len(r.Envelope)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Lane is the state of one outgoing lane.
type Lane struct {
	Lane     string
	LastSeq  int64 // the last sequence handed out
	AckedSeq int64 // the highest sequence the peer acknowledged
}

// Backlog is the number of messages not yet acknowledged.
func (l Lane) Backlog() int64 { return l.LastSeq - l.AckedSeq }

// Lanes returns the state of every outgoing lane.
func Lanes(ctx context.Context, db *sqldb.DB) ([]Lane, error) {
	q := `SELECT l.lane, l.last_seq, coalesce(a.acked_seq, 0)
		FROM ferry_lane_out l LEFT JOIN ferry_lane_acked a ON a.lane = l.lane ORDER BY l.lane`
	if db.Dialect == sqldb.Postgres {
		// The lanes whose sequence has handed out a number (migration 0007).
		q = `SELECT l.lane, l.last_seq, coalesce(a.acked_seq, 0)
			FROM (SELECT substr(c.relname, 16) AS lane, pg_sequence_last_value(c.oid) AS last_seq FROM pg_class c
				WHERE c.relkind = 'S' AND c.relname LIKE 'ferry\_lane\_seq:%' AND pg_table_is_visible(c.oid)) l
			LEFT JOIN ferry_lane_acked a ON a.lane = l.lane WHERE l.last_seq IS NOT NULL ORDER BY l.lane`
	}
	return queryLanes(ctx, db, q)
}

// queryLanes runs q, which selects lane, last sequence and acknowledged sequence, with args.
func queryLanes(ctx context.Context, db *sqldb.DB, q string, args ...any) ([]Lane, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: lanes: %w", err)
	}
	defer rows.Close()
	var out []Lane
	for rows.Next() {
		var l Lane
		if err := rows.Scan(&l.Lane, &l.LastSeq, &l.AckedSeq); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// LaneStates returns the state of the named lanes, in lane order: on PostgreSQL by reading
// only their sequences, where Lanes reads every lane sequence of both directions (128) to find
// the ones in use.
func LaneStates(ctx context.Context, db *sqldb.DB, names []string) ([]Lane, error) {
	if db.Dialect != sqldb.Postgres {
		all, err := Lanes(ctx, db)
		return slices.DeleteFunc(all, func(l Lane) bool { return !slices.Contains(names, l.Lane) }), err
	}
	return queryLanes(ctx, db, `SELECT l.lane, `+LastSeqSQL(sqldb.Postgres, "l.lane")+`, coalesce(a.acked_seq, 0)
		FROM unnest($1::text[]) AS l(lane) LEFT JOIN ferry_lane_acked a ON a.lane = l.lane ORDER BY l.lane`, names)
}

// Oldest returns the creation time of lane's oldest message not yet acknowledged (the first after
// sequence acked); ok is false when there is none.
func Oldest(ctx context.Context, db *sqldb.DB, lane string, acked int64) (at time.Time, ok bool, err error) {
	err = db.QueryRowContext(ctx, `SELECT created_at FROM ferry_outbox WHERE lane = $1 AND seq > $2 ORDER BY seq LIMIT 1`, lane, acked).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("outbox: oldest of %s: %w", lane, err)
	}
	return at.UTC(), true, nil
}

// ErrAckBeyondSent is returned by Ack for a sequence that was never handed out.
var ErrAckBeyondSent = errors.New("outbox: acknowledgement beyond the last sequence sent")

// Ack records that the peer committed lane up to and including seq, and retires those rows.
// Acknowledging a sequence at or below the current one changes nothing.
func Ack(ctx context.Context, db *sqldb.DB, lane string, seq int64, now time.Time) (retired int64, err error) {
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		retired, _, err = AckTx(ctx, tx, db.Dialect, lane, seq, now)
		return err
	})
	return retired, err
}

// AckTx is Ack inside tx, a transaction of the caller's (so that the audit record and evidence of
// the acknowledgement commit with it). It also returns the lane's acknowledged sequence before.
func AckTx(ctx context.Context, tx *sql.Tx, d sqldb.Dialect, lane string, seq int64, now time.Time) (retired, before int64, err error) {
	// The acknowledged sequence lives in ferry_lane_acked, apart from the lane's last sequence
	// (its sequence on PostgreSQL, its counter row on SQLite): retiring takes no lock a producer
	// takes and never waits for a producer nor holds one up. This is safe because the last
	// sequence sent (ferry_lane_sent) and acked_seq only grow: a sequence at or below the last
	// sent stays sent, and the update below only moves acked_seq forward. The bound is what was
	// sent, not the last number handed out: that may be a producer's not yet committed, whose
	// row would then commit below acked_seq and never be sent.
	var sent, acked int64
	err = tx.QueryRowContext(ctx, `SELECT `+SentSQL("$1")+`, coalesce((SELECT a.acked_seq FROM ferry_lane_acked a WHERE a.lane = $1), 0)`, lane).Scan(&sent, &acked)
	if err != nil {
		return 0, 0, err
	}
	if sent == 0 {
		return 0, 0, fmt.Errorf("%w: nothing was sent on lane %s", ErrAckBeyondSent, lane)
	}
	if seq > sent {
		return 0, acked, fmt.Errorf("%w: lane %s acknowledged up to %d, sent up to %d", ErrAckBeyondSent, lane, seq, sent)
	}
	if seq <= acked {
		return 0, acked, nil
	}
	// Rows up to acked were deleted with the update that acknowledged them: the lower bound
	// keeps the scan off their dead versions until a vacuum removes them. Gap fillers stay (see
	// KeepFillers).
	res, err := tx.ExecContext(ctx, `DELETE FROM ferry_outbox WHERE lane = $1 AND seq > $2 AND seq <= $3 AND type <> $4`, lane, acked, seq, envelope.TypeLaneGap)
	if err != nil {
		return 0, acked, err
	}
	retired, _ = res.RowsAffected()
	_, err = tx.ExecContext(ctx, `INSERT INTO ferry_lane_acked (lane, acked_seq, acked_at) VALUES ($1, $2, $3)
		ON CONFLICT (lane) DO UPDATE SET acked_seq = excluded.acked_seq, acked_at = excluded.acked_at
		WHERE ferry_lane_acked.acked_seq < excluded.acked_seq`, lane, seq, now.UTC())
	return retired, acked, err
}

// BacklogCollector exports, per outgoing lane, ferry_outbox_backlog{lane} (messages queued but
// not yet acknowledged) and ferry_lane_lag_seconds{lane} (the age of the oldest of them, by its
// creation time; 0 when there is none), read from the database at each scrape.
type BacklogCollector struct {
	db   *sqldb.DB
	desc *prometheus.Desc
	lag  *prometheus.Desc
	now  func() time.Time
}

// NewBacklogCollector returns a collector over db's outgoing lanes.
func NewBacklogCollector(db *sqldb.DB, service string) *BacklogCollector {
	return &BacklogCollector{db: db, desc: prometheus.NewDesc("ferry_outbox_backlog",
		"Messages in the outbox not yet acknowledged by the peer, per lane.", []string{"lane"},
		prometheus.Labels{"service": service}),
		lag: prometheus.NewDesc("ferry_lane_lag_seconds",
			"Age of the lane's oldest message not yet acknowledged by the peer (by its creation time); 0 when the lane is empty.", []string{"lane"},
			prometheus.Labels{"service": service}),
		now: time.Now}
}

// Describe implements prometheus.Collector.
func (c *BacklogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.lag
}

// Collect implements prometheus.Collector.
func (c *BacklogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lanes, err := Lanes(ctx, c.db)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		ch <- prometheus.NewInvalidMetric(c.lag, err)
		return
	}
	now := c.now()
	for _, l := range lanes {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Backlog()), l.Lane)
		lag := 0.0
		if l.Backlog() > 0 {
			at, ok, err := Oldest(ctx, c.db, l.Lane, l.AckedSeq)
			if err != nil {
				ch <- prometheus.NewInvalidMetric(c.lag, err)
				continue
			}
			if ok {
				lag = max(now.Sub(at).Seconds(), 0)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag, l.Lane)
	}
}

// SentSQL is an SQL expression for the last sequence of the lane (named by the SQL expression
// lane) recorded as sent: acknowledgements retire rows up to it and no further.
func SentSQL(lane string) string {
	return `coalesce((SELECT s.sent_seq FROM ferry_lane_sent s WHERE s.lane = ` + lane + `), 0)`
}

// Sent records that lane was sent up to seq, in a transaction of its own (see SentTx).
func Sent(ctx context.Context, db *sqldb.DB, lane string, seq int64) error {
	return db.Tx(ctx, func(tx *sql.Tx) error { return SentTx(ctx, tx, lane, seq) })
}

// SentTx records in tx, a transaction of the caller's (with its bundle.sent record), that lane
// was sent up to seq; a lower seq (a bundle sent again) changes nothing.
func SentTx(ctx context.Context, tx *sql.Tx, lane string, seq int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO ferry_lane_sent (lane, sent_seq) VALUES ($1, $2)
		ON CONFLICT (lane) DO UPDATE SET sent_seq = excluded.sent_seq WHERE ferry_lane_sent.sent_seq < excluded.sent_seq`, lane, seq)
	if err != nil {
		return fmt.Errorf("outbox: lane %s sent up to %d: %w", lane, seq, err)
	}
	return nil
}

// SentClauses are SentTx as a PostgreSQL WITH clause (lane_sent) for a statement of the
// caller's, with arguments numbered from first.
func SentClauses(lane string, seq int64, first int) (string, []any) {
	return fmt.Sprintf(`lane_sent AS (
			INSERT INTO ferry_lane_sent (lane, sent_seq) VALUES ($%[1]d::text, $%[2]d::bigint)
			ON CONFLICT (lane) DO UPDATE SET sent_seq = excluded.sent_seq WHERE ferry_lane_sent.sent_seq < excluded.sent_seq)`, first, first+1),
		[]any{lane, seq}
}

// KeepFillers is how long a gap filler (envelope.TypeLaneGap) stays in the outbox after it was
// acknowledged. Retiring leaves fillers where they are, because a filler's row is what holds its
// lane's number: a producer whose statement took that number and stalled before inserting its
// row (for longer than the sender's gap grace) then fails on the row's primary key and is told
// (ErrNumberTaken), instead of committing a message below the acknowledged sequence that would
// never be sent. PruneFillers removes them once they are older than this.
const KeepFillers = time.Hour

// PruneFillers deletes lane's acknowledged gap fillers created before before (KeepFillers ago).
func PruneFillers(ctx context.Context, tx *sql.Tx, lane string, acked int64, before time.Time) (int64, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM ferry_outbox WHERE lane = $1 AND seq <= $2 AND type = $3 AND created_at < $4`,
		lane, acked, envelope.TypeLaneGap, before.UTC())
	if err != nil {
		return 0, fmt.Errorf("outbox: prune lane %s's gap fillers: %w", lane, err)
	}
	return res.RowsAffected()
}

// AckClauses are AckTx, for an acknowledgement up to seq of a lane acknowledged up to before,
// as PostgreSQL WITH clauses for a statement of the caller's, with arguments numbered from
// first: ack_lane moves the lane's acknowledged sequence from before to seq and returns a row,
// or none when the lane is not at before or has not sent seq (the caller must then fail the
// statement, so that nothing of it is applied); ack_retired deletes the rows it covers. Neither
// takes a lock that producers need (see AckTx).
func AckClauses(lane string, before, seq int64, now time.Time, first int) (string, []any) {
	q := fmt.Sprintf(`ack_lane AS (
			INSERT INTO ferry_lane_acked (lane, acked_seq, acked_at)
			SELECT $%[1]d::text, $%[2]d::bigint, $%[3]d::timestamptz
			WHERE `+SentSQL("$%[1]d::text")+` >= $%[2]d::bigint
				AND coalesce((SELECT a.acked_seq FROM ferry_lane_acked a WHERE a.lane = $%[1]d::text), 0) = $%[4]d::bigint
			ON CONFLICT (lane) DO UPDATE SET acked_seq = excluded.acked_seq, acked_at = excluded.acked_at
			WHERE ferry_lane_acked.acked_seq = $%[4]d::bigint
			RETURNING 1),
		ack_retired AS (
			DELETE FROM ferry_outbox WHERE lane = $%[1]d AND seq > $%[4]d AND seq <= $%[2]d AND type <> $%[5]d)`, first, first+1, first+2, first+3, first+4)
	return q, []any{lane, seq, now.UTC(), before, envelope.TypeLaneGap}
}
