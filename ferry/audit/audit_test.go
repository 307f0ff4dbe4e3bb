package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/audit"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
)

func setup(t *testing.T, db *sqldb.DB) (*audit.Log, *prometheus.Registry) {
	t.Helper()
	sqltest.Must(t, schema.Migrate(context.Background(), db))
	reg := prometheus.NewRegistry()
	now := time.Date(2025, 3, 1, 8, 0, 0, 123456789, time.UTC)
	return audit.New(audit.Config{DB: db, Node: "ferry-dmz", Actor: "ferryd", Registry: reg,
		Now: func() time.Time { return now }}), reg
}

func TestRecordAndReadBack(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		l, _ := setup(t, db)
		in := audit.Record{Event: audit.BundleReceived, Result: audit.OK, BundleID: "00112233445566778899aabbccddeeff",
			Lane: "to-gateway.1", FirstSeq: 3, LastSeq: 4, Peer: "ferry-intranet",
			Digests: []string{strings.Repeat("a", 64), strings.Repeat("b", 64)}, Reason: "bad \x00 bytes \xff here"}
		sqltest.Must(t, l.Record(ctx, in))
		sqltest.Must(t, l.Record(ctx, audit.Record{Event: audit.BundleSent, Result: audit.OK}))
		got, err := audit.Recent(ctx, db, 10)
		sqltest.Must(t, err)
		if len(got) != 2 || got[0].Record.Event != audit.BundleSent || got[1].Record.Event != audit.BundleReceived {
			t.Fatalf("records %+v", got)
		}
		r := got[1].Record
		if r.Node != "ferry-dmz" || r.Actor != "ferryd" || r.FirstSeq != 3 || len(r.Digests) != 2 || r.Reason != "bad  bytes \uFFFD here" {
			t.Errorf("stored %+v", r)
		}
		if !r.At.Equal(time.Date(2025, 3, 1, 8, 0, 0, 123456000, time.UTC)) {
			t.Errorf("at %v", r.At)
		}
		for _, s := range got {
			if !s.Intact() {
				t.Errorf("record %d: leaf hash does not match its fields", s.ID)
			}
		}
		// Change one stored field behind the log's back: the leaf hash no longer matches.
		_, err = db.ExecContext(ctx, `UPDATE ferry_audit SET lane = 'to-gateway.2' WHERE id = $1`, got[1].ID)
		sqltest.Must(t, err)
		again, err := audit.Recent(ctx, db, 10)
		sqltest.Must(t, err)
		if again[1].Intact() || !again[0].Intact() {
			t.Error("tampered record not detected")
		}
	})
}

func TestLeafHashIsPrefixedSM3OfCanonical(t *testing.T) {
	r := audit.Record{At: time.Unix(1, 0), Node: "n", Event: "e"}
	c := r.Canonical()
	if string(c[:4]) != "FPL1" || len(c) != 4+8+(2+1+2+1+1+1)+16+3 {
		t.Fatalf("canonical % x", c)
	}
	other := r
	other.Node = "m"
	if r.LeafHash() == other.LeafHash() {
		t.Fatal("different records, same leaf")
	}
}

