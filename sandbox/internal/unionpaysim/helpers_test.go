package unionpaysim_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
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

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/testpki"
	"finepay/sandbox/internal/unionpaysim"
)

type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

type fixture struct {
	sim      *unionpaysim.Sim
	url      string
	merchant *merchant
	clock    *clock
	pki      *testpki.PKI
}

func setup(t *testing.T, tweak func(*unionpaysim.Config)) *fixture {
	t.Helper()
	p := testpki.Get(t)
	clk := &clock{}
	transport := &http.Transport{}
	sched, _ := unionpaysim.ParseSchedule("10ms,20ms,40ms")
	cfg := unionpaysim.Config{
		Keys:      unionpaysim.Keys{MerchantCert: p.UnionPayMerchant.Cert, SignKey: p.UnionPaySign.Key, SignCert: p.UnionPaySign.Cert},
		PublicURL: "http://sandbox.test",
		Schedule:  sched,
		Client:    &http.Client{Transport: transport, Timeout: 5 * time.Second},
		Now:       clk.Now,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	sim, err := unionpaysim.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e := echo.New()
	e.HTTPErrorHandler = apierr.Handler(nil)
	sim.Register(e)
	srv := httptest.NewServer(e)
	ctx, cancel := context.WithCancel(context.Background())
	sim.Start(ctx)
	roots, middles := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.UnionPayRoot.Cert)
	middles.AddCert(p.UnionPayMiddle.Cert)
	m := &merchant{base: srv.URL + "/unionpay/gateway/api", merID: unionpaysim.DefaultMerID, key: p.UnionPayMerchant.Key,
		certID: p.UnionPayMerchant.Cert.SerialNumber.String(), roots: roots, middles: middles, now: clk.Now,
		client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(func() {
		cancel()
		sim.Wait()
		srv.Close()
		transport.CloseIdleConnections()
		m.client.CloseIdleConnections()
	})
	return &fixture{sim: sim, url: srv.URL, merchant: m, clock: clk, pki: p}
}

// merchant is an ACP 5.1.0 client written for the tests from the protocol description.
type merchant struct {
	base    string
	merID   string
	key     *rsa.PrivateKey
	certID  string
	roots   *x509.CertPool
	middles *x509.CertPool
	now     func() time.Time
	client  *http.Client
	tamper  func(url.Values)
}

func acpText(f map[string]string) string {
	var keys []string
	for k := range f {
		if k != "signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+f[k])
	}
	return strings.Join(parts, "&")
}

func acpDigest(f map[string]string) []byte {
	a := sha256.Sum256([]byte(acpText(f)))
	b := sha256.Sum256([]byte(hex.EncodeToString(a[:])))
	return b[:]
}

// verifyUnionPay checks fields signed by UnionPay as a merchant must.
func (m *merchant) verifyUnionPay(f map[string]string) error {
	b, _ := pem.Decode([]byte(f["signPubKeyCert"]))
	if b == nil {
		return fmt.Errorf("signPubKeyCert is not PEM")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return err
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: m.roots, Intermediates: m.middles, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return err
	}
	if parts := strings.Split(cert.Subject.CommonName, "@"); len(parts) < 3 || parts[2] != "中国银联股份有限公司" {
		return fmt.Errorf("signer %q", cert.Subject.CommonName)
	}
	sig, err := base64.StdEncoding.DecodeString(f["signature"])
	if err != nil {
		return err
	}
	return rsa.VerifyPKCS1v15(cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, acpDigest(f), sig)
}

// parseAnswer splits "k=v&k=v" (values not URL-encoded; {…} groups kept whole).
func parseAnswer(t *testing.T, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	depth, start := 0, 0
	var parts []string
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
		case '&':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	parts = append(parts, s[start:])
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			t.Fatalf("answer part %q in %s", p, s)
		}
		out[k] = v
	}
	return out
}

// signed returns f with the common fields, signed by the merchant, as a form.
func (m *merchant) signed(t *testing.T, f map[string]string) url.Values {
	t.Helper()
	f["version"], f["encoding"], f["merId"], f["signMethod"], f["certId"] = "5.1.0", "UTF-8", m.merID, "01", m.certID
	sig, err := rsa.SignPKCS1v15(nil, m.key, crypto.SHA256, acpDigest(f))
	if err != nil {
		t.Fatal(err)
	}
	f["signature"] = base64.StdEncoding.EncodeToString(sig)
	form := url.Values{}
	for k, v := range f {
		form.Set(k, v)
	}
	return form
}

// call signs f, posts it to path and returns the verified answer.
func (m *merchant) call(t *testing.T, path string, f map[string]string) map[string]string {
	t.Helper()
	form := m.signed(t, f)
	if m.tamper != nil {
		m.tamper(form)
	}
	resp, err := m.client.Post(m.base+path, "application/x-www-form-urlencoded;charset=UTF-8", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: HTTP %d %s", path, resp.StatusCode, raw)
	}
	a := parseAnswer(t, string(raw))
	if err := m.verifyUnionPay(a); err != nil {
		t.Fatalf("%s: answer not signed by UnionPay: %v\n%s", path, err, raw)
	}
	return a
}

func txnTime(t time.Time) string { return t.In(time.FixedZone("CST", 8*3600)).Format("20060102150405") }

func (m *merchant) consume(t *testing.T, orderID string, at time.Time, amount, backURL string) map[string]string {
	t.Helper()
	return m.call(t, "/backTransReq.do", map[string]string{"txnType": "01", "txnSubType": "07", "bizType": "000000",
		"channelType": "08", "accessType": "0", "orderId": orderID, "txnTime": txnTime(at), "txnAmt": amount,
		"currencyCode": "156", "backUrl": backURL, "payTimeout": txnTime(at.Add(2 * time.Hour)),
		"riskRateInfo": "{commodityName=交通违法罚款}"})
}

func (m *merchant) query(t *testing.T, orderID string, at time.Time) map[string]string {
	t.Helper()
	return m.call(t, "/queryTrans.do", map[string]string{"txnType": "00", "txnSubType": "00", "bizType": "000000",
		"accessType": "0", "orderId": orderID, "txnTime": txnTime(at)})
}

type delivery struct {
	header http.Header
	form   url.Values
	raw    string
}

// receiver is the merchant's backUrl, answering each request with the next status of its
// script (the last one repeats).
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
		form, _ := url.ParseQuery(string(body))
		r.got <- delivery{header: req.Header.Clone(), form: form, raw: string(body)}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/notify/unionpay"
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

func formMap(v url.Values) map[string]string {
	m := map[string]string{}
	for k := range v {
		m[k] = v.Get(k)
	}
	return m
}

func waitDone(t *testing.T, sim *unionpaysim.Sim, orderID string) {
	t.Helper()
	done, err := sim.Done(orderID)
	if err != nil {
		t.Fatalf("Done(%s): %v", orderID, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the notification did not finish")
	}
}

func (f *fixture) post(t *testing.T, path, contentType, body string) (int, string) {
	t.Helper()
	resp, err := f.merchant.client.Post(f.url+path, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := f.merchant.client.Get(f.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}
