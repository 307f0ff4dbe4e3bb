// Package audit is the ferry's audit trail: one row in ferry_audit for every bundle sent,
// received, found to be a duplicate, rejected or acknowledged, every acknowledgement received,
// every refused link peer, and every administrative action. Rows are only ever inserted; the one
// exception is Purge, which removes records older than the retention that were exported first,
// and keeps their leaf hashes.
//
// # The log
//
// The records form a Merkle tree log in the shape of RFC 6962 (package merkle): record N (IDs
// start at 1 and have no gaps) is leaf N-1, and its leaf hash, stored with it as leaf_hash, is
// H(0x00 ‖ the record's canonical encoding); interior nodes are H(0x01 ‖ left ‖ right). H is the
// log's hash, SM3 by default or SHA-256, chosen before the first record and fixed afterwards
// (Configure). A record is written first to ferry_audit_pending, with the work it describes, and
// then numbered into the log by the sequencer, which hands out IDs under the lock of the head
// row (ferry_audit_head) and never stamps a record earlier than the one before it (see
// append.go).
//
// A Checkpointer signs the log's tree head at intervals and on shutdown (see Checkpoint for the
// signed text); Export writes a segment of the log with its checkpoints and certificates to a
// folder and Verify checks such a folder offline. A record is tamper-evident from the first
// checkpoint that covers it.
//
// # Canonical encoding
//
// The canonical encoding of a record, version 1, is:
//
//	magic      4 bytes  "FPL1"
//	at         8 bytes  big-endian int64, Unix microseconds, UTC
//	node       string
//	actor      string
//	event      string
//	result     string
//	bundle_id  string
//	lane       string
//	first_seq  8 bytes  big-endian int64
//	last_seq   8 bytes  big-endian int64
//	peer       string
//	digests    string   (the message digests, lowercase hex, joined with ",")
//	reason     string
//
// where each string is its length as an unsigned varint (encoding/binary, minimal) followed by
// its UTF-8 bytes. Strings are made valid UTF-8 without NUL bytes and cut to their field's limit
// before they are encoded and stored, so a stored row re-encodes to the bytes that were hashed.
// The record ID is not encoded: the leaf's position in the tree binds it.
//
// Writing is fail-closed: Record returns an error when the row cannot be written, and callers
// then fail the operation the record is about. Err reports the latest failure (until a later
// write succeeds) for the daemon's /readyz.
package audit

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/merkle"
	"finepay/ferry/sqldb"
)

// Events.
const (
	BundleSent         = "bundle.sent"
	BundleReceived     = "bundle.received"
	BundleDuplicate    = "bundle.duplicate"
	BundleRejected     = "bundle.rejected"
	BundleAcknowledged = "bundle.acknowledged"
	AckReceived        = "ack.received"
	LinkRefused        = "link.refused"
	RequestRejected    = "request.rejected" // a link request from the allowed peer that is not one (bad JSON, unknown route)
	AdminPrefix        = "admin."           // admin.start, admin.stop, admin.audit-read, ...
)

// Results.
const (
	OK       = "ok"
	Rejected = "rejected"
	Error    = "error"
)

// Field limits, in bytes.
const (
	maxShort  = 128
	maxPeer   = 512
	maxReason = 2048
)

// Record is one audit record.
type Record struct {
	At       time.Time
	Node     string
	Actor    string
	Event    string
	Result   string
	BundleID string
	Lane     string
	FirstSeq int64
	LastSeq  int64
	Peer     string
	Digests  []string
	Reason   string
}

// normalize returns the record as it will be stored: time in UTC microseconds, strings valid
// UTF-8 without NUL, cut to their limits.
func (r Record) normalize() Record {
	r.At = r.At.UTC().Truncate(time.Microsecond)
	for _, f := range []struct {
		s   *string
		max int
	}{
		{&r.Node, maxShort}, {&r.Actor, maxShort}, {&r.Event, maxShort}, {&r.Result, maxShort},
		{&r.BundleID, maxShort}, {&r.Lane, maxShort}, {&r.Peer, maxPeer}, {&r.Reason, maxReason},
	} {
		*f.s = clean(*f.s, f.max)
	}
	for i, d := range r.Digests {
		r.Digests[i] = clean(strings.ReplaceAll(d, ",", ""), maxShort)
	}
	return r
}

