package partnerin_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/coredb"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/partnerin"
	"finepay/shared/gm"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

type fixture struct {
	db     *sqldb.DB
	core   *gm.PrivateKey
	caller *gm.PrivateKey
	url    string
	calls  atomic.Int64
}

// newFixture serves POST /echo (counts calls, answers the body's "n") and POST /boom (500)
// behind a guard that knows one caller, "isp12123".
func newFixture(t *testing.T, db *sqldb.DB) *fixture {
	t.Helper()
	sqltest.Must(t, coredb.Migrate(context.Background(), db))
	f := &fixture{db: db}
	var err error
	f.core, err = gm.GenerateKey(rand.Reader)
	sqltest.Must(t, err)
	f.caller, err = gm.GenerateKey(rand.Reader)
	sqltest.Must(t, err)
	g, err := partnerin.New(partnerin.Config{DB: db, Node: "core", Key: f.core,
		Callers: []partnerin.Caller{{Name: "isp12123", Key: f.caller.Public()}}})
	sqltest.Must(t, err)
	e, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
	grp := e.Group("/p", g.Middleware)
	grp.POST("/echo", func(c echo.Context) error {
		var in struct {
			N int `json:"n"`
		}
		if err := partnerin.Decode(c, &in); err != nil {
			return err
		}
		p := partnerin.Problems{}
		p.Add(in.N <= 0, "n", "must be positive")
		if err := p.Err(); err != nil {
			return err
		}
		f.calls.Add(1)
		return c.JSON(http.StatusOK, map[string]any{"n": in.N, "caller": partnerin.CallerOf(c)})
	})
	grp.POST("/boom", func(c echo.Context) error {
		f.calls.Add(1)
		return errors.New("boom")
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fixture) client(t *testing.T, app string, key *gm.PrivateKey, now func() time.Time) *partner.Client {
	t.Helper()
	c, err := partner.New(partner.Config{BaseURL: f.url, App: app, Signer: key, PartnerKey: f.core.Public(),
		PartnerApp: "core", Now: now})
	sqltest.Must(t, err)
	return c
}

func status(err error) (int, string) {
	var pe *partner.Error
	if errors.As(err, &pe) {
		return pe.Status, pe.Code
	}
	return 0, ""
}

func (f *fixture) audit(t *testing.T) map[string]int {
	t.Helper()
	rows, err := f.db.QueryContext(context.Background(), `SELECT code FROM partner_audit`)
	sqltest.Must(t, err)
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var c string
		sqltest.Must(t, rows.Scan(&c))
		got[c]++
	}
	return got
}

func TestPartnerInGuard(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		f := newFixture(t, db)
		ctx := context.Background()
		good := f.client(t, "isp12123", f.caller, nil)

		var out struct {
			N      int    `json:"n"`
			Caller string `json:"caller"`
		}
		sqltest.Must(t, good.PostRaw(ctx, "/p/echo", "r1", []byte(`{"n":7}`), &out))
		if out.N != 7 || out.Caller != "isp12123" {
			t.Fatalf("answer %+v", out)
		}
		// The same request again: the stored answer, the handler not run again.
		resp, err := good.Do(ctx, http.MethodPost, "/p/echo", "r1", []byte(`{"n":7}`))
		sqltest.Must(t, err)
		if !strings.Contains(string(resp.Body), `"n":7`) || f.calls.Load() != 1 {
			t.Fatalf("replay ran the handler again (%d calls) or changed the answer %s", f.calls.Load(), resp.Body)
		}

		cases := []struct {
			name   string
			client *partner.Client
			rid    string
			body   string
			status int
			code   string
		}{
			{"same ID, other body", good, "r1", `{"n":8}`, 409, "REQUEST_ID_CONFLICT"},
			{"unknown caller", f.client(t, "stranger", f.caller, nil), "r2", `{"n":1}`, 401, "UNAUTHENTICATED"},
			{"wrong key", f.client(t, "isp12123", f.core, nil), "r3", `{"n":1}`, 401, "SIGNATURE_INVALID"},
			// The skewed client also refuses the core's answer, by its own clock; the audit
			// trail below shows what the core answered.
			{"old timestamp", f.client(t, "isp12123", f.caller, func() time.Time { return time.Now().Add(-10 * time.Minute) }), "r4", `{"n":1}`, 0, ""},
			{"unknown field", good, "r5", `{"n":1,"x":2}`, 400, "INVALID_JSON"},
			{"trailing data", good, "r6", `{"n":1}{}`, 400, "INVALID_JSON"},
			{"bad field", good, "r7", `{"n":-1}`, 400, "INVALID_ARGUMENT"},
		}
		for _, tc := range cases {
			_, err := tc.client.Do(ctx, http.MethodPost, "/p/echo", tc.rid, []byte(tc.body))
			if s, code := status(err); s != tc.status || code != tc.code {
				t.Errorf("%s: got %d %s (%v), want %d %s", tc.name, s, code, err, tc.status, tc.code)
			}
		}
		if f.calls.Load() != 1 {
			t.Fatalf("refused requests reached the handler: %d calls", f.calls.Load())
		}
		// The wrong-key answer was still signed by the core (the client verified it), and every
		// request is in the audit trail.
		a := f.audit(t)
		if a["ok"] != 2 || a["SIGNATURE_INVALID"] != 1 || a["UNAUTHENTICATED"] != 1 || a["INVALID_ARGUMENT"] != 1 ||
			a["TIMESTAMP_OUT_OF_WINDOW"] != 1 || a["INVALID_JSON"] != 2 || a["REQUEST_ID_CONFLICT"] != 1 {
			t.Fatalf("audit %v", a)
		}

		// A 500 is not stored: the retry runs again.
		for range 2 {
			_, err := good.Do(ctx, http.MethodPost, "/p/boom", "b1", []byte(`{}`))
			if s, _ := status(err); s != 500 {
				t.Fatalf("boom: %v", err)
			}
		}
		if f.calls.Load() != 3 {
			t.Fatalf("a 5xx answer was replayed: %d calls", f.calls.Load())
		}
	})
}

func TestPartnerInConcurrentRepeatsRunOnce(t *testing.T) {
	db := sqltest.Open(t, sqldb.Postgres)
	f := newFixture(t, db)
	good := f.client(t, "isp12123", f.caller, nil)
	var wg sync.WaitGroup
	var ok, busy atomic.Int64
	for range 10 {
		wg.Go(func() {
			_, err := good.Do(context.Background(), http.MethodPost, "/p/echo", "same", []byte(`{"n":3}`))
			switch s, code := status(err); {
			case err == nil:
				ok.Add(1)
			case s == 409 && code == "REQUEST_IN_PROGRESS":
				busy.Add(1)
			default:
				t.Errorf("unexpected answer %v", err)
			}
		})
	}
	wg.Wait()
	if f.calls.Load() != 1 || ok.Load() == 0 || ok.Load()+busy.Load() != 10 {
		t.Fatalf("handler ran %d times; %d answered, %d told to retry", f.calls.Load(), ok.Load(), busy.Load())
	}
}
