// Package store keeps the gateway's tables: the read model of payable bills, channel orders,
// raw channel notifications, confirmed payments and e-receipts. Queries are written once with
// $n placeholders for PostgreSQL and SQLite (see finepay/ferry/sqldb) and named table-then-verb.
//
// Every query method takes a Querier, so that callers compose them inside one transaction
// (*sql.Tx) or run them on their own (*sqldb.DB).
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Component is the name under which the gateway's migrations are recorded.
const Component = "gateway"

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("store: not found")

// Querier is what the query methods need: a *sql.Tx or a *sql.DB.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Store holds the database; its methods run their query on the Querier they are given.
type Store struct {
	DB *sqldb.DB
}

// New returns a store over db.
func New(db *sqldb.DB) *Store { return &Store{DB: db} }

// Migrations returns the gateway's numbered migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

// Migrate applies the ferry's tables (outbox, inbox) and the gateway's own.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	if err := schema.Migrate(ctx, db); err != nil {
		return err
	}
	return db.Migrate(ctx, Component, Migrations())
}

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func nullTime(t time.Time) sql.NullTime {
	if t.IsZero() {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: utc(t), Valid: true}
}

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return err
}

// IsUniqueViolation reports whether err is a unique-constraint violation.
func IsUniqueViolation(err error) bool { return sqldb.IsUniqueViolation(err) }
