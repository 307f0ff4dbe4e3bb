package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/console"
	"finepay/intranet-core/internal/refund"
)

const guestPassword = "Guest-pass-2026"

// api sends a JSON request to the window API with the browser's session cookie.
func (b *browser) api(path, body string) int {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.fx.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	code, _ := b.do(req)
	return code
}

// TestR3ConsoleRoleMatrix runs every console action as a clerk, a reviewer and a user without a
// role: only the roles' actions are done, every refusal is a 403, and every action, done or
// refused, is in the console audit.
func TestR3ConsoleRoleMatrix(t *testing.T) {
	fx := setup(t)
	if _, _, _, err := fx.con.EnsureUser(context.Background(), "guest", guestPassword); err != nil {
		t.Fatal(err)
	}
	v := fx.paidBill(t)
	users := map[string]*browser{}
	pages := map[string]string{}
	for user, pw := range map[string]string{"clerk": password, "reviewer": reviewerPassword, "guest": guestPassword} {
		users[user] = fx.browser(t)
		code, page := users[user].login(user, pw) // the login sends the user home
		if user == "guest" {
			// The refusal page carries the session's CSRF token (for logging out), as every page.
			if code != http.StatusForbidden || !strings.Contains(page, "没有任何角色") {
				t.Fatalf("guest home: %d\n%s", code, page)
			}
		} else if code != 200 {
			t.Fatalf("%s login: %d", user, code)
		}
		pages[user] = page
	}
	if !strings.Contains(pages["clerk"], `id="create-bill"`) || strings.Contains(pages["reviewer"], `id="create-bill"`) {
		t.Error("the bill form is shown to the wrong role")
	}
	if !strings.Contains(pages["clerk"], "clerk(窗口人员)") || !strings.Contains(pages["reviewer"], "reviewer(审核人员)") {
		t.Error("the header does not name the user's role")
	}

	newBill := url.Values{"decision_no": {"2301021000654321"}, "violation_serial": {"2301021000000002"},
		"party_name": {"李四"}, "plate": {"黑A54321"}, "fine": {"100.00"}, "served_date": {"2026-11-20"},
		"unit_code": {"230100"}, "item_code": {"103050101"}}
	apiBill := `{"decision_no":"2301021000765432","violation_serial":"2301021000000003","party_name":"王五","plate":"黑A65432","fine":10000,"served_date":"2026-11-20","unit_code":"230100","item_code":"103050101"}`
	var refundNo string
	_, billPage := users["clerk"].get("/console/bills/" + v.BillNo)
	refund1 := refundForm(t, billPage)
	type step struct {
		action string
		do     func(user string, b *browser) int
		want   map[string]int
	}
	form := func(user string, vals url.Values) url.Values {
		out := url.Values{}
		for k, vs := range vals {
			out[k] = vs
		}
		out.Set("csrf", csrf(t, pages[user]))
		return out
	}
	steps := []step{
		{"home", func(_ string, b *browser) int { c, _ := b.get("/console"); return c },
			map[string]int{"clerk": 200, "reviewer": 200, "guest": 403}},
		{"look-up", func(_ string, b *browser) int { c, _ := b.get("/console/search?decision_no=" + v.DecisionNo); return c },
			map[string]int{"clerk": 200, "reviewer": 200, "guest": 403}},
		{"bill page", func(_ string, b *browser) int { c, _ := b.get("/console/bills/" + v.BillNo); return c },
			map[string]int{"clerk": 200, "reviewer": 200, "guest": 403}},
		{"create bill", func(user string, b *browser) int { c, _ := b.post("/console/bills", form(user, newBill)); return c },
			map[string]int{"clerk": 200, "reviewer": 403, "guest": 403}},
		{"window API", func(_ string, b *browser) int { return b.api("/api/v1/bills", apiBill) },
			map[string]int{"clerk": 201, "reviewer": 403, "guest": 403}},
		{"start refund", func(user string, b *browser) int {
			f := form(user, refund1)
			c, _ := b.post("/console/refunds", f)
			if user == "clerk" && c == 200 {
				refundNo = fx.refunds(t, v.BillNo)[0].RefundNo
			}
			return c
		}, map[string]int{"clerk": 200, "reviewer": 403, "guest": 403}},
		{"review", func(user string, b *browser) int {
			c, _ := b.post("/console/refunds/"+refundNo+"/review", form(user, url.Values{"decision": {"approve"}, "note": {"核实无误"}}))
			return c
		}, map[string]int{"clerk": 403, "reviewer": 200, "guest": 403}},
		{"log out", func(user string, b *browser) int { c, _ := b.post("/console/logout", form(user, nil)); return c },
			map[string]int{"clerk": 200, "reviewer": 200, "guest": 200}},
	}
	for _, st := range steps {
		for _, user := range []string{"clerk", "reviewer", "guest"} {
			if got := st.do(user, users[user]); got != st.want[user] {
				t.Errorf("%s as %s: %d, want %d", st.action, user, got, st.want[user])
			}
		}
	}
	if r, err := refund.Get(context.Background(), fx.env.DB, refundNo); err != nil || r.State != refund.Reviewed || r.ReviewedBy != "console:reviewer" {
		t.Fatalf("refund after the matrix: %+v %v", r, err)
	}

	var got []string
	all, err := console.AuditList(context.Background(), fx.env.DB)
	sqltest.Must(t, err)
	for _, a := range all {
		got = append(got, a.Actor+" "+a.Event+":"+a.Result)
	}
	// Logins (in map order) are counted apart; viewing the home and bill pages is not audited,
	// but the guest's refusals are.
	want := []string{
		"guest access:refused", // sent home after login
		"guest access:refused", // home
		"clerk lookup:success", "reviewer lookup:success", "guest access:refused",
		"guest access:refused", // bill page
		"clerk bill.create:success", "reviewer bill.create:refused", "guest access:refused",
		"reviewer api.access:refused", "guest api.access:refused",
		"clerk refund.start:success", "reviewer refund.start:refused", "guest access:refused",
		"clerk refund.review:refused", "reviewer refund.review:success", "guest access:refused",
		"clerk logout:success", "reviewer logout:success", "guest logout:success",
	}
	var logins, rest []string
	for _, g := range got {
		if strings.Contains(g, " login:") {
			logins = append(logins, g)
		} else {
			rest = append(rest, g)
		}
	}
	if len(logins) != 3 {
		t.Errorf("login audit %v", logins)
	}
	if g, w := strings.Join(rest, ", "), strings.Join(want, ", "); g != w {
		t.Errorf("audit\n got %s\nwant %s", g, w)
	}
	for _, a := range all {
		if a.Result == "refused" && !strings.Contains(a.Detail, "role") {
			t.Errorf("refusal %s %s does not name the role: %q", a.Actor, a.Event, a.Detail)
		}
	}
}

