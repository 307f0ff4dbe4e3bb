package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"finepay/internet-gateway/internal/fixture"
	"finepay/shared/bizdate"
	"finepay/shared/envelope"
	"finepay/shared/money"
	"finepay/shared/penalty"
)

// browser returns a chromedp context on a fresh headless Chromium.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (.ci/run installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(390, 844))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, tcancel := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(func() { tcancel(); cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func textOf(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("#%s: %v", id, err)
	}
	return strings.TrimSpace(s)
}

// TestP2CashierInBrowser drives the cashier pages in headless Chromium: the bill, the pay button,
// the QR page whose script follows the payment to the result, and the result page whose script
// reloads when the e-receipt arrives (so the CSP nonce, the inline script and the polling work).
func TestP2CashierInBrowser(t *testing.T) {
	g := startGateway(t, "sqlite:"+filepath.Join(t.TempDir(), "gw.db"), "-sandbox-pay-url", "http://127.0.0.1:1/wechat/pay")
	ctx := browser(t)
	tok := fixture.Token()
	g.publish(t, "B1", tok)
	today := bizdate.Of(time.Now())
	_, fee, total := penalty.Due(20000, today.AddDays(-20), today, true)

	if err := chromedp.Do(ctx, chromedp.Navigate(g.base+"/q/"+tok), chromedp.WaitVisible(chromedp.ID("total"))); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"party": "张*明", "plate": "黑A·1***5", "decision-no": "2301021234567890",
		"fine": money.Fen(20000).String(), "late-fee": fee.String(), "total": total.String()} {
		if got := textOf(t, ctx, id); got != want {
			t.Errorf("#%s = %q, want %q", id, got, want)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("pay-wechat")), chromedp.WaitVisible(chromedp.ID("qr"))); err != nil {
		t.Fatalf("pay: %v", err)
	}
	attr, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("sandbox-pay"), "href"))
	if err != nil {
		t.Fatalf("sandbox link: %v", err)
	}
	href := attr.Value
	orderNo := textOf(t, ctx, "order-no")
	if !strings.HasPrefix(href, "http://127.0.0.1:1/wechat/pay?pr=") || textOf(t, ctx, "amount") != total.String() {
		t.Fatalf("QR page: sandbox link %q, amount %s", href, textOf(t, ctx, "amount"))
	}
	// The payer pays; the page notices by itself and shows the result.
	g.notify(t, orderNo)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("paid-amount"))); err != nil {
		t.Fatalf("the QR page did not follow the payment: %v", err)
	}
	if textOf(t, ctx, "paid-amount") != total.String() || textOf(t, ctx, "order-no") != orderNo {
		t.Errorf("result: %s %s", textOf(t, ctx, "paid-amount"), textOf(t, ctx, "order-no"))
	}
	textOf(t, ctx, "receipt-pending")
	// The receipt arrives through the ferry; the page reloads by itself.
	g.deliver(t, "receipt:"+orderNo, &envelope.ReceiptIssued{BillNo: "B1", OrderNo: orderNo, ReceiptCode: "23010125",
		ReceiptNo: "0000000042", CheckCode: "8f3a1c", Amount: int64(total), PayerMasked: "张*明", IssuedAt: time.Now()}, "B1")
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("receipt-code"))); err != nil {
		t.Fatalf("the result page did not show the receipt: %v", err)
	}
	if textOf(t, ctx, "receipt-no") != "0000000042" || textOf(t, ctx, "check-code") != "8f3a1c" {
		t.Error("receipt fields")
	}
}
