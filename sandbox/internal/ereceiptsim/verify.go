package ereceiptsim

import (
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/payerpage"
	"finepay/sandbox/internal/shanghai"
)

// VerifyResponse is the answer to GET /ereceipt/v1/verify.
type VerifyResponse struct {
	Valid        bool   `json:"valid"`
	Kind         string `json:"kind"`
	Status       string `json:"status"`
	ReceiptCode  string `json:"receipt_code"`
	ReceiptNo    string `json:"receipt_no"`
	IssuedAt     string `json:"issued_at"`
	Amount       int64  `json:"amount"`
	PayerMasked  string `json:"payer_masked"`
	UnitName     string `json:"unit_name"`
	ItemName     string `json:"item_name"`
	Seal         string `json:"seal"`
	OriginalCode string `json:"original_code,omitempty"`
	OriginalNo   string `json:"original_no,omitempty"`
	RedCode      string `json:"red_code,omitempty"`
	RedNo        string `json:"red_no,omitempty"`
}

var checkPattern = regexp.MustCompile(`^[0-9A-Za-z]{6}$`)

// elements are what a verification gives: code, number, check code, amount in fen and,
// optionally, the issue date.
type elements struct {
	code, number, check, date string
	amount                    int64
}

// match looks a receipt up by its elements; ok is false when any element differs, without
// saying which.
func (s *Sim) match(e elements) (Receipt, bool) {
	s.mu.Lock()
	r, ok := s.byNumber[e.code+e.number]
	var rc Receipt
	if ok {
		rc = *r
	}
	s.mu.Unlock()
	if !ok {
		return Receipt{}, false
	}
	issuedDate := ""
	if t, err := time.Parse(time.RFC3339, rc.IssuedAt); err == nil {
		issuedDate = shanghai.Date(t)
	}
	if rc.CheckCode != e.check || rc.Amount != e.amount || (e.date != "" && e.date != issuedDate) {
		return Receipt{}, false
	}
	return rc, true
}

func (s *Sim) handleVerify(c echo.Context) error {
	q := c.QueryParams()
	var v field.Checker
	e := elements{code: q.Get("code"), number: q.Get("number"), check: q.Get("check_code"), date: q.Get("date")}
	v.Digits("code", e.code, 8, 8)
	v.Digits("number", e.number, 10, 10)
	v.Match("check_code", e.check, checkPattern, "6 letters or digits")
	if v.Required("amount", q.Get("amount")) {
		n, err := strconv.ParseInt(q.Get("amount"), 10, 64)
		if err != nil || n <= 0 {
			v.Add("amount", "must be an integer > 0 (fen)")
		}
		e.amount = n
	}
	if e.date != "" {
		v.Date("date", e.date)
	}
	if err := v.Err(); err != nil {
		return err
	}
	rc, ok := s.match(e)
	if !ok {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no receipt matches these elements")
	}
	return c.JSON(http.StatusOK, VerifyResponse{
		Valid: true, Kind: rc.Kind, Status: rc.Status, ReceiptCode: rc.ReceiptCode, ReceiptNo: rc.ReceiptNo, IssuedAt: rc.IssuedAt,
		Amount: rc.Amount, PayerMasked: rc.PayerMasked, UnitName: rc.UnitName, ItemName: rc.ItemName, Seal: rc.Seal,
		OriginalCode: rc.OriginalCode, OriginalNo: rc.OriginalNo, RedCode: rc.RedCode, RedNo: rc.RedNo,
	})
}

