// Package outbox is the sending half of the ferry as the services see it. A service puts a
// message in the outbox inside the same database transaction as the business change that
// caused it, so the message exists exactly when the change does. The message gets the next
// sequence number of its lane; because the lane row stays locked until the transaction ends,
// sequence order is commit order and a lane never has a gap.
//
// ferryd reads pending rows with Pending, bundles them, and retires them with Ack once the peer
// has acknowledged them.
package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
)

// ErrDuplicate is returned by Put for a message ID already in the outbox. The caller's
// transaction must be rolled back.
var ErrDuplicate = errors.New("outbox: message ID already queued")

// Outbox puts messages into lanes.
type Outbox struct {
	partitions int
}

// New returns an outbox that spreads each direction over partitions lanes by message key.
func New(partitions int) *Outbox {
	if partitions < 1 {
		partitions = 1
	}
	return &Outbox{partitions: partitions}
}

// Placed says where a message went.
type Placed struct {
	Lane string
	Seq  int64
}

// Put validates env against the catalogue and queues it in tx.
func (o *Outbox) Put(ctx context.Context, tx *sql.Tx, env envelope.Envelope) (Placed, error) {
	if err := env.Check(); err != nil {
		return Placed{}, err
	}
	raw, err := env.Marshal()
	if err != nil {
		return Placed{}, err
	}
	lane, err := envelope.Lane(env.Type, env.Key, o.partitions)
	if err != nil {
		return Placed{}, err
	}
	var seq int64
	err = tx.QueryRowContext(ctx, `INSERT INTO ferry_lane_out (lane, last_seq, acked_seq) VALUES ($1, 1, 0)
		ON CONFLICT (lane) DO UPDATE SET last_seq = ferry_lane_out.last_seq + 1 RETURNING last_seq`, lane).Scan(&seq)
	if err != nil {
		return Placed{}, fmt.Errorf("outbox: lane %s: %w", lane, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO ferry_outbox (lane, seq, message_id, type, msg_key, created_at, envelope)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, lane, seq, env.ID, env.Type, env.Key, env.CreatedAt.UTC(), raw)
	if err != nil {
		if sqldb.IsUniqueViolation(err) {
			return Placed{}, fmt.Errorf("%w: %s", ErrDuplicate, env.ID)
		}
		return Placed{}, fmt.Errorf("outbox: insert: %w", err)
	}
	return Placed{Lane: lane, Seq: seq}, nil
}

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
	rows, err := db.QueryContext(ctx, `SELECT lane, seq, message_id, type, msg_key, created_at, envelope
		FROM ferry_outbox WHERE lane = $1 AND seq > $2 ORDER BY seq LIMIT $3`, lane, after, limit)
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
	rows, err := db.QueryContext(ctx, `SELECT lane, last_seq, acked_seq FROM ferry_lane_out ORDER BY lane`)
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

// ErrAckBeyondSent is returned by Ack for a sequence that was never handed out.
var ErrAckBeyondSent = errors.New("outbox: acknowledgement beyond the last sequence sent")

// Ack records that the peer committed lane up to and including seq, and retires those rows.
// Acknowledging a sequence at or below the current one changes nothing.
func Ack(ctx context.Context, db *sqldb.DB, lane string, seq int64, now time.Time) (retired int64, err error) {
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		var last, acked int64
		err := tx.QueryRowContext(ctx, `SELECT last_seq, acked_seq FROM ferry_lane_out WHERE lane = $1`+db.ForUpdate(), lane).Scan(&last, &acked)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: unknown lane %s", ErrAckBeyondSent, lane)
		}
		if err != nil {
			return err
		}
		if seq > last {
			return fmt.Errorf("%w: lane %s ack %d > last %d", ErrAckBeyondSent, lane, seq, last)
		}
		if seq <= acked {
			retired = 0
			return nil
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM ferry_outbox WHERE lane = $1 AND seq <= $2`, lane, seq)
		if err != nil {
			return err
		}
		retired, _ = res.RowsAffected()
		_, err = tx.ExecContext(ctx, `UPDATE ferry_lane_out SET acked_seq = $2, acked_at = $3 WHERE lane = $1`, lane, seq, now.UTC())
		return err
	})
	return retired, err
}

// BacklogCollector exports ferry_outbox_backlog{lane}: messages queued but not yet acknowledged,
// read from the database at each scrape.
type BacklogCollector struct {
	db   *sqldb.DB
	desc *prometheus.Desc
}

// NewBacklogCollector returns a collector over db's outgoing lanes.
func NewBacklogCollector(db *sqldb.DB, service string) *BacklogCollector {
	return &BacklogCollector{db: db, desc: prometheus.NewDesc("ferry_outbox_backlog",
		"Messages in the outbox not yet acknowledged by the peer, per lane.", []string{"lane"},
		prometheus.Labels{"service": service})}
}

// Describe implements prometheus.Collector.
func (c *BacklogCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *BacklogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lanes, err := Lanes(ctx, c.db)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, l := range lanes {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Backlog()), l.Lane)
	}
}
