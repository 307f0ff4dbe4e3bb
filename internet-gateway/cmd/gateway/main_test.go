package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"finepay/ferry/inbox"
	"finepay/ferry/sqldb"
	"finepay/internet-gateway/internal/alipay/alipaytest"
	"finepay/internet-gateway/internal/fixture"
	"finepay/internet-gateway/internal/unionpay/unionpaytest"
	"finepay/internet-gateway/internal/wechat/wechattest"
	"finepay/shared/bizdate"
	"finepay/shared/envelope"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer collects the logs written by the running gateway.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gw is a gateway running in the test process against a fake WeChat Pay, on SQLite or
// PostgreSQL.
type gw struct {
	base     string
	addr     net.Addr
	logs     *syncBuffer
	consumer *inbox.Consumer
	db       *sqldb.DB // a second handle on the gateway's database, as ferryd has
	pki      *wechattest.PKI
	wx       *wechattest.Server
	ali      *alipaytest.Server
	up       *unionpaytest.Server
	lane     map[string]int64
	stop     func() error
}

func startGateway(t *testing.T, dbURL string, extra ...string) *gw {
	t.Helper()
	g := &gw{logs: &syncBuffer{}, pki: wechattest.NewPKI(t), lane: map[string]int64{}}
	g.wx = wechattest.NewServer(t, g.pki, nil)
	g.ali = alipaytest.NewServer(t, alipaytest.NewPKIIn(t, g.pki.Dir), nil)
	g.up = unionpaytest.NewServer(t, unionpaytest.NewPKIIn(t, g.pki.Dir), nil)
	args := append([]string{"-listen", "127.0.0.1:0", "-db", dbURL, "-certs", g.pki.Dir, "-wechat-base-url", g.wx.URL,
		"-alipay-gateway-url", g.ali.GatewayURL(), "-unionpay-base-url", g.up.URL, "-log-level", "debug"}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	consumers := make(chan *inbox.Consumer, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, g.logs, hooks{ready: ready, inbox: consumers}) }()
	select {
	case g.addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("gateway stopped: %v\n%s", err, g.logs.String())
	}
	g.consumer = <-consumers
	g.base = "http://" + g.addr.String()
	stopped := false
	g.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { g.stop() })
	db, err := sqldb.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g.db = db
	return g
}

