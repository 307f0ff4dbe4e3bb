package wechatsim_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/testpki"
	"finepay/sandbox/internal/wechatsim"
)

// clock is real time plus an offset that a test can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

type fixture struct {
	sim      *wechatsim.Sim
	url      string
	merchant *merchant
	clock    *clock
	pki      *testpki.PKI
}

// setup starts the simulator on a loopback server with a tiny resend schedule.
func setup(t *testing.T, tweak func(*wechatsim.Config)) *fixture {
	t.Helper()
	p := testpki.Get(t)
	clk := &clock{}
	transport := &http.Transport{}
	cfg := wechatsim.Config{
		Keys: wechatsim.Keys{
			MerchantCert: p.Merchant.Cert, PlatformKey: p.Platform.Key, PlatformCert: p.Platform.Cert,
			APIv3Key: p.APIv3Key,
		},
		PublicURL:     "http://sandbox.test",
		ScheduleScale: 0.001,
		Client:        &http.Client{Transport: transport, Timeout: 5 * time.Second},
		Now:           clk.Now,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	sim, err := wechatsim.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e := echo.New()
	e.HTTPErrorHandler = apierr.Handler(nil)
	sim.Register(e)
	srv := httptest.NewServer(e)
	ctx, cancel := context.WithCancel(context.Background())
	sim.Start(ctx)
	m := &merchant{
		base: srv.URL, mchid: wechatsim.DefaultMchID, key: p.Merchant.Key, serial: p.Merchant.Serial(),
		platform: p.Platform.Cert, now: clk.Now, client: &http.Client{Transport: &http.Transport{}},
	}
	t.Cleanup(func() {
		cancel()
		sim.Wait()
		srv.Close()
		transport.CloseIdleConnections()
		m.client.CloseIdleConnections()
	})
	return &fixture{sim: sim, url: srv.URL, merchant: m, clock: clk, pki: p}
}

// merchant is a WeChat Pay v3 client written for the tests from the protocol description.
type merchant struct {
	base     string
	mchid    string
	key      *rsa.PrivateKey
	serial   string
	platform *x509.Certificate
	now      func() time.Time
	client   *http.Client
	// tamper, when set, changes the request after it was signed.
	tamper func(*http.Request)
	// timestampOffset shifts the signed timestamp.
	timestampOffset time.Duration
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (m *merchant) do(t *testing.T, method, pathQuery string, body any) response {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, m.base+pathQuery, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	ts := strconv.FormatInt(m.now().Add(m.timestampOffset).Unix(), 10)
	nonce := randomHex(t, 16)
	msg := method + "\n" + pathQuery + "\n" + ts + "\n" + nonce + "\n" + string(raw) + "\n"
	digest := sha256.Sum256([]byte(msg))
	sig, err := rsa.SignPKCS1v15(nil, m.key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", fmt.Sprintf(`WECHATPAY2-SHA256-RSA2048 mchid="%s",nonce_str="%s",timestamp="%s",serial_no="%s",signature="%s"`,
		m.mchid, nonce, ts, m.serial, base64.StdEncoding.EncodeToString(sig)))
	if m.tamper != nil {
		m.tamper(req)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: out}
	if err := verifyPlatform(m.platform, r.header, r.body, m.now()); err != nil {
		t.Fatalf("%s %s: answer %d not signed by the platform: %v", method, pathQuery, r.status, err)
	}
	return r
}

// verifyPlatform checks Wechatpay-* headers over body as a merchant must.
func verifyPlatform(cert *x509.Certificate, h http.Header, body []byte, now time.Time) error {
	if got, want := h.Get("Wechatpay-Serial"), fmt.Sprintf("%X", cert.SerialNumber); got != want {
		return fmt.Errorf("serial %q, want %q", got, want)
	}
	ts, nonce := h.Get("Wechatpay-Timestamp"), h.Get("Wechatpay-Nonce")
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q", ts)
	}
	if d := now.Sub(time.Unix(n, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s away", d)
	}
	if nonce == "" || h.Get("Request-ID") == "" {
		return fmt.Errorf("nonce %q, Request-ID %q", nonce, h.Get("Request-ID"))
	}
	sig, err := base64.StdEncoding.DecodeString(h.Get("Wechatpay-Signature"))
	if err != nil {
		return err
	}
	digest := sha256.Sum256([]byte(ts + "\n" + nonce + "\n" + string(body) + "\n"))
	return rsa.VerifyPKCS1v15(cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, digest[:], sig)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%X", b)
}

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

type apiErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (%s)", r.status, status, r.body)
	}
	if e := decodeJSON[apiErr](t, r.body); e.Code != code || e.Message == "" {
		t.Fatalf("error %+v, want code %s with a message", e, code)
	}
}

// orderBody is a valid Native order request.
func orderBody(outTradeNo, notifyURL string, total int64) map[string]any {
	return map[string]any{
		"appid": wechatsim.DefaultAppID, "mchid": wechatsim.DefaultMchID,
		"description": "交通违法罚款 230102100012345", "out_trade_no": outTradeNo,
		"attach": "bill-42", "notify_url": notifyURL,
		"amount": map[string]any{"total": total, "currency": "CNY"},
	}
}

// delivery is a notification as the merchant's endpoint received it.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver is the merchant's notification endpoint. It answers each request with the next
// status of its script (the last one repeats) and hands the request to the test.
type receiver struct {
	url   string
	got   chan delivery
	mu    sync.Mutex
	plan  []int
	count int
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	r := &receiver{got: make(chan delivery, 64), plan: statuses}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := r.plan[min(r.count, len(r.plan)-1)]
		r.count++
		r.mu.Unlock()
		r.got <- delivery{header: req.Header.Clone(), body: body}
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status != http.StatusOK {
			_, _ = w.Write([]byte(`{"code":"FAIL","message":"try again"}`))
		}
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/notify/wechat"
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

// waitDone waits until the order's notification is acknowledged or abandoned.
func waitDone(t *testing.T, sim *wechatsim.Sim, outTradeNo string) {
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

// openResource decrypts a notification's resource with the APIv3 key.
func openResource(t *testing.T, key []byte, ev wechatsim.Event) []byte {
	t.Helper()
	if ev.Resource.Algorithm != "AEAD_AES_256_GCM" || len(ev.Resource.Nonce) != 12 {
		t.Fatalf("resource %+v", ev.Resource)
	}
	ct, err := base64.StdEncoding.DecodeString(ev.Resource.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := gcm.Open(nil, []byte(ev.Resource.Nonce), ct, []byte(ev.Resource.AssociatedData))
	if err != nil {
		t.Fatalf("decrypting the resource: %v", err)
	}
	return pt
}

// post sends an unsigned request to the sandbox, as the payer's browser or robot does.
func (f *fixture) post(t *testing.T, path, contentType string, body []byte) response {
	t.Helper()
	resp, err := f.merchant.client.Post(f.url+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: out}
}

func (f *fixture) get(t *testing.T, path string) response {
	t.Helper()
	resp, err := f.merchant.client.Get(f.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: out}
}

func ioNopCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }
