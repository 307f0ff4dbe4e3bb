package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/sandbox/internal/server"
	"finepay/sandbox/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHealthMetricsAndState(t *testing.T) {
	t.Parallel()
	e := start(t)
	if a := e.get(t, "/healthz"); a.status != 200 || string(a.body) != "ok" {
		t.Errorf("healthz: %d %q", a.status, a.body)
	}
	if a := e.get(t, "/readyz"); a.status != 200 {
		t.Errorf("readyz: %d %q", a.status, a.body)
	}
	e.core.call(t, "POST", "/nontax/v1/forms", "m-1", formBody(t, e.core, "230102100012345"))
	metrics := string(e.get(t, "/metrics").body)
	for _, want := range []string{
		"\nhttp_request_duration_seconds_bucket{method=\"POST\",route=\"/nontax/v1/forms\",status=\"200\"",
		"\nsandbox_wechat_notifications_sent_total ",
		"\nsandbox_wechat_notifications_acknowledged_total ",
		"\ngo_goroutines ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(e.get(t, "/_sandbox/state").body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"forms", "payments", "receipts", "window_results", "wechat_orders"} {
		if v, ok := raw[k]; !ok || !strings.HasPrefix(string(v), "[") {
			t.Errorf("state lacks the list %s: %s", k, v)
		}
	}
	if a := e.get(t, "/"); a.status != 200 || !strings.Contains(string(a.body), "FinePay sandbox") {
		t.Errorf("index: %d", a.status)
	}
	if a := e.get(t, "/nowhere"); a.status != 404 || decodeJSON[apiErr](t, a.body).Code != "NOT_FOUND" {
		t.Errorf("unknown route: %d %s", a.status, a.body)
	}
}

// lineWriter hands each log line written to it to a channel.
type lineWriter struct{ lines chan string }

func (w *lineWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		select {
		case w.lines <- sc.Text():
		default:
		}
	}
	return len(p), nil
}

func TestMainListensOnPortZero(t *testing.T) {
	t.Parallel()
	_, dir := testpki.Dir(t)
	logs := &lineWriter{lines: make(chan string, 256)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	env := map[string]string{"SANDBOX_CERTS": dir, "SANDBOX_WECHAT_SCHEDULE_SCALE": "0.001"}
	go func() {
		done <- server.Main(ctx, []string{"-listen", "127.0.0.1:0"}, func(k string) string { return env[k] }, logs)
	}()

	var addr, publicURL string
	for addr == "" {
		select {
		case line := <-logs.lines:
			var rec struct{ Msg, Addr, URL string }
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line is not JSON: %q", line)
			}
			if rec.Msg == "sandbox listening" {
				addr, publicURL = rec.Addr, rec.URL
			}
		case err := <-done:
			t.Fatalf("Main returned early: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no \"sandbox listening\" line")
		}
	}
	if strings.HasSuffix(addr, ":0") || !strings.HasSuffix(publicURL, addr[strings.LastIndex(addr, ":"):]) {
		t.Fatalf("listening on %q, public URL %q: want the bound port", addr, publicURL)
	}
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Main: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Main did not stop")
	}
}

func TestMainRefusesMissingCerts(t *testing.T) {
	t.Parallel()
	err := server.Main(context.Background(), []string{"-certs", t.TempDir(), "-listen", "127.0.0.1:0"}, noEnv, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "fpcerts") {
		t.Fatalf("err %v, want a hint to run fpcerts", err)
	}
}