func clean(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Canonical returns the record's canonical encoding (see the package documentation). The record
// must be normalized (as Record and Recent return it).
func (r Record) Canonical() []byte {
	b := make([]byte, 0, 256+len(r.Reason)+65*len(r.Digests))
	b = append(b, "FPL1"...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.At.UnixMicro()))
	for _, s := range []string{r.Node, r.Actor, r.Event, r.Result, r.BundleID, r.Lane} {
		b = appendString(b, s)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(r.FirstSeq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.LastSeq))
	for _, s := range []string{r.Peer, strings.Join(r.Digests, ","), r.Reason} {
		b = appendString(b, s)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// LeafHash is SM3(0x00 ‖ Canonical()), the record's Merkle leaf hash in a log that uses SM3
// (the default).
func (r Record) LeafHash() [32]byte {
	return [32]byte(merkle.SM3.LeafHash(r.Canonical()))
}

// LeafHashWith is H(0x00 ‖ Canonical()), the record's leaf hash in a log that uses h.
func (r Record) LeafHashWith(h merkle.Hash) []byte { return h.LeafHash(r.Canonical()) }

// Config configures a Log.
type Config struct {
	DB       *sqldb.DB
	Node     string // the ferry node writing the records
	Actor    string // the default actor ("ferryd")
	Logger   *slog.Logger
	Now      func() time.Time // clock; time.Now when nil
	Registry prometheus.Registerer
}

// Log writes audit records to ferry_audit.
type Log struct {
	db       *sqldb.DB
	node     string
	actor    string
	log      *slog.Logger
	now      func() time.Time
	failures prometheus.Counter
	records  prometheus.Counter
	size     prometheus.Gauge

	mu       sync.Mutex
	writeErr error // the latest write to ferry_audit_pending failed
	seqErr   error // the latest sequencing run failed

	seq sequencer
}

// New returns a Log. Its metrics ferry_audit_failures_total, ferry_audit_records_total and
// ferry_audit_log_size are registered with cfg.Registry when given.
func New(cfg Config) *Log {
	l := &Log{db: cfg.DB, node: cfg.Node, actor: cfg.Actor, log: cfg.Logger, now: cfg.Now}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_audit_failures_total",
		Help: "Audit records that could not be written (the operation they were about failed)."})
	l.records = prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_audit_records_total",
		Help: "Audit records this process wrote."})
	l.size = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_audit_log_size",
		Help: "Leaves of the audit log (its last record ID), as of the latest record or checkpoint of this process."})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(l.failures, l.records, l.size)
	}
	return l
}

// ErrUnwritable wraps every failure to write a record.
var ErrUnwritable = errors.New("audit: cannot write audit record")

// Record writes r, filling in the time, node and actor when they are empty, and returns once
// it is numbered into the log. It returns an error wrapping ErrUnwritable when it could not be
// written or numbered (one written is numbered by a later run); the caller must then fail the
// operation r describes.
func (l *Log) Record(ctx context.Context, r Record) error {
	r = l.fill(r)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w (%s): %w", ErrUnwritable, r.Event, err) // cancelled, not a store failure
	}
	if err := l.wrote(ctx, r, insertPending(ctx, l.db, []Record{r})); err != nil {
		return err
	}
	l.records.Inc()
	return l.sequence(ctx)
}

// Commit runs step in a transaction of its own and writes the records it returns in the same
// transaction, so that the step's effect and its audit records are committed together or not at
// all; the records are then numbered into the log in the background. Steps of different callers
// run in parallel: they take no lock of the log's. The records are filled in like Record's.
//
// When step fails, Commit returns its error as is and nothing of it was applied. When the
// records cannot be written, or the log cannot take records now (the sequencer failed and still
// fails), Commit returns an error wrapping ErrUnwritable (counted, and reported through Err);
// nothing was applied either.
func (l *Log) Commit(ctx context.Context, step Step) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnwritable, err)
	}
	if err := l.takesRecords(ctx); err != nil {
		return err
	}
	var recs []Record
	err := l.db.Tx(ctx, func(tx *sql.Tx) error {
		rs, err := step(ctx, tx)
		if err != nil {
			return &stepFailed{err}
		}
		recs = rs
		for i := range recs {
			recs[i] = l.fill(recs[i])
		}
		return insertPending(ctx, tx, recs)
	})
	if sf := (*stepFailed)(nil); errors.As(err, &sf) {
		return sf.err
	}
	var r Record
	if len(recs) > 0 {
		r = recs[0]
	}
	if err := l.wrote(ctx, r, err); err != nil {
		return err
	}
	if len(recs) > 0 {
		l.records.Add(float64(len(recs)))
		l.kick()
	}
	return nil
}

