package cashier_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/cashier"
	"finepay/internet-gateway/internal/fixture"
	"finepay/internet-gateway/internal/kv"
	"finepay/shared/httpx"
	"finepay/shared/logging"
	"finepay/shared/lookup"
)

var lookupKey = []byte("cashier test lookup key 32 bytes")

const (
	lookupDecision = "2301021234567890" // fixture.Bill's decision number
	lookupTail     = "1B35"             // the last four characters of its plate, say 黑A11B35
)

// lookupSite is the gateway's HTTP surface with the lookup page, on the in-process key-value
// store or on Redis at 127.0.0.1:6379 (a key prefix of its own), over PostgreSQL.
type lookupSite struct {
	*fixture.Env
	e       *echo.Echo
	cookies map[string]string
}

func newLookupSite(t *testing.T, store string, cfg cashier.Config) *lookupSite {
	t.Helper()
	var env *fixture.Env
	now := func() time.Time {
		if env == nil {
			return fixture.Start
		}
		return env.Clock.Now()
	}
	var opts fixture.Options
	if store == "redis" {
		client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		if err := client.Ping(context.Background()).Err(); err != nil {
			client.Close()
			t.Fatalf("redis at 127.0.0.1:6379: %v", err)
		}
		b := make([]byte, 6)
		rand.Read(b)
		prefix := "fp:test:lookup:" + hex.EncodeToString(b) + ":"
		t.Cleanup(func() {
			keys, _ := client.Keys(context.Background(), prefix+"*").Result()
			if len(keys) > 0 {
				client.Del(context.Background(), keys...)
			}
			client.Close()
		})
		opts.KV = kv.NewRedis(client, prefix, now)
	}
	env = fixture.New(t, sqltest.Open(t, sqldb.Postgres), opts)
	e, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
	e.IPExtractor = echo.ExtractIPDirect()
	cfg.Bills, cfg.Orders, cfg.Limiter, cfg.Now = env.Bills, env.Orders, env.KV, env.Clock.Now
	if cfg.LookupKey == nil {
		cfg.LookupKey = lookupKey
	}
	cfg.PublicURL = "https://pay.example.test"
	h, err := cashier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Register(e)
	return &lookupSite{Env: env, e: e, cookies: map[string]string{}}
}

// publish publishes fixture.Bill with the lookup hash of decision and tail; it returns the token.
func (s *lookupSite) publish(t *testing.T, billNo, decision, tail string) string {
	t.Helper()
	tok := fixture.Token()
	b := fixture.Bill(billNo, tok)
	b.DecisionNo = decision
	var err error
	if b.LookupHash, err = lookup.Hash(lookupKey, decision, tail); err != nil {
		t.Fatal(err)
	}
	s.Publish(t, b)
	return tok
}

// form posts the lookup form from ip, with the browser's cookies and CSRF token.
func (s *lookupSite) form(t *testing.T, ip, decision, tail string) *httptest.ResponseRecorder {
	t.Helper()
	if s.cookies["fp_csrf_lookup"] == "" {
		if rec := s.req(http.MethodGet, "/lookup", ip, "", nil); rec.Code != http.StatusOK {
			t.Fatalf("GET /lookup: %d %s", rec.Code, rec.Body)
		}
	}
	f := url.Values{"csrf": {s.cookies["fp_csrf_lookup"]}, "decision_no": {decision}, "plate_tail": {tail}}
	return s.req(http.MethodPost, "/lookup", ip, "application/x-www-form-urlencoded", []byte(f.Encode()))
}

// api posts the JSON lookup from ip.
func (s *lookupSite) api(t *testing.T, ip, decision, tail string) *httptest.ResponseRecorder {
	t.Helper()
	b, _ := json.Marshal(cashier.LookupRequest{DecisionNo: decision, PlateTail: tail})
	return s.req(http.MethodPost, "/api/v1/lookup", ip, "application/json", b)
}

func (s *lookupSite) req(method, path, ip, ctype string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.RemoteAddr = ip + ":40000"
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range s.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	rec := httptest.NewRecorder()
	s.e.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		s.cookies[c.Name] = c.Value
	}
	return rec
}

func eachStore(t *testing.T, fn func(t *testing.T, store string)) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			fn(t, store)
		})
	}
}

func errorBody(t *testing.T, rec *httptest.ResponseRecorder) httpx.ErrorBody {
	t.Helper()
	var b httpx.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
	}
	return b
}

