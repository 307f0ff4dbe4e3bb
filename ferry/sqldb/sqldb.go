// Package sqldb opens FinePay's databases and keeps the differences between SQL engines in one
// place. PostgreSQL (through pgx/v5's database/sql driver) is the production engine; SQLite
// (modernc.org/sqlite, pure Go) is the embedded default for the demo and single-box pilots.
//
// Queries are written once, with $1-style placeholders, which both engines accept. Schema files
// are written once too, with a few type words that Migrate replaces per engine:
//
//	{{id}}     BIGSERIAL PRIMARY KEY         | INTEGER PRIMARY KEY AUTOINCREMENT
//	{{bytes}}  BYTEA                         | BLOB
//	{{ts}}     TIMESTAMPTZ                   | TIMESTAMP
//
// Times are stored in UTC.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names a SQL engine.
type Dialect string

// The supported engines.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DB is a database handle that knows its dialect.
type DB struct {
	*sql.DB
	Dialect Dialect
	URL     string
}

// ErrUnsupportedURL is returned by Open for a URL of no known engine.
var ErrUnsupportedURL = errors.New("sqldb: unsupported database URL (want postgres://... or sqlite:PATH)")

// Open opens a database by URL: postgres://... or postgresql://... for PostgreSQL, sqlite:PATH
// (or file:PATH) for SQLite. SQLite files are opened in WAL mode with a busy timeout and
// immediate transactions, so that a service and its ferryd can share one file.
func Open(ctx context.Context, url string) (*DB, error) {
	var (
		db  *sql.DB
		d   Dialect
		err error
	)
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		d = Postgres
		db, err = sql.Open("pgx", url)
		if err == nil {
			// As many idle connections as open ones: with fewer, a burst above the idle bound
			// closes connections as they come back and opens new ones at the next, and each
			// new PostgreSQL backend costs a process start and cold caches. At 500 ferry
			// messages/s that churn took most of a 2-core server's CPU.
			db.SetMaxOpenConns(20)
			db.SetMaxIdleConns(20)
			db.SetConnMaxIdleTime(5 * time.Minute)
		}
	case strings.HasPrefix(url, "sqlite:"), strings.HasPrefix(url, "file:"):
		d = SQLite
		p := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "file:")
		sep := "?"
		if strings.Contains(p, "?") {
			sep = "&"
		}
		dsn := "file:" + p + sep + "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate&_time_format=sqlite"
		db, err = sql.Open("sqlite", dsn)
		if err == nil {
			db.SetMaxOpenConns(4)
		}
	default:
		return nil, ErrUnsupportedURL
	}
	if err != nil {
		return nil, fmt.Errorf("sqldb: open: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqldb: connect %s: %w", d, err)
	}
	return &DB{DB: db, Dialect: d, URL: url}, nil
}

// Tx runs fn in a transaction and commits it, or rolls it back when fn fails. Serialization
// failures, deadlocks and SQLite busy errors are retried a few times with a fresh transaction,
// so fn must be safe to run again (it only talks to the database).
func (db *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = db.tx(ctx, fn)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
		}
	}
	return err
}

func (db *DB) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

// IsUniqueViolation reports whether err is a unique-constraint violation on either engine.
func IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// ForUpdate returns " FOR UPDATE" on PostgreSQL and "" on SQLite, whose immediate transactions
// already hold the write lock.
func (db *DB) ForUpdate() string {
	if db.Dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// SkipLocked returns " FOR UPDATE SKIP LOCKED" on PostgreSQL and "" on SQLite.
func (db *DB) SkipLocked() string {
	if db.Dialect == Postgres {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

// Rewrite replaces the schema type words in a migration with the dialect's types.
func (db *DB) Rewrite(stmt string) string {
	r := map[Dialect]*strings.Replacer{
		Postgres: strings.NewReplacer("{{id}}", "BIGSERIAL PRIMARY KEY", "{{bytes}}", "BYTEA", "{{ts}}", "TIMESTAMPTZ"),
		SQLite:   strings.NewReplacer("{{id}}", "INTEGER PRIMARY KEY AUTOINCREMENT", "{{bytes}}", "BLOB", "{{ts}}", "TIMESTAMP"),
	}[db.Dialect]
	return r.Replace(stmt)
}

// Migrate applies the numbered migrations NNNN_name.up.sql found at the top of fsys that have not
// been applied yet for component, each in its own transaction, recording them in
// schema_migrations. A migration named NNNN_name.postgres.up.sql holds PostgreSQL-only settings:
// on SQLite it is recorded as applied and its statements are not run. Concurrent migrators (a service and its ferryd starting together) are
// serialised by an advisory lock (PostgreSQL) or the write lock (SQLite).
func (db *DB) Migrate(ctx context.Context, component string, fsys fs.FS) error {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return fmt.Errorf("sqldb: migrations of %s: %w", component, err)
	}
	type mig struct {
		version int
		name    string
	}
	var migs []mig
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".up.sql") {
			continue
		}
		num, _, ok := strings.Cut(n, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("sqldb: migration %s: name must be NNNN_name.up.sql", n)
		}
		migs = append(migs, mig{v, n})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })

	create := db.Rewrite(`CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL, applied_at {{ts}} NOT NULL, PRIMARY KEY (component, version))`)
	for _, m := range migs {
		body, err := fs.ReadFile(fsys, path.Clean(m.name))
		if err != nil {
			return err
		}
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			if db.Dialect == Postgres {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7311)`); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, create); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE component = $1 AND version = $2`, component, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if strings.HasSuffix(m.name, ".postgres.up.sql") && db.Dialect != Postgres {
				body = nil // a PostgreSQL-only setting: recorded as applied, nothing to do
			}
			for _, stmt := range splitStatements(db.Rewrite(string(body))) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (component, version, name, applied_at) VALUES ($1, $2, $3, $4)`, component, m.version, m.name, time.Now().UTC())
			return err
		})
		if err != nil {
			return fmt.Errorf("sqldb: migrate %s: %w", component, err)
		}
	}
	return nil
}

// splitStatements splits a schema file on semicolons at line ends. Schema files keep to one
// statement per semicolon-terminated block and contain no procedural code.
func splitStatements(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";\n") {
		lines := strings.Split(part, "\n")
		var kept []string
		for _, l := range lines {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--") {
				kept = append(kept, l)
			}
		}
		if stmt := strings.TrimSuffix(strings.TrimSpace(strings.Join(kept, "\n")), ";"); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}
