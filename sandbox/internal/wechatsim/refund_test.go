package wechatsim_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"finepay/sandbox/internal/wechatsim"
)

// paidOrder places and pays an order of total fen and waits for its payment notification.
func paidOrder(t *testing.T, f *fixture, outTradeNo string, total int64) {
	t.Helper()
	rcv := newReceiver(t, http.StatusNoContent)
	if r := f.merchant.do(t, http.MethodPost, "/v3/pay/transactions/native", orderBody(outTradeNo, rcv.url, total)); r.status != http.StatusOK {
		t.Fatalf("native: %d %s", r.status, r.body)
	}
	if r := f.post(t, "/wechat/robot/pay", "application/json", []byte(`{"out_trade_no":"`+outTradeNo+`"}`)); r.status != http.StatusOK {
		t.Fatalf("pay: %d %s", r.status, r.body)
	}
	waitDone(t, f.sim, outTradeNo)
}

func refundBody(outTradeNo, outRefundNo, notifyURL string, refund, total int64) map[string]any {
	return map[string]any{"out_trade_no": outTradeNo, "out_refund_no": outRefundNo, "reason": "重复缴款退款", "notify_url": notifyURL,
		"amount": map[string]any{"refund": refund, "total": total, "currency": "CNY"}}
}

// orderState returns an order as /_sandbox/state shows it.
func orderState(t *testing.T, f *fixture, outTradeNo string) wechatsim.OrderState {
	t.Helper()
	for _, o := range f.sim.Snapshot() {
		if o.OutTradeNo == outTradeNo {
			return o
		}
	}
	t.Fatalf("no order %s", outTradeNo)
	return wechatsim.OrderState{}
}

// refundNote waits for a refund notification and returns its decrypted refund.
func refundNote(t *testing.T, f *fixture, rcv *receiver) (wechatsim.Event, wechatsim.RefundInfo) {
	t.Helper()
	d := rcv.next(t)
	if err := verifyPlatform(f.pki.Platform.Cert, d.header, d.body, time.Now()); err != nil {
		t.Fatalf("refund notification signature: %v", err)
	}
	ev := decodeJSON[wechatsim.Event](t, d.body)
	if ev.Resource.OriginalType != "refund" || ev.Resource.AssociatedData != "refund" {
		t.Fatalf("resource %+v", ev.Resource)
	}
	return ev, decodeJSON[wechatsim.RefundInfo](t, openResource(t, f.pki.APIv3Key, ev))
}

// TestRefundProcessingThenSuccess: a processing refund becomes SUCCESS at its second query and is
// notified; a repeated request with the same out_refund_no answers the same refund and pays
// nothing back again; more than was paid is refused.
func TestRefundProcessingThenSuccess(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	paidOrder(t, f, "FP-refund-01", 27800)
	rcv := newReceiver(t, http.StatusNoContent)
	if err := f.sim.SetRefundMode(wechatsim.ModeProcessing); err != nil {
		t.Fatal(err)
	}
	r := f.merchant.do(t, http.MethodPost, "/v3/refund/domestic/refunds", refundBody("FP-refund-01", "RF0001", rcv.url, 27800, 27800))
	first := decodeJSON[wechatsim.RefundInfo](t, r.body)
	if r.status != http.StatusOK || first.Status != wechatsim.RefundProcessing || first.RefundID == "" || first.Amount.Refund != 27800 {
		t.Fatalf("refund: %d %s", r.status, r.body)
	}
	for i, want := range []string{wechatsim.RefundProcessing, wechatsim.RefundSuccess} {
		q := f.merchant.do(t, http.MethodGet, "/v3/refund/domestic/refunds/RF0001", nil)
		if got := decodeJSON[wechatsim.RefundInfo](t, q.body); q.status != http.StatusOK || got.Status != want {
			t.Fatalf("query %d: %d %s, want %s", i+1, q.status, q.body, want)
		}
	}
	ev, info := refundNote(t, f, rcv)
	if ev.EventType != "REFUND.SUCCESS" || info.RefundStatus != "SUCCESS" || info.OutRefundNo != "RF0001" || info.RefundID != first.RefundID ||
		info.MchID != wechatsim.DefaultMchID || info.SuccessTime == "" {
		t.Fatalf("notification %s %+v", ev.EventType, info)
	}
	again := f.merchant.do(t, http.MethodPost, "/v3/refund/domestic/refunds", refundBody("FP-refund-01", "RF0001", rcv.url, 27800, 27800))
	if got := decodeJSON[wechatsim.RefundInfo](t, again.body); again.status != http.StatusOK || got.RefundID != first.RefundID || got.Status != "SUCCESS" {
		t.Fatalf("repeat: %d %s", again.status, again.body)
	}
	wantError(t, f.merchant.do(t, http.MethodPost, "/v3/refund/domestic/refunds", refundBody("FP-refund-01", "RF0002", rcv.url, 1, 27800)),
		http.StatusBadRequest, "NOT_ENOUGH")
	wantError(t, f.merchant.do(t, http.MethodPost, "/v3/refund/domestic/refunds", refundBody("FP-refund-01", "RF0001", rcv.url, 100, 27800)),
		http.StatusBadRequest, "INVALID_REQUEST")
	wantError(t, f.merchant.do(t, http.MethodGet, "/v3/refund/domestic/refunds/RF9999", nil), http.StatusNotFound, "RESOURCE_NOT_EXISTS")
	if st := orderState(t, f, "FP-refund-01"); st.Refunded != 27800 || len(st.Refunds) != 1 || st.Refunds[0].Requests != 2 {
		t.Fatalf("state: refunded %d, refunds %+v", st.Refunded, st.Refunds)
	}
}

// TestRefundTimeoutRefundsOnce: in timeout mode the refund is made but its first request is never
// answered; the retry with the same out_refund_no answers SUCCESS; the money is back once.
func TestRefundTimeoutRefundsOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	paidOrder(t, f, "FP-refund-02", 5000)
	if err := f.sim.SetRefundMode(wechatsim.ModeTimeout); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := f.merchant.try(ctx, http.MethodPost, "/v3/refund/domestic/refunds", refundBody("FP-refund-02", "RF0003", "", 5000, 5000)); err == nil {
		t.Fatal("the first request was answered")
	}
	if st := orderState(t, f, "FP-refund-02"); st.Refunded != 5000 {
		t.Fatalf("refunded %d after the timed-out request", st.Refunded)
	}
	r := f.merchant.do(t, http.MethodPost, "/v3/refund/domestic/refunds", refundBody("FP-refund-02", "RF0003", "", 5000, 5000))
	if got := decodeJSON[wechatsim.RefundInfo](t, r.body); r.status != http.StatusOK || got.Status != "SUCCESS" {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	if st := orderState(t, f, "FP-refund-02"); st.Refunded != 5000 || len(st.Refunds) != 1 {
		t.Fatalf("state: refunded %d, %+v", st.Refunded, st.Refunds)
	}
}

// TestRefundAbnormalAndClosed: an abnormal refund is notified ABNORMAL and, once resolved,
// SUCCESS; a closed one is notified CLOSED and pays nothing back.
func TestRefundAbnormalAndClosed(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *wechatsim.Config) { c.Duplicates = 2 })
	paidOrder(t, f, "FP-refund-03", 100)
	paidOrder(t, f, "FP-refund-04", 100)
	rcv := newReceiver(t, http.StatusNoContent)
	if err := f.sim.SetRefundMode(wechatsim.ModeAbnormal); err != nil {
		t.Fatal(err)
	}
	f.merchant.do(t, http.MethodPost, "/v3/refund/domestic/refunds", refundBody("FP-refund-03", "RF0004", rcv.url, 100, 100))
	for range 2 { // each round sent twice
		if ev, info := refundNote(t, f, rcv); ev.EventType != "REFUND.ABNORMAL" || info.RefundStatus != "ABNORMAL" {
			t.Fatalf("notification %s %+v", ev.EventType, info)
		}
	}
	if r := f.post(t, "/_sandbox/wechat/refunds/RF0004/resolve", "application/json", nil); r.status != http.StatusNoContent {
		t.Fatalf("resolve: %d %s", r.status, r.body)
	}
	for range 2 {
		if ev, info := refundNote(t, f, rcv); ev.EventType != "REFUND.SUCCESS" || info.RefundStatus != "SUCCESS" {
			t.Fatalf("notification %s %+v", ev.EventType, info)
		}
	}
	if r := f.post(t, "/_sandbox/wechat/refund-mode", "application/json", []byte(`{"mode":"closed"}`)); r.status != http.StatusOK {
		t.Fatalf("refund-mode: %d %s", r.status, r.body)
	}
	r := f.merchant.do(t, http.MethodPost, "/v3/refund/domestic/refunds", refundBody("FP-refund-04", "RF0005", rcv.url, 100, 100))
	if got := decodeJSON[wechatsim.RefundInfo](t, r.body); got.Status != "CLOSED" {
		t.Fatalf("closed refund: %s", r.body)
	}
	if ev, _ := refundNote(t, f, rcv); ev.EventType != "REFUND.CLOSED" {
		t.Fatalf("event %s", ev.EventType)
	}
	if a, b := orderState(t, f, "FP-refund-03").Refunded, orderState(t, f, "FP-refund-04").Refunded; a != 100 || b != 0 {
		t.Fatalf("refunded %d and %d", a, b)
	}
	if r := f.post(t, "/_sandbox/wechat/refund-mode", "application/json", []byte(`{"mode":"sometimes"}`)); r.status != http.StatusBadRequest {
		t.Fatalf("unknown mode: %d", r.status)
	}
}

// try is do without failing the test: the error of a request that got no answer.
func (m *merchant) try(ctx context.Context, method, pathQuery string, body any) (response, error) {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, m.base+pathQuery, bytes.NewReader(raw))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	ts := strconv.FormatInt(m.now().Unix(), 10)
	nonce := fmt.Sprintf("%d", time.Now().UnixNano())
	digest := sha256.Sum256([]byte(method + "\n" + pathQuery + "\n" + ts + "\n" + nonce + "\n" + string(raw) + "\n"))
	sig, err := rsa.SignPKCS1v15(nil, m.key, crypto.SHA256, digest[:])
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", fmt.Sprintf(`WECHATPAY2-SHA256-RSA2048 mchid="%s",nonce_str="%s",timestamp="%s",serial_no="%s",signature="%s"`,
		m.mchid, nonce, ts, m.serial, base64.StdEncoding.EncodeToString(sig)))
	resp, err := m.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: out}, err
}
