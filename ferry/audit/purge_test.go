package audit_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/merkle"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
)

// Purge removes only records older than the retention that an export covers; the log stays
// verifiable afterwards, from the purged point and across it.
func TestPurge(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newLogEnv(t, db, merkle.SM3)
		now := e.now
		e.clock.Set(now.Add(-200 * 24 * time.Hour))
		e.write(t, 10) // old records
		old := e.checkpoint(t)
		e.clock.Set(now)
		e.write(t, 5) // recent records
		e.checkpoint(t)
		before := now // everything older than the retention is due

		if _, err := audit.Purge(ctx, db, before, now); !errors.Is(err, audit.ErrNotExported) {
			t.Fatalf("purge of unexported records: %v", err)
		}
		if head, _ := audit.ReadHead(ctx, db); head.Purged != 0 {
			t.Fatalf("purged %d", head.Purged)
		}
		// Export records 1..6 only: still refused, records 7..10 are not covered.
		m6, err := audit.Export(ctx, db, filepath.Join(t.TempDir(), "a"), audit.ExportOptions{Last: 6})
		sqltest.Must(t, err)
		sqltest.Must(t, audit.RecordExport(ctx, db, m6, "a", "tester", now))
		if _, err := audit.Purge(ctx, db, before, now); !errors.Is(err, audit.ErrNotExported) {
			t.Fatalf("purge past the export: %v", err)
		}
		dir := filepath.Join(t.TempDir(), "b")
		m, err := audit.Export(ctx, db, dir, audit.ExportOptions{First: 7, Last: 10})
		sqltest.Must(t, err)
		sqltest.Must(t, audit.RecordExport(ctx, db, m, dir, "tester", now))
		res, err := audit.Purge(ctx, db, before, now)
		if err != nil || res.From != 1 || res.To != 10 || !res.Clamped {
			t.Fatalf("purge: %+v %v", res, err)
		}
		if n := count(t, db, `SELECT count(*) FROM ferry_audit`); n != 5 {
			t.Fatalf("%d records left", n)
		}
		if n := count(t, db, `SELECT count(*) FROM ferry_audit_purged`); n != 10 {
			t.Fatalf("%d leaf hashes kept", n)
		}
		// Nothing more is due.
		if res, err := audit.Purge(ctx, db, before, now); err != nil || res.To >= res.From {
			t.Fatalf("second purge: %+v %v", res, err)
		}
		// The rest verifies, against the checkpoint of the purged records as well.
		e.write(t, 2)
		e.checkpoint(t)
		rest := e.export(t, audit.ExportOptions{})
		rep, err := e.verify(t, rest, old.Note)
		if err != nil || rep.First != 11 || rep.Last != 17 {
			t.Fatalf("after purge: %+v %v", rep, err)
		}
		if _, err := audit.Export(ctx, db, filepath.Join(t.TempDir(), "c"), audit.ExportOptions{First: 3}); err == nil {
			t.Fatal("exported purged records")
		}
		// A later segment against the same trusted checkpoint: the consistency proof crosses
		// the purged records by their kept leaf hashes.
		later := e.export(t, audit.ExportOptions{First: 14, ConsistencyFrom: 10})
		if _, err := e.verify(t, later, old.Note); err != nil {
			t.Fatalf("consistency across the purge: %v", err)
		}
	})
}

// Records inside the retention are never purged, whatever the date asked for.
func TestPurgeKeepsRetention(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Open(t, sqldb.Postgres)
	e := newLogEnv(t, db, merkle.SM3)
	e.write(t, 3)
	e.checkpoint(t)
	m, err := audit.Export(ctx, db, filepath.Join(t.TempDir(), "a"), audit.ExportOptions{})
	sqltest.Must(t, err)
	sqltest.Must(t, audit.RecordExport(ctx, db, m, "a", "tester", e.clock.Now()))
	now := e.clock.Now().Add(100 * 24 * time.Hour)
	res, err := audit.Purge(ctx, db, now, now)
	if err != nil || res.To >= res.From || !res.Clamped {
		t.Fatalf("purge within retention: %+v %v", res, err)
	}
	if n := count(t, db, `SELECT count(*) FROM ferry_audit`); n != 3 {
		t.Fatalf("%d records left", n)
	}
}

func count(t *testing.T, db *sqldb.DB, q string) int {
	t.Helper()
	var n int
	sqltest.Must(t, db.QueryRowContext(context.Background(), q).Scan(&n))
	return n
}
