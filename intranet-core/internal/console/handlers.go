package console

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/skip2/go-qrcode"

	"finepay/intranet-core/internal/bill"
	"finepay/shared/bizdate"
	"finepay/shared/money"
)

// Routes mounts the console:
//
//	GET  /console/login           login form
//	POST /console/login           log in (users clerk and reviewer; what each may do: roles.go)
//	POST /console/logout          log out
//	GET  /console                 look-up form, bill form, refunds awaiting review, recent bills
//	GET  /console/search?decision_no=...  the bill(s) of a decision
//	POST /console/bills           create a bill from the form
//	GET  /console/bills/{bill_no} a bill with its QR code, payments, receipt and refunds
//	POST /console/refunds         start a refund of a payment (R3, R4)
//	POST /console/refunds/{refund_no}/review  approve or reject a refund waiting for review
func (c *Console) Routes(e *echo.Echo) {
	g := e.Group("/console", secureHeaders)
	g.GET("/login", c.loginPage)
	g.POST("/login", c.loginSubmit)
	auth := g.Group("", c.requireSession)
	auth.GET("", c.home)
	auth.POST("/logout", c.logout)
	auth.POST("/bills", c.createBill)
	auth.GET("/bills/:bill_no", c.showBill)
	auth.GET("/search", c.search)
	auth.POST("/refunds", c.startRefund)
	auth.POST("/refunds/:refund_no/review", c.reviewRefund)
	e.GET("/", func(ec echo.Context) error { return ec.Redirect(http.StatusSeeOther, "/console") })
}

func secureHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

const sessionKey = "finepay.console.session"

func (c *Console) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		s, err := c.SessionFromRequest(ec.Request())
		if err != nil {
			return err
		}
		if s == nil {
			clearCookie(ec, SessionCookie)
			if ec.Request().Method == http.MethodGet {
				return ec.Redirect(http.StatusSeeOther, "/console/login")
			}
			return c.render(ec, http.StatusUnauthorized, "error", page{Title: "请重新登录", Error: "会话已过期或未登录,请重新登录。"})
		}
		ec.Set(sessionKey, s)
		if ec.Request().Method == http.MethodPost && !equal(ec.FormValue("csrf"), s.CSRF) {
			// A form without this session's token: a stale page, or a request forged by another
			// site. Either way it is refused and recorded for the auditor.
			if err := c.audit(ec, c.cfg.DB, "csrf", "refused", "form token missing or wrong: POST "+ec.Request().URL.Path); err != nil {
				return err
			}
			c.cfg.Logger.Warn("console form refused: CSRF token missing or wrong", "user", s.Username, "path", ec.Request().URL.Path)
			return c.render(ec, http.StatusForbidden, "error", page{Title: "请求无效", Error: "表单已失效,请刷新页面后重试。", User: s.Username, CSRF: s.CSRF})
		}
		if len(c.cfg.Roles[s.Username]) == 0 && ec.Path() != "/console/logout" {
			if err := c.audit(ec, c.cfg.DB, "access", "refused", "no role: "+ec.Request().Method+" "+ec.Request().URL.Path); err != nil {
				return err
			}
			return c.render(ec, http.StatusForbidden, "error", page{Title: "无权访问", Error: "您的账户没有任何角色,不能办理业务。", User: s.Username, CSRF: s.CSRF})
		}
		return next(ec)
	}
}

func sessionOf(ec echo.Context) *Session { s, _ := ec.Get(sessionKey).(*Session); return s }

// page is the data of every template.
type page struct {
	Title    string
	User     string
	Clerk    bool // the user has the clerk role (set by render)
	Reviewer bool // the user has the reviewer role (set by render)
	CSRF     string
	Error    string
	Username string
	Form     formValues
	Fields   map[string]string
	Bills    []bill.View
	Bill     *bill.View
	Created  bool
	QR       template.URL
	PaidAt   string
	Notice   string

	Search      string      // the decision number looked up
	SearchError string      // why the look-up found nothing
	Found       []bill.View // the bills of a decision, when several
	Awaiting    []refundView
	Refunds     bool // refunds are on
	Payments    []paymentView
	Red         *redReceiptView
	RefundForm  refundForm // a refund form sent back with an error
}

type formValues struct {
	DecisionNo, ViolationSerial, PartyName, Plate, Fine, ServedDate, UnitCode, ItemCode string
}

