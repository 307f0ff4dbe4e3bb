package ispsim

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/payerpage"
	"finepay/sandbox/internal/shanghai"
)

var pages = template.Must(template.New("isp").Funcs(template.FuncMap{"yuan": yuan}).Parse(`
{{define "head"}}<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>交管12123 · 罚款缴纳(模拟)</title>
<style>body{font-family:sans-serif;margin:0;background:#f2f5fa;color:#222}header{background:#1b5fbf;color:#fff;padding:14px 16px;font-size:18px}
main{padding:16px;max-width:480px;margin:auto}label{display:block;margin:10px 0 4px;font-size:14px;color:#555}
input{width:100%;box-sizing:border-box;padding:8px;font-size:16px;border:1px solid #ccc;border-radius:4px}
button,a.button{display:block;width:100%;margin-top:18px;padding:12px;font-size:17px;background:#1b5fbf;color:#fff;border:0;border-radius:6px;text-align:center;text-decoration:none}
.card{background:#fff;border-radius:8px;padding:14px;margin-bottom:12px}.error{background:#fdecea;color:#a1261b;padding:10px;border-radius:6px}
dt{color:#777;font-size:13px}dd{margin:0 0 8px 0;font-size:16px}</style></head>
<body><header>交管12123 · 交通违法罚款缴纳 <small>(沙箱模拟)</small></header><main>{{end}}

{{define "app"}}{{template "head"}}
{{if .Error}}<p class="error" id="error"><span id="error-code">{{.Error.Code}}</span>: {{.Error.Message}}</p>{{end}}
<form method="post" action="/isp/pay" id="isp-form" class="card">
<label for="decision-no">处罚决定书编号</label><input id="decision-no" name="decision_no" value="{{.P.DecisionNo}}">
<label for="violation-serial">违法序号</label><input id="violation-serial" name="violation_serial" value="{{.P.ViolationSerial}}">
<label for="party-name">当事人</label><input id="party-name" name="party_name" value="{{.P.PartyName}}">
<label for="plate">号牌号码</label><input id="plate" name="plate" value="{{.P.Plate}}">
<label for="fine">罚款金额(元)</label><input id="fine" name="fine" value="{{yuan .P.Fine}}">
<label for="served-date">送达日期</label><input id="served-date" name="served_date" value="{{.P.ServedDate}}">
<label for="unit-code">执收单位编码</label><input id="unit-code" name="unit_code" value="{{.P.UnitCode}}">
<label for="item-code">收费项目编码</label><input id="item-code" name="item_code" value="{{.P.ItemCode}}">
<button type="submit" id="submit">确认缴款</button>
</form></main></body></html>{{end}}

{{define "order"}}{{template "head"}}
<div class="card"><dl>
<dt>12123订单号</dt><dd id="isp-order-no">{{.O.ISPOrderNo}}</dd>
<dt>处罚决定书编号</dt><dd id="decision-no">{{.O.DecisionNo}}</dd>
<dt>应缴金额</dt><dd id="amount-due">{{yuan .O.AmountDue}}</dd>
<dt>状态</dt><dd id="order-status">{{if .R}}已缴款{{else}}待缴款{{end}}</dd>
</dl></div>
{{if .R}}<div class="card" id="result"><dl>
<dt>缴款订单号</dt><dd id="result-order-no">{{.R.OrderNo}}</dd>
<dt>实缴金额</dt><dd id="result-amount">{{yuan .R.Amount}}</dd>
<dt>缴款时间</dt><dd id="result-paid-at">{{.R.PaidAt}}</dd>
</dl></div>
{{else}}<a class="button" id="cashier-url" href="{{.O.CashierURL}}">去收银台支付</a>{{end}}
</main></body></html>{{end}}
`))

// yuan renders fen as ¥200.00.
func yuan(fen int64) string { return fmt.Sprintf("¥%d.%02d", fen/100, fen%100) }

// parseYuan reads "200", "200.5" or "200.50" as fen.
func parseYuan(s string) (int64, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "¥")
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 2 || strings.Trim(whole, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" || len(whole) > 9 {
		return 0, errors.New("must be an amount in yuan such as 200.00")
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	f, _ := strconv.ParseInt((frac + "00")[:2], 10, 64)
	return w*100 + f, nil
}

