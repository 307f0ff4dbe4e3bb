package alipaysim_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/alipaysim"
	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/testpki"
)

// clock is real time plus an offset that a test can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

type fixture struct {
	sim   *alipaysim.Sim
	url   string
	app   *app
	clock *clock
	pki   *testpki.PKI
}

// setup starts the simulator on a loopback server with a tiny resend schedule.
func setup(t *testing.T, tweak func(*alipaysim.Config)) *fixture {
	t.Helper()
	p := testpki.Get(t)
	clk := &clock{}
	transport := &http.Transport{}
	cfg := alipaysim.Config{
		Keys:          alipaysim.Keys{AppCert: p.AlipayApp.Cert, PlatformKey: p.AlipayPlatform.Key, PlatformCert: p.AlipayPlatform.Cert},
		PublicURL:     "http://sandbox.test",
		ScheduleScale: 0.0005,
		Client:        &http.Client{Transport: transport, Timeout: 5 * time.Second},
		Now:           clk.Now,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	sim, err := alipaysim.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e := echo.New()
	e.HTTPErrorHandler = apierr.Handler(nil)
	sim.Register(e)
	srv := httptest.NewServer(e)
	ctx, cancel := context.WithCancel(context.Background())
	sim.Start(ctx)
	a := &app{gateway: srv.URL + "/alipay/gateway.do", appID: alipaysim.DefaultAppID, key: p.AlipayApp.Key,
		alipay: p.AlipayPlatform.Cert, now: clk.Now, client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(func() {
		cancel()
		sim.Wait()
		srv.Close()
		transport.CloseIdleConnections()
		a.client.CloseIdleConnections()
	})
	return &fixture{sim: sim, url: srv.URL, app: a, clock: clk, pki: p}
}

// app is an Alipay open-platform client written for the tests from the protocol description.
type app struct {
	gateway string
	appID   string
	key     *rsa.PrivateKey
	alipay  *x509.Certificate
	now     func() time.Time
	client  *http.Client
	// tamper changes the parameters after they were signed.
	tamper func(url.Values)
}

func rsa2Text(p map[string]string, omit ...string) string {
	var keys []string
	for k, v := range p {
		skip := v == ""
		for _, o := range omit {
			skip = skip || k == o
		}
		if !skip {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+p[k])
	}
	return strings.Join(parts, "&")
}

// call signs and sends a method; it returns the verified response object.
func (a *app) call(t *testing.T, method string, biz any, extra map[string]string) map[string]any {
	t.Helper()
	bizJSON, _ := json.Marshal(biz)
	p := map[string]string{"app_id": a.appID, "method": method, "format": "JSON", "charset": "utf-8", "sign_type": "RSA2",
		"timestamp": a.now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02 15:04:05"), "version": "1.0",
		"biz_content": string(bizJSON)}
	for k, v := range extra {
		p[k] = v
	}
	sum := sha256.Sum256([]byte(rsa2Text(p, "sign")))
	sig, err := rsa.SignPKCS1v15(nil, a.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{}
	for k, v := range p {
		form.Set(k, v)
	}
	form.Set("sign", base64.StdEncoding.EncodeToString(sig))
	if a.tamper != nil {
		a.tamper(form)
	}
	resp, err := a.client.Post(a.gateway, "application/x-www-form-urlencoded;charset=utf-8", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	node := strings.ReplaceAll(method, ".", "_") + "_response"
	// Take the object's text out of the answer as received, and verify the sign over it.
	if !bytes.Contains(raw, []byte(`"`+node+`":`)) {
		node = "error_response"
	}
	i := bytes.Index(raw, []byte(`"`+node+`":`))
	j := bytes.LastIndex(raw, []byte(`,"sign":"`))
	if i < 0 || j < 0 {
		t.Fatalf("%s: answer %s", method, raw)
	}
	text := raw[i+len(node)+3 : j]
	var sign string
	json.Unmarshal(raw[j+len(`,"sign":`):len(raw)-1], &sign)
	sigRaw, _ := base64.StdEncoding.DecodeString(sign)
	h := sha256.Sum256(text)
	if err := rsa.VerifyPKCS1v15(a.alipay.PublicKey.(*rsa.PublicKey), crypto.SHA256, h[:], sigRaw); err != nil {
		t.Fatalf("%s: answer not signed by Alipay: %v\n%s", method, err, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(text, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantSub(t *testing.T, got map[string]any, code, subCode string) {
	t.Helper()
	if got["code"] != code || got["sub_code"] != subCode || got["sub_msg"] == "" {
		t.Fatalf("answer %v, want %s %s", got, code, subCode)
	}
}

// delivery is a notification as the merchant's endpoint received it.
type delivery struct {
	header http.Header
	form   url.Values
	raw    string
}

// receiver is the merchant's notify_url. It answers each request with the next body of its
// script (the last one repeats).
type receiver struct {
	url   string
	got   chan delivery
	mu    sync.Mutex
	plan  []string
	count int
}

func newReceiver(t *testing.T, bodies ...string) *receiver {
	t.Helper()
	r := &receiver{got: make(chan delivery, 64), plan: bodies}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		answer := r.plan[min(r.count, len(r.plan)-1)]
		r.count++
		r.mu.Unlock()
		form, _ := url.ParseQuery(string(body))
		r.got <- delivery{header: req.Header.Clone(), form: form, raw: string(body)}
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/notify/alipay"
	return r
}

func (r *receiver) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.got:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no notification arrived")
	}
	return delivery{}
}

func (r *receiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// verifyNotification checks a notification's RSA2 sign as a merchant must: drop sign and
// sign_type, sort the rest, verify with Alipay's public key.
func verifyNotification(cert *x509.Certificate, form url.Values) error {
	p := map[string]string{}
	for k := range form {
		if len(form[k]) != 1 {
			return fmt.Errorf("%s given %d times", k, len(form[k]))
		}
		p[k] = form.Get(k)
	}
	if p["sign_type"] != "RSA2" {
		return fmt.Errorf("sign_type %q", p["sign_type"])
	}
	sig, err := base64.StdEncoding.DecodeString(p["sign"])
	if err != nil {
		return err
	}
	h := sha256.Sum256([]byte(rsa2Text(p, "sign", "sign_type")))
	return rsa.VerifyPKCS1v15(cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, h[:], sig)
}

func waitDone(t *testing.T, sim *alipaysim.Sim, outTradeNo string) {
	t.Helper()
	done, err := sim.Done(outTradeNo)
	if err != nil {
		t.Fatalf("Done(%s): %v", outTradeNo, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the notification did not finish")
	}
}

func (f *fixture) post(t *testing.T, path, contentType string, body string) (int, string) {
	t.Helper()
	resp, err := f.app.client.Post(f.url+path, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := f.app.client.Get(f.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func precreate(no, notifyURL, amount string) (map[string]string, map[string]string) {
	expire := time.Now().In(time.FixedZone("CST", 8*3600)).Add(2 * time.Hour).Format("2006-01-02 15:04:05")
	return map[string]string{"out_trade_no": no, "total_amount": amount, "subject": "交通违法罚款", "time_expire": expire},
		map[string]string{"notify_url": notifyURL}
}
