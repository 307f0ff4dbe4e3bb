package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/sqldb"
)

// auditLog is a ferry database with an audit log and the checkpointer ferryd would run.
type auditLog struct {
	db  *sqldb.DB
	ca  string // ca.pem
	log *audit.Log
	cp  *audit.Checkpointer
	at  time.Time // the records' clock
}

func newAuditLog(t *testing.T) *auditLog {
	t.Helper()
	pki := fixture.NewPKI(t)
	n := pki.Node(t, fixture.DMZ)
	a := &auditLog{db: fixture.DB(t), ca: filepath.Join(pki.Dir, "ca.pem"), at: time.Now().UTC()}
	a.log = audit.New(audit.Config{DB: a.db, Node: fixture.DMZ, Actor: "ferryd", Now: func() time.Time { return a.at }})
	var err error
	a.cp, err = audit.NewCheckpointer(audit.CheckpointerConfig{DB: a.db, Origin: fixture.DMZ, Signer: n.Sign.Key, Cert: n.Sign.Cert, CA: pki.CA.Cert})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *auditLog) write(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		a.at = a.at.Add(time.Second)
		if err := a.log.Record(context.Background(), audit.Record{Event: audit.BundleReceived, Result: audit.OK, Lane: "to-gateway.0",
			FirstSeq: int64(i + 1), LastSeq: int64(i + 1), BundleID: "00112233445566778899aabbccddeeff", Peer: fixture.Intranet}); err != nil {
			t.Fatal(err)
		}
	}
}

func (a *auditLog) checkpoint(t *testing.T) {
	t.Helper()
	if _, made, err := a.cp.Checkpoint(context.Background()); err != nil || !made {
		t.Fatalf("checkpoint: %v %v", made, err)
	}
}

func mustRun(t *testing.T, want int, args ...string) string {
	t.Helper()
	code, out, errs := ferryctl(t, args...)
	if code != want {
		t.Fatalf("ferryctl %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errs)
	}
	return out + errs
}

// Export, verify, tamper, purge: the auditor's round, through the command line.
func TestAuditExportVerifyPurge(t *testing.T) {
	a := newAuditLog(t)
	a.at = a.at.Add(-200 * 24 * time.Hour) // records older than the retention
	a.write(t, 6)
	a.checkpoint(t)
	a.at = time.Now().UTC()
	a.write(t, 3)
	a.checkpoint(t)
	dir := filepath.Join(t.TempDir(), "seg1")

	// Purge refuses what was not exported, and removes nothing.
	out := mustRun(t, 1, "-db", a.db.URL, "audit", "purge", "-before", time.Now().UTC().Format("2006-01-02"))
	if !strings.Contains(out, "not exported") && !strings.Contains(out, "exports cover them only") {
		t.Fatalf("purge of unexported records:\n%s", out)
	}
	if n := count(t, a.db, `SELECT count(*) FROM ferry_audit WHERE event = 'bundle.received'`); n != 9 {
		t.Fatalf("%d records left after a refused purge", n)
	}

	out = mustRun(t, 0, "-db", a.db.URL, "audit", "export", "-out", dir)
	if !strings.Contains(out, "exported records 1..") || !strings.Contains(out, "verified: OK") {
		t.Fatalf("export:\n%s", out)
	}
	for _, f := range []string{"records.jsonl", "segment.json", "checkpoint.txt", "checkpoint.sig", "cert.pem", "ca.pem", "pub.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("export lacks %s", f)
		}
	}
	out = mustRun(t, 0, "audit", "verify", dir, "-ca", a.ca)
	if !strings.HasSuffix(out, "OK\n") || !strings.Contains(out, "given by -ca") {
		t.Fatalf("verify:\n%s", out)
	}

	// Tampering with the export: one byte, a deleted record, two swapped.
	records := filepath.Join(dir, "records.jsonl")
	orig, err := os.ReadFile(records)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(orig), "\n")
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"fail/one-byte", replaceLine(lines, 3, strings.Replace(lines[3], `"first_seq":4`, `"first_seq":5`, 1)), "record 4 (records.jsonl line 4): its fields do not give its leaf hash"},
		{"fail/deleted", append(append([]string(nil), lines[:2]...), lines[3:]...), "record 4 (records.jsonl line 3): expected record 3 here"},
		{"fail/swapped", swapLines(lines, 5, 6), "record 7 (records.jsonl line 6): expected record 6 here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(records, []byte(strings.Join(tc.lines, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			if out := mustRun(t, 1, "audit", "verify", "-ca", a.ca, dir); !strings.Contains(out, tc.want) {
				t.Fatalf("want %q in:\n%s", tc.want, out)
			}
		})
	}
	if err := os.WriteFile(records, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, 0, "audit", "verify", "-ca", a.ca, dir)

	// Now the old records are exported: purge removes them, and only them.
	out = mustRun(t, 0, "-db", a.db.URL, "audit", "purge", "-before", time.Now().UTC().Add(24*time.Hour).Format("2006-01-02"))
	if !strings.Contains(out, "purged records 1..6") || !strings.Contains(out, "inside the retention are kept") {
		t.Fatalf("purge:\n%s", out)
	}
	// The rest verifies, and extends the first export's checkpoint.
	a.write(t, 2)
	a.checkpoint(t)
	dir2 := filepath.Join(t.TempDir(), "seg2")
	mustRun(t, 0, "-db", a.db.URL, "audit", "export", "-out", dir2)
	out = mustRun(t, 0, "audit", "verify", "-ca", a.ca, "-trusted-checkpoint", filepath.Join(dir, "checkpoint.txt"), dir2)
	if !strings.Contains(out, "segment: ferry-dmz records 7..") || !strings.Contains(out, "the log extends it: OK") {
		t.Fatalf("verify after purge:\n%s", out)
	}

	// A row changed in the database: ferryctl audit flags it, and an export no longer verifies
	// (so it is not recorded as exported).
	execSQL(t, a.db, `UPDATE ferry_audit SET lane = 'to-gateway.1' WHERE id = 8`)
	if out := mustRun(t, 0, "-db", a.db.URL, "audit", "-n", "100"); !strings.Contains(out, "MISMATCH") {
		t.Fatalf("audit does not flag the changed row:\n%s", out)
	}
	out = mustRun(t, 1, "-db", a.db.URL, "audit", "export", "-out", filepath.Join(t.TempDir(), "seg3"), "-from", "7")
	if !strings.Contains(out, "record 8 (records.jsonl line 2): its fields do not give its leaf hash") {
		t.Fatalf("export of a changed row:\n%s", out)
	}
	mustRun(t, 2, "audit", "verify")
}

func replaceLine(lines []string, i int, s string) []string {
	out := append([]string(nil), lines...)
	out[i] = s
	return out
}

func swapLines(lines []string, i, j int) []string {
	out := append([]string(nil), lines...)
	out[i], out[j] = out[j], out[i]
	return out
}

func count(t *testing.T, db *sqldb.DB, q string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func execSQL(t *testing.T, db *sqldb.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatal(err)
	}
}
