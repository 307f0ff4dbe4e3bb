package audit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/audit"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/merkle"
	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
)

// clock is a settable clock for the tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// logEnv is a migrated database with an audit log, a checkpointer signing as ferry-dmz, and a
// clock.
type logEnv struct {
	db    *sqldb.DB
	log   *audit.Log
	cp    *audit.Checkpointer
	clock *clock    // the records' clock
	now   time.Time // the checkpoints' (the certificates are valid for an hour from now)
	node  *fixture.Node
	pki   *fixture.PKI
	reg   *prometheus.Registry
}

func newLogEnv(t *testing.T, db *sqldb.DB, h merkle.Hash) *logEnv {
	t.Helper()
	ctx := context.Background()
	sqltest.Must(t, schema.Migrate(ctx, db))
	sqltest.Must(t, audit.Configure(ctx, db, h, audit.MinRetention))
	now := time.Now().UTC().Truncate(time.Second)
	e := &logEnv{db: db, clock: &clock{t: now}, now: now, pki: fixture.NewPKI(t), reg: prometheus.NewRegistry()}
	e.node = e.pki.Node(t, fixture.DMZ)
	e.log = audit.New(audit.Config{DB: db, Node: fixture.DMZ, Actor: "ferryd", Now: e.clock.Now, Registry: e.reg})
	var err error
	e.cp, err = audit.NewCheckpointer(audit.CheckpointerConfig{DB: db, Log: e.log, Origin: fixture.DMZ, Signer: e.node.Sign.Key,
		Cert: e.node.Sign.Cert, CA: e.pki.CA.Cert, Now: func() time.Time { return e.now }, Registry: e.reg})
	sqltest.Must(t, err)
	sqltest.Must(t, e.cp.Start(ctx))
	return e
}

// write appends n records, each a second after the last.
func (e *logEnv) write(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		e.clock.Set(e.clock.Now().Add(time.Second))
		sqltest.Must(t, e.log.Record(context.Background(), audit.Record{Event: audit.BundleSent, Result: audit.OK,
			BundleID: fmt.Sprintf("%032x", i), Lane: "to-core.0", FirstSeq: int64(i + 1), LastSeq: int64(i + 1), Peer: fixture.Intranet,
			Digests: []string{strings.Repeat("ab", 32)}, Reason: fmt.Sprintf("record <%d> & \"quotes\"", i)}))
	}
}

func (e *logEnv) checkpoint(t *testing.T) audit.StoredCheckpoint {
	t.Helper()
	cp, made, err := e.cp.Checkpoint(context.Background())
	sqltest.Must(t, err)
	if !made {
		t.Fatal("no checkpoint made")
	}
	return cp
}

func (e *logEnv) export(t *testing.T, o audit.ExportOptions) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "export")
	_, err := audit.Export(context.Background(), e.db, dir, o)
	sqltest.Must(t, err)
	return dir
}

func (e *logEnv) verify(t *testing.T, dir string, trusted []byte) (audit.Report, error) {
	t.Helper()
	return audit.Verify(dir, audit.VerifyOptions{CA: e.pki.CA.Cert, Trusted: trusted})
}

// Concurrent writers get contiguous IDs, committed in order, and times that never go back even
// when the clock does.
func TestRecordsContiguousAndMonotonic(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		sqltest.Must(t, schema.Migrate(ctx, db))
		base := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
		var wg sync.WaitGroup
		const writers, each = 6, 15
		for w := range writers {
			// Each writer's clock runs backwards: later records carry earlier times.
			var n int
			var mu sync.Mutex
			l := audit.New(audit.Config{DB: db, Node: fmt.Sprint("w", w), Actor: "t", Now: func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				n++
				return base.Add(time.Duration(w*100-n) * time.Millisecond)
			}})
			wg.Go(func() {
				for range each {
					if err := l.Record(ctx, audit.Record{Event: "test", Result: audit.OK}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		recs, err := audit.Recent(ctx, db, 1000)
		sqltest.Must(t, err)
		if len(recs) != writers*each {
			t.Fatalf("%d records", len(recs))
		}
		for i, r := range recs {
			if want := int64(len(recs) - i); r.ID != want {
				t.Fatalf("position %d: ID %d, want %d", i, r.ID, want)
			}
			if i > 0 && r.Record.At.After(recs[i-1].Record.At) {
				t.Fatalf("record %d at %s after record %d at %s", r.ID, r.Record.At, recs[i-1].ID, recs[i-1].Record.At)
			}
			if !r.Intact() {
				t.Fatalf("record %d not intact", r.ID)
			}
		}
		head, err := audit.ReadHead(ctx, db)
		if err != nil || head.Size != writers*each {
			t.Fatalf("head %+v, %v", head, err)
		}
	})
}

// Rows written before migration 0002 get contiguous IDs.
func TestMigrationRenumbersOldRecords(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		sub, err := fsSub(1)
		sqltest.Must(t, err)
		sqltest.Must(t, db.Migrate(ctx, schema.Component, sub))
		for _, id := range []int{3, 7, 8, 20} {
			_, err := db.ExecContext(ctx, `INSERT INTO ferry_audit (id, at, node, actor, event, result, leaf_hash) VALUES ($1, $2, 'n', 'a', 'e', 'ok', $3)`,
				id, time.Unix(int64(id), 0).UTC(), []byte("x"))
			sqltest.Must(t, err)
		}
		sqltest.Must(t, schema.Migrate(ctx, db))
		recs, err := audit.Recent(ctx, db, 10)
		sqltest.Must(t, err)
		var ids []int64
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		if fmt.Sprint(ids) != "[4 3 2 1]" || recs[0].Record.At.Unix() != 20 {
			t.Fatalf("ids %v", ids)
		}
		head, err := audit.ReadHead(ctx, db)
		if err != nil || head.Size != 4 || head.Hash != merkle.SM3 || head.Retention != audit.MinRetention {
			t.Fatalf("head %+v %v", head, err)
		}
	})
}

