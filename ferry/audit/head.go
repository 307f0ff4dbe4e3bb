package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"finepay/ferry/merkle"
	"finepay/ferry/sqldb"
)

// MinRetention is the shortest retention accepted: network logs are kept at least six months
// (Cybersecurity Law art. 21), taken as 184 days, the longest six calendar months.
const MinRetention = 184 * 24 * time.Hour

// DefaultHash is the log's hash unless configured otherwise.
const DefaultHash = merkle.SM3

// Errors.
var (
	// ErrRetention: a retention under MinRetention.
	ErrRetention = errors.New("audit: retention under 184 days (network logs are kept at least six months)")
	// ErrHashFixed: the log already has records under another hash.
	ErrHashFixed = errors.New("audit: the log's hash is fixed once it has records")
)

// Head is the state of the log.
type Head struct {
	Size      int64         // records appended: the last record ID
	LastAt    time.Time     // time of the latest record
	Hash      merkle.Hash   // the tree's hash
	Purged    int64         // records 1..Purged were purged (their leaf hashes are kept)
	Retention time.Duration // retention ferryd was last started with
}

// ReadHead returns the log's head.
func ReadHead(ctx context.Context, db *sqldb.DB) (Head, error) {
	var h Head
	var lastAt, retention int64
	var name string
	err := db.QueryRowContext(ctx, `SELECT size, last_at_us, hash, purged, retention_s FROM ferry_audit_head WHERE id = 1`).
		Scan(&h.Size, &lastAt, &name, &h.Purged, &retention)
	if err != nil {
		return h, fmt.Errorf("audit: log head: %w", err)
	}
	if h.Hash, err = merkle.ParseHash(name); err != nil {
		return h, fmt.Errorf("audit: log head: %w", err)
	}
	h.LastAt = time.UnixMicro(lastAt).UTC()
	h.Retention = time.Duration(retention) * time.Second
	return h, nil
}

// CheckRetention refuses a retention under MinRetention.
func CheckRetention(d time.Duration) error {
	if d < MinRetention {
		return fmt.Errorf("%w: %s is %.1f days", ErrRetention, d, d.Hours()/24)
	}
	return nil
}

// Configure sets the log's hash and retention, as ferryd does at start. The hash can only
// change while the log is empty: a log's leaves and checkpoints are all under one hash.
func Configure(ctx context.Context, db *sqldb.DB, h merkle.Hash, retention time.Duration) error {
	if err := CheckRetention(retention); err != nil {
		return err
	}
	if !h.Valid() {
		return fmt.Errorf("%w %d", merkle.ErrUnknownHash, h)
	}
	res, err := db.ExecContext(ctx, `UPDATE ferry_audit_head SET hash = $1, retention_s = $2 WHERE id = 1 AND (size = 0 OR hash = $1)`,
		h.String(), int64(retention/time.Second))
	if err != nil {
		return fmt.Errorf("audit: configure: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	head, err := ReadHead(ctx, db)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: it has %d records under %s, %s was asked for (start a new log to change it)", ErrHashFixed, head.Size, head.Hash, h)
}
