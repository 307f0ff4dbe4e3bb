package console_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/console"
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/refund"
	"finepay/shared/envelope"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

const (
	password         = "Clerk-pass-2026"
	reviewerPassword = "Review-pass-2026"
)

type fixture struct {
	env *coretest.Env
	con *console.Console
	srv *httptest.Server
}

func setup(t *testing.T) *fixture { return setupRoles(t, console.DefaultRoles) }

// setupRoles is setup with the users' roles given as the -console-roles flag gives them.
func setupRoles(t *testing.T, roles string) *fixture {
	t.Helper()
	rm, err := console.ParseRoles(roles)
	sqltest.Must(t, err)
	env := coretest.New(t, sqltest.Open(t, sqldb.Postgres), coretest.Options{})
	refunds := refund.NewService(refund.Config{DB: env.DB, Now: env.Clock.Now, Logger: logging.Discard()})
	con := console.New(console.Config{DB: env.DB, Bills: env.Bills, Refunds: refunds, Now: env.Clock.Now, Iterations: console.MinIterations,
		Logger: logging.Discard(), Roles: rm})
	if _, generated, created, err := con.EnsureClerk(context.Background(), password); err != nil || generated || !created {
		t.Fatalf("EnsureClerk: generated %v created %v err %v", generated, created, err)
	}
	if _, generated, created, err := con.EnsureReviewer(context.Background(), reviewerPassword); err != nil || generated || !created {
		t.Fatalf("EnsureReviewer: generated %v created %v err %v", generated, created, err)
	}
	e, _ := httpx.New(httpx.Options{Service: "core", Logger: logging.Discard()})
	con.Routes(e)
	api := e.Group("/api/v1", con.APIAuth("window-token"))
	bill.Routes(api, env.Bills)
	con.APIRoutes(api)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &fixture{env: env, con: con, srv: srv}
}

// browser is an HTTP client with a cookie jar that follows redirects.
type browser struct {
	t  *testing.T
	c  *http.Client
	fx *fixture
}

func (fx *fixture) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar}, fx: fx}
}

