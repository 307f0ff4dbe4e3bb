package console

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
)

// Roles of console users. Every role may look decisions up and read bills, payments, receipts
// and refunds; beyond that:
//
//	clerk     create bills (console form and window API), start refunds (R3, R4)
//	reviewer  review refunds waiting for review (R2, R3, R4), except those the user asked for
//
// A user may have both roles; nobody reviews a refund they asked for, whether they asked in the
// console (requester console:USER) or at the window platform (requester window:USER, the
// platform naming its users as the console does).
const (
	RoleClerk    = "clerk"
	RoleReviewer = "reviewer"
)

var roleNames = map[string]string{RoleClerk: "窗口人员", RoleReviewer: "审核人员"}

// DefaultRoles gives the user clerk the clerk role and the user reviewer the reviewer role.
const DefaultRoles = ClerkUser + "=" + RoleClerk + "," + ReviewerUser + "=" + RoleReviewer

var reUserName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ParseRoles reads the roles of console users: comma-separated USER=ROLE[+ROLE...], ROLE being
// clerk or reviewer, each user named once. A user not named has no role and is refused every
// page after login.
func ParseRoles(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		user, list, ok := strings.Cut(item, "=")
		if !ok || !reUserName.MatchString(user) {
			return nil, fmt.Errorf("console roles: %q is not USER=ROLE[+ROLE]", item)
		}
		if _, dup := out[user]; dup {
			return nil, fmt.Errorf("console roles: user %s named twice", user)
		}
		var roles []string
		for _, r := range strings.Split(list, "+") {
			if _, known := roleNames[r]; !known {
				return nil, fmt.Errorf("console roles: %s: unknown role %q (clerk or reviewer)", user, r)
			}
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
		sort.Strings(roles)
		out[user] = roles
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("console roles: no user has a role")
	}
	return out, nil
}

// has reports whether user has role.
func (c *Console) has(user, role string) bool { return slices.Contains(c.cfg.Roles[user], role) }

// person is the person behind a requester or reviewer: console:NAME and window:NAME are NAME.
func person(actor string) string {
	for _, p := range []string{"console:", "window:"} {
		if n, ok := strings.CutPrefix(actor, p); ok {
			return n
		}
	}
	return actor
}

// denied records an action the user's roles do not allow under event, as refused, and answers
// 403 with a page naming the role needed.
func (c *Console) denied(ec echo.Context, event, role, detail string) error {
	s := sessionOf(ec)
	if err := c.audit(ec, c.cfg.DB, event, "refused", fmt.Sprintf("role %s needed: %s", role, detail)); err != nil {
		return err
	}
	c.cfg.Logger.Warn("console action refused by role", "user", s.Username, "event", event, "role", role)
	return c.render(ec, http.StatusForbidden, "error", page{Title: "无权操作", User: s.Username, CSRF: s.CSRF,
		Error: "您的账户不能办理此项业务,须由" + roleNames[role] + "办理。"})
}