// Checkpoints sign the log's head when it grew; an export of the log verifies offline, also
// against a trusted earlier checkpoint; the metrics follow.
func TestCheckpointExportVerify(t *testing.T) {
	for _, h := range []merkle.Hash{merkle.SM3, merkle.SHA256} {
		t.Run(h.String(), func(t *testing.T) {
			sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
				ctx := context.Background()
				e := newLogEnv(t, db, h)
				if _, made, err := e.cp.Checkpoint(ctx); err != nil || made {
					t.Fatalf("checkpoint of an empty log: %v %v", made, err)
				}
				e.write(t, 5)
				first := e.checkpoint(t)
				if first.Size != 5 || first.Hash != h {
					t.Fatalf("checkpoint %+v", first.Checkpoint)
				}
				if _, made, _ := e.cp.Checkpoint(ctx); made {
					t.Fatal("checkpoint made for a log that did not grow")
				}
				e.write(t, 8)
				e.checkpoint(t)
				e.write(t, 4)
				latest := e.checkpoint(t)

				// Everything, then only the middle, then a segment that ends before its checkpoint.
				all := e.export(t, audit.ExportOptions{})
				rep, err := e.verify(t, all, nil)
				if err != nil || rep.First != 1 || rep.Last != 17 || rep.Checkpoints != 3 || !bytes.Equal(rep.Latest.Root, latest.Root) {
					t.Fatalf("verify all: %+v %v", rep, err)
				}
				mid := e.export(t, audit.ExportOptions{First: 4, Last: 11})
				rep, err = e.verify(t, mid, first.Note)
				if err != nil || rep.Checkpoints != 2 || rep.Trusted == nil {
					t.Fatalf("verify 4..11 with the first checkpoint trusted: %+v %v", rep, err)
				}
				// The trusted checkpoint precedes the segment: a consistency proof is needed.
				later := e.export(t, audit.ExportOptions{First: 9})
				if _, err := e.verify(t, later, first.Note); err == nil || !strings.Contains(err.Error(), "-consistency-from 5") {
					t.Fatalf("trusted before the segment without a proof: %v", err)
				}
				withProof := e.export(t, audit.ExportOptions{First: 9, ConsistencyFrom: 5})
				if _, err := e.verify(t, withProof, first.Note); err != nil {
					t.Fatalf("with a consistency proof: %v", err)
				}
				// A checkpoint from a rewritten log is refused.
				forged := first.Checkpoint
				forged.Root = bytes.Repeat([]byte{7}, merkle.Size)
				for _, dir := range []string{mid, withProof} {
					if _, err := e.verify(t, dir, forged.Note()); err == nil || !strings.Contains(err.Error(), "not part of this log") {
						t.Fatalf("forged trusted checkpoint: %v", err)
					}
				}
				// Without the auditor's CA the segment's own ca.pem is used, and said so.
				if rep, err := audit.Verify(all, audit.VerifyOptions{}); err != nil || !rep.CAFromExport {
					t.Fatalf("own CA: %+v %v", rep, err)
				}
				// Another CA does not vouch for the signer.
				other := fixture.NewPKI(t)
				if _, err := audit.Verify(all, audit.VerifyOptions{CA: other.CA.Cert}); err == nil || !strings.Contains(err.Error(), "not issued by") {
					t.Fatalf("other CA: %v", err)
				}
				out := gather(t, e.reg)
				for _, want := range []string{"ferry_audit_records_total 17", "ferry_audit_log_size 17", "ferry_audit_checkpoint_age_seconds 0"} {
					if !strings.Contains(out, want) {
						t.Errorf("metrics lack %q:\n%s", want, out)
					}
				}
			})
		})
	}
}

