// Package inbox is the receiving half of the ferry. ferryd commits each verified bundle with
// Receive: in one transaction it inserts the messages under their originators' IDs (a unique
// key, the final arbiter of exactly-once) and advances the lane's high-water mark. The service
// then takes messages with a Consumer: each message is applied by its handler and marked
// consumed in one transaction of the service's own.
package inbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
)

// ErrGap is returned by Receive when a bundle starts after the next expected sequence: the
// missing bundle must come first.
var ErrGap = errors.New("inbox: sequence gap")

// Incoming is one message of a verified bundle.
type Incoming struct {
	Seq      int64
	Envelope envelope.Envelope
	Raw      []byte // canonical encoding, as digested and signed
}

// Result says what Receive did.
type Result struct {
	Applied    int   // messages inserted
	Duplicates int   // messages already present (by sequence or by message ID)
	HWM        int64 // the lane's high-water mark after the bundle
	Before     int64 // the lane's high-water mark before it
}

// Receive commits msgs (consecutive sequences of one lane from peer) into the inbox and
// advances the lane. A bundle wholly at or below the high-water mark changes nothing; one that
// overlaps it applies only what is new; one that starts past hwm+1 fails with ErrGap and
// changes nothing.
func Receive(ctx context.Context, db *sqldb.DB, peer, lane, bundleID string, msgs []Incoming, now time.Time) (Result, error) {
	if err := checkConsecutive(msgs); err != nil {
		return Result{}, err
	}
	var res Result
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = ReceiveTx(ctx, db.Dialect, tx, peer, lane, bundleID, msgs, now)
		return err
	})
	return res, err
}

func checkConsecutive(msgs []Incoming) error {
	if len(msgs) == 0 {
		return errors.New("inbox: empty bundle")
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Seq != msgs[i-1].Seq+1 {
			return fmt.Errorf("inbox: bundle sequences not consecutive at %d", msgs[i].Seq)
		}
	}
	return nil
}

