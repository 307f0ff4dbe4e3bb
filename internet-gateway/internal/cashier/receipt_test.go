package cashier_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/cashier"
	"finepay/internet-gateway/internal/fixture"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/envelope"
)

// TestE1CashierReceiptDownload: once receipt.issued brings the signed receipt, the result page
// shows every element of verification and offers the layout file (PDF) and the signed receipt
// for download; a receipt without a file (from before E1) shows no links, and its downloads
// are 404.
func TestE1CashierReceiptDownload(t *testing.T) {
	t.Parallel()
	s := setup(t, sqltest.Open(t, sqldb.SQLite), cashier.Config{})
	tok := fixture.Token()
	s.Publish(t, fixture.Bill("B1", tok))
	s.do(http.MethodGet, "/q/"+tok, nil)
	rec := s.do(http.MethodPost, "/q/"+tok+"/pay/wechat", url.Values{"csrf": {s.cookies["fp_csrf"]}})
	orderNo := strings.TrimPrefix(rec.Header().Get("Location"), "/q/"+tok+"/order/")
	note := s.PKI.NotificationBody("EV-1", s.WeChat.Pay(orderNo))
	req := httptest.NewRequest(http.MethodPost, "/notify/wechat", strings.NewReader(string(note)))
	for k, v := range s.PKI.Sign(s.Clock.Now(), note) {
		req.Header[k] = v
	}
	s.e.ServeHTTP(httptest.NewRecorder(), req)

	ri := &envelope.ReceiptIssued{BillNo: "B1", OrderNo: orderNo, ReceiptCode: "23010125", ReceiptNo: "0000000042",
		CheckCode: "8f3a1c", Amount: 27800, PayerMasked: "张*明", IssuedAt: s.Clock.Now()}
	s.Deliver(t, "receipt:"+orderNo, ri, "B1")
	body := s.do(http.MethodGet, "/q/"+tok+"/result", nil).Body.String()
	if strings.Contains(body, "receipt-pdf") || text(t, body, "receipt-date") != "2025-03-01" || text(t, body, "receipt-amount") != "¥278.00" {
		t.Fatalf("a receipt without a file:\n%s", body)
	}
	if rec := s.do(http.MethodGet, "/q/"+tok+"/receipt.pdf", nil); rec.Code != http.StatusNotFound {
		t.Fatalf("download without a file: %d", rec.Code)
	}

	// The same receipt again, now with its signed file (a later message replaces the copy).
	ri.Data, ri.UnitSignature, ri.Seal = []byte(`{"version":1}`), "TUVVQw==", "TUVRQw=="
	ri.Layout = []byte("%PDF-1.4\n%test\n%%EOF\n")
	s.Deliver(t, "receipt2:"+orderNo, ri, "B1")
	body = s.do(http.MethodGet, "/q/"+tok+"/result", nil).Body.String()
	if attr(t, body, "receipt-pdf", "href") != "/q/"+tok+"/receipt.pdf" || attr(t, body, "receipt-json", "href") != "/q/"+tok+"/receipt.json" {
		t.Fatalf("result page:\n%s", body)
	}
	rec = s.do(http.MethodGet, "/q/"+tok+"/receipt.pdf", nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/pdf" || rec.Body.String() != string(ri.Layout) ||
		!strings.Contains(rec.Header().Get("Content-Disposition"), `filename="ereceipt-23010125-0000000042.pdf"`) {
		t.Fatalf("pdf: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	rec = s.do(http.MethodGet, "/q/"+tok+"/receipt.json", nil)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("json: %d %s", rec.Code, rec.Body)
	}
	if got["data"] != base64.StdEncoding.EncodeToString(ri.Data) || got["seal"] != ri.Seal || got["unit_signature"] != ri.UnitSignature ||
		got["issued_at"] != "2025-03-01T10:30:00+08:00" || got["amount"] != float64(27800) || got["check_code"] != "8f3a1c" {
		t.Fatalf("signed receipt %v", got)
	}
	if rec := s.do(http.MethodGet, "/q/"+fixture.Token()+"/receipt.pdf", nil); rec.Code != http.StatusNotFound {
		t.Fatalf("another token: %d", rec.Code)
	}
}

// TestR3CashierResultShowsRefund: the payer's result page shows a refund of the payment as the
// channel reports it: in progress while the channel works on it, then the amount back and when.
func TestR3CashierResultShowsRefund(t *testing.T) {
	t.Parallel()
	s := setup(t, sqltest.Open(t, sqldb.Postgres), cashier.Config{})
	ctx := context.Background()
	tok := fixture.Token()
	s.Publish(t, fixture.Bill("B1", tok))
	s.do(http.MethodGet, "/q/"+tok, nil)
	rec := s.do(http.MethodPost, "/q/"+tok+"/pay/wechat", url.Values{"csrf": {s.cookies["fp_csrf"]}})
	orderNo := strings.TrimPrefix(rec.Header().Get("Location"), "/q/"+tok+"/order/")
	paid := s.WeChat.Pay(orderNo)
	note := s.PKI.NotificationBody("EV-1", paid)
	req := httptest.NewRequest(http.MethodPost, "/notify/wechat", strings.NewReader(string(note)))
	for k, v := range s.PKI.Sign(s.Clock.Now(), note) {
		req.Header[k] = v
	}
	s.e.ServeHTTP(httptest.NewRecorder(), req)
	body := s.do(http.MethodGet, "/q/"+tok+"/result", nil).Body.String()
	if strings.Contains(body, `id="refunds"`) {
		t.Fatalf("a refund section before any refund:\n%s", body)
	}

	now := s.Clock.Now()
	r := store.Refund{RefundNo: "RF2025030100000001", Channel: "wechat", OrderNo: orderNo, ChannelTradeNo: paid.TransactionID,
		PaidAmount: 27800, Amount: 27800, Reason: "处罚决定变更", Status: store.RefundProcessing, InstructedAt: now, UpdatedAt: now}
	if _, err := s.Store.RefundInsert(ctx, s.Store.DB, r); err != nil {
		t.Fatal(err)
	}
	body = s.do(http.MethodGet, "/q/"+tok+"/result", nil).Body.String()
	if got := text(t, body, "refund-status-"+r.RefundNo); got != "退款处理中" || text(t, body, "refund-amount-"+r.RefundNo) != "¥278.00" {
		t.Fatalf("refund in progress: %q\n%s", got, body)
	}
	r.Status, r.RefundedAmount, r.RefundedAt = store.RefundSuccess, 27800, now.Add(time.Hour)
	if err := s.Store.RefundUpdate(ctx, s.Store.DB, r); err != nil {
		t.Fatal(err)
	}
	body = s.do(http.MethodGet, "/q/"+tok+"/result", nil).Body.String()
	if got := text(t, body, "refund-status-"+r.RefundNo); !strings.HasPrefix(got, "已退款") ||
		text(t, body, "refund-at-"+r.RefundNo) != "2025-03-01 11:30:00" {
		t.Fatalf("refund done: %q\n%s", got, body)
	}
}
