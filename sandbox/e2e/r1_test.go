package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestR1RefundInstructedBy12123: a decision paid through the 12123 platform (flow P1, Alipay) is
// refunded on the platform's instruction. The instruction is sent twice (the same platform
// refund number) and is one refund. The core applies to the e-receipt platform, waits for the
// non-tax review, has the gateway refund along the original route, red-flushes the receipt and
// tells the non-tax system and the platform.
func TestR1RefundInstructedBy12123(t *testing.T) {
	sys := startSystem(t, backends[0])
	ctx := browser(t)
	bill, orderNo := startIn12123(t, ctx, sys)
	openCashier(t, ctx, bill)
	payInSimulator(t, ctx, "alipay")
	receiptNo := checkResult(t, ctx, sys, bill)

	instruction := map[string]any{"isp_refund_no": "IR" + orderNo, "isp_order_no": orderNo, "amount": int64(bill.total),
		"reason": "处罚决定撤销"}
	var refundNo string
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		var out struct {
			Core struct {
				Status int `json:"status"`
				Body   struct {
					RefundNo string `json:"refund_no"`
					State    string `json:"state"`
				} `json:"answer"`
			} `json:"core"`
		}
		postJSON(t, sys.SandboxURL+"/_sandbox/isp/refunds", instruction, &out)
		if out.Core.Status != want || out.Core.Body.RefundNo == "" || (refundNo != "" && out.Core.Body.RefundNo != refundNo) {
			t.Fatalf("instruction %d: core answered %d %+v", i, out.Core.Status, out.Core.Body)
		}
		refundNo = out.Core.Body.RefundNo
	}
	// A second refund while this one is in flight is refused.
	var other struct {
		Core struct {
			Status int `json:"status"`
		} `json:"core"`
	}
	instruction["isp_refund_no"] = "IR2" + orderNo
	postJSON(t, sys.SandboxURL+"/_sandbox/isp/refunds", instruction, &other)
	if other.Core.Status != http.StatusConflict {
		t.Errorf("a second refund while one is in flight: %d, want 409", other.Core.Status)
	}

	var state struct {
		Alipay []struct {
			Refunded int64 `json:"refunded"`
		} `json:"alipay_orders"`
		Outcomes []struct {
			Party    string `json:"party"`
			Status   string `json:"status"`
			RefundNo string `json:"refund_no"`
		} `json:"refund_outcomes"`
		Receipts []struct {
			ReceiptNo    string `json:"receipt_no"`
			RedNo        string `json:"red_no"`
			OriginalNo   string `json:"original_no"`
			OriginalCode string `json:"original_code"`
		} `json:"receipts"`
	}
	eventually(t, "the refund to end and the parties told", 90*time.Second, func() bool {
		getJSON(t, sys.SandboxURL+"/_sandbox/state", &state)
		return len(state.Outcomes) == 2 && len(state.Receipts) == 2
	})
	for _, o := range state.Outcomes {
		if o.Status != "refunded" || o.RefundNo != refundNo || (o.Party != "nontax" && o.Party != "isp") {
			t.Errorf("outcome %+v", o)
		}
	}
	if len(state.Alipay) != 1 || state.Alipay[0].Refunded != int64(bill.total) {
		t.Errorf("alipay orders %+v: want %d back", state.Alipay, bill.total)
	}
	var original, red int
	for _, r := range state.Receipts {
		switch {
		case r.ReceiptNo == receiptNo && r.RedNo != "":
			original++
		case r.OriginalNo == receiptNo:
			red++
		}
	}
	if original != 1 || red != 1 {
		t.Errorf("receipts %+v: want the original red-flushed and one red receipt referring to it", state.Receipts)
	}
	var q struct {
		Core struct {
			Status int `json:"status"`
		} `json:"core"`
	}
	getJSON(t, fmt.Sprintf("%s/_sandbox/isp/payments/%s", sys.SandboxURL, orderNo), &q)
	if q.Core.Status != http.StatusOK {
		t.Errorf("the platform's query after the refund: %d", q.Core.Status)
	}
}
