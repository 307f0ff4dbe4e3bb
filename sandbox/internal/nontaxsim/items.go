package nontaxsim

import (
	"fmt"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/payerpage"
)

// LateFeeItemCode is the revenue item of the late fee (加处罚款), an item of its own on the form
// beside the fine's: finance accounts for it separately.
const LateFeeItemCode = "103050102"

// Kinds of form items.
const (
	KindFine    = "fine"
	KindLateFee = "late_fee"
)

// Item is one item of a payment form (缴款项目): a revenue item and its amount in fen.
type Item struct {
	Kind     string `json:"kind"` // fine or late_fee
	ItemCode string `json:"item_code"`
	ItemName string `json:"item_name"`
	Amount   int64  `json:"amount"`
}

// fineItem is the fine of a form, under the form's own item.
func fineItem(f *Form) Item {
	return Item{Kind: KindFine, ItemCode: f.ItemCode, ItemName: f.ItemName, Amount: f.Fine}
}

// paymentItems are the items a payment of the form pays: the fine and, when there is one, the
// late fee.
func paymentItems(f *Form, lateFee int64) []Item {
	items := []Item{fineItem(f)}
	if lateFee > 0 {
		items = append(items, Item{Kind: KindLateFee, ItemCode: LateFeeItemCode, ItemName: ItemName(LateFeeItemCode), Amount: lateFee})
	}
	return items
}

// RegisterInspection adds GET /_sandbox/nontax/forms/{form_no}, a readable view of a form (the
// 非税一般缴款书 with its items) and the payments reported against it, to e.
func (s *Sim) RegisterInspection(e *echo.Echo) {
	e.GET("/_sandbox/nontax/forms/:form_no", s.handleFormView)
}

type formView struct {
	Form     Form
	Payments []Payment
	Total    int64
}

func (s *Sim) handleFormView(c echo.Context) error {
	s.mu.Lock()
	f, ok := s.byFormNo[c.Param("form_no")]
	var v formView
	if ok {
		v.Form = *f
		for _, p := range s.byForm[f.FormNo] {
			v.Payments = append(v.Payments, *p)
		}
	}
	s.mu.Unlock()
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound, "no such form")
	}
	for _, it := range v.Form.Items {
		v.Total += it.Amount
	}
	return payerpage.Render(c, http.StatusOK, formPage, v, "'none'")
}

func yuan(fen int64) string { return fmt.Sprintf("¥%d.%02d", fen/100, fen%100) }

var formPage = template.Must(template.New("form").Funcs(template.FuncMap{"yuan": yuan}).Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>非税一般缴款书 {{.Form.FormNo}}</title>
<style>body{font:15px/1.6 sans-serif;max-width:720px;margin:16px auto;padding:0 12px}table{border-collapse:collapse;width:100%;margin:8px 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}td.amount,th.amount{text-align:right}</style></head>
<body>
<h1>非税一般缴款书（沙箱）</h1>
<table id="form">
<tr><th>缴款书号</th><td id="form-no">{{.Form.FormNo}}</td></tr>
<tr><th>缴款识别码</th><td id="pay-code">{{.Form.PayCode}}</td></tr>
<tr><th>处罚决定书编号</th><td id="decision-no">{{.Form.DecisionNo}}</td></tr>
<tr><th>执收单位</th><td id="unit">{{.Form.UnitCode}} {{.Form.UnitName}}</td></tr>
<tr><th>缴款人</th><td id="payer">{{.Form.PayerMasked}}</td></tr>
<tr><th>送达日期 / 缴款期限</th><td>{{.Form.ServedDate}} / {{.Form.DueDate}}</td></tr>
<tr><th>加处罚款</th><td>{{if .Form.LateFeeApplies}}适用{{else}}不适用{{end}}</td></tr>
</table>
<h2>缴款项目</h2>
<table id="items">
<tr><th>项目编码</th><th>项目名称</th><th class="amount">金额</th></tr>
{{range .Form.Items}}<tr class="item" id="item-{{.Kind}}"><td>{{.ItemCode}}</td><td>{{.ItemName}}</td><td class="amount" id="item-{{.Kind}}-amount">{{yuan .Amount}}</td></tr>
{{end}}<tr><th colspan="2">合计</th><td class="amount" id="items-total">{{yuan .Total}}</td></tr>
</table>
<h2>缴款报告</h2>
{{if .Payments}}<table id="payments">
<tr><th>订单号</th><th>渠道</th><th class="amount">金额</th><th>缴款时间</th><th>重复</th></tr>
{{range .Payments}}<tr><td>{{.OrderNo}}</td><td>{{.Channel}}</td><td class="amount">{{yuan .Amount}}</td><td>{{.PaidAt}}</td><td>{{if .Duplicate}}是{{end}}</td></tr>
{{end}}</table>{{else}}<p id="no-payments">尚未收到缴款报告。</p>{{end}}
</body></html>
`))