// TestP2LookupLeadsToCashier: the decision number and the plate's last four characters (any
// case, surrounded by spaces) lead to the bill's cashier page, by the form (303) and by the
// JSON API; the gateway stores the keyed hash only.
func TestP2LookupLeadsToCashier(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, store string) {
		s := newLookupSite(t, store, cashier.Config{})
		tok := s.publish(t, "B1", lookupDecision, lookupTail)
		other := s.publish(t, "B2", "2301029999999999", "2345")

		rec := s.req(http.MethodGet, "/lookup", "192.0.2.1", "", nil)
		body := rec.Body.String()
		if rec.Code != http.StatusOK || !strings.Contains(body, `id="lookup-decision-no"`) || !strings.Contains(body, `id="lookup-plate-tail"`) ||
			s.cookies["fp_csrf_lookup"] == "" || !strings.Contains(body, `value="`+s.cookies["fp_csrf_lookup"]+`"`) {
			t.Fatalf("GET /lookup: %d %s", rec.Code, body)
		}
		if rec.Header().Get("Content-Security-Policy") == "" {
			t.Error("the lookup page has no CSP")
		}

		rec = s.form(t, "192.0.2.1", " "+lookupDecision+" ", " 1b35 ")
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/q/"+tok {
			t.Fatalf("form: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
		}
		rec = s.api(t, "192.0.2.1", "2301029999999999", "2345")
		var ans cashier.LookupAnswer
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ans) != nil || ans.CashierURL != "https://pay.example.test/q/"+other {
			t.Fatalf("api: %d %s", rec.Code, rec.Body)
		}
		// The cashier page it leads to is the bill's.
		if rec := s.req(http.MethodGet, "/q/"+tok, "192.0.2.1", "", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), lookupDecision) {
			t.Fatalf("cashier page: %d", rec.Code)
		}
		// The bill row holds the hash, never the plate's characters.
		var hash string
		if err := s.DB.QueryRowContext(context.Background(), `SELECT lookup_hash FROM bills WHERE bill_no = 'B1'`).Scan(&hash); err != nil {
			t.Fatal(err)
		}
		if !lookup.ValidHash(hash) || strings.Contains(strings.ToUpper(hash), lookupTail) {
			t.Fatalf("stored lookup_hash %q", hash)
		}
	})
}

// TestP2LookupSameAnswerUnknownOrWrongPlate: an unknown decision number and a known one with
// the wrong plate characters get the same status and the same body (byte for byte from the
// JSON API; the same page from the form, but for the number typed, which is shown again).
func TestP2LookupSameAnswerUnknownOrWrongPlate(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, store string) {
		s := newLookupSite(t, store, cashier.Config{})
		s.publish(t, "B1", lookupDecision, lookupTail)
		const unknown = "2301020000000001"

		wrong, missing := s.api(t, "192.0.2.1", lookupDecision, "9999"), s.api(t, "192.0.2.2", unknown, lookupTail)
		if wrong.Code != http.StatusNotFound || missing.Code != wrong.Code || !bytes.Equal(wrong.Body.Bytes(), missing.Body.Bytes()) {
			t.Fatalf("api: wrong plate %d %s; unknown decision %d %s", wrong.Code, wrong.Body, missing.Code, missing.Body)
		}
		if b := errorBody(t, wrong); b.Code != cashier.CodeNotFound || strings.Contains(b.Message, lookupDecision) {
			t.Errorf("api answer %+v", b)
		}
		if !sameHeaders(wrong.Header(), missing.Header()) {
			t.Errorf("api headers differ: %v vs %v", wrong.Header(), missing.Header())
		}

		strip := regexp.MustCompile(`nonce="[^"]*"|value="[^"]*"`)
		fw, fm := s.form(t, "192.0.2.3", lookupDecision, "9999"), s.form(t, "192.0.2.4", unknown, lookupTail)
		bw := strip.ReplaceAllString(fw.Body.String(), "")
		bm := strip.ReplaceAllString(fm.Body.String(), "")
		if fw.Code != http.StatusNotFound || fm.Code != fw.Code || bw != bm {
			t.Fatalf("form: wrong plate %d, unknown decision %d; bodies equal: %v\n%s", fw.Code, fm.Code, bw == bm, bw)
		}
		if got := text(t, fw.Body.String(), "lookup-message"); !strings.Contains(got, "未查到") {
			t.Errorf("form message %q", got)
		}
		if strings.Contains(fw.Body.String(), "9999") {
			t.Error("the form shows the plate characters typed again")
		}
	})
}

func sameHeaders(a, b http.Header) bool {
	for k := range a {
		if a.Get(k) != b.Get(k) {
			return false
		}
	}
	return len(a) == len(b)
}

