package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"finepay/ferry/sqldb"
)

// ErrNotExported: records due for purging that no completed export covers.
var ErrNotExported = errors.New("audit: records not exported")

// PurgeResult says what Purge did.
type PurgeResult struct {
	Cutoff  time.Time // records stamped before this were candidates: min(before, now - retention)
	From    int64     // records From..To were purged (To < From: none)
	To      int64
	Clamped bool // before was later than now - retention
}

// PurgePlan works out what Purge would remove: the records stamped before min(before, now -
// retention) (a prefix of the log, as times never go back), provided completed exports cover
// all of them. The retention is the one ferryd was started with, never under MinRetention.
func PurgePlan(ctx context.Context, db *sqldb.DB, before, now time.Time) (PurgeResult, error) {
	head, err := ReadHead(ctx, db)
	if err != nil {
		return PurgeResult{}, err
	}
	keep := max(head.Retention, MinRetention)
	res := PurgeResult{Cutoff: before.UTC(), From: head.Purged + 1}
	if limit := now.UTC().Add(-keep); limit.Before(res.Cutoff) {
		res.Cutoff, res.Clamped = limit, true
	}
	// The last record to purge is the one before the first record at or after the cutoff.
	var firstKept sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT min(id) FROM ferry_audit WHERE id > $1 AND at >= $2`, head.Purged, res.Cutoff).Scan(&firstKept); err != nil {
		return res, fmt.Errorf("audit: purge: %w", err)
	}
	res.To = head.Size
	if firstKept.Valid {
		res.To = firstKept.Int64 - 1
	}
	if res.To < res.From {
		return res, nil
	}
	covered, err := exportedUpTo(ctx, db, head.Purged)
	if err != nil {
		return res, err
	}
	if covered < res.To {
		return res, fmt.Errorf("%w: records %d..%d are older than %s, but completed exports cover them only up to %d: run ferryctl audit export -from %d -to %d (or later) first",
			ErrNotExported, res.From, res.To, res.Cutoff.Format(time.RFC3339), covered, max(covered+1, res.From), res.To)
	}
	return res, nil
}

// exportedUpTo returns the highest record ID N such that completed exports cover every record
// from after to N.
func exportedUpTo(ctx context.Context, db *sqldb.DB, after int64) (int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT first_id, last_id FROM ferry_audit_export WHERE last_id > $1 ORDER BY first_id`, after)
	if err != nil {
		return 0, fmt.Errorf("audit: exports: %w", err)
	}
	defer rows.Close()
	covered := after
	for rows.Next() {
		var first, last int64
		if err := rows.Scan(&first, &last); err != nil {
			return 0, fmt.Errorf("audit: exports: %w", err)
		}
		if first > covered+1 {
			break
		}
		covered = max(covered, last)
	}
	return covered, rows.Err()
}

// Purge removes the records PurgePlan allows, keeping their leaf hashes in ferry_audit_purged
// (so that the checkpoints, proofs and later exports still verify), all in one transaction. It
// refuses (ErrNotExported) when records due are not exported, and removes nothing then.
func Purge(ctx context.Context, db *sqldb.DB, before, now time.Time) (PurgeResult, error) {
	res, err := PurgePlan(ctx, db, before, now)
	if err != nil || res.To < res.From {
		return res, err
	}
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		// The head's lock keeps records from being appended meanwhile; the guard on purged keeps
		// two purges from overlapping.
		r, err := tx.ExecContext(ctx, `UPDATE ferry_audit_head SET purged = $1 WHERE id = 1 AND purged = $2`, res.To, res.From-1)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("another purge ran meanwhile (%v)", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_audit_purged (id, leaf_hash)
			SELECT id, leaf_hash FROM ferry_audit WHERE id >= $1 AND id <= $2`, res.From, res.To); err != nil {
			return err
		}
		var kept int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM ferry_audit_purged WHERE id >= $1 AND id <= $2`, res.From, res.To).Scan(&kept); err != nil {
			return err
		}
		if kept != res.To-res.From+1 {
			return fmt.Errorf("%w: %d of records %d..%d found", ErrMissing, kept, res.From, res.To)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM ferry_audit WHERE id >= $1 AND id <= $2`, res.From, res.To)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("audit: purge %d..%d: %w", res.From, res.To, err)
	}
	return res, nil
}
