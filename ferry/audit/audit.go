// Package audit is the ferry's audit trail: one row in ferry_audit for every bundle sent,
// received, found to be a duplicate, rejected or acknowledged, every acknowledgement received,
// every refused link peer, and every administrative action. Rows are only ever inserted; this
// package has no code that updates or deletes them.
//
// Each record carries leaf_hash, the SM3 digest of 0x00 followed by the record's canonical
// encoding, so that records can become the leaves of an RFC 6962 Merkle tree log (0x00 is RFC
// 6962's leaf prefix; interior nodes will use 0x01). The canonical encoding, version 1, is:
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
//
// Writing is fail-closed: Record returns an error when the row cannot be written, and callers
// then fail the operation the record is about. Err reports the latest failure (until a later
// write succeeds) for the daemon's /readyz.
package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/sqldb"
	"finepay/shared/gm"
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
	AdminPrefix        = "admin." // admin.start, admin.stop, admin.audit-read, ...
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

// LeafHash is SM3(0x00 ‖ Canonical()), the record's Merkle leaf hash.
func (r Record) LeafHash() [32]byte {
	return gm.SM3(append([]byte{0x00}, r.Canonical()...))
}

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

	mu      sync.Mutex
	lastErr error
}

// New returns a Log. Its counter ferry_audit_failures_total is registered with cfg.Registry
// when given.
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
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(l.failures)
	}
	return l
}

// ErrUnwritable wraps every failure to write a record.
var ErrUnwritable = errors.New("audit: cannot write audit record")

// Record writes r, filling in the time, node and actor when they are empty. It returns an error
// wrapping ErrUnwritable when the row could not be written; the caller must then fail the
// operation r describes.
func (l *Log) Record(ctx context.Context, r Record) error {
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
	r = r.normalize()
	leaf := r.LeafHash()
	_, err := l.db.ExecContext(ctx, `INSERT INTO ferry_audit (at, node, actor, event, result, bundle_id, lane,
		first_seq, last_seq, peer, digests, reason, leaf_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		r.At, r.Node, r.Actor, r.Event, r.Result, r.BundleID, r.Lane, r.FirstSeq, r.LastSeq, r.Peer,
		strings.Join(r.Digests, ","), r.Reason, leaf[:])
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%s): %w", ErrUnwritable, r.Event, err) // cancelled, not a store failure
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failures.Inc()
		err = fmt.Errorf("%w (%s %s): %w", ErrUnwritable, r.Event, r.BundleID, err)
		if l.lastErr == nil {
			l.log.Error("audit: cannot write records; the ferry stops moving messages until it can", "event", r.Event, "err", err)
		}
		l.lastErr = err
		return err
	}
	if l.lastErr != nil {
		l.log.Info("audit: records are written again")
	}
	l.lastErr = nil
	return nil
}

// Err returns the latest write failure, or nil when the latest write succeeded.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// Stored is a record as read back, with its row ID and stored leaf hash.
type Stored struct {
	ID       int64
	Record   Record
	LeafHash []byte
}

// Intact reports whether the stored leaf hash matches the record's fields.
func (s Stored) Intact() bool {
	h := s.Record.LeafHash()
	return string(h[:]) == string(s.LeafHash)
}

// Recent returns the n most recent records, newest first.
func Recent(ctx context.Context, db *sqldb.DB, n int) ([]Stored, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, at, node, actor, event, result, bundle_id, lane, first_seq, last_seq,
		peer, digests, reason, leaf_hash FROM ferry_audit ORDER BY id DESC LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("audit: recent: %w", err)
	}
	defer rows.Close()
	var out []Stored
	for rows.Next() {
		var s Stored
		var digests string
		r := &s.Record
		if err := rows.Scan(&s.ID, &r.At, &r.Node, &r.Actor, &r.Event, &r.Result, &r.BundleID, &r.Lane,
			&r.FirstSeq, &r.LastSeq, &r.Peer, &digests, &r.Reason, &s.LeafHash); err != nil {
			return nil, fmt.Errorf("audit: recent: %w", err)
		}
		r.At = r.At.UTC()
		if digests != "" {
			r.Digests = strings.Split(digests, ",")
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