// TestR3ConsoleNobodyReviewsTheirOwnRefund: a user with both roles may start refunds and review
// other people's, never their own.
func TestR3ConsoleNobodyReviewsTheirOwnRefund(t *testing.T) {
	fx := setupRoles(t, "clerk=clerk+reviewer,reviewer=reviewer")
	v := fx.paidBill(t)
	clerk, _ := fx.startR3(t, v)
	r := fx.refunds(t, v.BillNo)[0]
	_, home := clerk.get("/console")
	row := home[strings.Index(home, `id="awaiting-`+r.RefundNo+`"`):]
	row = row[:strings.Index(row, "</tr>")]
	if strings.Contains(row, "review-form") || !strings.Contains(row, "本人申请") {
		t.Errorf("the requester is offered the review: %s", row)
	}
	code, page := clerk.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"approve"}})
	if code != http.StatusForbidden || !strings.Contains(page, "不能审核自己申请的退款") {
		t.Fatalf("own review: %d\n%s", code, page)
	}
	if got, _ := refund.Get(context.Background(), fx.env.DB, r.RefundNo); got.State != refund.Requested {
		t.Fatalf("state after the own review %s", got.State)
	}
	rev := fx.browser(t)
	_, home = rev.login("reviewer", reviewerPassword)
	if code, _ := rev.post("/console/refunds/"+r.RefundNo+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"approve"}}); code != 200 {
		t.Fatalf("the other's review: %d", code)
	}
	reviews := fx.audit(t, "refund.review")
	if len(reviews) != 2 || reviews[0].Actor != "clerk" || reviews[0].Result != "refused" || !strings.Contains(reviews[0].Detail, "reviewer is the requester console:clerk") ||
		reviews[1].Actor != "reviewer" || reviews[1].Result != "success" {
		t.Errorf("review audit %+v", reviews)
	}
}

