package field_test

import (
	"errors"
	"strings"
	"testing"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
)

func TestChecker(t *testing.T) {
	t.Parallel()
	var v field.Checker
	v.Digits("decision_no", "2301021000123", 15, 20)
	v.Digits("form_no", "", 20, 20)
	v.OptionalDigits("receipt_no", "", 10)
	v.OptionalDigits("receipt_code", "1234567", 8)
	v.Positive("fine", 0)
	v.NonNegative("late_fee", 0)
	v.Time("paid_at", "2026-11-27T10:05:00+08:00")
	v.Time("issued_at", "2026-11-27")
	v.Date("served_date", "2026-02-30")
	v.Match("order_no", "FP-1_a", field.OrderNo, "an order number")
	err := v.Err()
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != field.CodeInvalid {
		t.Fatalf("err %v", err)
	}
	for _, want := range []string{"decision_no: must be 15-20 digits", "form_no: is required", "receipt_code: must be 8 digits",
		"fine: must be > 0", "issued_at: must be an RFC 3339 time", "served_date: must be a date"} {
		if !strings.Contains(ae.Message, want) {
			t.Errorf("message %q lacks %q", ae.Message, want)
		}
	}
	for _, unwanted := range []string{"receipt_no", "late_fee", "paid_at", "order_no"} {
		if strings.Contains(ae.Message, unwanted) {
			t.Errorf("message %q names the valid field %s", ae.Message, unwanted)
		}
	}
	var ok field.Checker
	ok.Digits("x", "123", 3, 3)
	if ok.Err() != nil || !ok.OK() {
		t.Errorf("valid input: %v", ok.Err())
	}
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	type req struct {
		Fine int64  `json:"fine"`
		Name string `json:"name"`
	}
	var r req
	if err := field.DecodeJSON(strings.NewReader(`{"fine":20000,"name":"x"}`), &r); err != nil || r.Fine != 20000 {
		t.Fatalf("valid: %v %+v", err, r)
	}
	for name, body := range map[string]string{
		"fail/unknown-field": `{"fine":1,"amount":2}`,
		"fail/float":         `{"fine":200.5}`,
		"fail/string-amount": `{"fine":"200"}`,
		"fail/two-objects":   `{}{}`,
		"fail/trailing":      `{} x`,
		"fail/empty":         ``,
		"fail/array":         `[]`,
	} {
		err := field.DecodeJSON(strings.NewReader(body), &r)
		var ae *apierr.Error
		if !errors.As(err, &ae) || ae.Code != "INVALID_JSON" || ae.Status != 400 {
			t.Errorf("%s: %v", name, err)
		}
	}
}