// parseYuan reads an amount in yuan ("230", "230.5", "230.00", "¥230.00") as fen.
func parseYuan(s string) (int64, bool) {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "¥"))
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(whole) > 12 || len(frac) > 2 {
		return 0, false
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	for len(frac) < 2 {
		frac += "0"
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	return n, err == nil && n > 0
}

type checkPage struct {
	Code, Number, Check, Date, Amount string
	Asked                             bool
	Problems                          []string
	Valid                             bool
	Receipt                           Receipt
	AmountText                        string
}

// handleCheckPage is GET /ereceipt/check: the public check page (查验). Without a query it shows
// the form; with one, the answer: valid with the receipt's elements, or one and the same
// "no receipt matches" whether an element or the whole receipt is unknown.
func (s *Sim) handleCheckPage(c echo.Context) error {
	q := c.QueryParams()
	p := checkPage{Code: strings.TrimSpace(q.Get("code")), Number: strings.TrimSpace(q.Get("number")),
		Check: strings.TrimSpace(q.Get("check_code")), Date: strings.TrimSpace(q.Get("date")), Amount: strings.TrimSpace(q.Get("amount"))}
	p.Asked = len(q) > 0
	if p.Asked {
		e := elements{code: p.Code, number: p.Number, check: p.Check, date: p.Date}
		if !reCode.MatchString(p.Code) {
			p.Problems = append(p.Problems, "票据代码应为 8 位数字 (code: 8 digits)")
		}
		if !reNo.MatchString(p.Number) {
			p.Problems = append(p.Problems, "票据号码应为 10 位数字 (number: 10 digits)")
		}
		if !checkPattern.MatchString(p.Check) {
			p.Problems = append(p.Problems, "校验码应为 6 位字母或数字 (check code: 6 letters or digits)")
		}
		if p.Date != "" {
			if _, err := shanghai.ParseDate(p.Date); err != nil {
				p.Problems = append(p.Problems, "开票日期格式为 YYYY-MM-DD (date)")
			}
		}
		var ok bool
		if e.amount, ok = parseYuan(p.Amount); !ok {
			p.Problems = append(p.Problems, "金额以元为单位，如 230.00 (amount in yuan)")
		}
		if len(p.Problems) == 0 {
			p.Receipt, p.Valid = s.match(e)
			if p.Valid {
				p.AmountText = yuan(p.Receipt.Amount, p.Receipt.Kind)
			}
		}
	}
	return payerpage.Render(c, http.StatusOK, checkTemplate, p, "'self'")
}

// CheckURL is the check page's address for a receipt's elements under base (the sandbox's
// public URL).
func CheckURL(base, code, number, check, date, amountYuan string) string {
	q := url.Values{"code": {code}, "number": {number}, "check_code": {check}, "amount": {amountYuan}}
	if date != "" {
		q.Set("date", date)
	}
	return strings.TrimRight(base, "/") + "/ereceipt/check?" + q.Encode()
}

var checkTemplate = template.Must(template.New("check").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>财政电子票据查验（沙箱）</title>
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:36rem;padding:1rem;color:#222}
h1{font-size:1.3rem}label{display:block;margin:.6rem 0 .2rem}input{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
button{margin-top:1rem;padding:.6rem 1.4rem;font-size:1rem}.ok{color:#176317}.bad{color:#a31616}
dl div{display:flex;gap:.8rem;border-bottom:1px solid #eee;padding:.3rem 0}dt{width:7rem;color:#666}dd{margin:0}
.muted{color:#666;font-size:.85rem}
</style></head><body>
<h1>财政电子票据查验 <span class="muted">(e-receipt check, sandbox)</span></h1>
<form id="check-form" method="get" action="/ereceipt/check">
<label for="code">票据代码 (code)</label><input id="code" name="code" value="{{.Code}}" inputmode="numeric" maxlength="8" required>
<label for="number">票据号码 (number)</label><input id="number" name="number" value="{{.Number}}" inputmode="numeric" maxlength="10" required>
<label for="check-code">校验码 (check code)</label><input id="check-code" name="check_code" value="{{.Check}}" maxlength="6" required>
<label for="date">开票日期 (date, YYYY-MM-DD)</label><input id="date" name="date" value="{{.Date}}" placeholder="2026-11-27">
<label for="amount">金额（元） (amount, yuan)</label><input id="amount" name="amount" value="{{.Amount}}" inputmode="decimal" required>
<button id="check" type="submit">查验</button>
</form>
{{if .Asked}}
{{if .Problems}}
<div id="check-result" data-valid="false" class="bad"><p>请检查填写的要素 (please check the elements):</p>
<ul id="form-problems">{{range .Problems}}<li>{{.}}</li>{{end}}</ul></div>
{{else if .Valid}}
<div id="check-result" data-valid="true" class="ok">
<p><strong>查验通过：票据真实有效</strong> (valid)</p>
<dl>
<div><dt>票据代码</dt><dd id="r-code">{{.Receipt.ReceiptCode}}</dd></div>
<div><dt>票据号码</dt><dd id="r-number">{{.Receipt.ReceiptNo}}</dd></div>
<div><dt>开票时间</dt><dd id="r-issued-at">{{.Receipt.IssuedAt}}</dd></div>
<div><dt>金额（元）</dt><dd id="r-amount">{{.AmountText}}</dd></div>
<div><dt>交款人</dt><dd id="r-payer">{{.Receipt.PayerMasked}}</dd></div>
<div><dt>开票单位</dt><dd id="r-unit">{{.Receipt.UnitName}}</dd></div>
<div><dt>项目</dt><dd id="r-item">{{.Receipt.ItemName}}</dd></div>
<div><dt>状态</dt><dd id="r-status" data-status="{{.Receipt.Status}}" data-kind="{{.Receipt.Kind}}">{{if eq .Receipt.Kind "red"}}红字票据，冲销 {{.Receipt.OriginalCode}} {{.Receipt.OriginalNo}}{{else if eq .Receipt.Status "red-flushed"}}已红冲（红字票据 {{.Receipt.RedCode}} {{.Receipt.RedNo}}）{{else}}正常{{end}}</dd></div>
</dl></div>
{{else}}
<div id="check-result" data-valid="false" class="bad"><p><strong>查验未通过：未查到与所填要素一致的票据</strong> (no receipt matches these elements)</p></div>
{{end}}
{{end}}
</body></html>
`))
