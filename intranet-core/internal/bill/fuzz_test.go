package bill_test

import (
	"strings"
	"testing"

	"finepay/intranet-core/internal/bill"
	"finepay/shared/bizdate"
)

// FuzzDecodeCreate feeds the window API's body decoder and validator arbitrary bytes: they must
// never panic, and whatever validates must hold only well-formed fields.
func FuzzDecodeCreate(f *testing.F) {
	f.Add(`{"decision_no":"2301021000123456","violation_serial":"2301021000000001","party_name":"张三丰","plate":"黑A12345","fine":20000,"served_date":"2026-11-20","unit_code":"230100","item_code":"103050101"}`)
	f.Add(`{"fine":1e400}`)
	f.Add(`{"plate":"黑A1234挂","late_fee_applies":false}`)
	f.Add(`[]`)
	f.Add(`{"decision_no":"2301021000123456"} {}`)
	today := bizdate.Date{Year: 2026, Month: 11, Day: 27}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := bill.DecodeCreate(strings.NewReader(body))
		if err != nil {
			return
		}
		req.Normalize()
		if req.Validate(today) != nil {
			return
		}
		if req.Fine <= 0 || req.Fine > bill.MaxFine || len(req.DecisionNo) < 15 || len(req.UnitCode) != 6 {
			t.Fatalf("validated %+v", req)
		}
	})
}
