package server

import (
	"bytes"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/partnerapi"
	"finepay/sandbox/internal/wechatsim"
)

func normalize(fp string) string { return partnerapi.NormalizeFingerprint(fp) }

type indexRow struct {
	wechatsim.OrderState
	Amount string
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
<p>Simulators of WeChat Pay, the non-tax system, the e-receipt platform and the window platform.
<a href="/_sandbox/state">state (JSON)</a> · <a href="/metrics">metrics</a> · <a href="/healthz">healthz</a></p>
<table>
<thead><tr><th>WeChat order</th><th>description</th><th>amount</th><th>state</th><th>notification</th></tr></thead>
<tbody>
{{range .}}<tr><td><a href="{{.PayURL}}">{{.OutTradeNo}}</a></td><td>{{.Description}}</td><td class="n">{{.Amount}}</td><td>{{.TradeState}}</td>
<td>{{with .Notification}}{{if .Acknowledged}}acknowledged{{else if .Abandoned}}abandoned{{else}}pending{{end}} ({{len .Attempts}} attempts){{end}}</td></tr>
{{else}}<tr><td colspan="5">No orders yet.</td></tr>{{end}}
</tbody>
</table>
</body>
</html>
`))

// handleIndex lists the latest WeChat orders with links to their payer pages.
func (s *Server) handleIndex(c echo.Context) error {
	orders := s.WeChat.Snapshot()
	rows := make([]indexRow, 0, 100)
	for i := len(orders) - 1; i >= 0 && len(rows) < 100; i-- {
		rows = append(rows, indexRow{OrderState: orders[i], Amount: wechatsim.Yuan(orders[i].Total)})
	}
	var buf bytes.Buffer
	if err := index.Execute(&buf, rows); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}
