package unionpaysim_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"finepay/sandbox/internal/unionpaysim"
)

// paidConsume places and pays a consume and returns its queryId.
func paidConsume(t *testing.T, f *fixture, orderID string, at time.Time, amount string) string {
	t.Helper()
	rcv := newReceiver(t, http.StatusOK)
	a := f.merchant.consume(t, orderID, at, amount, rcv.url)
	code := qrPattern.FindStringSubmatch(a["qrCode"])[1]
	status, body := f.post(t, "/unionpay/robot/pay", "application/json", `{"code":"`+code+`"}`)
	if status != http.StatusOK {
		t.Fatalf("robot pay: %d %s", status, body)
	}
	var paid map[string]string
	json.Unmarshal([]byte(body), &paid)
	waitDone(t, f.sim, orderID)
	return paid["queryId"]
}

func refundReq(orderID string, at time.Time, origQryID, amount, backURL string) map[string]string {
	return map[string]string{"txnType": "04", "txnSubType": "00", "bizType": "000000", "channelType": "08", "accessType": "0",
		"orderId": orderID, "txnTime": txnTime(at), "txnAmt": amount, "origQryId": origQryID, "backUrl": backURL}
}

func orderRefunds(f *fixture, orderID string) (int64, []unionpaysim.RefundState) {
	for _, o := range f.sim.Snapshot() {
		if o.OrderID == orderID {
			return o.Refunded, o.Refunds
		}
	}
	return -1, nil
}

// TestRefundProcessingNotifiedAndQueried: a refund (txnType 04) is accepted with respCode 00,
// processing (05) at the first query, refunded (00) at the second, and notified to backUrl; the
// same request again is the same refund; more than was paid is refused.
func TestRefundProcessingNotifiedAndQueried(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	at := f.clock.Now()
	qid := paidConsume(t, f, "FP20261127100000000000000101", at, "27800")
	rcv := newReceiver(t, http.StatusOK)
	f.sim.SetRefundMode(unionpaysim.ModeProcessing)
	rat := at.Add(time.Minute)
	req := refundReq("RF2026112700000101", rat, qid, "27800", rcv.url)
	a := f.merchant.call(t, "/backTransReq.do", req)
	if a["respCode"] != "00" || a["queryId"] == "" || a["orderId"] != "RF2026112700000101" {
		t.Fatalf("refund: %v", a)
	}
	for _, want := range []string{"05", "00"} {
		if q := f.merchant.query(t, "RF2026112700000101", rat); q["respCode"] != "00" || q["origRespCode"] != want || q["txnAmt"] != "27800" {
			t.Fatalf("query: %v, want origRespCode %s", q, want)
		}
	}
	d := rcv.next(t)
	n := formMap(d.form)
	if err := f.merchant.verifyUnionPay(n); err != nil {
		t.Fatalf("refund notification signature: %v", err)
	}
	if n["txnType"] != "04" || n["respCode"] != "00" || n["origQryId"] != qid || n["orderId"] != "RF2026112700000101" || n["queryId"] != a["queryId"] {
		t.Fatalf("refund notification %v", n)
	}
	if again := f.merchant.call(t, "/backTransReq.do", req); again["respCode"] != "00" || again["queryId"] != a["queryId"] {
		t.Fatalf("repeat: %v", again)
	}
	if over := f.merchant.call(t, "/backTransReq.do", refundReq("RF2026112700000102", rat, qid, "1", rcv.url)); over["respCode"] != "31" {
		t.Fatalf("over-refund: %v", over)
	}
	if n, rs := orderRefunds(f, "FP20261127100000000000000101"); n != 27800 || len(rs) != 1 || rs[0].Requests != 2 {
		t.Fatalf("refunded %d, %+v", n, rs)
	}
}

// TestRefundAbnormalThenResolved: an abnormal refund answers respCode 03 and stays processing
// until resolved; then it is notified and refunded once.
func TestRefundAbnormalThenResolved(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	at := f.clock.Now()
	qid := paidConsume(t, f, "FP20261127100000000000000103", at, "500")
	rcv := newReceiver(t, http.StatusOK)
	f.sim.SetRefundMode(unionpaysim.ModeAbnormal)
	req := refundReq("RF2026112700000103", at, qid, "500", rcv.url)
	if a := f.merchant.call(t, "/backTransReq.do", req); a["respCode"] != "03" {
		t.Fatalf("abnormal refund: %v", a)
	}
	if q := f.merchant.query(t, "RF2026112700000103", at); q["origRespCode"] != "05" {
		t.Fatalf("query: %v", q)
	}
	if code, _ := f.post(t, "/_sandbox/unionpay/refunds/RF2026112700000103/resolve", "application/json", ""); code != http.StatusNoContent {
		t.Fatalf("resolve: %d", code)
	}
	if n := formMap(rcv.next(t).form); n["respCode"] != "00" || n["txnType"] != "04" {
		t.Fatalf("notification %v", n)
	}
	if q := f.merchant.query(t, "RF2026112700000103", at); q["origRespCode"] != "00" {
		t.Fatalf("query: %v", q)
	}
	if n, _ := orderRefunds(f, "FP20261127100000000000000103"); n != 500 {
		t.Fatalf("refunded %d", n)
	}
}