// deliver puts a core message into the gateway's inbox, as ferryd does, and consumes it.
func (g *gw) deliver(t *testing.T, id string, p envelope.Payload, key string) {
	t.Helper()
	ctx := context.Background()
	env, err := envelope.New(id, key, time.Now(), p)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := env.Marshal()
	lane, _ := envelope.Lane(env.Type, env.Key, 4)
	g.lane[lane]++
	if _, err := inbox.Receive(ctx, g.db, "core", lane, "bundle-"+id, []inbox.Incoming{{Seq: g.lane[lane], Envelope: env, Raw: raw}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := g.consumer.ConsumeOnce(ctx); err != nil {
		t.Fatal(err)
	}
}

// publish delivers a bill for today's clock: fine ¥200.00 served 20 days ago (5 days late).
func (g *gw) publish(t *testing.T, billNo, token string) {
	t.Helper()
	bp := fixture.Bill(billNo, token)
	bp.IssuedAt = time.Now().Add(-time.Hour)
	bp.ServedDate = bizdate.Of(time.Now()).AddDays(-20).String()
	g.deliver(t, "bill:"+billNo, bp, billNo)
}

// notify sends WeChat's notification of a paid order.
func (g *gw) notify(t *testing.T, orderNo string) {
	t.Helper()
	note := g.pki.NotificationBody("EV-"+orderNo, g.wx.Pay(orderNo))
	req, _ := http.NewRequest(http.MethodPost, g.base+"/notify/wechat", bytes.NewReader(note))
	for k, v := range g.pki.Sign(time.Now(), note) {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("notification: %d", resp.StatusCode)
	}
}

func TestP2GatewayRun(t *testing.T) {
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "fp:test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer c.Close()
		if keys, _ := c.Keys(context.Background(), prefix+"*").Result(); len(keys) > 0 {
			c.Del(context.Background(), keys...)
		}
	})
	g := startGateway(t, "sqlite:"+filepath.Join(t.TempDir(), "var", "gateway.db"),
		"-redis", "redis://127.0.0.1:6379/0", "-redis-prefix", prefix, "-public-url", "https://pay.example",
		"-sandbox-pay-url", "http://127.0.0.1:8070/wechat/pay")
	base := g.base

	// The bound address is in the log, as {"msg":"listening","addr":"..."}.
	found := false
	sc := bufio.NewScanner(strings.NewReader(g.logs.String()))
	for sc.Scan() {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" && rec.Addr == g.addr.String() {
			found = true
		}
	}
	if !found {
		t.Fatalf("no listening line with %s in\n%s", g.addr, g.logs.String())
	}

	client := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	get := func(path string) (int, string, http.Header) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body, _ := get(p); code != http.StatusOK {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}

	// The core publishes a bill: ferryd puts it into the inbox of the gateway's database.
	tok := fixture.Token()
	g.publish(t, "B1", tok)
	code, body, hdr := get("/q/" + tok)
	if code != http.StatusOK || !strings.Contains(body, `id="pay-wechat"`) {
		t.Fatalf("cashier page: %d\n%s", code, body)
	}
	setCookie := hdr.Get("Set-Cookie")
	if !strings.Contains(setCookie, "Secure") {
		t.Error("the CSRF cookie is not Secure behind an https public URL")
	}
	csrf := regexp.MustCompile(`fp_csrf=([^;]+)`).FindStringSubmatch(setCookie)[1]
	req, _ := http.NewRequest(http.MethodPost, base+"/q/"+tok+"/pay/wechat", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "fp_csrf", Value: csrf})
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "/order/") {
		t.Fatalf("pay: %d %s", resp.StatusCode, loc)
	}
	orderNo := loc[strings.LastIndex(loc, "/")+1:]
	if o := g.wx.Order(orderNo); o == nil || o.NotifyURL != "https://pay.example/notify/wechat" {
		t.Fatalf("order at WeChat: %+v", o)
	}
	if code, body, _ = get(loc); code != http.StatusOK || !strings.Contains(body, `id="sandbox-pay"`) {
		t.Fatalf("order page: %d\n%s", code, body)
	}
	g.notify(t, orderNo)
	if code, body, _ = get("/q/" + tok + "/status"); code != http.StatusOK || !strings.Contains(body, `"paid":true`) {
		t.Fatalf("status: %d %s", code, body)
	}
	_, metrics, _ := get("/metrics")
	for _, want := range []string{
		`gateway_notifications_received_total{channel="wechat"} 1`,
		`gateway_payments_recorded_total{channel="wechat"} 1`,
		`gateway_channel_orders_created_total{channel="wechat"} 1`,
		`ferry_outbox_backlog{lane="to-core.`,
		`ferry_inbox_consumed_total{type="bill.published"} 1`,
		`http_request_duration_seconds_count{method="POST",route="/notify/wechat",service="gateway",status="204"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	if err := g.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if !strings.Contains(g.logs.String(), `"msg":"stopped"`) {
		t.Fatal("no stopped line")
	}
}

func TestP2GatewayMigrateAndBadKeys(t *testing.T) {
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "gw.db")
	var logs syncBuffer
	if err := run(context.Background(), []string{"migrate", "-db", dbURL}, &logs, hooks{}); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	err := run(context.Background(), []string{"-db", dbURL, "-certs", t.TempDir(), "-listen", "127.0.0.1:0"}, &logs, hooks{})
	if err == nil || !strings.Contains(err.Error(), "wechat-merchant.key") {
		t.Fatalf("missing keys: %v", err)
	}
	if err := run(context.Background(), []string{"-lanes", "0"}, &logs, hooks{}); err == nil {
		t.Fatal("-lanes 0 accepted")
	}
}

// TestREADMEConfigTable keeps the README's configuration table equal to the flags.
func TestREADMEConfigTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	set, _ := newOptions()
	if !strings.Contains(string(readme), set.Table()) {
		t.Fatalf("README.md lacks the current configuration table; it is:\n\n%s", set.Table())
	}
}
