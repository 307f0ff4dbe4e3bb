package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"finepay/sandbox/internal/nontaxsim"
	"finepay/sandbox/internal/shanghai"
)

// TestNonTaxFormItems: a payment form carries the fine as its item; a payment reported with a
// late fee adds the late fee as an item of its own (加处罚款, its own revenue item), on the
// payment and on the form, in /_sandbox/state and on the form's readable view; a payment
// without a late fee has the fine item only.
func TestNonTaxFormItems(t *testing.T) {
	t.Parallel()
	e := start(t)
	c := e.core
	issue := func(decision, id string) nontaxsim.FormResponse {
		a := c.call(t, "POST", "/nontax/v1/forms", id, formBody(t, c, decision))
		if a.status != http.StatusOK {
			t.Fatalf("form: %d %s", a.status, a.body)
		}
		return decodeJSON[nontaxsim.FormResponse](t, a.body)
	}
	late, onTime := issue("230102100077701", "items-form-1"), issue("230102100077702", "items-form-2")
	fine := nontaxsim.Item{Kind: nontaxsim.KindFine, ItemCode: "103050101", ItemName: "公安交通违法罚没收入", Amount: 20000}
	st := e.state(t)
	if len(st.Forms) != 2 || len(st.Forms[0].Items) != 1 || st.Forms[0].Items[0] != fine {
		t.Fatalf("issued forms' items %+v", st.Forms)
	}

	report := func(f nontaxsim.FormResponse, id, orderNo string, lateFee int64) {
		a := c.call(t, "POST", "/nontax/v1/payments", id, map[string]any{
			"form_no": f.FormNo, "pay_code": f.PayCode, "order_no": orderNo, "amount": 20000 + lateFee,
			"fine": 20000, "late_fee": lateFee, "channel": "alipay", "channel_trade_no": "T" + orderNo,
			"paid_at": shanghai.Time(time.Now().Add(-time.Minute)),
		})
		if a.status != http.StatusOK {
			t.Fatalf("payment: %d %s", a.status, a.body)
		}
	}
	report(late, "items-pay-1", "FP20261127000101", 3000)
	report(onTime, "items-pay-2", "FP20261127000102", 0)

	lateItem := nontaxsim.Item{Kind: nontaxsim.KindLateFee, ItemCode: nontaxsim.LateFeeItemCode, ItemName: "公安交通违法加处罚款收入", Amount: 3000}
	st = e.state(t)
	if len(st.Payments) != 2 {
		t.Fatalf("payments %+v", st.Payments)
	}
	for _, got := range [][]nontaxsim.Item{st.Payments[0].Items, st.Forms[0].Items} {
		if len(got) != 2 || got[0] != fine || got[1] != lateItem {
			t.Errorf("items of the late payment: %+v", got)
		}
	}
	for _, got := range [][]nontaxsim.Item{st.Payments[1].Items, st.Forms[1].Items} {
		if len(got) != 1 || got[0] != fine {
			t.Errorf("items of the payment on time: %+v", got)
		}
	}

	a := e.get(t, "/_sandbox/nontax/forms/"+late.FormNo)
	page := string(a.body)
	for _, want := range []string{`id="item-fine-amount">¥200.00<`, `id="item-late_fee-amount">¥30.00<`, `id="items-total">¥230.00<`,
		"公安交通违法加处罚款收入", "FP20261127000101"} {
		if !strings.Contains(page, want) {
			t.Errorf("form view lacks %s:\n%s", want, page)
		}
	}
	if a.status != http.StatusOK || a.header.Get("Content-Security-Policy") == "" {
		t.Errorf("form view: %d, CSP %q", a.status, a.header.Get("Content-Security-Policy"))
	}
	if a := e.get(t, "/_sandbox/nontax/forms/99999999999999999999"); a.status != http.StatusNotFound {
		t.Errorf("unknown form: %d", a.status)
	}
}
