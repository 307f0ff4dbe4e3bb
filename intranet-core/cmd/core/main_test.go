package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/partner/partnertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logTap collects the JSON log lines of a running core and reports the bound address.
type logTap struct {
	mu    sync.Mutex
	lines []map[string]any
	addr  chan string
	pw    *io.PipeWriter
}

func newLogTap() *logTap {
	pr, pw := io.Pipe()
	l := &logTap{addr: make(chan string, 1), pw: pw}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			l.mu.Lock()
			l.lines = append(l.lines, m)
			l.mu.Unlock()
			if m["msg"] == "listening" {
				l.addr <- m["addr"].(string)
			}
		}
	}()
	return l
}

func (l *logTap) find(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, m := range l.lines {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

type running struct {
	base string
	logs *logTap
	stop func()
}

// start runs the core with args in this process and waits for its "listening" log line.
func start(t *testing.T, args ...string) *running {
	t.Helper()
	logs := newLogTap()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, logs.pw) }()
	var addr string
	select {
	case addr = <-logs.addr:
	case err := <-done:
		t.Fatalf("core exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("core did not log listening")
	}
	r := &running{base: "http://" + addr, logs: logs}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("core exited with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("core did not stop")
			}
			logs.pw.Close()
			http.DefaultClient.CloseIdleConnections()
		})
	}
	t.Cleanup(r.stop)
	return r
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

func TestCoreRunsP2OverTheWindowAPI(t *testing.T) {
	pki := partnertest.NewPKI(t)
	partner := partnertest.NewServer(t, pki, func(r partnertest.Request) partnertest.Reply {
		return partnertest.Reply{Body: partnertest.FormAnswer(r.Body)}
	})
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys", "core-data.key")
	c := start(t, "-listen", "127.0.0.1:0", "-db", "sqlite:"+filepath.Join(dir, "var", "core.db"), "-certs", pki.Dir,
		"-data-key-file", keyFile, "-nontax-url", partner.URL, "-ereceipt-url", partner.URL, "-window-url", partner.URL,
		"-gateway-url", "https://pay.example.test", "-api-token", "tok-123", "-lanes", "2")

	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := get(t, c.base+p); code != 200 {
			t.Errorf("%s: %d", p, code)
		}
	}
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("data key file: %v %v", st, err)
	}
	gen := c.logs.find("console user created with a generated password; it is shown only this once, change it")
	if len(gen) != 2 || gen[0]["password"] == "" || gen[1]["password"] == "" || gen[0]["user"] != "clerk" || gen[1]["user"] != "reviewer" {
		t.Fatalf("generated password log lines: %v", gen)
	}

	body := `{"decision_no":"2301021000123456","violation_serial":"2301021000000001","party_name":"张三丰","plate":"黑A12345","fine":20000,"served_date":"2026-11-20","unit_code":"230100","item_code":"103050101"}`
	req, _ := http.NewRequest(http.MethodPost, c.base+"/api/v1/bills", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer tok-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(out["qr_url"].(string), "https://pay.example.test/q/") {
		t.Fatalf("create: %d %v", resp.StatusCode, out)
	}
	if code, b := get(t, c.base+"/api/v1/bills/"+out["bill_no"].(string)); code != http.StatusUnauthorized {
		t.Fatalf("GET without token: %d %s", code, b)
	}

	_, metrics := get(t, c.base+"/metrics")
	for _, m := range []string{"ferry_outbox_backlog", "core_bills_created_total 1", "http_request_duration_seconds",
		"core_payments_recorded_total", `core_refunds{state="failed"} 0`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if code, _ := get(t, c.base+"/console/login"); code != 200 {
		t.Errorf("console login page: %d", code)
	}
	c.stop()

	// A restart keeps the data key and does not make a second password.
	c2 := start(t, "-listen", "127.0.0.1:0", "-db", "sqlite:"+filepath.Join(dir, "var", "core.db"), "-certs", pki.Dir,
		"-data-key-file", keyFile)
	if len(c2.logs.find("created a new data key for personal fields; back it up, data sealed under it is unreadable without it")) != 0 ||
		len(c2.logs.find("console user created with a generated password; it is shown only this once, change it")) != 0 {
		t.Fatal("restart made a new key or password")
	}
}

func TestCoreRefusesCertificatesOfAnotherCA(t *testing.T) {
	pki, other := partnertest.NewPKI(t), partnertest.NewPKI(t)
	b, _ := os.ReadFile(filepath.Join(other.Dir, "sandbox-sign.pem"))
	os.WriteFile(filepath.Join(pki.Dir, "sandbox-sign.pem"), b, 0o600)
	err := run(context.Background(), []string{"-listen", "127.0.0.1:0", "-db", "sqlite:" + filepath.Join(t.TempDir(), "c.db"),
		"-certs", pki.Dir, "-data-key-file", filepath.Join(t.TempDir(), "k")}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "partner signing certificate") {
		t.Fatalf("err = %v", err)
	}
}

func TestCoreMigrateOnPostgres(t *testing.T) {
	url := sqltest.NewPostgresURL(t)
	for range 2 {
		if err := run(context.Background(), []string{"migrate", "-db", url}, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sqldb.Open(context.Background(), url)
	sqltest.Must(t, err)
	defer db.Close()
	for _, table := range []string{"bills", "payments", "receipts", "tasks", "console_users", "console_sessions", "console_audit", "ferry_outbox", "ferry_inbox"} {
		if _, err := db.Exec(`SELECT count(*) FROM ` + table); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
}

func TestREADMEListsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	set, _ := newOptions()
	for _, row := range strings.Split(strings.TrimSpace(set.Table()), "\n") {
		if !strings.Contains(string(b), row) {
			t.Errorf("README.md lacks the row\n%s", row)
		}
	}
}
