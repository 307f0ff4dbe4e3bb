package envelope_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"finepay/shared/envelope"
)

func sampleInstruction() *envelope.RefundInstructed {
	return &envelope.RefundInstructed{RefundNo: "RF2026112700000001", Channel: "wechat", OrderNo: "FP20261127101500123456789012",
		ChannelTradeNo: "4200000123202611271234567890", PaidAmount: 27800, Amount: 27800, Reason: "重复缴款退款"}
}

func sampleResult() *envelope.RefundResult {
	return &envelope.RefundResult{RefundNo: "RF2026112700000001", Channel: "wechat", Status: envelope.RefundSuccess,
		ChannelRefundNo: "50300000012026112700000000001", RefundedAmount: 27800, At: time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC),
		Detail: "SUCCESS"}
}

// TestRefundMessagesRoundTrip: both refund messages travel the canonical encoding unchanged, in
// their catalogue direction, with their IDs within the envelope's bounds.
func TestRefundMessagesRoundTrip(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("9", 40)
	for _, tt := range []struct {
		id  string
		p   envelope.Payload
		dir envelope.Direction
	}{
		{envelope.RefundInstructionID(long), sampleInstruction(), envelope.ToGateway},
		{envelope.RefundResultID(long, envelope.RefundProcessing), sampleResult(), envelope.ToCore},
	} {
		e, err := envelope.New(tt.id, long, time.Unix(1700000000, 5000), tt.p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := envelope.Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		p, err := back.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p, tt.p) {
			t.Fatalf("round trip: %+v, want %+v", p, tt.p)
		}
		if s, _ := envelope.Lookup(tt.p.MessageType()); s.Direction != tt.dir {
			t.Fatalf("%s goes %s", tt.p.MessageType(), s.Direction)
		}
	}
}

func TestRefundMessagesRejected(t *testing.T) {
	t.Parallel()
	ins := func(f func(r *envelope.RefundInstructed)) envelope.Payload {
		r := sampleInstruction()
		f(r)
		return r
	}
	res := func(f func(r *envelope.RefundResult)) envelope.Payload {
		r := sampleResult()
		f(r)
		return r
	}
	for name, p := range map[string]envelope.Payload{
		"fail/refund-no-underscore":   ins(func(r *envelope.RefundInstructed) { r.RefundNo = "RF_1" }),
		"fail/refund-no-41":           ins(func(r *envelope.RefundInstructed) { r.RefundNo = strings.Repeat("1", 41) }),
		"fail/channel":                ins(func(r *envelope.RefundInstructed) { r.Channel = "bank" }),
		"fail/amount-zero":            ins(func(r *envelope.RefundInstructed) { r.Amount = 0 }),
		"fail/amount-over-paid":       ins(func(r *envelope.RefundInstructed) { r.Amount = r.PaidAmount + 1 }),
		"fail/reason-control":         ins(func(r *envelope.RefundInstructed) { r.Reason = "a\nb" }),
		"fail/reason-long":            ins(func(r *envelope.RefundInstructed) { r.Reason = strings.Repeat("退", 81) }),
		"fail/trade-no":               ins(func(r *envelope.RefundInstructed) { r.ChannelTradeNo = "" }),
		"fail/status":                 res(func(r *envelope.RefundResult) { r.Status = "closed" }),
		"fail/success-without-amount": res(func(r *envelope.RefundResult) { r.RefundedAmount = 0 }),
		"fail/success-without-id":     res(func(r *envelope.RefundResult) { r.ChannelRefundNo = "" }),
		"fail/failed-with-amount":     res(func(r *envelope.RefundResult) { r.Status = envelope.RefundFailed }),
		"fail/no-time":                res(func(r *envelope.RefundResult) { r.At = time.Time{} }),
		"fail/detail-invalid-utf8":    res(func(r *envelope.RefundResult) { r.Detail = "\xff" }),
	} {
		if _, err := envelope.New("x", "k", time.Unix(1, 0), p); !errors.Is(err, envelope.ErrInvalidPayload) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	e := envelope.Envelope{ID: "x", Type: envelope.TypeRefundResult, CreatedAt: time.Unix(1, 0),
		Payload: []byte(`{"refund_no":"R1","channel":"wechat","status":"unknown","refunded_amount":0,"at":"2026-01-01T00:00:00Z","extra":1}`)}
	if err := e.Check(); !errors.Is(err, envelope.ErrInvalidPayload) {
		t.Fatalf("unknown field: err = %v", err)
	}
	if !envelope.RefundFinal(envelope.RefundSuccess) || !envelope.RefundFinal(envelope.RefundFailed) ||
		envelope.RefundFinal(envelope.RefundUnknown) || envelope.RefundFinal(envelope.RefundProcessing) {
		t.Fatal("RefundFinal")
	}
}

// FuzzRefundPayload: any payload the catalogue accepts for a refund type validates again and
// re-encodes to a payload that decodes to the same value.
func FuzzRefundPayload(f *testing.F) {
	for _, p := range []envelope.Payload{sampleInstruction(), sampleResult()} {
		e, _ := envelope.New("x", "k", time.Unix(1, 0), p)
		f.Add(p.MessageType(), e.Payload)
	}
	f.Add(envelope.TypeRefundResult, []byte(`{"refund_no":"R1","channel":"alipay","status":"unknown","refunded_amount":0,"at":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		if typ != envelope.TypeRefundInstructed && typ != envelope.TypeRefundResult {
			typ = envelope.TypeRefundResult
		}
		p, err := envelope.Envelope{ID: "x", Type: typ, CreatedAt: time.Unix(1, 0), Payload: payload}.Decode()
		if err != nil {
			return
		}
		again, err := envelope.New("x", "k", time.Unix(1, 0), p)
		if err != nil {
			t.Fatalf("a decoded payload does not encode: %v", err)
		}
		p2, err := again.Decode()
		if err != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("re-encoding changed the payload: %v\n%s\n%s", err, payload, again.Payload)
		}
		if bytes.Equal(again.Payload, nil) {
			t.Fatal("empty payload")
		}
	})
}
