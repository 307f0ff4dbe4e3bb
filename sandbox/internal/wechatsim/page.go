package wechatsim

import (
	"errors"
	"finepay/sandbox/internal/payerpage"
	"fmt"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/shanghai"
)

// Yuan formats fen as the payer sees it: 20000 → ¥200.00.
func Yuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s¥%d.%02d", sign, fen/100, fen%100)
}

type pageData struct {
	Merchant      string
	Description   string
	Amount        string
	OutTradeNo    string
	PR            string
	View          string // pay, paid, closed, missing
	Message       string
	TransactionID string
	SuccessTime   string
}

var page = template.Must(template.New("pay").Parse(`<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="robots" content="noindex">
<title>微信支付</title>
<style>
*{box-sizing:border-box}
html,body{margin:0;padding:0}
body{background:#ededed;color:#191919;font:16px/1.5 -apple-system,BlinkMacSystemFont,"PingFang SC","Hiragino Sans GB","Noto Sans CJK SC","Microsoft YaHei",sans-serif;-webkit-text-size-adjust:100%}
.bar{background:#ededed;text-align:center;padding:14px 16px;font-size:17px;font-weight:600}
.bar small{display:inline-block;margin-left:8px;padding:0 6px;border-radius:4px;background:#fa9d3b;color:#fff;font-size:12px;font-weight:400;vertical-align:2px}
.card{background:#fff;margin:0 0 12px;padding:28px 20px 24px;text-align:center}
.merchant{font-size:15px;color:#576b95;margin:0 0 6px}
.desc{font-size:14px;color:#7f7f7f;margin:0 0 18px;word-break:break-all}
.amount{font-size:40px;font-weight:600;margin:0;letter-spacing:.5px;font-variant-numeric:tabular-nums}
form{padding:8px 16px 0}
button{display:block;width:100%;min-height:48px;border:0;border-radius:8px;background:#07c160;color:#fff;font-size:17px;font-weight:600;cursor:pointer}
button:active{background:#06ad56}
button:focus-visible{outline:3px solid #0b5d33;outline-offset:2px}
.result{padding:24px 20px;text-align:center;background:#fff}
.icon{width:64px;height:64px;margin:0 auto 12px;border-radius:50%;display:flex;align-items:center;justify-content:center;font-size:34px;color:#fff}
.ok .icon{background:#07c160}
.bad .icon{background:#fa5151}
.big{font-size:20px;font-weight:600;margin:0 0 12px}
dl{margin:0;text-align:left;font-size:14px;color:#7f7f7f}
dl div{display:flex;justify-content:space-between;gap:12px;padding:6px 0;border-top:1px solid #f0f0f0}
dd{margin:0;color:#191919;word-break:break-all;text-align:right}
.foot{padding:16px;text-align:center;font-size:12px;color:#b2b2b2;word-break:break-all}
@media (min-width:600px){main{max-width:420px;margin:24px auto;border-radius:12px;overflow:hidden;box-shadow:0 2px 12px rgba(0,0,0,.08)}}
</style>
</head>
<body>
<main>
<div class="bar">微信支付<small>沙箱</small></div>
{{if eq .View "missing"}}
<div class="result bad" id="missing"><div class="icon" aria-hidden="true">!</div><p class="big">二维码已失效</p><p>{{.Message}}</p></div>
{{else}}
<section class="card" aria-label="订单">
<p class="merchant" id="merchant">{{.Merchant}}</p>
<p class="desc" id="description">{{.Description}}</p>
<p class="amount" id="amount">{{.Amount}}</p>
</section>
{{if eq .View "pay"}}
<form method="post" action="/wechat/pay">
<input type="hidden" name="pr" value="{{.PR}}">
<button id="pay" type="submit">确认支付</button>
</form>
{{else if eq .View "paid"}}
<section class="result ok" id="paid" role="status">
<div class="icon" aria-hidden="true">✓</div>
<p class="big">支付成功</p>
<dl>
<div><dt>交易单号</dt><dd id="transaction-id">{{.TransactionID}}</dd></div>
<div><dt>支付时间</dt><dd>{{.SuccessTime}}</dd></div>
</dl>
</section>
{{else}}
<section class="result bad" id="closed" role="alert"><div class="icon" aria-hidden="true">!</div><p class="big">无法支付</p><p>{{.Message}}</p></section>
{{end}}
<p class="foot">商户订单号 {{.OutTradeNo}}</p>
{{end}}
</main>
</body>
</html>
`))

func (s *Sim) pageFor(pr string) (pageData, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byPR[pr]
	if !ok {
		return pageData{View: "missing", Message: "请向收款方重新获取付款码。"}, false
	}
	d := pageData{
		Merchant: s.cfg.MerchantName, Description: o.Description, Amount: Yuan(o.Total),
		OutTradeNo: o.OutTradeNo, PR: o.PR, View: "pay",
	}
	switch {
	case o.State == StateSuccess:
		d.View, d.TransactionID = "paid", o.TransactionID
		if t, err := parseTime(o.SuccessTime); err == nil {
			d.SuccessTime = t.In(shanghai.Location).Format("2006-01-02 15:04:05")
		}
	case o.State == StateClosed:
		d.View, d.Message = "closed", "订单已关闭。"
	case o.expired(s.now()):
		d.View, d.Message = "closed", "订单已过期，请重新下单。"
	}
	return d, true
}

func (s *Sim) render(c echo.Context, status int, d pageData) error {
	return payerpage.Render(c, status, page, d, "'self'")
}

// handlePage shows an order to the payer: GET /wechat/pay?pr=...
func (s *Sim) handlePage(c echo.Context) error {
	d, ok := s.pageFor(c.QueryParam("pr"))
	if !ok {
		return s.render(c, http.StatusNotFound, d)
	}
	return s.render(c, http.StatusOK, d)
}

// handlePagePay pays from the page's form, then shows the result: POST /wechat/pay (pr=...).
func (s *Sim) handlePagePay(c echo.Context) error {
	pr := c.FormValue("pr")
	_, err := s.pay(s.finder("", pr), "")
	switch {
	case err == nil:
		return c.Redirect(http.StatusSeeOther, "/wechat/pay?pr="+pr)
	case errors.Is(err, ErrNotFound):
		d, _ := s.pageFor(pr)
		return s.render(c, http.StatusNotFound, d)
	case errors.Is(err, ErrClosed), errors.Is(err, ErrExpired):
		d, _ := s.pageFor(pr)
		return s.render(c, http.StatusConflict, d)
	}
	return err
}