func TestLoadMaterial(t *testing.T) {
	t.Parallel()
	p, dir := testpki.Dir(t)
	m, err := server.LoadMaterial(dir, []string{"core"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Callers) != 1 || m.Callers[0].Fingerprint != p.Core.Sign.Cert.Fingerprint() {
		t.Errorf("callers %+v", m.Callers)
	}
	cases := []struct {
		name  string
		edit  func(dir string) error
		want  string
		nodes []string
	}{
		{"fail/no-ca", func(d string) error { return os.Remove(filepath.Join(d, "ca.pem")) }, "ca.pem", nil},
		{"fail/unknown-caller", func(string) error { return nil }, "ferry-dmz-sign.pem", []string{"core", "ferry-dmz"}},
		{"fail/caller-of-other-ca", func(d string) error {
			return os.WriteFile(filepath.Join(d, "core-sign.pem"), p.Rogue.Sign.Cert.PEM(), 0o600)
		}, "core", nil},
		{"fail/key-mismatch", func(d string) error {
			k, _ := p.Core.Sign.Key.MarshalPKCS8PEM()
			return os.WriteFile(filepath.Join(d, "sandbox-sign.key"), k, 0o600)
		}, "does not match", nil},
		{"fail/no-wechat-platform-key", func(d string) error { return os.Remove(filepath.Join(d, "wechat-platform.key")) }, "wechat-platform.key", nil},
		{"fail/short-apiv3-key", func(d string) error {
			return os.WriteFile(filepath.Join(d, "wechat-apiv3.key"), []byte("short"), 0o600)
		}, "32 bytes", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, dir := testpki.Dir(t)
			if err := tc.edit(dir); err != nil {
				t.Fatal(err)
			}
			nodes := tc.nodes
			if nodes == nil {
				nodes = []string{"core"}
			}
			if _, err := server.LoadMaterial(dir, nodes); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := server.ParseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8070" || c.CertsDir != "certs" || c.PublicURL != "http://127.0.0.1:8070" || c.PublicURLSet ||
		c.WeChatAppID != "wxd678efh567hg6787" || c.WeChatMchID != "1900000001" || c.WeChatScheduleScale != 1 ||
		c.WeChatDuplicates != 1 || len(c.PartnerCallers) != 1 || c.PartnerCallers[0] != "core" {
		t.Errorf("defaults %+v", c)
	}
	c, err = server.ParseConfig([]string{"-wechat-duplicates", "3"}, env(map[string]string{
		"SANDBOX_WECHAT_DUPLICATES": "2", "SANDBOX_WECHAT_SCHEDULE_SCALE": "0.001", "SANDBOX_PUBLIC_URL": "https://sandbox.example/",
		"SANDBOX_PARTNER_CALLERS": "core, ferry-intranet",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.WeChatDuplicates != 3 || c.WeChatScheduleScale != 0.001 || c.PublicURL != "https://sandbox.example" || !c.PublicURLSet ||
		len(c.PartnerCallers) != 2 || c.PartnerCallers[1] != "ferry-intranet" {
		t.Errorf("flag over environment over default: %+v", c)
	}
	for _, args := range [][]string{
		{"-wechat-schedule-scale", "0"}, {"-wechat-schedule-scale", "1x"}, {"-wechat-duplicates", "0"},
		{"-wechat-notify-timeout", "5"}, {"-log-level", "loud"}, {"-public-url", "sandbox:8070"},
		{"-partner-callers", ""}, {"-partner-callers", "../core"}, {"extra"},
		{"-alipay-schedule-scale", "0"}, {"-alipay-duplicate-rate", "1.5"}, {"-unionpay-out-of-order-rate", "-0.1"},
		{"-unionpay-schedule", "1m,x"}, {"-unionpay-mer-id", ""},
	} {
		if _, err := server.ParseConfig(args, noEnv, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if _, err := server.ParseConfig(nil, env(map[string]string{"SANDBOX_WECHAT_DUPLICATES": "many"}), io.Discard); err == nil {
		t.Error("a bad environment value was accepted")
	}
	if _, err := server.ParseConfig([]string{"-h"}, noEnv, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// TestREADMEListsEveryOption keeps the configuration table of sandbox/README.md complete.
func TestREADMEListsEveryOption(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, o := range server.Options {
		row := "| `-" + o.Flag + "` | `" + o.Env + "` | "
		if o.Default != "" {
			row += "`" + o.Default + "` |"
		}
		if !strings.Contains(readme, row) {
			t.Errorf("README lacks the row %q", row)
		}
	}
}
