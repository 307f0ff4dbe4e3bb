// Package e2e runs FinePay's flows end to end: the real binaries (sandbox, gateway, core and both
// ferry daemons) started as processes on loopback, on PostgreSQL with Redis and on SQLite, driven
// through the real pages in headless Chromium: flow P2 with each channel (WeChat Pay, Alipay,
// UnionPay), and a payment whose notification never arrives, found by the gateway's active query.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"finepay/ferry/sqldb/sqltest"
	"finepay/sandbox/launch"
)

var (
	binDir   string // the built binaries
	certsDir string // the PKI they use
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "finepay-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		binDir, certsDir = filepath.Join(dir, "bin"), filepath.Join(dir, "certs")
		root, err := repoRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		build := exec.Command("go", "build", "-o", binDir+"/",
			"./internet-gateway/cmd/gateway", "./intranet-core/cmd/core", "./ferry/cmd/ferryd",
			"./sandbox/cmd/sandbox", "./shared/cmd/fpcerts")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build: %v\n%s", err, out)
			return 1
		}
		if out, err := exec.Command(filepath.Join(binDir, "fpcerts"), "-dir", certsDir).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: certs: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil {
		return "", err
	}
	w := strings.TrimSpace(string(out))
	if w == "" || w == "off" {
		return "", fmt.Errorf("not inside the go.work workspace")
	}
	return filepath.Dir(w), nil
}

// testLog collects the processes' output and prints it only when the test fails.
type testLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

type backend struct {
	name      string
	gatewayDB func(testing.TB) string
	coreDB    func(testing.TB) string
	redis     string
}

var backends = []backend{
	{"postgres", sqltest.NewPostgresURL, sqltest.NewPostgresURL, "redis://127.0.0.1:6379/0"},
	{"sqlite", sqltest.NewSQLiteURL, sqltest.NewSQLiteURL, ""},
}

// startSystem starts the whole system for one test and stops it at cleanup.
func startSystem(t *testing.T, b backend) *launch.System {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	logs := &testLog{}
	pfx := make([]byte, 6)
	rand.Read(pfx)
	o := launch.Options{
		BinDir: binDir, Certs: certsDir, VarDir: t.TempDir(),
		GatewayDB: b.gatewayDB(t), CoreDB: b.coreDB(t), Redis: b.redis, RedisPfx: "fp:e2e:" + hex.EncodeToString(pfx) + ":",
		ClerkPassword: "Clerk-e2e-Pass1", ReviewerPassword: "Reviewer-e2e-Pass1",
		Env: map[string]string{
			"SANDBOX_WECHAT_SCHEDULE_SCALE": "0.01",
			// Alipay sends every notification twice, TRADE_FINISHED before TRADE_SUCCESS;
			// UnionPay sends every notification twice.
			"SANDBOX_ALIPAY_SCHEDULE_SCALE": "0.01", "SANDBOX_ALIPAY_DUPLICATE_RATE": "1", "SANDBOX_ALIPAY_OUT_OF_ORDER_RATE": "1",
			"SANDBOX_UNIONPAY_SCHEDULE_SCALE": "0.01", "SANDBOX_UNIONPAY_DUPLICATE_RATE": "1",
			// Orders without a result are queried 2 s after creation, then with backoff.
			"GATEWAY_ORDER_QUERY_AFTER": "2s",
			// Refunds the channel is processing, or whose call got no answer, are queried after 1 s.
			"GATEWAY_REFUND_QUERY_AFTER": "1s",
			// Every request of a test comes from 127.0.0.1, and the helpers poll pages while they
			// wait: the per-client limits (tested in the cashier's own tests) are lifted.
			"GATEWAY_RATE_LIMIT": "100000", "GATEWAY_RATE_LIMIT_POLL": "100000",
		},
		Logs: logs,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sys, err := launch.Start(ctx, o)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.buf.String())
	}
	t.Cleanup(func() {
		if err := sys.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			t.Logf("process logs:\n%s", logs.buf.String())
		}
	})
	return sys
}

// browser returns a chromedp context on a fresh headless Chromium.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make services installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(414, 896),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { tcancel(); cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return string(b)
}

// text returns the text of the element with id, failing the test when it cannot.
func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("text of #%s: %v", id, err)
	}
	return strings.TrimSpace(v)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}