func (b *browser) do(req *http.Request) (int, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (b *browser) get(path string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, b.fx.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, b.fx.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var reCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrf(t *testing.T, page string) string {
	t.Helper()
	m := reCSRF.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", page)
	}
	return m[1]
}

func (b *browser) login(user, pw string) (int, string) {
	_, page := b.get("/console/login")
	return b.post("/console/login", url.Values{"csrf": {csrf(b.t, page)}, "username": {user}, "password": {pw}})
}

func TestConsoleLoginGoodAndBad(t *testing.T) {
	fx := setup(t)
	b := fx.browser(t)
	if code, page := b.get("/console"); code != 200 || !strings.Contains(page, `id="login"`) {
		t.Fatalf("anonymous /console: %d, not the login page", code)
	}
	if code, page := b.login("clerk", "wrong-password-1"); code != http.StatusUnauthorized || !strings.Contains(page, "用户名或密码错误") {
		t.Fatalf("bad password: %d", code)
	}
	if code, _ := b.login("nobody", password); code != http.StatusUnauthorized {
		t.Fatalf("unknown user: %d", code)
	}
	code, page := b.login("clerk", password)
	if code != 200 || !strings.Contains(page, `id="create-bill"`) {
		t.Fatalf("good login: %d\n%s", code, page)
	}
	u, _ := url.Parse(fx.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == console.SessionCookie && len(c.Value) < 43 {
			t.Errorf("session id %q is shorter than 256 bits", c.Value)
		}
	}
	// Logout ends the session.
	if code, _ := b.post("/console/logout", url.Values{"csrf": {csrf(t, page)}}); code != 200 {
		t.Fatalf("logout: %d", code)
	}
	if _, page := b.get("/console"); !strings.Contains(page, `id="login"`) {
		t.Fatal("still logged in after logout")
	}
	audit, err := console.AuditList(context.Background(), fx.env.DB)
	sqltest.Must(t, err)
	var results []string
	for _, a := range audit {
		results = append(results, a.Event+":"+a.Result)
	}
	if got := strings.Join(results, ","); got != "login:failure,login:failure,login:success,logout:success" {
		t.Errorf("audit %s", got)
	}
}

func TestConsoleSessionCookieAttributes(t *testing.T) {
	fx := setup(t)
	b := fx.browser(t)
	_, page := b.get("/console/login")
	b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest(http.MethodPost, fx.srv.URL+"/console/login",
		strings.NewReader(url.Values{"csrf": {csrf(t, page)}, "username": {"clerk"}, "password": {password}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.c.Do(req)
	sqltest.Must(t, err)
	resp.Body.Close()
	var found bool
	for _, c := range resp.Cookies() {
		if c.Name == console.SessionCookie && c.Value != "" {
			found = true
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("session cookie %+v", c)
			}
		}
	}
	if resp.StatusCode != http.StatusSeeOther || !found {
		t.Fatalf("login answered %d, session cookie %v", resp.StatusCode, found)
	}
}

func TestConsoleLocksAfterFiveFailures(t *testing.T) {
	fx := setup(t)
	b := fx.browser(t)
	for i := 1; i <= 5; i++ {
		code, page := b.login("clerk", "wrong-password-1")
		if i < 5 && code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, code)
		}
		if i == 5 && (code != http.StatusForbidden || !strings.Contains(page, "已锁定")) {
			t.Fatalf("fifth failure: %d, not locked", code)
		}
	}
	if code, page := b.login("clerk", password); code != http.StatusForbidden || !strings.Contains(page, "已锁定") {
		t.Fatalf("right password while locked: %d", code)
	}
	fx.env.Clock.Advance(29 * time.Minute)
	if code, _ := b.login("clerk", password); code != http.StatusForbidden {
		t.Fatalf("after 29 minutes: %d", code)
	}
	fx.env.Clock.Advance(time.Minute)
	if code, page := b.login("clerk", password); code != 200 || !strings.Contains(page, `id="create-bill"`) {
		t.Fatalf("after 30 minutes: %d", code)
	}
}

func TestConsoleIdleSessionExpires(t *testing.T) {
	fx := setup(t)
	b := fx.browser(t)
	b.login("clerk", password)
	fx.env.Clock.Advance(14 * time.Minute)
	if _, page := b.get("/console"); !strings.Contains(page, `id="create-bill"`) {
		t.Fatal("signed out after 14 idle minutes")
	}
	fx.env.Clock.Advance(15*time.Minute + time.Second)
	if _, page := b.get("/console"); !strings.Contains(page, `id="login"`) {
		t.Fatal("still signed in after 15 idle minutes")
	}
}

func TestP2ConsoleCreateBillThroughForm(t *testing.T) {
	fx := setup(t)
	b := fx.browser(t)
	_, home := b.login("clerk", password)
	form := url.Values{"csrf": {csrf(t, home)}, "decision_no": {"2301021000123456"}, "violation_serial": {"2301021000000001"},
		"party_name": {"张三丰"}, "plate": {"黑A12345"}, "fine": {"200.00"}, "served_date": {"2026-11-20"},
		"unit_code": {"230100"}, "item_code": {"103050101"}}
	code, page := b.post("/console/bills", form)
	if code != 200 {
		t.Fatalf("create: %d\n%s", code, page)
	}
	billNo := regexp.MustCompile(`id="bill-no">([^<]+)<`).FindStringSubmatch(page)
	qr := regexp.MustCompile(`<a id="qr-url" href="([^"]+)">([^<]+)</a>`).FindStringSubmatch(page)
	total := regexp.MustCompile(`id="total-due">([^<]+)<`).FindStringSubmatch(page)
	if billNo == nil || qr == nil || total == nil {
		t.Fatalf("page lacks bill-no, qr-url or total-due:\n%s", page)
	}
	v, err := fx.env.Bills.Get(context.Background(), billNo[1])
	sqltest.Must(t, err)
	if qr[1] != v.QRURL || qr[2] != v.QRURL || !strings.HasPrefix(v.QRURL, coretest.GatewayURL+"/q/") {
		t.Errorf("qr-url %q / %q, bill %q", qr[1], qr[2], v.QRURL)
	}
	if total[1] != "¥200.00" {
		t.Errorf("total-due %q", total[1])
	}
	if !strings.Contains(page, `id="qr-code" alt="缴款二维码" src="data:image/png;base64,`) {
		t.Error("no inline QR image")
	}
	if strings.Contains(page, "张三丰") || strings.Contains(page, "黑A12345") {
		t.Error("the page shows a clear personal field")
	}
	if len(fx.env.OutboxMessages(t, envelope.TypeBillPublished)) != 1 || len(fx.env.Requests(nontax.PathForms)) != 1 {
		t.Error("bill not published or form not requested")
	}
	_, home = b.get("/console")
	if !strings.Contains(home, billNo[1]) || !strings.Contains(home, "未缴款") {
		t.Error("recent bills do not list the new bill as unpaid")
	}
	// Payment and receipt show in the list.
	fx.env.Deliver(t, fx.env.Confirmation(t, v, "ORD001", "WX001"))
	fx.env.Runner.RunDue(context.Background())
	_, home = b.get("/console")
	if !strings.Contains(home, "已缴款") || !strings.Contains(home, "23010126-0000000001") {
		t.Errorf("recent bills do not show payment and receipt:\n%s", home)
	}
}

func TestP2ConsoleFormErrorsNameTheFields(t *testing.T) {
	fx := setup(t)
	b := fx.browser(t)
	_, home := b.login("clerk", password)
	code, page := b.post("/console/bills", url.Values{"csrf": {csrf(t, home)}, "decision_no": {"123"}, "violation_serial": {"1"},
		"party_name": {"张三"}, "plate": {"黑A12345"}, "fine": {"2.001"}, "served_date": {"2026-11-20"}, "unit_code": {"230100"}, "item_code": {"1"}})
	if code != http.StatusBadRequest || !strings.Contains(page, "处罚决定书编号应为15至20位数字") || !strings.Contains(page, "罚款金额应为以元为单位") {
		t.Fatalf("%d\n%s", code, page)
	}
	if !strings.Contains(page, `value="张三"`) {
		t.Error("entered values were not kept")
	}
}

func TestConsoleFormsNeedCSRF(t *testing.T) {
	fx := setup(t)
	b := fx.browser(t)
	if code, _ := b.post("/console/login", url.Values{"username": {"clerk"}, "password": {password}}); code != http.StatusForbidden {
		t.Fatalf("login without CSRF: %d", code)
	}
	b.login("clerk", password)
	if code, _ := b.post("/console/bills", url.Values{"csrf": {"forged"}, "decision_no": {"2301021000123456"}}); code != http.StatusForbidden {
		t.Fatalf("create without CSRF: %d", code)
	}
	var n int
	sqltest.Must(t, fx.env.DB.QueryRow(`SELECT count(*) FROM bills`).Scan(&n))
	if n != 0 {
		t.Fatalf("%d bills created by a forged form", n)
	}
	refused := fx.audit(t, "csrf")
	if len(refused) != 1 || refused[0].Actor != "clerk" || refused[0].Result != "refused" || !strings.Contains(refused[0].Detail, "/console/bills") {
		t.Fatalf("audit of the forged form: %+v", refused)
	}
}

func TestConsoleAPIAuthentication(t *testing.T) {
	fx := setup(t)
	body := `{"decision_no":"2301021000123456","violation_serial":"2301021000000001","party_name":"张三丰","plate":"黑A12345","fine":20000,"served_date":"2026-11-20","unit_code":"230100","item_code":"103050101"}`
	call := func(auth string, c *http.Client) int {
		req, _ := http.NewRequest(http.MethodPost, fx.srv.URL+"/api/v1/bills", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		sqltest.Must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := call("", http.DefaultClient); code != http.StatusUnauthorized {
		t.Errorf("anonymous: %d", code)
	}
	if code := call("Bearer wrong", http.DefaultClient); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", code)
	}
	if code := call("Bearer window-token", http.DefaultClient); code != http.StatusCreated {
		t.Errorf("window token: %d", code)
	}
	b := fx.browser(t)
	b.login("clerk", password)
	if code := call("", b.c); code != http.StatusOK {
		t.Errorf("console session: %d", code)
	}
}

func TestConsoleClerkPasswordPolicyAndGeneration(t *testing.T) {
	env := coretest.New(t, sqltest.Open(t, sqldb.SQLite), coretest.Options{})
	con := console.New(console.Config{DB: env.DB, Bills: env.Bills, Iterations: console.MinIterations})
	if _, _, _, err := con.EnsureClerk(context.Background(), "short"); err == nil {
		t.Fatal("weak password accepted")
	}
	pw, generated, created, err := con.EnsureClerk(context.Background(), "")
	if err != nil || !generated || !created || len(pw) < 16 {
		t.Fatalf("generated %q %v %v %v", pw, generated, created, err)
	}
	if _, err := con.Login(context.Background(), "clerk", pw, "test"); err != nil {
		t.Fatalf("login with the generated password: %v", err)
	}
	if _, generated, created, _ := con.EnsureClerk(context.Background(), ""); generated || created {
		t.Fatal("a second start made another password")
	}
	if _, _, _, err := con.EnsureReviewer(context.Background(), "password"); !errors.Is(err, console.ErrWeakPassword) {
		t.Fatalf("weak reviewer password: %v", err)
	}
	rpw, generated, created, err := con.EnsureReviewer(context.Background(), "")
	if err != nil || !generated || !created || len(rpw) < 16 || rpw == pw {
		t.Fatalf("reviewer generated %q %v %v %v", rpw, generated, created, err)
	}
	if _, err := con.Login(context.Background(), console.ReviewerUser, rpw, "test"); err != nil {
		t.Fatalf("reviewer login with the generated password: %v", err)
	}
	var stored string
	sqltest.Must(t, env.DB.QueryRow(`SELECT password_hash FROM console_users WHERE username = 'clerk'`).Scan(&stored))
	if !strings.HasPrefix(stored, "pbkdf2-sm3$100000$") || strings.Contains(stored, pw) {
		t.Fatalf("stored %q", stored)
	}
}
