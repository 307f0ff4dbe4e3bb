package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/ferry/internal/fixture"
	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/shared/gm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logTap is a log writer that reports the "listening" lines of each listener.
type logTap struct {
	mu    sync.Mutex
	addrs map[string]chan string
	lines []string
}

func newLogTap() *logTap {
	return &logTap{addrs: map[string]chan string{"link": make(chan string, 1), "metrics": make(chan string, 1)}}
}

func (l *logTap) Write(p []byte) (int, error) {
	var rec struct{ Msg, Listener, Addr string }
	if json.Unmarshal(p, &rec) == nil && rec.Msg == "listening" {
		l.addrs[rec.Listener] <- rec.Addr
	}
	l.mu.Lock()
	l.lines = append(l.lines, string(p))
	l.mu.Unlock()
	return len(p), nil
}

func (l *logTap) addr(t *testing.T, listener string) string {
	t.Helper()
	select {
	case a := <-l.addrs[listener]:
		return a
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s listener; log:\n%s", listener, strings.Join(l.lines, ""))
		return ""
	}
}

type ferryd struct {
	log     *logTap
	metrics string
	link    string
	done    chan error
}

func start(t *testing.T, ctx context.Context, link bool, args ...string) *ferryd {
	t.Helper()
	f := &ferryd{log: newLogTap(), done: make(chan error, 1)}
	go func() { f.done <- run(ctx, args, f.log) }()
	if link {
		f.link = f.log.addr(t, "link")
	}
	f.metrics = "http://" + f.log.addr(t, "metrics")
	return f
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func count(t *testing.T, db *sqldb.DB, q string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Both ferryds from their flags: messages cross both ways; /readyz and /metrics work; an audit
// trail that cannot be written makes the DMZ ferry not ready and stops it applying; both shut
// down on cancel.
func TestFerrydBothSides(t *testing.T) {
	for _, d := range sqltest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			bothSides(t, migrated(t, d), migrated(t, d))
		})
	}
}

func migrated(t *testing.T, d sqldb.Dialect) *sqldb.DB {
	t.Helper()
	db := sqltest.Open(t, d)
	sqltest.Must(t, schema.Migrate(context.Background(), db))
	return db
}

func bothSides(t *testing.T, gw, core *sqldb.DB) {
	pki := fixture.NewPKI(t)
	pki.Node(t, fixture.DMZ)
	pki.Node(t, fixture.Intranet)
	common := []string{"-certs", pki.Dir, "-metrics-listen", "127.0.0.1:0", "-poll", "20ms", "-long-poll", "1s",
		"-linger", "5ms", "-max-backoff", "100ms", "-log-level", "debug"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dmz := start(t, ctx, true, append([]string{"-side", "dmz", "-db", gw.URL, "-listen", "127.0.0.1:0",
		"-quarantine", t.TempDir()}, common...)...)
	in := start(t, ctx, false, append([]string{"-side", "intranet", "-db", core.URL, "-peer-url", "https://" + dmz.link}, common...)...)

	fixture.Put(t, core, 1, fixture.Bill(t, 1))
	fixture.Put(t, gw, 1, fixture.Payment(t, 1))
	fixture.Eventually(t, 30*time.Second, "a message each way", func() bool {
		return count(t, gw, `SELECT count(*) FROM ferry_inbox`) == 1 && count(t, core, `SELECT count(*) FROM ferry_inbox`) == 1
	})
	for _, f := range []*ferryd{dmz, in} {
		if code, body := get(t, f.metrics+"/readyz"); code != http.StatusOK {
			t.Fatalf("readyz %d %s", code, body)
		}
	}
	_, metrics := get(t, dmz.metrics+"/metrics")
	for _, want := range []string{"ferry_bundles_received_total{lane=\"to-gateway.0\"} 1", "ferry_bundles_sent_total{lane=\"to-core.0\"} 1",
		"ferry_messages_received_total 1", "ferry_link_up 1", "ferry_outbox_backlog", "ferry_audit_failures_total 0",
		"ferry_link_request_duration_seconds_bucket", "http_request_duration_seconds_bucket"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("DMZ /metrics lacks %q", want)
		}
	}

	// Audit fail-closed, seen from outside.
	exec(t, gw, `ALTER TABLE ferry_audit_pending RENAME TO ferry_audit_away`)
	fixture.Put(t, core, 1, fixture.Bill(t, 2))
	fixture.Eventually(t, 30*time.Second, "DMZ /readyz reports the audit failure", func() bool {
		code, body := get(t, dmz.metrics+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "audit")
	})
	if n := count(t, gw, `SELECT count(*) FROM ferry_inbox`); n != 1 {
		t.Fatalf("%d messages applied while the audit trail was unwritable", n)
	}
	exec(t, gw, `ALTER TABLE ferry_audit_away RENAME TO ferry_audit_pending`)
	fixture.Eventually(t, 30*time.Second, "the held message crosses", func() bool {
		return count(t, gw, `SELECT count(*) FROM ferry_inbox`) == 2
	})

	cancel()
	for _, f := range []*ferryd{dmz, in} {
		select {
		case err := <-f.done:
			if err != nil {
				t.Fatalf("ferryd: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("ferryd did not stop")
		}
	}
	if n := count(t, gw, `SELECT count(*) FROM ferry_audit WHERE event IN ('admin.start', 'admin.stop')`); n != 2 {
		t.Errorf("%d start/stop records", n)
	}
}

func TestFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fail/no-side", []string{"-db", "sqlite:x"}},
		{"fail/no-db", []string{"-side", "dmz"}},
		{"fail/plain-http-peer", []string{"-side", "intranet", "-db", "sqlite:x", "-peer-url", "http://dmz:7443"}},
		{"fail/missing-certs", []string{"-side", "dmz", "-db", "sqlite:x", "-certs", t.TempDir()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := run(context.Background(), tc.args, io.Discard); err == nil {
				t.Fatal("started")
			}
		})
	}
}

// A certificate given for the wrong use is refused at start: the peer's encryption certificate
// as its signing one would otherwise be taken (same CA, same name) and every bundle would fail
// its signature check at run time; the own certificates are checked the same way.
func TestCertificateOfTheWrongUseRefused(t *testing.T) {
	pki := fixture.NewPKI(t)
	pki.Node(t, fixture.DMZ)
	in := pki.Node(t, fixture.Intranet)
	for _, tc := range []struct{ flag, file string }{
		{"-peer-sign-cert", in.File("enc.pem")},
		{"-peer-enc-cert", in.File("sign.pem")},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a ferryd that starts stops here
		err := run(ctx, []string{"-side", "dmz", "-db", "sqlite:" + filepath.Join(t.TempDir(), "x.db"), "-certs", pki.Dir,
			tc.flag, tc.file}, io.Discard)
		cancel()
		if !errors.Is(err, gm.ErrUsage) {
			t.Errorf("%s %s: err %v, want the certificate's usage refused", tc.flag, tc.file, err)
		}
	}
}

// The README's configuration table is the flags' own.
func TestREADMEListsEveryFlag(t *testing.T) {
	set, _ := newFlags()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(set.Table()))
	for sc.Scan() {
		if !strings.Contains(string(readme), sc.Text()) {
			t.Errorf("README.md lacks %q", sc.Text())
		}
	}
}

func exec(t *testing.T, db *sqldb.DB, stmt string) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), stmt); err != nil {
		t.Fatal(err)
	}
}
