package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/sqldb"
)

// A retention under 184 days is refused at start, with the reason.
func TestAuditRetentionRefused(t *testing.T) {
	for _, v := range []string{"30d", "720h", "183d"} {
		err := run(context.Background(), []string{"-side", "dmz", "-db", "sqlite:x", "-audit-retention", v}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-audit-retention") || !strings.Contains(err.Error(), "184 days") {
			t.Errorf("-audit-retention %s: %v", v, err)
		}
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"-audit-retention", "six months"}},
		{[]string{"-audit-retention", "213700d"}}, // 585 years: would wrap round to 196 days
		{[]string{"-audit-hash", "md5"}},
		{[]string{"-checkpoint-interval", "0s"}},
	} {
		if err := run(context.Background(), append([]string{"-side", "dmz", "-db", "sqlite:x"}, tc.args...), io.Discard); err == nil {
			t.Errorf("%v accepted", tc.args)
		}
	}
	for v, want := range map[string]time.Duration{"184d": audit.MinRetention, "400d": 400 * 24 * time.Hour, "8760h": 8760 * time.Hour} {
		if got, err := parseDays(v); err != nil || got != want {
			t.Errorf("parseDays(%s) = %s, %v", v, got, err)
		}
	}
}

// ferryd keeps its certificates and retention, signs a checkpoint at shutdown covering
// admin.stop, and the log it leaves verifies.
func TestFerrydCheckpointsAtShutdown(t *testing.T) {
	db := migrated(t, sqldb.SQLite)
	pki := fixture.NewPKI(t)
	pki.Node(t, fixture.DMZ)
	pki.Node(t, fixture.Intranet)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := start(t, ctx, true, "-side", "dmz", "-db", db.URL, "-certs", pki.Dir, "-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0",
		"-quarantine", t.TempDir(), "-audit-retention", "400d", "-audit-hash", "sha256")
	_, metrics := get(t, f.metrics+"/metrics")
	for _, want := range []string{"ferry_audit_records_total 1", "ferry_audit_log_size 1", "ferry_audit_checkpoint_age_seconds"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cancel()
	if err := <-f.done; err != nil {
		t.Fatal(err)
	}
	head, err := audit.ReadHead(context.Background(), db)
	if err != nil || head.Size != 2 || head.Retention != 400*24*time.Hour || head.Hash.String() != "sha256" {
		t.Fatalf("head %+v %v", head, err)
	}
	cp, ok, err := audit.LatestCheckpoint(context.Background(), db, fixture.DMZ)
	if err != nil || !ok || cp.Size != 2 {
		t.Fatalf("shutdown checkpoint %+v %v %v", cp.Checkpoint, ok, err)
	}
	dir := filepath.Join(t.TempDir(), "export")
	if _, err := audit.Export(context.Background(), db, dir, audit.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(dir, audit.VerifyOptions{CA: pki.CA.Cert}); err != nil {
		t.Fatal(err)
	}
}