// ReceiveTx is Receive inside tx, a transaction of the caller's (of a database of dialect d),
// so that the caller can commit more with the messages (the audit record of their bundle, its
// evidence). It locks the lane's row until tx ends. On ErrGap (and any other error) the caller
// must roll tx back.
func ReceiveTx(ctx context.Context, d sqldb.Dialect, tx *sql.Tx, peer, lane, bundleID string, msgs []Incoming, now time.Time) (Result, error) {
	var res Result
	if err := checkConsecutive(msgs); err != nil {
		return res, err
	}
	// One statement creates the lane's row if need be, locks it until tx ends and reads its mark.
	var hwm int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO ferry_lane_in (peer, lane, hwm, updated_at) VALUES ($1, $2, 0, $3)
		ON CONFLICT (peer, lane) DO UPDATE SET hwm = ferry_lane_in.hwm RETURNING hwm`, peer, lane, now.UTC()).Scan(&hwm); err != nil {
		return res, err
	}
	res.Before = hwm
	if msgs[0].Seq > hwm+1 {
		res.HWM = hwm
		return res, fmt.Errorf("%w: lane %s expects %d, bundle starts at %d", ErrGap, lane, hwm+1, msgs[0].Seq)
	}
	var fresh []Incoming
	for _, m := range msgs {
		if m.Seq <= hwm {
			res.Duplicates++
			continue
		}
		fresh = append(fresh, m)
	}
	last := msgs[len(msgs)-1].Seq
	res.HWM = max(hwm, last)
	if d == sqldb.Postgres && len(fresh) > 0 {
		// One statement: the messages, and the lane's new mark.
		n, err := insertMessagesPostgres(ctx, tx, peer, lane, bundleID, fresh, now, res.HWM)
		if err != nil {
			return res, err
		}
		res.Applied += n
		res.Duplicates += len(fresh) - n
		return res, nil
	}
	for len(fresh) > 0 {
		chunk := fresh[:min(len(fresh), insertChunk)]
		fresh = fresh[len(chunk):]
		n, err := insertMessages(ctx, tx, peer, lane, bundleID, chunk, now)
		if err != nil {
			return res, err
		}
		res.Applied += n
		res.Duplicates += len(chunk) - n
	}
	_, err := tx.ExecContext(ctx, `UPDATE ferry_lane_in SET hwm = $3, updated_at = $4 WHERE peer = $1 AND lane = $2`, peer, lane, res.HWM, now.UTC())
	return res, err
}

// gapConsumed is the consumed_at of an incoming row of type typ received at (SQL expressions):
// a lane gap filler (envelope.TypeLaneGap) is stored as consumed on receipt, so that no service
// ever sees one; other messages wait for their service (NULL).
func gapConsumed(typ, at string) string {
	return `CASE WHEN ` + typ + ` = '` + envelope.TypeLaneGap + `' THEN ` + at + ` END`
}

// insertChunk bounds the rows of one INSERT (10 parameters a row: 10,000, under either engine's
// limit on bound parameters, 65,535 for PostgreSQL and 32,766 for SQLite).
const insertChunk = 1000

// insertMessagesPostgres inserts msgs, skipping message IDs already present, and sets the lane's
// mark to hwm, in one statement; it returns how many rows it inserted. The columns travel as
// arrays: one short statement, planned once, whatever the number of rows.
func insertMessagesPostgres(ctx context.Context, tx *sql.Tx, peer, lane, bundleID string, msgs []Incoming, now time.Time, hwm int64) (int, error) {
	ids, types, keys := make([]string, len(msgs)), make([]string, len(msgs)), make([]string, len(msgs))
	seqs, created, raws := make([]int64, len(msgs)), make([]time.Time, len(msgs)), make([][]byte, len(msgs))
	for i, m := range msgs {
		e := m.Envelope
		ids[i], seqs[i], types[i], keys[i], created[i], raws[i] = e.ID, m.Seq, e.Type, e.Key, e.CreatedAt.UTC(), m.Raw
	}
	var n int
	err := tx.QueryRowContext(ctx, `WITH ins AS (
			INSERT INTO ferry_inbox (message_id, peer, lane, seq, type, msg_key, created_at, envelope, bundle_id, received_at, consumed_at)
			SELECT u.id, $1, $2, u.seq, u.type, u.key, u.created, u.raw, $3, $4, `+gapConsumed("u.type", "$4::timestamptz")+`
			FROM unnest($5::text[], $6::bigint[], $7::text[], $8::text[], $9::timestamptz[], $10::bytea[]) AS u(id, seq, type, key, created, raw)
			ON CONFLICT (message_id) DO NOTHING RETURNING 1)
		UPDATE ferry_lane_in SET hwm = $11, updated_at = $4 WHERE peer = $1 AND lane = $2
		RETURNING (SELECT count(*) FROM ins)`, peer, lane, bundleID, now.UTC(), ids, seqs, types, keys, created, raws, hwm).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("inbox: insert: %w", err)
	}
	return n, nil
}

// insertMessages inserts msgs in one statement (a multi-row VALUES list; SQLite), skipping
// message IDs already present, and returns how many rows it inserted.
func insertMessages(ctx context.Context, tx *sql.Tx, peer, lane, bundleID string, msgs []Incoming, now time.Time) (int, error) {
	var q strings.Builder
	q.WriteString(`INSERT INTO ferry_inbox (message_id, peer, lane, seq, type, msg_key, created_at, envelope, bundle_id, received_at, consumed_at) VALUES `)
	args := make([]any, 0, len(msgs)*10)
	for i, m := range msgs {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(")
		for j := range 10 {
			if j > 0 {
				q.WriteString(", ")
			}
			q.WriteString("$" + strconv.Itoa(i*10+j+1))
		}
		q.WriteString(", " + gapConsumed("$"+strconv.Itoa(i*10+5), "$"+strconv.Itoa(i*10+10)) + ")")
		e := m.Envelope
		args = append(args, e.ID, peer, lane, m.Seq, e.Type, e.Key, e.CreatedAt.UTC(), m.Raw, bundleID, now.UTC())
	}
	q.WriteString(" ON CONFLICT (message_id) DO NOTHING")
	r, err := tx.ExecContext(ctx, q.String(), args...)
	if err != nil {
		return 0, fmt.Errorf("inbox: insert: %w", err)
	}
	n, err := r.RowsAffected()
	return int(n), err
}

// HWMs returns the high-water mark of every lane received from peer.
func HWMs(ctx context.Context, db *sqldb.DB, peer string) (map[string]int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT lane, hwm FROM ferry_lane_in WHERE peer = $1`, peer)
	if err != nil {
		return nil, fmt.Errorf("inbox: lanes: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var l string
		var h int64
		if err := rows.Scan(&l, &h); err != nil {
			return nil, err
		}
		out[l] = h
	}
	return out, rows.Err()
}

// Handler applies one message inside the service's transaction. An error rolls the
// transaction back; the message is retried later and its lane waits behind it.
type Handler func(ctx context.Context, tx *sql.Tx, env envelope.Envelope) error

