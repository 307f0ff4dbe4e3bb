package alipaysim

import (
	"encoding/json"
	"errors"
	"finepay/sandbox/internal/payerpage"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/shanghai"
)

type pageData struct {
	Merchant   string
	Subject    string
	Amount     string
	OutTradeNo string
	Code       string
	View       string // pay, paid, closed, missing
	Message    string
	TradeNo    string
	PaidAt     string
}

var page = template.Must(template.New("pay").Parse(`<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="robots" content="noindex">
<title>支付宝</title>
<style>
*{box-sizing:border-box}
html,body{margin:0;padding:0}
body{background:#f5f5f5;color:#333;font:16px/1.5 -apple-system,BlinkMacSystemFont,"PingFang SC","Hiragino Sans GB","Noto Sans CJK SC","Microsoft YaHei",sans-serif;-webkit-text-size-adjust:100%}
.bar{background:#1677ff;color:#fff;text-align:center;padding:14px 16px;font-size:17px;font-weight:600}
.bar small{display:inline-block;margin-left:8px;padding:0 6px;border-radius:4px;background:#fff;color:#1677ff;font-size:12px;font-weight:400;vertical-align:2px}
.card{background:#fff;margin:0 0 12px;padding:28px 20px 24px;text-align:center}
.merchant{font-size:15px;color:#666;margin:0 0 6px}
.subject{font-size:14px;color:#999;margin:0 0 18px;word-break:break-all}
.amount{font-size:40px;font-weight:600;margin:0;font-variant-numeric:tabular-nums}
form{padding:8px 16px 0}
button{display:block;width:100%;min-height:48px;border:0;border-radius:8px;background:#1677ff;color:#fff;font-size:17px;font-weight:600;cursor:pointer}
button:focus-visible{outline:3px solid #0a3d91;outline-offset:2px}
.result{padding:24px 20px;text-align:center;background:#fff}
.icon{width:64px;height:64px;margin:0 auto 12px;border-radius:50%;display:flex;align-items:center;justify-content:center;font-size:34px;color:#fff}
.ok .icon{background:#1677ff}
.bad .icon{background:#ff4d4f}
.big{font-size:20px;font-weight:600;margin:0 0 12px}
dl{margin:0;text-align:left;font-size:14px;color:#999}
dl div{display:flex;justify-content:space-between;gap:12px;padding:6px 0;border-top:1px solid #f0f0f0}
dd{margin:0;color:#333;word-break:break-all;text-align:right}
.foot{padding:16px;text-align:center;font-size:12px;color:#bbb;word-break:break-all}
@media (min-width:600px){main{max-width:420px;margin:24px auto;border-radius:12px;overflow:hidden;box-shadow:0 2px 12px rgba(0,0,0,.08)}}
</style>
</head>
<body>
<main>
<div class="bar">支付宝<small>沙箱</small></div>
{{if eq .View "missing"}}
<div class="result bad" id="missing"><div class="icon" aria-hidden="true">!</div><p class="big">二维码已失效</p><p>{{.Message}}</p></div>
{{else}}
<section class="card" aria-label="订单">
<p class="merchant" id="merchant">{{.Merchant}}</p>
<p class="subject" id="subject">{{.Subject}}</p>
<p class="amount" id="amount">¥{{.Amount}}</p>
</section>
{{if eq .View "pay"}}
<form method="post" action="/alipay/pay">
<input type="hidden" name="code" value="{{.Code}}">
<button id="pay" type="submit">确认付款</button>
</form>
{{else if eq .View "paid"}}
<section class="result ok" id="paid" role="status">
<div class="icon" aria-hidden="true">✓</div>
<p class="big">支付成功</p>
<dl>
<div><dt>交易号</dt><dd id="trade-no">{{.TradeNo}}</dd></div>
<div><dt>付款时间</dt><dd>{{.PaidAt}}</dd></div>
</dl>
</section>
{{else}}
<section class="result bad" id="closed" role="alert"><div class="icon" aria-hidden="true">!</div><p class="big">无法付款</p><p>{{.Message}}</p></section>
{{end}}
<p class="foot">商户订单号 {{.OutTradeNo}}</p>
{{end}}
</main>
</body>
</html>
`))

func (s *Sim) pageFor(code string) (pageData, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byCode[code]
	if !ok {
		return pageData{View: "missing", Message: "请向收款方重新获取付款码。"}, false
	}
	o.settle(s.now())
	d := pageData{Merchant: s.cfg.MerchantName, Subject: o.Subject, Amount: yuan(o.Total), OutTradeNo: o.OutTradeNo, Code: o.Code, View: "pay"}
	switch o.Status {
	case TradeSuccess, TradeFinished:
		d.View, d.TradeNo, d.PaidAt = "paid", o.TradeNo, o.PaidAt.In(shanghai.Location).Format(timeLayout)
	case TradeClosed:
		d.View, d.Message = "closed", "交易已关闭或已过期，请重新下单。"
	}
	return d, true
}

func (s *Sim) render(c echo.Context, status int, d pageData) error {
	return payerpage.Render(c, status, page, d, "'self'")
}

// handlePage is GET /alipay/pay?code=<the token at the end of qr_code>: the payer's page.
func (s *Sim) handlePage(c echo.Context) error {
	d, ok := s.pageFor(c.QueryParam("code"))
	if !ok {
		return s.render(c, http.StatusNotFound, d)
	}
	return s.render(c, http.StatusOK, d)
}

// handlePagePay is the page's form: POST /alipay/pay (code=...), then back to the page.
func (s *Sim) handlePagePay(c echo.Context) error {
	code := c.FormValue("code")
	_, err := s.pay(s.finder("", code))
	switch {
	case err == nil:
		return c.Redirect(http.StatusSeeOther, "/alipay/pay?code="+code)
	case errors.Is(err, ErrNotFound):
		d, _ := s.pageFor(code)
		return s.render(c, http.StatusNotFound, d)
	case errors.Is(err, ErrClosed):
		d, _ := s.pageFor(code)
		return s.render(c, http.StatusConflict, d)
	}
	return err
}

// RobotRequest is the body of POST /alipay/robot/pay: the order by out_trade_no or by the code
// of its qr_code.
type RobotRequest struct {
	OutTradeNo string `json:"out_trade_no"`
	Code       string `json:"code"`
}

// handleRobotPay pays without a page, for the load generator and tests.
func (s *Sim) handleRobotPay(c echo.Context) error {
	var req RobotRequest
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || (req.OutTradeNo == "") == (req.Code == "") {
		return apierr.New(http.StatusBadRequest, "INVALID_PARAMETER", "give exactly one of out_trade_no and code")
	}
	a, err := s.pay(s.finder(req.OutTradeNo, req.Code))
	switch {
	case errors.Is(err, ErrNotFound):
		return apierr.New(http.StatusNotFound, "ACQ.TRADE_NOT_EXIST", "交易不存在")
	case errors.Is(err, ErrClosed):
		return apierr.New(http.StatusBadRequest, "ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
	case err != nil:
		return err
	}
	return c.JSON(http.StatusOK, a)
}

// finder looks an order up by out_trade_no or code; it runs under s.mu.
func (s *Sim) finder(outTradeNo, code string) func() (*order, bool) {
	return func() (*order, bool) {
		if outTradeNo != "" {
			o, ok := s.byTrade[outTradeNo]
			return o, ok
		}
		o, ok := s.byCode[code]
		return o, ok
	}
}
