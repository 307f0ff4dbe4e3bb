package alipaysim_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"finepay/sandbox/internal/alipaysim"
)

// paidTrade precreates and pays a trade.
func paidTrade(t *testing.T, f *fixture, no, amount string) {
	t.Helper()
	rcv := newReceiver(t, "success")
	biz, extra := precreate(no, rcv.url, amount)
	if a := f.app.call(t, "alipay.trade.precreate", biz, extra); a["code"] != "10000" {
		t.Fatalf("precreate: %v", a)
	}
	if code, body := f.post(t, "/alipay/robot/pay", "application/json", `{"out_trade_no":"`+no+`"}`); code != http.StatusOK {
		t.Fatalf("pay: %d %s", code, body)
	}
	waitDone(t, f.sim, no)
}

func refunded(f *fixture, no string) (int64, []alipaysim.RefundState) {
	for _, o := range f.sim.Snapshot() {
		if o.OutTradeNo == no {
			return o.Refunded, o.Refunds
		}
	}
	return -1, nil
}

// TestRefundModes: success (fund_change Y, and N for the same request again, refunded once);
// processing resolved by query; abnormal (ACQ.SYSTEM_ERROR) until resolved; refused; a refund
// Alipay does not have is answered without refund data.
func TestRefundModes(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	paidTrade(t, f, "FP20261127100001", "278.00")
	req := map[string]string{"out_trade_no": "FP20261127100001", "refund_amount": "100.00", "out_request_no": "RF01", "refund_reason": "退款"}
	if a := f.app.call(t, "alipay.trade.refund", req, nil); a["code"] != "10000" || a["fund_change"] != "Y" || a["gmt_refund_pay"] == nil {
		t.Fatalf("refund: %v", a)
	}
	if a := f.app.call(t, "alipay.trade.refund", req, nil); a["code"] != "10000" || a["fund_change"] != "N" || a["refund_fee"] != "100.00" {
		t.Fatalf("the same request again: %v", a)
	}
	f.sim.SetRefundMode(alipaysim.ModeProcessing)
	req2 := map[string]string{"out_trade_no": "FP20261127100001", "refund_amount": "100.00", "out_request_no": "RF02"}
	if a := f.app.call(t, "alipay.trade.refund", req2, nil); a["fund_change"] != "N" {
		t.Fatalf("processing refund: %v", a)
	}
	q := map[string]string{"out_trade_no": "FP20261127100001", "out_request_no": "RF02"}
	for _, want := range []string{"REFUND_PROCESSING", "REFUND_SUCCESS"} {
		if a := f.app.call(t, "alipay.trade.fastpay.refund.query", q, nil); a["refund_status"] != want || a["refund_amount"] != "100.00" {
			t.Fatalf("query: %v, want %s", a, want)
		}
	}
	f.sim.SetRefundMode(alipaysim.ModeAbnormal)
	req3 := map[string]string{"out_trade_no": "FP20261127100001", "refund_amount": "78.00", "out_request_no": "RF03"}
	wantSub(t, f.app.call(t, "alipay.trade.refund", req3, nil), "20000", "ACQ.SYSTEM_ERROR")
	if a := f.app.call(t, "alipay.trade.fastpay.refund.query", map[string]string{"out_trade_no": "FP20261127100001", "out_request_no": "RF03"}, nil); a["code"] != "10000" || a["refund_status"] != nil {
		t.Fatalf("a refund not made: %v", a)
	}
	if code, _ := f.post(t, "/_sandbox/alipay/refunds/RF03/resolve", "application/json", ""); code != http.StatusNoContent {
		t.Fatalf("resolve: %d", code)
	}
	if a := f.app.call(t, "alipay.trade.refund", req3, nil); a["fund_change"] != "N" {
		t.Fatalf("after resolve: %v", a)
	}
	f.sim.SetRefundMode(alipaysim.ModeClosed)
	wantSub(t, f.app.call(t, "alipay.trade.refund", map[string]string{"out_trade_no": "FP20261127100001", "refund_amount": "0.01", "out_request_no": "RF04"}, nil),
		"40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR")
	if n, rs := refunded(f, "FP20261127100001"); n != 27800 || len(rs) != 3 {
		t.Fatalf("refunded %d, %+v", n, rs)
	}
}

// TestRefundTimeoutRefundsOnce: the first request of a timeout-mode refund is never answered, but
// the refund is made; the retry with the same out_request_no answers fund_change N; once.
func TestRefundTimeoutRefundsOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	paidTrade(t, f, "FP20261127100002", "50.00")
	f.sim.SetRefundMode(alipaysim.ModeTimeout)
	req := map[string]string{"out_trade_no": "FP20261127100002", "refund_amount": "50.00", "out_request_no": "RF05"}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := f.app.send(ctx, "alipay.trade.refund", req); err == nil {
		t.Fatal("the first request was answered")
	}
	if a := f.app.call(t, "alipay.trade.refund", req, nil); a["code"] != "10000" || a["fund_change"] != "N" {
		t.Fatalf("retry: %v", a)
	}
	if n, rs := refunded(f, "FP20261127100002"); n != 5000 || len(rs) != 1 || rs[0].Requests != 2 {
		t.Fatalf("refunded %d, %+v", n, rs)
	}
}

// send signs and sends a method and reads nothing: the error of a request that got no answer.
func (a *app) send(ctx context.Context, method string, biz any) error {
	bizJSON, _ := json.Marshal(biz)
	p := map[string]string{"app_id": a.appID, "method": method, "format": "JSON", "charset": "utf-8", "sign_type": "RSA2",
		"timestamp": a.now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02 15:04:05"), "version": "1.0",
		"biz_content": string(bizJSON)}
	sum := sha256.Sum256([]byte(rsa2Text(p, "sign")))
	sig, err := rsa.SignPKCS1v15(nil, a.key, crypto.SHA256, sum[:])
	if err != nil {
		return err
	}
	form := url.Values{}
	for k, v := range p {
		form.Set(k, v)
	}
	form.Set("sign", base64.StdEncoding.EncodeToString(sig))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.gateway, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
