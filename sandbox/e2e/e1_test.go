package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"finepay/shared/gm"
)

// TestE1ReceiptDownloadAndCheck drives flow E1 after a P2 payment: the core takes the receipt
// number from the stock it took in from the e-receipt platform, signs the receipt data with the
// unit key, and the platform seals it; the receipt crosses the ferry with its layout file; the
// cashier's result page offers the PDF and the signed receipt for download, whose unit
// signature and finance seal verify with the sandbox's certificates; the platform's check page
// accepts the receipt's elements and refuses them with one changed amount.
func TestE1ReceiptDownloadAndCheck(t *testing.T) {
	sys := startSystem(t, backends[1])
	ctx := browser(t)
	bill := createBill(t, ctx, sys)
	openCashier(t, ctx, bill)
	payInSimulator(t, ctx, "wechat")
	receiptNo := checkResult(t, ctx, sys, bill)
	checkPartners(t, sys, bill, receiptNo)

	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("receipt-pdf")), chromedp.WaitVisible(chromedp.ID("receipt-json"))); err != nil {
		t.Fatalf("the result page offers no download: %v", err)
	}
	code, check := text(t, ctx, "receipt-code"), text(t, ctx, "check-code")
	date, amount := text(t, ctx, "receipt-date"), strings.TrimPrefix(text(t, ctx, "receipt-amount"), "¥")
	href := func(id string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID(id), "href"))
		if err != nil || !strings.HasPrefix(v.Value, "/q/"+bill.token+"/receipt.") {
			t.Fatalf("#%s href %q: %v", id, v.Value, err)
		}
		return sys.GatewayURL + v.Value
	}
	pdf := download(t, href("receipt-pdf"), "application/pdf")
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(pdf, []byte("%%EOF\n")) {
		t.Errorf("the layout file is not a PDF: %.40q", pdf)
	}

	// The signed receipt verifies with the sandbox's certificates.
	var signed struct {
		ReceiptCode   string `json:"receipt_code"`
		ReceiptNo     string `json:"receipt_no"`
		CheckCode     string `json:"check_code"`
		IssuedAt      string `json:"issued_at"`
		Amount        int64  `json:"amount"`
		Data          []byte `json:"data"`
		UnitSignature string `json:"unit_signature"`
		Seal          string `json:"seal"`
	}
	getJSON(t, href("receipt-json"), &signed)
	if signed.ReceiptCode != code || signed.ReceiptNo != receiptNo || signed.CheckCode != check || signed.Amount != int64(bill.total) {
		t.Fatalf("signed receipt %+v, page %s %s %s", signed, code, receiptNo, check)
	}
	unitCert, err := gm.LoadCertificate(filepath.Join(certsDir, "unit-sign.pem"))
	if err != nil {
		t.Fatal(err)
	}
	financeCert, err := gm.LoadCertificate(filepath.Join(certsDir, "sandbox-sign.pem"))
	if err != nil {
		t.Fatal(err)
	}
	usig, _ := base64.StdEncoding.DecodeString(signed.UnitSignature)
	if err := unitCert.PublicKey().Verify(signed.Data, usig); err != nil {
		t.Errorf("the unit's signature does not verify with unit-sign.pem: %v", err)
	}
	d := gm.SM3(signed.Data)
	sealed := strings.Join([]string{signed.ReceiptCode, signed.ReceiptNo, signed.CheckCode, strconv.FormatInt(signed.Amount, 10),
		signed.IssuedAt, hex.EncodeToString(d[:]), signed.UnitSignature}, "\n")
	seal, _ := base64.StdEncoding.DecodeString(signed.Seal)
	if err := financeCert.PublicKey().Verify([]byte(sealed), seal); err != nil {
		t.Errorf("the finance seal does not verify with sandbox-sign.pem: %v", err)
	}
	if !bytes.Contains(signed.Data, []byte(`"kind":"blue"`)) || !bytes.Contains(signed.Data, []byte(`"receipt_no":"`+receiptNo+`"`)) {
		t.Errorf("signed data %s", signed.Data)
	}

	// The platform's check page (查验): the elements pass; one changed amount does not.
	checkPage := func(amount string) string {
		t.Helper()
		err := chromedp.Do(ctx,
			chromedp.Navigate(sys.SandboxURL+"/ereceipt/check"),
			chromedp.WaitVisible(chromedp.ID("check-form")),
			chromedp.SetValue(chromedp.ID("code"), code),
			chromedp.SetValue(chromedp.ID("number"), receiptNo),
			chromedp.SetValue(chromedp.ID("check-code"), check),
			chromedp.SetValue(chromedp.ID("date"), date),
			chromedp.SetValue(chromedp.ID("amount"), amount),
			chromedp.Click(chromedp.ID("check")),
			chromedp.WaitVisible(chromedp.ID("check-result")),
		)
		if err != nil {
			t.Fatalf("check page: %v", err)
		}
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("check-result"), "data-valid"))
		if err != nil {
			t.Fatal(err)
		}
		return v.Value
	}
	if got := checkPage(amount); got != "true" {
		t.Errorf("the check page refused the receipt's own elements (amount %s, date %s): %s", amount, date, got)
	} else if shown := text(t, ctx, "r-number"); shown != receiptNo {
		t.Errorf("the check page shows number %q", shown)
	}
	changed := bill.total + 1
	if got := checkPage(changed.Yuan()); got != "false" {
		t.Errorf("the check page accepted a changed amount %s: %s", changed.Yuan(), got)
	}

	// Stock: the range the core took in is confirmed at the platform.
	var state struct {
		Allocations []struct {
			UnitCode string `json:"unit_code"`
			Status   string `json:"status"`
		} `json:"receipt_allocations"`
	}
	eventually(t, "the unit's stock to be taken in", 10*time.Second, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
		for _, a := range state.Allocations {
			if a.UnitCode == "230100" && a.Status == "in_stock" {
				return true
			}
		}
		return false
	})
}

func download(t *testing.T, url, contentType string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != contentType {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return b
}