// Consumer takes messages from the inbox in lane order and applies them.
type Consumer struct {
	db       *sqldb.DB
	handlers map[string]Handler
	log      *slog.Logger
	now      func() time.Time
	poll     time.Duration
	wake     chan struct{}

	consumed *prometheus.CounterVec
	failures *prometheus.CounterVec
}

// Config configures a Consumer.
type Config struct {
	DB       *sqldb.DB
	Handlers map[string]Handler // by message type
	Logger   *slog.Logger
	Now      func() time.Time // clock; time.Now when nil
	Poll     time.Duration    // how often Run looks for new messages; 100ms when zero
	Registry prometheus.Registerer
}

// NewConsumer returns a consumer. Its metrics, ferry_inbox_consumed_total and
// ferry_inbox_failures_total by type, are registered with cfg.Registry when given.
func NewConsumer(cfg Config) *Consumer {
	c := &Consumer{db: cfg.DB, handlers: cfg.Handlers, log: cfg.Logger, now: cfg.Now, poll: cfg.Poll, wake: make(chan struct{}, 1)}
	if c.now == nil {
		c.now = time.Now
	}
	if c.poll <= 0 {
		c.poll = 100 * time.Millisecond
	}
	c.consumed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_inbox_consumed_total", Help: "Inbox messages applied, by type."}, []string{"type"})
	c.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_inbox_failures_total", Help: "Inbox messages whose handler failed (they are retried), by type."}, []string{"type"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(c.consumed, c.failures, &pendingCollector{db: cfg.DB})
	}
	return c
}

// Wake makes Run look for messages now instead of at its next poll.
func (c *Consumer) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run consumes until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	t := time.NewTicker(c.poll)
	defer t.Stop()
	for {
		if _, err := c.ConsumeOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("inbox: consume", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.wake:
		}
	}
}

type head struct {
	peer, lane string
	seq        int64
}

// ConsumeOnce applies every message that is ready, lane by lane in sequence order, and returns
// how many it applied. A failing message stops its lane until its retry time.
func (c *Consumer) ConsumeOnce(ctx context.Context) (int, error) {
	total := 0
	for {
		heads, err := c.heads(ctx)
		if err != nil {
			return total, err
		}
		progressed := 0
		var first error // the first lane that failed; the others are still served
		for _, h := range heads {
			ok, err := c.applyOne(ctx, h)
			if err != nil {
				c.log.Warn("inbox: lane not served", "peer", h.peer, "lane", h.lane, "seq", h.seq, "err", err)
				if first == nil {
					first = fmt.Errorf("inbox: lane %s: %w", h.lane, err)
				}
				continue
			}
			if ok {
				progressed++
			}
		}
		total += progressed
		if first != nil || progressed == 0 {
			return total, first
		}
	}
}