// TestP2LookupRateLimit: over the per-client limit a client gets 429 with a clear message
// (form and API share it), others do not; over the per-decision limit every client gets 429
// for that decision number, whether it exists or not, and other numbers are still looked up;
// the next window lets the client in again.
func TestP2LookupRateLimit(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, store string) {
		s := newLookupSite(t, store, cashier.Config{LookupLimit: 3, LookupDecisionLimit: 4})
		tok := s.publish(t, "B1", lookupDecision, lookupTail)

		// Per client IP: 3 a minute, form and API together.
		for i, do := range []func() *httptest.ResponseRecorder{
			func() *httptest.ResponseRecorder { return s.api(t, "198.51.100.1", "2301020000000001", "0000") },
			func() *httptest.ResponseRecorder { return s.form(t, "198.51.100.1", "2301020000000002", "0000") },
			func() *httptest.ResponseRecorder { return s.api(t, "198.51.100.1", "2301020000000003", "0000") },
		} {
			if rec := do(); rec.Code != http.StatusNotFound {
				t.Fatalf("lookup %d: %d %s", i+1, rec.Code, rec.Body)
			}
		}
		rec := s.api(t, "198.51.100.1", lookupDecision, lookupTail)
		if b := errorBody(t, rec); rec.Code != http.StatusTooManyRequests || b.Code != cashier.CodeRateLimited ||
			!strings.Contains(b.Message, "too many lookups from this client") || rec.Header().Get("Retry-After") != "60" {
			t.Fatalf("4th lookup from one client: %d %s", rec.Code, rec.Body)
		}
		rec = s.form(t, "198.51.100.1", lookupDecision, lookupTail)
		if rec.Code != http.StatusTooManyRequests || !strings.Contains(text(t, rec.Body.String(), "lookup-message"), "查询过于频繁") {
			t.Fatalf("form over the client limit: %d %s", rec.Code, rec.Body)
		}
		if rec := s.api(t, "198.51.100.2", lookupDecision, lookupTail); rec.Code != http.StatusOK {
			t.Fatalf("another client: %d %s", rec.Code, rec.Body)
		}

		// Per decision number: 4 an hour from any client (one used above).
		for i, ip := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
			if rec := s.api(t, ip, lookupDecision, "0000"); rec.Code != http.StatusNotFound {
				t.Fatalf("decision lookup %d: %d %s", i+2, rec.Code, rec.Body)
			}
		}
		rec = s.api(t, "203.0.113.9", lookupDecision, lookupTail)
		if b := errorBody(t, rec); rec.Code != http.StatusTooManyRequests || b.Code != cashier.CodeRateLimited ||
			!strings.Contains(b.Message, "this decision number") || rec.Header().Get("Retry-After") != "3600" {
			t.Fatalf("5th lookup of one decision: %d %s", rec.Code, rec.Body)
		}
		// An unknown decision number is limited the same way (the limit says nothing of existence).
		for i := range 4 {
			if rec := s.api(t, "203.0.114."+string(rune('1'+i)), "2301020000000009", "0000"); rec.Code != http.StatusNotFound {
				t.Fatalf("unknown decision lookup %d: %d", i+1, rec.Code)
			}
		}
		if rec := s.api(t, "203.0.114.9", "2301020000000009", "0000"); rec.Code != http.StatusTooManyRequests {
			t.Fatalf("5th lookup of an unknown decision: %d %s", rec.Code, rec.Body)
		}

		// The next minute the first client may look up again; the next hour, the decision.
		s.Clock.Advance(time.Minute)
		if rec := s.api(t, "198.51.100.1", "2301020000000004", "0000"); rec.Code != http.StatusNotFound {
			t.Fatalf("next minute: %d %s", rec.Code, rec.Body)
		}
		s.Clock.Advance(time.Hour)
		rec = s.form(t, "198.51.100.1", lookupDecision, lookupTail)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/q/"+tok {
			t.Fatalf("next hour: %d %s", rec.Code, rec.Body)
		}
	})
}