type appPage struct {
	P     Payment
	Error *apierr.Body
}

// handleApp is the "12123 app": a decision of the payer, filled in for the demo (served 20
// days ago, so that a late fee is due), to pay.
func (s *Sim) handleApp(c echo.Context) error {
	tail, err := s.newID("", 10)
	if err != nil {
		return err
	}
	dn := "230102" + tail[len(tail)-10:]
	p := Payment{DecisionNo: dn, ViolationSerial: "V" + dn, PartyName: "张三丰", Plate: "黑A12345", Fine: 20000,
		ServedDate: shanghai.Date(s.cfg.Now().AddDate(0, 0, -20)), UnitCode: "230100", ItemCode: "103050101"}
	return payerpage.Render(c, http.StatusOK, pages.Lookup("app"), appPage{P: p}, "'self'")
}

// handlePay submits the app's form to the core and sends the payer to the order page.
func (s *Sim) handlePay(c echo.Context) error {
	p := Payment{DecisionNo: c.FormValue("decision_no"), ViolationSerial: c.FormValue("violation_serial"),
		PartyName: c.FormValue("party_name"), Plate: c.FormValue("plate"), ServedDate: c.FormValue("served_date"),
		UnitCode: c.FormValue("unit_code"), ItemCode: c.FormValue("item_code")}
	fine, err := parseYuan(c.FormValue("fine"))
	if err != nil {
		return payerpage.Render(c, http.StatusBadRequest, pages.Lookup("app"),
			appPage{P: p, Error: &apierr.Body{Code: "INVALID_ARGUMENT", Message: "fine: " + err.Error()}}, "'self'")
	}
	p.Fine = fine
	o, _, err := s.Submit(c.Request().Context(), p)
	if err != nil {
		return payerpage.Render(c, http.StatusBadGateway, pages.Lookup("app"),
			appPage{P: p, Error: &apierr.Body{Code: "CORE_UNAVAILABLE", Message: err.Error()}}, "'self'")
	}
	if o.HTTPStatus/100 != 2 {
		return payerpage.Render(c, http.StatusUnprocessableEntity, pages.Lookup("app"),
			appPage{P: p, Error: &apierr.Body{Code: o.Code, Message: o.Message}}, "'self'")
	}
	return c.Redirect(http.StatusSeeOther, "/isp/orders/"+o.ISPOrderNo)
}

// handleOrderPage shows an order: the cashier link until the core pushes the result, then the
// result.
func (s *Sim) handleOrderPage(c echo.Context) error {
	o, ok := s.order(c.Param("no"))
	if !ok {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no such order")
	}
	data := struct {
		O Order
		R *Result
	}{O: o}
	if r, ok := s.result(o.ISPOrderNo); ok {
		data.R = &r
	}
	return payerpage.Render(c, http.StatusOK, pages.Lookup("order"), data, "'none'")
}

// handleSubmitJSON is POST /_sandbox/isp/payments: submit a payment, answer the order and the
// core's verified answer.
func (s *Sim) handleSubmitJSON(c echo.Context) error {
	var p Payment
	if err := field.DecodeJSON(c.Request().Body, &p); err != nil {
		return err
	}
	o, a, err := s.Submit(c.Request().Context(), p)
	if err != nil {
		return apierr.Wrap(err, http.StatusBadGateway, "CORE_UNAVAILABLE", "%s", err.Error())
	}
	return c.JSON(http.StatusOK, map[string]any{"order": o, "core": a})
}

// handleQueryJSON is GET /_sandbox/isp/payments/{no}: the core's answer to the platform's
// query, and the result pushed, if any.
func (s *Sim) handleQueryJSON(c echo.Context) error {
	no := c.Param("no")
	if !field.OrderNo.MatchString(no) {
		return apierr.Invalid(field.CodeInvalid, "isp_order_no: must be 1-64 characters [A-Za-z0-9_-]")
	}
	a, err := s.Query(c.Request().Context(), no)
	if err != nil {
		return apierr.Wrap(err, http.StatusBadGateway, "CORE_UNAVAILABLE", "%s", err.Error())
	}
	out := map[string]any{"core": a, "result": nil}
	if r, ok := s.result(no); ok {
		out["result"] = r
	}
	return c.JSON(http.StatusOK, out)
}