func (c *Consumer) heads(ctx context.Context) ([]head, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT peer, lane, MIN(seq) FROM ferry_inbox WHERE consumed_at IS NULL GROUP BY peer, lane`)
	if err != nil {
		return nil, fmt.Errorf("inbox: heads: %w", err)
	}
	defer rows.Close()
	var out []head
	for rows.Next() {
		var h head
		if err := rows.Scan(&h.peer, &h.lane, &h.seq); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// applyOne applies the head message of a lane. It reports false when the message is not ready
// (waiting for a retry, or taken by another replica).
func (c *Consumer) applyOne(ctx context.Context, h head) (bool, error) {
	now := c.now().UTC()
	var (
		env     envelope.Envelope
		applied bool
		herr    error
		id      string
		attempt int
	)
	err := c.db.Tx(ctx, func(tx *sql.Tx) error {
		applied, herr = false, nil
		var raw []byte
		var next sql.NullTime
		err := tx.QueryRowContext(ctx, `SELECT message_id, envelope, next_try_at, attempts FROM ferry_inbox
			WHERE peer = $1 AND lane = $2 AND seq = $3 AND consumed_at IS NULL`+c.db.SkipLocked(), h.peer, h.lane, h.seq).Scan(&id, &raw, &next, &attempt)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if next.Valid && next.Time.After(now) {
			return nil
		}
		env, err = envelope.Unmarshal(raw)
		if err != nil {
			herr = err
			return herr
		}
		handler, ok := c.handlers[env.Type]
		if !ok {
			herr = fmt.Errorf("inbox: no handler for %s", env.Type)
			return herr
		}
		if herr = handler(ctx, tx, env); herr != nil {
			return herr
		}
		if _, err := tx.ExecContext(ctx, `UPDATE ferry_inbox SET consumed_at = $2, attempts = attempts + 1, last_error = '' WHERE message_id = $1`, id, now); err != nil {
			return err
		}
		applied = true
		return nil
	})
	if herr != nil {
		c.failures.WithLabelValues(env.Type).Inc()
		backoff := min(time.Duration(1<<min(attempt, 10))*time.Second, 5*time.Minute)
		c.log.Warn("inbox: handler failed; will retry", "message_id", id, "type", env.Type, "attempt", attempt+1, "retry_in", backoff.String(), "err", herr)
		_, err := c.db.ExecContext(ctx, `UPDATE ferry_inbox SET attempts = attempts + 1, last_error = $2, next_try_at = $3 WHERE message_id = $1`,
			id, errorText(herr.Error(), 500), now.Add(backoff))
		return false, err
	}
	if err != nil {
		return false, err
	}
	if applied {
		c.consumed.WithLabelValues(env.Type).Inc()
	}
	return applied, nil
}

// errorText is s as last_error can hold it: valid UTF-8 without NUL bytes (PostgreSQL refuses
// both in text), at most n bytes, cut at a character boundary (a handler's error may quote
// Chinese text from a bank or a business system).
func errorText(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

type pendingCollector struct{ db *sqldb.DB }

var pendingDesc = prometheus.NewDesc("ferry_inbox_pending", "Inbox messages received and not yet consumed, per lane.", []string{"lane"}, nil)

func (p *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pendingDesc }

func (p *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := p.db.QueryContext(ctx, `SELECT lane, count(*) FROM ferry_inbox WHERE consumed_at IS NULL GROUP BY lane`)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(pendingDesc, err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var lane string
		var n int64
		if rows.Scan(&lane, &n) == nil {
			ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(n), lane)
		}
	}
}

// ReceiveClauses are ReceiveTx, for a bundle that continues lane from its mark before, as
// PostgreSQL WITH clauses for a statement of the caller's, with arguments numbered from first:
// inbox_mark moves the lane's mark from before to the bundle's last sequence and returns a row,
// or none when the lane is not at before (the caller must then fail the statement, so that
// nothing of it is applied); inbox_rows returns a row for each message inserted (a message ID
// already present is skipped). msgs must be consecutive, start at or before before+1 and end
// after it.
func ReceiveClauses(peer, lane, bundleID string, msgs []Incoming, now time.Time, before int64, first int) (string, []any, error) {
	if err := checkConsecutive(msgs); err != nil {
		return "", nil, err
	}
	last := msgs[len(msgs)-1].Seq
	if msgs[0].Seq > before+1 || last <= before {
		return "", nil, fmt.Errorf("inbox: bundle %d..%d does not continue lane %s from %d", msgs[0].Seq, last, lane, before)
	}
	var ids, types, keys []string
	var seqs []int64
	var created []time.Time
	var raws [][]byte
	for _, m := range msgs {
		if m.Seq <= before {
			continue
		}
		e := m.Envelope
		ids, seqs, types, keys = append(ids, e.ID), append(seqs, m.Seq), append(types, e.Type), append(keys, e.Key)
		created, raws = append(created, e.CreatedAt.UTC()), append(raws, m.Raw)
	}
	n := func(i int) int { return first + i }
	q := fmt.Sprintf(`inbox_mark AS (
			UPDATE ferry_lane_in SET hwm = $%d, updated_at = $%d WHERE peer = $%d AND lane = $%d AND hwm = $%d RETURNING 1),
		inbox_rows AS (
			INSERT INTO ferry_inbox (message_id, peer, lane, seq, type, msg_key, created_at, envelope, bundle_id, received_at, consumed_at)
			SELECT u.id, $%d, $%d, u.seq, u.type, u.key, u.created, u.raw, $%d, $%d, %s
			FROM unnest($%d::text[], $%d::bigint[], $%d::text[], $%d::text[], $%d::timestamptz[], $%d::bytea[]) AS u(id, seq, type, key, created, raw)
			ON CONFLICT (message_id) DO NOTHING RETURNING 1)`,
		n(0), n(1), n(2), n(3), n(4), n(2), n(3), n(5), n(1), gapConsumed("u.type", fmt.Sprintf("$%d::timestamptz", n(1))),
		n(6), n(7), n(8), n(9), n(10), n(11))
	return q, []any{last, now.UTC(), peer, lane, before, bundleID, ids, seqs, types, keys, created, raws}, nil
}