func (c *Console) render(ec echo.Context, status int, name string, p page) error {
	if p.Fields == nil {
		p.Fields = map[string]string{}
	}
	p.Clerk, p.Reviewer = c.has(p.User, RoleClerk), c.has(p.User, RoleReviewer)
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, p); err != nil {
		return err
	}
	return ec.HTMLBlob(status, buf.Bytes())
}

func (c *Console) setCookie(ec echo.Context, name, value, path string, maxAge int) {
	ec.SetCookie(&http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge, HttpOnly: true,
		Secure: ec.IsTLS() || ec.Scheme() == "https", SameSite: http.SameSiteStrictMode})
}

func clearCookie(ec echo.Context, name string) {
	ec.SetCookie(&http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func (c *Console) loginPage(ec echo.Context) error {
	if s, err := c.SessionFromRequest(ec.Request()); err == nil && s != nil {
		return ec.Redirect(http.StatusSeeOther, "/console")
	}
	return c.loginForm(ec, http.StatusOK, "", "")
}

func (c *Console) loginForm(ec echo.Context, status int, username, msg string) error {
	tok := c.random(32)
	c.setCookie(ec, loginCSRF, tok, "/console/login", 3600)
	return c.render(ec, status, "login", page{Title: "登录", CSRF: tok, Username: username, Error: msg})
}

func (c *Console) loginSubmit(ec echo.Context) error {
	ck, err := ec.Cookie(loginCSRF)
	if err != nil || !equal(ec.FormValue("csrf"), ck.Value) {
		return c.loginForm(ec, http.StatusForbidden, "", "登录表单已失效,请重新输入。")
	}
	username := ec.FormValue("username")
	sid, err := c.Login(ec.Request().Context(), username, ec.FormValue("password"), ec.RealIP())
	switch {
	case errors.Is(err, ErrLocked):
		return c.loginForm(ec, http.StatusForbidden, username, "登录失败次数过多,账户已锁定30分钟,请稍后再试。")
	case errors.Is(err, ErrBadCredentials):
		return c.loginForm(ec, http.StatusUnauthorized, username, "用户名或密码错误。")
	case err != nil:
		return err
	}
	c.setCookie(ec, loginCSRF, "", "/console/login", -1)
	c.setCookie(ec, SessionCookie, sid, "/", 0)
	return ec.Redirect(http.StatusSeeOther, "/console")
}

func (c *Console) logout(ec echo.Context) error {
	s := sessionOf(ec)
	if err := sessionDelete(ec.Request().Context(), c.cfg.DB, hashID(s.ID)); err != nil {
		return err
	}
	if err := auditInsert(ec.Request().Context(), c.cfg.DB, AuditEntry{At: c.cfg.Now(), Actor: s.Username, Event: "logout", Result: "success", Source: ec.RealIP()}); err != nil {
		return err
	}
	clearCookie(ec, SessionCookie)
	return ec.Redirect(http.StatusSeeOther, "/console/login")
}

func (c *Console) homePage(ec echo.Context, status int, p page) error {
	s := sessionOf(ec)
	bills, err := c.cfg.Bills.Recent(ec.Request().Context(), 20)
	if err != nil {
		return err
	}
	if p.Awaiting, err = c.awaitingReview(ec.Request().Context(), s.Username); err != nil {
		return err
	}
	p.Title, p.User, p.CSRF, p.Bills, p.Refunds = "开具账单", s.Username, s.CSRF, bills, c.cfg.Refunds != nil
	if p.Form.ServedDate == "" {
		p.Form.ServedDate = bizdate.Of(c.cfg.Now()).String()
	}
	return c.render(ec, status, "home", p)
}

func (c *Console) home(ec echo.Context) error { return c.homePage(ec, http.StatusOK, page{}) }

func (c *Console) createBill(ec echo.Context) error {
	s := sessionOf(ec)
	if !c.has(s.Username, RoleClerk) {
		return c.denied(ec, "bill.create", RoleClerk, "create a bill")
	}
	f := formValues{
		DecisionNo: ec.FormValue("decision_no"), ViolationSerial: ec.FormValue("violation_serial"),
		PartyName: ec.FormValue("party_name"), Plate: ec.FormValue("plate"), Fine: ec.FormValue("fine"),
		ServedDate: ec.FormValue("served_date"), UnitCode: ec.FormValue("unit_code"), ItemCode: ec.FormValue("item_code"),
	}
	fields := map[string]string{}
	fine, err := money.ParseYuan(f.Fine)
	if err != nil {
		fields["fine"] = "罚款金额应为以元为单位的金额,例如200.00"
	}
	req := bill.CreateRequest{DecisionNo: f.DecisionNo, ViolationSerial: f.ViolationSerial, PartyName: f.PartyName,
		Plate: f.Plate, Fine: int64(fine), ServedDate: f.ServedDate, UnitCode: f.UnitCode, ItemCode: f.ItemCode}
	if len(fields) > 0 {
		// Report the other fields too, in one round.
		req.Fine = 1
		req.Normalize()
		var ve *bill.ValidationError
		if errors.As(req.Validate(bizdate.Of(c.cfg.Now())), &ve) {
			for _, fe := range ve.Fields {
				fields[fe.Field] = fe.Zh
			}
		}
		return c.homePage(ec, http.StatusBadRequest, page{Form: f, Fields: fields, Error: "请更正标出的项目。"})
	}
	actor := "console:" + s.Username
	v, created, err := c.cfg.Bills.Create(ec.Request().Context(), actor, req)
	var ve *bill.ValidationError
	switch {
	case errors.As(err, &ve):
		for _, fe := range ve.Fields {
			fields[fe.Field] = fe.Zh
		}
		return c.homePage(ec, http.StatusBadRequest, page{Form: f, Fields: fields, Error: "请更正标出的项目。"})
	case errors.Is(err, bill.ErrConflict):
		return c.homePage(ec, http.StatusConflict, page{Form: f, Error: "该处罚决定书已开具账单,且信息与本次填写不一致。"})
	case errors.Is(err, bill.ErrNonTax):
		c.cfg.Logger.Error("console: bill not created", "err", err)
		return c.homePage(ec, http.StatusBadGateway, page{Form: f, Error: "非税收入系统暂时无法开具缴款书,请稍后重试。"})
	case err != nil:
		return err
	}
	detail := "bill " + v.BillNo + " for decision " + v.DecisionNo
	if !created {
		detail += " (existing)"
	}
	if err := auditInsert(ec.Request().Context(), c.cfg.DB, AuditEntry{At: c.cfg.Now(), Actor: s.Username, Event: "bill.create", Result: "success", Source: ec.RealIP(), Detail: detail}); err != nil {
		return err
	}
	return ec.Redirect(http.StatusSeeOther, "/console/bills/"+v.BillNo+"?created=1")
}

func (c *Console) showBill(ec echo.Context) error {
	p := page{Created: ec.QueryParam("created") == "1"}
	if no := ec.QueryParam("refund"); no != "" && len(no) <= 40 {
		p.Notice = "退款 " + no + " 已记录。"
	}
	return c.billPage(ec, http.StatusOK, ec.Param("bill_no"), p)
}

// billPage renders a bill with its QR code, payments, receipt and refunds; p carries a message
// or a refund form sent back.
func (c *Console) billPage(ec echo.Context, status int, billNo string, p page) error {
	s := sessionOf(ec)
	ctx := ec.Request().Context()
	v, err := c.cfg.Bills.Get(ctx, billNo)
	if errors.Is(err, bill.ErrNotFound) {
		return c.render(ec, http.StatusNotFound, "error", page{Title: "未找到账单", Error: "没有这个账单。", User: s.Username, CSRF: s.CSRF})
	}
	if err != nil {
		return err
	}
	png, err := c.cfg.QR(v.QRURL)
	if err != nil {
		return err
	}
	p.Title, p.User, p.CSRF, p.Bill, p.Refunds = "账单 "+v.BillNo, s.Username, s.CSRF, &v, c.cfg.Refunds != nil
	p.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
	if v.Payment != nil {
		p.PaidAt = v.Payment.PaidAt.In(bizdate.Location).Format(time.DateTime)
	}
	if p.Payments, err = c.payments(ctx, v.BillNo, s.Username); err != nil {
		return err
	}
	if f := p.RefundForm; f.PaymentID != 0 {
		for i := range p.Payments {
			if pv := &p.Payments[i]; pv.ID == f.PaymentID && pv.Refundable {
				pv.FormAmount, pv.FormReason = f.Amount, f.Reason
				if f.Instruction != "" {
					pv.Instruction = f.Instruction
				}
			}
		}
	}
	if p.Red, err = c.redReceipt(ctx, v.BillNo); err != nil {
		return err
	}
	return c.render(ec, status, "bill", p)
}

func qrPNG(content string) ([]byte, error) { return qrcode.Encode(content, qrcode.Medium, 256) }