func TestFailClosed(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Open(t, sqldb.Postgres)
	l, reg := setup(t, db)
	_, err := db.ExecContext(ctx, `ALTER TABLE ferry_audit RENAME TO ferry_audit_away`)
	sqltest.Must(t, err)
	err = l.Record(ctx, audit.Record{Event: audit.BundleSent, Result: audit.OK})
	if !errors.Is(err, audit.ErrUnwritable) || !errors.Is(l.Err(), audit.ErrUnwritable) {
		t.Fatalf("record: %v, Err: %v", err, l.Err())
	}
	if n := counterValue(t, reg, "ferry_audit_failures_total"); n != 1 {
		t.Errorf("ferry_audit_failures_total = %v", n)
	}
	_, err = db.ExecContext(ctx, `ALTER TABLE ferry_audit_away RENAME TO ferry_audit`)
	sqltest.Must(t, err)
	sqltest.Must(t, l.Record(ctx, audit.Record{Event: audit.BundleSent, Result: audit.OK}))
	if l.Err() != nil {
		t.Fatalf("Err after recovery: %v", l.Err())
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	sqltest.Must(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A step's effect and its records commit together; a failing step leaves neither; steps of
// different callers run in parallel transactions (one waits inside its own for another to
// commit); and the log numbers the records in the order they were committed.
func TestCommitStepsInParallel(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		l, _ := setup(t, db)
		_, err := db.ExecContext(ctx, `CREATE TABLE work (name TEXT NOT NULL)`)
		sqltest.Must(t, err)
		insert := func(name string) audit.Step {
			return func(ctx context.Context, tx *sql.Tx) ([]audit.Record, error) {
				_, err := tx.ExecContext(ctx, `INSERT INTO work (name) VALUES ($1)`, name)
				return []audit.Record{{Event: audit.BundleSent, Result: audit.OK, BundleID: name}}, err
			}
		}
		boom := errors.New("step failed")
		err = l.Commit(ctx, func(ctx context.Context, tx *sql.Tx) ([]audit.Record, error) {
			if _, err := insert("failed")(ctx, tx); err != nil {
				return nil, err
			}
			return nil, boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("failing step: %v", err)
		}
		sqltest.Must(t, l.Commit(ctx, insert("first")))

		if db.Dialect == sqldb.Postgres { // SQLite has one writer at a time
			committed := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- l.Commit(ctx, func(ctx context.Context, tx *sql.Tx) ([]audit.Record, error) {
					select {
					case <-committed: // the other step committed while this one's transaction is open
					case <-time.After(10 * time.Second):
						return nil, errors.New("the other step did not commit while this one was open")
					}
					return insert("waiting")(ctx, tx)
				})
			}()
			sqltest.Must(t, l.Commit(ctx, insert("second")))
			close(committed)
			sqltest.Must(t, <-done)
		}

		recs, err := audit.Recent(ctx, db, 10)
		sqltest.Must(t, err)
		var got []string
		for i := len(recs) - 1; i >= 0; i-- {
			got = append(got, recs[i].Record.BundleID)
			if want := int64(len(recs) - i); recs[i].ID != want || !recs[i].Intact() {
				t.Fatalf("record %d: ID %d, intact %t", i, recs[i].ID, recs[i].Intact())
			}
		}
		want := "first"
		if db.Dialect == sqldb.Postgres {
			want = "first second waiting"
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("records %q, want %q", got, want)
		}
		var rows int
		sqltest.Must(t, db.QueryRowContext(ctx, `SELECT count(*) FROM work WHERE name = 'failed'`).Scan(&rows))
		if rows != 0 {
			t.Fatal("the failed step's effect was committed")
		}
	})
}

// While the log itself cannot take records (the sequencer fails), Commit refuses new work and
// says why; the records already written are kept and numbered once the log works again.
func TestCommitRefusedWhileLogUnwritable(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Open(t, sqldb.Postgres)
	l, reg := setup(t, db)
	_, err := db.ExecContext(ctx, `ALTER TABLE ferry_audit RENAME TO ferry_audit_away`)
	sqltest.Must(t, err)
	ran := 0
	step := func(id string) audit.Step {
		return func(context.Context, *sql.Tx) ([]audit.Record, error) {
			ran++
			return []audit.Record{{Event: audit.BundleReceived, Result: audit.OK, BundleID: id}}, nil
		}
	}
	// The first step's records are written; numbering them fails in the background.
	sqltest.Must(t, l.Commit(ctx, step("a")))
	fixture.Eventually(t, 10*time.Second, "the log reports that it cannot number records", func() bool {
		return errors.Is(l.Err(), audit.ErrUnwritable)
	})
	if err := l.Commit(ctx, step("b")); !errors.Is(err, audit.ErrUnwritable) || ran != 1 {
		t.Fatalf("commit while the log is unwritable: %v (steps run: %d)", err, ran)
	}
	if n := counterValue(t, reg, "ferry_audit_failures_total"); n < 2 {
		t.Errorf("ferry_audit_failures_total = %v", n)
	}
	_, err = db.ExecContext(ctx, `ALTER TABLE ferry_audit_away RENAME TO ferry_audit`)
	sqltest.Must(t, err)
	sqltest.Must(t, l.Commit(ctx, step("c")))
	if l.Err() != nil {
		t.Fatalf("Err after recovery: %v", l.Err())
	}
	recs, err := audit.Recent(ctx, db, 10)
	sqltest.Must(t, err)
	if len(recs) != 2 || recs[1].Record.BundleID != "a" || recs[0].Record.BundleID != "c" {
		t.Fatalf("records %+v", recs)
	}
}