// wrote reports the outcome of a write to ferry_audit_pending (r is the first record of it).
func (l *Log) wrote(ctx context.Context, r Record, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%s): %w", ErrUnwritable, r.Event, err) // cancelled, not a store failure
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		if l.writeErr != nil {
			l.log.Info("audit: records are written again")
		}
		l.writeErr = nil
		return nil
	}
	l.failures.Inc()
	err = fmt.Errorf("%w (%s %s): %w", ErrUnwritable, r.Event, r.BundleID, err)
	if l.writeErr == nil {
		l.log.Error("audit: cannot write records; the ferry stops moving messages until it can", "event", r.Event, "err", err)
	}
	l.writeErr = err
	return err
}

// takesRecords returns nil when the log takes records: the latest sequencing run succeeded, or
// one run now does.
func (l *Log) takesRecords(ctx context.Context) error {
	l.mu.Lock()
	failing := l.seqErr != nil
	l.mu.Unlock()
	if failing {
		return l.sequence(ctx)
	}
	return nil
}

// fill fills in r's time, node and actor when they are empty, and normalizes it.
func (l *Log) fill(r Record) Record {
	if r.At.IsZero() {
		r.At = l.now()
	}
	if r.Node == "" {
		r.Node = l.node
	}
	if r.Actor == "" {
		r.Actor = l.actor
	}
	r.Digests = append([]string(nil), r.Digests...)
	return r.normalize()
}

// observeSize sets ferry_audit_log_size.
func (l *Log) observeSize(n int64) { l.size.Set(float64(n)) }

// Err returns why records cannot be written or numbered into the log now, or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.writeErr, l.seqErr)
}

// Stored is a record as read back, with its row ID and stored leaf hash.
type Stored struct {
	ID       int64
	Record   Record
	LeafHash []byte
	Hash     merkle.Hash // the log's hash; zero means SM3
}

// Intact reports whether the stored leaf hash matches the record's fields.
func (s Stored) Intact() bool {
	h := s.Hash
	if h == 0 {
		h = merkle.SM3
	}
	return string(s.Record.LeafHashWith(h)) == string(s.LeafHash)
}

// Recent returns the n most recent records, newest first.
func Recent(ctx context.Context, db *sqldb.DB, n int) ([]Stored, error) {
	out, err := query(ctx, db, `ORDER BY id DESC LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("audit: recent: %w", err)
	}
	return out, nil
}

// Range returns the stored records with IDs first to last, in ID order (those that exist).
func Range(ctx context.Context, db *sqldb.DB, first, last int64) ([]Stored, error) {
	out, err := query(ctx, db, `WHERE id >= $1 AND id <= $2 ORDER BY id`, first, last)
	if err != nil {
		return nil, fmt.Errorf("audit: records %d..%d: %w", first, last, err)
	}
	return out, nil
}

// Matching returns the stored records of bundleID, in ID order.
func Matching(ctx context.Context, db *sqldb.DB, bundleID string) ([]Stored, error) {
	out, err := query(ctx, db, `WHERE bundle_id = $1 ORDER BY id`, bundleID)
	if err != nil {
		return nil, fmt.Errorf("audit: records of bundle %s: %w", bundleID, err)
	}
	return out, nil
}

// query returns the records eachRecord selects, after numbering the pending ones into the log.
func query(ctx context.Context, db *sqldb.DB, where string, args ...any) ([]Stored, error) {
	if _, _, err := Sequence(ctx, db); err != nil {
		return nil, err
	}
	var out []Stored
	err := eachRecord(ctx, db, where, args, func(s Stored) error {
		out = append(out, s)
		return nil
	})
	return out, err
}

// eachRecord calls fn with each record the query's WHERE and ORDER BY clauses select.
func eachRecord(ctx context.Context, db *sqldb.DB, where string, args []any, fn func(Stored) error) error {
	head, err := ReadHead(ctx, db)
	if err != nil {
		return err
	}
	rows, err := db.QueryContext(ctx, `SELECT id, at, node, actor, event, result, bundle_id, lane, first_seq, last_seq,
		peer, digests, reason, leaf_hash FROM ferry_audit `+where, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		s := Stored{Hash: head.Hash}
		var digests string
		r := &s.Record
		if err := rows.Scan(&s.ID, &r.At, &r.Node, &r.Actor, &r.Event, &r.Result, &r.BundleID, &r.Lane,
			&r.FirstSeq, &r.LastSeq, &r.Peer, &digests, &r.Reason, &s.LeafHash); err != nil {
			return err
		}
		r.At = r.At.UTC()
		if digests != "" {
			r.Digests = strings.Split(digests, ",")
		}
		if err := fn(s); err != nil {
			return err
		}
	}
	return rows.Err()
}