// TestP2LookupValidation: each input is checked, with a message naming what is wrong; neither
// fact alone is accepted; the JSON API takes one JSON object; the form needs its CSRF token.
func TestP2LookupValidation(t *testing.T) {
	t.Parallel()
	s := newLookupSite(t, "memory", cashier.Config{LookupLimit: 100})
	s.publish(t, "B1", lookupDecision, lookupTail)
	for _, tt := range []struct {
		decision, tail string
		want           []string
	}{
		{"", lookupTail, []string{"decision_no"}},
		{lookupDecision, "", []string{"plate_tail"}},
		{"23010212345", lookupTail, []string{"decision_no"}},
		{"230102123456789012345", lookupTail, []string{"decision_no"}},
		{"23010212345678x0", lookupTail, []string{"decision_no"}},
		{lookupDecision, "1B3", []string{"plate_tail"}},
		{lookupDecision, "1B35X", []string{"plate_tail"}},
		{lookupDecision, "1-35", []string{"plate_tail"}},
		{"x", "y", []string{"decision_no", "plate_tail"}},
	} {
		rec := s.api(t, "192.0.2.1", tt.decision, tt.tail)
		b := errorBody(t, rec)
		if rec.Code != http.StatusBadRequest || b.Code != cashier.CodeInvalidArgument {
			t.Errorf("%q %q: %d %+v", tt.decision, tt.tail, rec.Code, b)
			continue
		}
		for _, f := range tt.want {
			if !strings.Contains(b.Message, f+":") {
				t.Errorf("%q %q: message %q does not name %s", tt.decision, tt.tail, b.Message, f)
			}
		}
		fr := s.form(t, "192.0.2.1", tt.decision, tt.tail)
		if fr.Code != http.StatusBadRequest {
			t.Errorf("form %q %q: %d", tt.decision, tt.tail, fr.Code)
		}
		for _, f := range tt.want {
			id := map[string]string{"decision_no": "lookup-decision-no-error", "plate_tail": "lookup-plate-tail-error"}[f]
			if !strings.Contains(fr.Body.String(), `id="`+id+`"`) {
				t.Errorf("form %q %q: no %s", tt.decision, tt.tail, id)
			}
		}
	}
	for name, c := range map[string]struct {
		ctype, body string
		status      int
		code        string
	}{
		"form body":     {"application/x-www-form-urlencoded", "decision_no=" + lookupDecision, http.StatusUnsupportedMediaType, cashier.CodeUnsupportedType},
		"unknown field": {"application/json", `{"decision_no":"` + lookupDecision + `","plate_tail":"1B35","plate":"黑A1B35"}`, http.StatusBadRequest, cashier.CodeInvalidJSON},
		"two objects":   {"application/json", `{} {}`, http.StatusBadRequest, cashier.CodeInvalidJSON},
		"not json":      {"application/json", `decision_no=1`, http.StatusBadRequest, cashier.CodeInvalidJSON},
		"too large":     {"application/json", `{"decision_no":"` + strings.Repeat("1", 5000) + `"}`, http.StatusBadRequest, cashier.CodeInvalidJSON},
	} {
		rec := s.req(http.MethodPost, "/api/v1/lookup", "192.0.2.1", c.ctype, []byte(c.body))
		if b := errorBody(t, rec); rec.Code != c.status || b.Code != c.code {
			t.Errorf("%s: %d %+v", name, rec.Code, b)
		}
	}
	// Without the CSRF token (a cross-site post) the form is refused.
	f := url.Values{"decision_no": {lookupDecision}, "plate_tail": {lookupTail}}
	if rec := s.req(http.MethodPost, "/lookup", "192.0.2.1", "application/x-www-form-urlencoded", []byte(f.Encode())); rec.Code != http.StatusForbidden {
		t.Fatalf("no CSRF token: %d", rec.Code)
	}
}

// failingLimiter is a limiter that cannot answer (Redis down).
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string, int, time.Duration) (bool, error) {
	return false, errors.New("redis: connection refused")
}

// TestP2LookupFailsClosed: when the limiter cannot answer, lookups are refused with 503 (the
// limit is a privacy control), while the cashier pages stay open.
func TestP2LookupFailsClosed(t *testing.T) {
	t.Parallel()
	s := newLookupSite(t, "memory", cashier.Config{})
	tok := s.publish(t, "B1", lookupDecision, lookupTail)
	e, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
	h, err := cashier.New(cashier.Config{Bills: s.Bills, Orders: s.Orders, Limiter: failingLimiter{}, LookupKey: lookupKey})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(e)
	s.e = e
	rec := s.api(t, "192.0.2.1", lookupDecision, lookupTail)
	if b := errorBody(t, rec); rec.Code != http.StatusServiceUnavailable || b.Code != cashier.CodeUnavailable {
		t.Fatalf("api: %d %s", rec.Code, rec.Body)
	}
	if rec := s.req(http.MethodGet, "/q/"+tok, "192.0.2.1", "", nil); rec.Code != http.StatusOK {
		t.Fatalf("cashier page: %d", rec.Code)
	}
}

// TestP2LookupOffWithoutKey: without a lookup key there is no lookup page.
func TestP2LookupOffWithoutKey(t *testing.T) {
	t.Parallel()
	s := newLookupSite(t, "memory", cashier.Config{})
	e, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
	h, err := cashier.New(cashier.Config{Bills: s.Bills, Orders: s.Orders, Limiter: s.KV})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(e)
	s.e = e
	if rec := s.req(http.MethodGet, "/lookup", "192.0.2.1", "", nil); rec.Code != http.StatusNotFound {
		t.Fatalf("GET /lookup without a key: %d", rec.Code)
	}
}