// TestR2WindowAskerCannotReviewInConsole: the person the window platform names as the asker of
// an R2 refund cannot review it in the console; another reviewer can.
func TestR2WindowAskerCannotReviewInConsole(t *testing.T) {
	fx := setupRoles(t, "clerk=clerk+reviewer,reviewer=reviewer")
	v := fx.paidBill(t)
	code, out := fx.windowRefund(t, `{"decision_no":"`+v.DecisionNo+`","amount":20000,"reason":"撤销处罚决定","request_id":"WIN-0100","requested_by":"reviewer"}`)
	if code != http.StatusCreated {
		t.Fatalf("instruction: %d %v", code, out)
	}
	no := out["refund_no"].(string)
	rev := fx.browser(t)
	_, home := rev.login("reviewer", reviewerPassword)
	if !strings.Contains(home, `id="awaiting-`+no+`"`) || !strings.Contains(home, "本人申请") {
		t.Fatal("the asker's list does not mark the refund as their own")
	}
	code, page := rev.post("/console/refunds/"+no+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"reject"}, "note": {"不同意"}})
	if code != http.StatusForbidden || !strings.Contains(page, "不能审核自己申请的退款") {
		t.Fatalf("the asker's review: %d\n%s", code, page)
	}
	clerk := fx.browser(t)
	_, home = clerk.login("clerk", password)
	if code, _ := clerk.post("/console/refunds/"+no+"/review", url.Values{"csrf": {csrf(t, home)}, "decision": {"approve"}}); code != 200 {
		t.Fatalf("another reviewer: %d", code)
	}
	if r, _ := refund.Get(context.Background(), fx.env.DB, no); r.State != refund.Reviewed || r.RequestedBy != "window:reviewer" || r.ReviewedBy != "console:clerk" {
		t.Fatalf("refund %+v", r)
	}
	var got []string
	for _, a := range fx.audit(t, "refund.review") {
		got = append(got, a.Actor+":"+a.Result)
	}
	if strings.Join(got, ",") != "reviewer:refused,clerk:success" {
		t.Errorf("review audit %v", got)
	}
	// A console session asks as its own user only.
	code, _ = fx.windowRefund(t, `{"decision_no":"`+v.DecisionNo+`","amount":1,"reason":"x","request_id":"WIN-0101","requested_by":"bad name!"}`)
	if code != http.StatusBadRequest {
		t.Errorf("invalid requested_by: %d", code)
	}
	if code := clerk.api("/api/v1/refunds", `{"decision_no":"`+v.DecisionNo+`","amount":1,"reason":"x","request_id":"WIN-0102","requested_by":"reviewer"}`); code != http.StatusBadRequest {
		t.Errorf("a session naming another asker: %d", code)
	}
}

func TestConsoleParseRoles(t *testing.T) {
	for _, c := range []struct {
		name, in string
		ok       bool
	}{
		{"ok/default", console.DefaultRoles, true},
		{"ok/both", "clerk=reviewer+clerk, reviewer=reviewer", true},
		{"fail/empty", " ", false},
		{"fail/unknown-role", "clerk=admin", false},
		{"fail/twice", "clerk=clerk,clerk=reviewer", false},
		{"fail/no-equals", "clerk", false},
		{"fail/bad-user", "a b=clerk", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := console.ParseRoles(c.in)
			if (err == nil) != c.ok {
				t.Fatalf("ParseRoles(%q) = %v, %v", c.in, m, err)
			}
			if c.name == "ok/both" && strings.Join(m["clerk"], "+") != "clerk+reviewer" {
				t.Errorf("roles %v", m)
			}
		})
	}
}
