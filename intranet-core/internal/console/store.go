package console

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"finepay/ferry/sqldb"
)

type user struct {
	Username     string
	PasswordHash string
	FailedLogins int
	LockedUntil  sql.NullTime
}

var errNoUser = errors.New("console: no such user")

func userGet(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, db *sqldb.DB, name string, lock bool) (user, error) {
	var u user
	query := `SELECT username, password_hash, failed_logins, locked_until FROM console_users WHERE username = $1`
	if lock {
		query += db.ForUpdate()
	}
	err := q.QueryRowContext(ctx, query, name).Scan(&u.Username, &u.PasswordHash, &u.FailedLogins, &u.LockedUntil)
	if errors.Is(err, sql.ErrNoRows) {
		return u, errNoUser
	}
	return u, err
}

func userInsert(ctx context.Context, db *sqldb.DB, name, hash string, now time.Time) (bool, error) {
	res, err := db.ExecContext(ctx, `INSERT INTO console_users (username, password_hash, failed_logins, created_at, password_set_at)
		VALUES ($1, $2, 0, $3, $3) ON CONFLICT (username) DO NOTHING`, name, hash, now.UTC())
	if err != nil {
		return false, fmt.Errorf("console: create user: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func sessionInsert(ctx context.Context, tx *sql.Tx, idHash, name, csrf string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO console_sessions (id_hash, username, csrf_token, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)`,
		idHash, name, csrf, now.UTC())
	return err
}

type session struct {
	Username string
	CSRF     string
	LastSeen time.Time
}

func sessionGet(ctx context.Context, db *sqldb.DB, idHash string) (session, bool, error) {
	var s session
	err := db.QueryRowContext(ctx, `SELECT username, csrf_token, last_seen_at FROM console_sessions WHERE id_hash = $1`, idHash).
		Scan(&s.Username, &s.CSRF, &s.LastSeen)
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	return s, err == nil, err
}

func sessionTouch(ctx context.Context, db *sqldb.DB, idHash string, now time.Time) error {
	_, err := db.ExecContext(ctx, `UPDATE console_sessions SET last_seen_at = $2 WHERE id_hash = $1`, idHash, now.UTC())
	return err
}

func sessionDelete(ctx context.Context, db *sqldb.DB, idHash string) error {
	_, err := db.ExecContext(ctx, `DELETE FROM console_sessions WHERE id_hash = $1`, idHash)
	return err
}

func sessionDeleteIdle(ctx context.Context, db *sqldb.DB, before time.Time) error {
	_, err := db.ExecContext(ctx, `DELETE FROM console_sessions WHERE last_seen_at < $1`, before.UTC())
	return err
}

// AuditEntry is a console audit record.
type AuditEntry struct {
	At     time.Time
	Actor  string
	Event  string
	Result string
	Source string
	Detail string
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func auditInsert(ctx context.Context, q execer, e AuditEntry) error {
	_, err := q.ExecContext(ctx, `INSERT INTO console_audit (at, actor, event, result, source, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		e.At.UTC(), e.Actor, e.Event, e.Result, e.Source, e.Detail)
	if err != nil {
		return fmt.Errorf("console: audit: %w", err)
	}
	return nil
}

// AuditList returns the console audit records, oldest first.
func AuditList(ctx context.Context, db *sqldb.DB) ([]AuditEntry, error) {
	rows, err := db.QueryContext(ctx, `SELECT at, actor, event, result, source, detail FROM console_audit ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.At, &e.Actor, &e.Event, &e.Result, &e.Source, &e.Detail); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