func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	sqltest.Must(t, err)
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			fmt.Fprintf(&b, "%s %g\n", mf.GetName(), v)
		}
	}
	return b.String()
}

// Tampering with an export is found and named.
func TestVerifyNamesTampering(t *testing.T) {
	e := newLogEnv(t, sqltest.Open(t, sqldb.Postgres), merkle.SM3)
	e.write(t, 6)
	e.checkpoint(t)
	e.write(t, 6)
	e.checkpoint(t)
	dir := e.export(t, audit.ExportOptions{})
	if _, err := e.verify(t, dir, nil); err != nil {
		t.Fatalf("untouched export: %v", err)
	}
	lines := func() []string {
		b, err := os.ReadFile(filepath.Join(dir, audit.RecordsFile))
		sqltest.Must(t, err)
		return strings.SplitAfter(string(b), "\n")
	}
	original := lines()
	for _, tc := range []struct {
		name   string
		change func(l []string) []string
		want   string
	}{
		{"fail/one-byte-in-a-field", func(l []string) []string {
			l[6] = strings.Replace(l[6], "to-core.0", "to-core.1", 1)
			return l
		}, "record 7 (records.jsonl line 7): its fields do not give its leaf hash"},
		{"fail/one-byte-in-the-time", func(l []string) []string {
			at := e.now.Add(3 * time.Second).Format("2006-01-02T15:04:05")
			l[2] = strings.Replace(l[2], at, e.now.Add(4*time.Second).Format("2006-01-02T15:04:05"), 1)
			return l
		}, "record 3 (records.jsonl line 3)"},
		{"fail/one-byte-in-the-leaf-hash", func(l []string) []string {
			i := strings.Index(l[9], `"leaf_hash":"`) + len(`"leaf_hash":"`)
			c := byte('0')
			if l[9][i] == '0' {
				c = '1'
			}
			l[9] = l[9][:i] + string(c) + l[9][i+1:]
			return l
		}, "record 10 (records.jsonl line 10): its fields do not give its leaf hash"},
		{"fail/one-byte-breaks-the-json", func(l []string) []string {
			l[4] = strings.Replace(l[4], `{"id"`, `["id"`, 1)
			return l
		}, "record 5 (records.jsonl line 5): not a record"},
		{"fail/deleted-record", func(l []string) []string { return append(l[:4], l[5:]...) },
			"record 6 (records.jsonl line 5): expected record 5 here"},
		{"fail/swapped-records", func(l []string) []string {
			l[7], l[8] = l[8], l[7]
			return l
		}, "record 9 (records.jsonl line 8): expected record 8 here"},
		{"fail/swapped-contents-kept-ids", func(l []string) []string {
			a, b := l[7], l[8]
			l[7] = strings.Replace(b, `"id":9,`, `"id":8,`, 1)
			l[8] = strings.Replace(a, `"id":8,`, `"id":9,`, 1)
			return l
		}, "record 9 (records.jsonl line 9): time"},
		{"fail/last-record-deleted", func(l []string) []string { return l[:11] },
			"record 12 is missing"},
		{"fail/name-in-other-case-hides-the-signed-value", func(l []string) []string {
			// jq and any reader that respects case see the forged reason; encoding/json matched
			// "Reason" to reason too, kept the last one, and verified the hidden original.
			l[2] = strings.Replace(l[2], `"reason":`, `"Reason":`, 1)
			l[2] = strings.Replace(l[2], `{"id":3,`, `{"id":3,"reason":"forged",`, 1)
			return l
		}, "record 3 (records.jsonl line 3): not a record"},
		{"fail/name-twice", func(l []string) []string {
			l[3] = strings.Replace(l[3], `{"id":4,`, `{"id":4,"event":"bundle.rejected",`, 1)
			return l
		}, "record 4 (records.jsonl line 4): not a record"},
		{"fail/text-after-the-record", func(l []string) []string {
			l[1] = strings.TrimSuffix(l[1], "\n") + `] {"id":2,"event":"admin.audit-purge"}` + "\n"
			return l
		}, "record 2 (records.jsonl line 2): not a record"},
		{"fail/required-field-emptied", func(l []string) []string {
			l[0] = strings.Replace(l[0], `"actor":"ferryd"`, `"actor":""`, 1)
			return l
		}, "record 1 (records.jsonl line 1): required field actor missing or empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := tc.change(append([]string(nil), original...))
			sqltest.Must(t, os.WriteFile(filepath.Join(dir, audit.RecordsFile), []byte(strings.Join(changed, "")), 0o600))
			_, err := e.verify(t, dir, nil)
			if !errors.Is(err, audit.ErrSegment) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
	sqltest.Must(t, os.WriteFile(filepath.Join(dir, audit.RecordsFile), []byte(strings.Join(original, "")), 0o600))
	if _, err := e.verify(t, dir, nil); err != nil {
		t.Fatalf("restored export: %v", err)
	}
	// A changed checkpoint note or signature.
	note, err := os.ReadFile(filepath.Join(dir, audit.CheckpointFile))
	sqltest.Must(t, err)
	sqltest.Must(t, os.WriteFile(filepath.Join(dir, audit.CheckpointFile), bytes.Replace(note, []byte("12\n"), []byte("11\n"), 1), 0o600))
	if _, err := e.verify(t, dir, nil); err == nil || !strings.Contains(err.Error(), audit.CheckpointFile) {
		t.Fatalf("altered checkpoint.txt: %v", err)
	}
}

// A row changed in the database is caught by verify after export: by its leaf hash, or, when
// the leaf hash was recomputed too, by the signed root, naming the records between checkpoints.
func TestDatabaseTamperingCaught(t *testing.T) {
	ctx := context.Background()
	e := newLogEnv(t, sqltest.Open(t, sqldb.Postgres), merkle.SM3)
	e.write(t, 4)
	e.checkpoint(t)
	e.write(t, 4)
	e.checkpoint(t)
	_, err := e.db.ExecContext(ctx, `UPDATE ferry_audit SET result = 'rejected' WHERE id = 6`)
	sqltest.Must(t, err)
	if _, err := e.verify(t, e.export(t, audit.ExportOptions{}), nil); err == nil || !strings.Contains(err.Error(), "record 6 (records.jsonl line 6): its fields do not give its leaf hash") {
		t.Fatalf("changed row: %v", err)
	}
	recs, err := audit.Range(ctx, e.db, 6, 6)
	sqltest.Must(t, err)
	if recs[0].Intact() {
		t.Fatal("ferryctl audit's check misses the changed row")
	}
	_, err = e.db.ExecContext(ctx, `UPDATE ferry_audit SET leaf_hash = $1 WHERE id = 6`, recs[0].Record.LeafHashWith(merkle.SM3))
	sqltest.Must(t, err)
	if _, err := e.verify(t, e.export(t, audit.ExportOptions{}), nil); err == nil || !strings.Contains(err.Error(), "checkpoint of 8 records: records 5..8 do not give its signed root") {
		t.Fatalf("changed row with its leaf hash: %v", err)
	}
	// A deleted row: the export names it.
	_, err = e.db.ExecContext(ctx, `DELETE FROM ferry_audit WHERE id = 3`)
	sqltest.Must(t, err)
	if _, err := e.verify(t, e.export(t, audit.ExportOptions{Last: 4}), nil); err == nil || !strings.Contains(err.Error(), "expected record 3 here") {
		t.Fatalf("deleted row: %v", err)
	}
	// A record deleted before its first checkpoint: the checkpointer refuses to sign past it.
	e.write(t, 2)
	_, err = e.db.ExecContext(ctx, `DELETE FROM ferry_audit WHERE id = 9`)
	sqltest.Must(t, err)
	if _, _, err := e.cp.Checkpoint(ctx); !errors.Is(err, audit.ErrMissing) {
		t.Fatalf("checkpoint over a deleted record: %v", err)
	}
}

// OpenSSL checks an exported checkpoint's signature, exactly as README.md shows.
func TestOpenSSLVerifiesCheckpoint(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not found")
	}
	e := newLogEnv(t, sqltest.Open(t, sqldb.Postgres), merkle.SM3)
	e.write(t, 3)
	e.checkpoint(t)
	dir := e.export(t, audit.ExportOptions{})
	openssl := func() (string, error) {
		cmd := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-digest", "sm3",
			"-pkeyopt", "distid:1234567812345678", "-in", "checkpoint.txt", "-sigfile", "checkpoint.sig")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := openssl(); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	for _, script := range []string{
		"openssl verify -vfyopt distid:1234567812345678 -CAfile ca.pem cert.pem",
		"openssl x509 -in cert.pem -pubkey -noout | cmp - pub.pem",
	} {
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	readme, err := os.ReadFile("../README.md")
	sqltest.Must(t, err)
	if !strings.Contains(string(readme), "openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -digest sm3 -pkeyopt distid:1234567812345678 -in checkpoint.txt -sigfile checkpoint.sig") {
		t.Error("README.md does not show the command this test runs")
	}
	note, err := os.ReadFile(filepath.Join(dir, "checkpoint.txt"))
	sqltest.Must(t, err)
	sqltest.Must(t, os.WriteFile(filepath.Join(dir, "checkpoint.txt"), bytes.Replace(note, []byte("\n3\n"), []byte("\n2\n"), 1), 0o600))
	if out, err := openssl(); err == nil {
		t.Fatalf("openssl verified an altered checkpoint:\n%s", out)
	}
}

func TestCheckpointNote(t *testing.T) {
	t.Parallel()
	c := audit.Checkpoint{Origin: "ferry-dmz", Size: 42, Root: bytes.Repeat([]byte{0xab}, 32), Time: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC), Hash: merkle.SM3}
	want := "ferry-dmz\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\ntime 2025-03-01T08:00:00Z\nhash sm3\n"
	if got := string(c.Note()); got != want {
		t.Fatalf("note\n%q\nwant\n%q", got, want)
	}
	back, err := audit.ParseNote([]byte(want))
	if err != nil || back.Size != 42 || back.Origin != "ferry-dmz" || !back.Time.Equal(c.Time) || back.Hash != merkle.SM3 {
		t.Fatalf("parse: %+v %v", back, err)
	}
	for _, bad := range []string{
		strings.Replace(want, "42", "042", 1),
		strings.Replace(want, "sm3", "md5", 1),
		strings.TrimSuffix(want, "\n"),
		strings.Replace(want, "time 2025-03-01T08:00:00Z", "time 2025-03-01T08:00:00+00:00", 1),
		want + "extra\n",
		" " + want,
	} {
		if _, err := audit.ParseNote([]byte(bad)); !errors.Is(err, audit.ErrNote) {
			t.Errorf("accepted %q", bad)
		}
	}
	pki := fixture.NewPKI(t)
	n := pki.Node(t, fixture.DMZ)
	note, sig, err := audit.SignCheckpoint(rand.Reader, n.Sign.Key, c)
	sqltest.Must(t, err)
	if _, err := audit.VerifyCheckpoint(note, sig, n.Sign.Cert.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyCheckpoint(note, sig, pki.Node(t, fixture.Intranet).Sign.Cert.PublicKey()); !errors.Is(err, audit.ErrCheckpointSignature) {
		t.Fatalf("other key: %v", err)
	}
}

// The hash of a log with records cannot change; retention under 184 days is refused.
func TestConfigure(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		sqltest.Must(t, schema.Migrate(ctx, db))
		if err := audit.Configure(ctx, db, merkle.SM3, 30*24*time.Hour); !errors.Is(err, audit.ErrRetention) {
			t.Fatalf("30 days: %v", err)
		}
		sqltest.Must(t, audit.Configure(ctx, db, merkle.SHA256, 400*24*time.Hour))
		l := audit.New(audit.Config{DB: db, Node: "n", Actor: "a"})
		sqltest.Must(t, l.Record(ctx, audit.Record{Event: "e", Result: audit.OK}))
		if err := audit.Configure(ctx, db, merkle.SM3, audit.MinRetention); !errors.Is(err, audit.ErrHashFixed) {
			t.Fatalf("hash change: %v", err)
		}
		sqltest.Must(t, audit.Configure(ctx, db, merkle.SHA256, audit.MinRetention))
		recs, err := audit.Recent(ctx, db, 1)
		sqltest.Must(t, err)
		if !recs[0].Intact() || recs[0].Hash != merkle.SHA256 || !bytes.Equal(recs[0].LeafHash, recs[0].Record.LeafHashWith(merkle.SHA256)) {
			t.Fatal("SHA-256 leaf")
		}
	})
}

// fsSub returns the ferry's migrations up to version max.
func fsSub(max int) (fs.FS, error) {
	all := schema.Migrations()
	entries, err := fs.ReadDir(all, ".")
	if err != nil {
		return nil, err
	}
	out := fstest.MapFS{}
	for _, e := range entries {
		var v int
		if _, err := fmt.Sscanf(e.Name(), "%04d_", &v); err != nil || v > max {
			continue
		}
		b, err := fs.ReadFile(all, e.Name())
		if err != nil {
			return nil, err
		}
		out[e.Name()] = &fstest.MapFile{Data: b}
	}
	return out, nil
}
