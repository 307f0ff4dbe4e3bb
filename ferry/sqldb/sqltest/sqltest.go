// Package sqltest gives tests a database of their own: a fresh PostgreSQL database created for
// the test and dropped after it, or a SQLite file in the test's temporary directory. Only test
// code imports it.
package sqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"finepay/ferry/sqldb"
)

// AdminURL is the PostgreSQL server tests use: FINEPAY_TEST_PG_URL, or the local server with
// trust authentication.
func AdminURL() string {
	if u := os.Getenv("FINEPAY_TEST_PG_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewPostgresURL creates an empty database and returns its URL; it is dropped when the test ends.
func NewPostgresURL(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	admin, err := sql.Open("pgx", AdminURL())
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	b := make([]byte, 6)
	rand.Read(b)
	name := "fp_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("sqltest: create database (is PostgreSQL running at %s?): %v", AdminURL(), err)
	}
	tb.Cleanup(func() {
		a, err := sql.Open("pgx", AdminURL())
		if err != nil {
			return
		}
		defer a.Close()
		a.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(AdminURL())
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// NewSQLiteURL returns the URL of a SQLite file in the test's temporary directory.
func NewSQLiteURL(tb testing.TB) string {
	tb.Helper()
	return "sqlite:" + filepath.Join(tb.TempDir(), "test.db")
}

// Open opens a fresh database of the dialect, closed when the test ends.
func Open(tb testing.TB, d sqldb.Dialect) *sqldb.DB {
	tb.Helper()
	var u string
	switch d {
	case sqldb.Postgres:
		u = NewPostgresURL(tb)
	case sqldb.SQLite:
		u = NewSQLiteURL(tb)
	default:
		tb.Fatalf("sqltest: dialect %q", d)
	}
	db, err := sqldb.Open(context.Background(), u)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// Dialects lists the engines store tests run on.
var Dialects = []sqldb.Dialect{sqldb.Postgres, sqldb.SQLite}

// Each runs fn as a subtest on a fresh database of every dialect.
func Each(t *testing.T, fn func(t *testing.T, db *sqldb.DB)) {
	for _, d := range Dialects {
		t.Run(string(d), func(t *testing.T) {
			fn(t, Open(t, d))
		})
	}
}

// Must fails the test on err.
func Must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(fmt.Errorf("sqltest: %w", err))
	}
}
