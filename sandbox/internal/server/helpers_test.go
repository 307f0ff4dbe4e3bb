package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"finepay/sandbox/internal/server"
	"finepay/sandbox/internal/testpki"
	"finepay/shared/gm"
)

type env struct {
	url  string
	srv  *server.Server
	pki  *testpki.PKI
	dir  string
	core *core
}

func noEnv(string) string { return "" }

// start runs the sandbox on a loopback port with the test PKI and extra flags.
func start(t *testing.T, args ...string) *env {
	t.Helper()
	p, dir := testpki.Dir(t)
	cfg, err := server.ParseConfig(append([]string{"-certs", dir, "-wechat-schedule-scale", "0.001"}, args...), noEnv, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	m, err := server.LoadMaterial(cfg.CertsDir, cfg.PartnerCallers)
	if err != nil {
		t.Fatalf("material: %v", err)
	}
	srv, err := server.New(cfg, m, server.Deps{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		client.CloseIdleConnections()
	})
	e := &env{url: "http://" + ln.Addr().String(), srv: srv, pki: p, dir: dir}
	e.core = &core{
		base: e.url, app: "core", key: p.Core.Sign.Key, partner: p.Box.Sign.Cert.PublicKey(),
		enc: p.Box.Enc.Cert.PublicKey(), now: time.Now, client: client,
	}
	return e
}

// core is a partner-protocol client written for the tests from docs/partners.md, independently
// of package partnersig.
type core struct {
	base    string
	app     string
	key     *gm.PrivateKey
	partner *gm.PublicKey // verifies the sandbox's answers
	enc     *gm.PublicKey // encrypts payer_name_enc
	now     func() time.Time
	client  *http.Client
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func hexSM3(b []byte) string {
	d := gm.SM3(b)
	return hex.EncodeToString(d[:])
}

// call signs and sends a request and checks the answer's signature.
func (c *core) call(t *testing.T, method, pathQuery, requestID string, body any) answer {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	return c.send(t, method, pathQuery, requestID, raw, nil)
}

// send signs raw and sends it; edit may spoil the request after signing.
func (c *core) send(t *testing.T, method, pathQuery, requestID string, raw []byte, edit func(*http.Request)) answer {
	t.Helper()
	req, err := http.NewRequest(method, c.base+pathQuery, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(c.now().Unix(), 10)
	msg := strings.Join([]string{c.app, requestID, ts, method, pathQuery, hexSM3(raw)}, "\n")
	sig, err := c.key.Sign(rand.Reader, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-FP-App", c.app)
	req.Header.Set("X-FP-Request-Id", requestID)
	req.Header.Set("X-FP-Timestamp", ts)
	req.Header.Set("X-FP-Signature", base64.StdEncoding.EncodeToString(sig))
	if edit != nil {
		edit(req)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: out}
	if err := c.verify(a, req.Header.Get("X-FP-Request-Id")); err != nil {
		t.Fatalf("%s %s answered %d %s without a valid signature: %v", method, pathQuery, a.status, out, err)
	}
	return a
}

// verify checks the sandbox's signature of an answer.
func (c *core) verify(a answer, requestID string) error {
	h := a.header
	if h.Get("X-FP-App") != "sandbox" {
		return errors.New("X-FP-App is " + h.Get("X-FP-App"))
	}
	if got := h.Get("X-FP-Request-Id"); got != requestID && !(got == "" && !validID(requestID)) {
		return errors.New("request ID not echoed: " + got)
	}
	ts, err := strconv.ParseInt(h.Get("X-FP-Timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 300*time.Second {
		return errors.New("bad timestamp " + h.Get("X-FP-Timestamp"))
	}
	sig, err := base64.StdEncoding.DecodeString(h.Get("X-FP-Signature"))
	if err != nil {
		return err
	}
	msg := strings.Join([]string{"sandbox", h.Get("X-FP-Request-Id"), h.Get("X-FP-Timestamp"), strconv.Itoa(a.status), "", hexSM3(a.body)}, "\n")
	return c.partner.Verify([]byte(msg), sig)
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	return strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

// name encrypts a payer name to the sandbox's encryption certificate.
func (c *core) name(t *testing.T, n string) string {
	t.Helper()
	ct, err := c.enc.Encrypt(rand.Reader, []byte(n))
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(ct)
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

func wantError(t *testing.T, a answer, status int, code string) apiErr {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d (%s)", a.status, status, a.body)
	}
	e := decodeJSON[apiErr](t, a.body)
	if e.Code != code || e.Message == "" {
		t.Fatalf("error %+v, want code %s with a message", e, code)
	}
	return e
}

func (e *env) get(t *testing.T, path string) answer {
	t.Helper()
	resp, err := e.core.client.Get(e.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: out}
}

func (e *env) state(t *testing.T) server.State {
	t.Helper()
	return decodeJSON[server.State](t, e.get(t, "/_sandbox/state").body)
}

// formBody is a valid form request for a decision.
func formBody(t *testing.T, c *core, decision string) map[string]any {
	return map[string]any{
		"decision_no": decision, "violation_serial": "2301021000000001", "unit_code": "230100",
		"item_code": "103050101", "payer_name_enc": c.name(t, "张三"), "fine": 20000,
		"served_date": time.Now().AddDate(0, 0, -7).Format("2006-01-02"), "late_fee_applies": true,
	}
}

func nopBody(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
