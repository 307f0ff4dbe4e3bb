package server

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/partnerapi"
)

func normalize(fp string) string { return partnerapi.NormalizeFingerprint(fp) }

// indexRow is an order of any channel on the index page.
type indexRow struct {
	Channel, OrderNo, PayURL, Description, Amount, State, Notification string
}

var index = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FinePay sandbox</title>
<style>
body{margin:0;padding:16px;font:15px/1.5 -apple-system,BlinkMacSystemFont,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;color:#191919;background:#f7f7f7}
h1{font-size:20px;margin:0 0 4px}
p{margin:0 0 16px;color:#555}
table{width:100%;border-collapse:collapse;background:#fff}
th,td{padding:8px;border-bottom:1px solid #eee;text-align:left;font-size:14px;word-break:break-all}
th{background:#fafafa;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
a{color:#0a58ca}
</style>
</head>
<body>
<h1>FinePay sandbox</h1>
<p>Simulators of WeChat Pay, Alipay, UnionPay, the non-tax system, the e-receipt platform and the window platform.
<a href="/_sandbox/state">state (JSON)</a> · <a href="/metrics">metrics</a> · <a href="/healthz">healthz</a></p>
<table>
<thead><tr><th>channel</th><th>order</th><th>description</th><th>amount</th><th>state</th><th>notification</th></tr></thead>
<tbody>
{{range .}}<tr><td>{{.Channel}}</td><td><a href="{{.PayURL}}">{{.OrderNo}}</a></td><td>{{.Description}}</td><td class="n">{{.Amount}}</td><td>{{.State}}</td><td>{{.Notification}}</td></tr>
{{else}}<tr><td colspan="6">No orders yet.</td></tr>{{end}}
</tbody>
</table>
</body>
</html>
`))

func yuan(fen int64) string { return fmt.Sprintf("¥%d.%02d", fen/100, fen%100) }

func delivery(acked, abandoned, dropped bool, attempts int) string {
	switch {
	case dropped:
		return "dropped"
	case acked:
		return fmt.Sprintf("acknowledged (%d attempts)", attempts)
	case abandoned:
		return fmt.Sprintf("abandoned (%d attempts)", attempts)
	}
	return fmt.Sprintf("pending (%d attempts)", attempts)
}

// handleIndex lists the latest orders of each channel with links to their payer pages.
func (s *Server) handleIndex(c echo.Context) error {
	var rows []indexRow
	wx := s.WeChat.Snapshot()
	for i := len(wx) - 1; i >= 0 && i >= len(wx)-100; i-- {
		o := wx[i]
		r := indexRow{Channel: "wechat", OrderNo: o.OutTradeNo, PayURL: o.PayURL, Description: o.Description, Amount: yuan(o.Total), State: o.TradeState}
		if n := o.Notification; n != nil {
			r.Notification = delivery(n.Acknowledged, n.Abandoned, false, len(n.Attempts))
		}
		rows = append(rows, r)
	}
	ali := s.Alipay.Snapshot()
	for i := len(ali) - 1; i >= 0 && i >= len(ali)-100; i-- {
		o := ali[i]
		r := indexRow{Channel: "alipay", OrderNo: o.OutTradeNo, PayURL: o.PayURL, Description: o.Subject, Amount: yuan(o.Total), State: o.TradeStatus}
		if k := len(o.Notifications); k > 0 {
			n := o.Notifications[k-1]
			r.Notification = delivery(n.Acknowledged, n.Abandoned, n.Dropped, len(n.Attempts))
		} else if o.DropNotify {
			r.Notification = "will be dropped"
		}
		rows = append(rows, r)
	}
	up := s.UnionPay.Snapshot()
	for i := len(up) - 1; i >= 0 && i >= len(up)-100; i-- {
		o := up[i]
		state := "unpaid"
		if o.Paid {
			state = "paid " + o.QueryID
		}
		r := indexRow{Channel: "unionpay", OrderNo: o.OrderID, PayURL: o.PayURL, Amount: yuan(o.TxnAmt), State: state}
		if n := o.Notification; n != nil {
			r.Notification = delivery(n.Acknowledged, n.Abandoned, n.Dropped, len(n.Attempts))
		} else if o.DropNotify {
			r.Notification = "will be dropped"
		}
		rows = append(rows, r)
	}
	var buf bytes.Buffer
	if err := index.Execute(&buf, rows); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}
