package envelope_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"finepay/shared/envelope"
)

func sampleBill() *envelope.BillPublished {
	return &envelope.BillPublished{
		BillNo: "B2026112700000001", Token: "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4", DecisionNo: "2301021000123456",
		PartyMasked: "张*", PlateMasked: "黑A****5", Fine: 20000, ServedDate: "2026-11-20", LateFeeApplies: true,
		UnitName: "哈尔滨市公安局交通警察支队", ItemName: "罚没收入", FormNo: "23010020261127000001", PayCode: "23010020261127000001",
		IssuedAt: time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC),
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	e, err := envelope.New("bp:B2026112700000001", "B2026112700000001", time.Date(2026, 11, 27, 2, 0, 0, 123456789, time.UTC), sampleBill())
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := envelope.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Type != e.Type || got.Key != e.Key || !got.CreatedAt.Equal(e.CreatedAt) || !bytes.Equal(got.Payload, e.Payload) {
		t.Fatalf("round trip changed the envelope: %+v vs %+v", got, e)
	}
	if got.CreatedAt.Nanosecond()%1000 != 0 {
		t.Fatalf("created time not truncated to microseconds: %v", got.CreatedAt)
	}
	p, err := got.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if p.(*envelope.BillPublished).Fine != 20000 {
		t.Fatalf("payload fine = %d", p.(*envelope.BillPublished).Fine)
	}
}

func TestEnvelopeRejects(t *testing.T) {
	t.Parallel()
	good, _ := envelope.New("id-1", "k", time.Unix(1, 0), sampleBill())
	enc, _ := good.Marshal()
	tests := []struct {
		name string
		in   []byte
	}{
		{"fail/empty", nil},
		{"fail/bad-magic", append([]byte("XXXX"), enc[4:]...)},
		{"fail/trailing", append(bytes.Clone(enc), 0)},
		{"fail/truncated", enc[:len(enc)-1]},
		{"fail/non-minimal-length", append([]byte("FPM1\x84\x00"), enc[5:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := envelope.Unmarshal(tt.in); !errors.Is(err, envelope.ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestCatalogueDefaultDeny(t *testing.T) {
	t.Parallel()
	e := envelope.Envelope{ID: "x", Type: "bill.deleted", CreatedAt: time.Unix(1, 0), Payload: []byte("{}")}
	if err := e.Check(); !errors.Is(err, envelope.ErrUnknownType) {
		t.Fatalf("unknown type: err = %v", err)
	}
	e = envelope.Envelope{ID: "x", Type: envelope.TypeBillPublished, CreatedAt: time.Unix(1, 0), Payload: []byte(`{"bill_no":"B1","extra":1}`)}
	if err := e.Check(); !errors.Is(err, envelope.ErrInvalidPayload) {
		t.Fatalf("unknown field: err = %v", err)
	}
	bad := sampleBill()
	bad.Fine = -1
	if _, err := envelope.New("x", "k", time.Unix(1, 0), bad); !errors.Is(err, envelope.ErrInvalidPayload) {
		t.Fatalf("negative fine: err = %v", err)
	}
	p := &envelope.PaymentConfirmed{BillNo: "B1", OrderNo: "O1", Channel: "wechat", ChannelTradeNo: "4200", Amount: 100, Fine: 90, LateFee: 20, PaidAt: time.Unix(1, 0)}
	if _, err := envelope.New("x", "k", time.Unix(1, 0), p); !errors.Is(err, envelope.ErrInvalidPayload) {
		t.Fatalf("amounts that do not add up: err = %v", err)
	}
}

// TestCataloguePayloadIsStrictJSON: a payload is one JSON object whose member names are spelt
// exactly as the schema's, each once, with nothing after it and valid UTF-8 throughout; the
// same bill in any looser spelling is refused, as a payload with a field the schema lacks is.
func TestCataloguePayloadIsStrictJSON(t *testing.T) {
	t.Parallel()
	good, err := envelope.New("bp:B1", "B1", time.Unix(1, 0), sampleBill())
	if err != nil {
		t.Fatal(err)
	}
	payload := string(good.Payload)
	cases := map[string]string{
		"name in other case": strings.Replace(payload, `"bill_no"`, `"Bill_No"`, 1),
		"name twice":         strings.Replace(payload, `{"bill_no":"B2026112700000001",`, `{"bill_no":"B2026112700000001","bill_no":"B2",`, 1),
		"trailing brace":     payload + "}",
		"second object":      payload + "{}",
		"invalid UTF-8":      strings.Replace(payload, "罚没收入", "罚没\xff收入", 1),
	}
	for name, p := range cases {
		if p == payload {
			t.Fatalf("%s: the case did not change the payload", name)
		}
		e := good
		e.Payload = []byte(p)
		if err := e.Check(); !errors.Is(err, envelope.ErrInvalidPayload) {
			t.Errorf("%s: err = %v, want ErrInvalidPayload", name, err)
		}
	}
	if err := (envelope.Envelope{ID: good.ID, Type: good.Type, Key: good.Key, CreatedAt: good.CreatedAt, Payload: []byte(payload + " \n")}).Check(); err != nil {
		t.Errorf("trailing whitespace: %v", err)
	}
}

// TestBillLookupHashOptional: lookup_hash is optional: a bill without it encodes exactly as
// before the field existed (no key in the payload), one with it round-trips, and anything but
// 64 lowercase hex characters is refused.
func TestBillLookupHashOptional(t *testing.T) {
	t.Parallel()
	at := time.Unix(1700000000, 0)
	plain, err := envelope.New("bp:1", "B1", at, sampleBill())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plain.Payload, []byte("lookup_hash")) {
		t.Fatalf("a bill without a lookup hash carries the key: %s", plain.Payload)
	}
	withHash := sampleBill()
	withHash.LookupHash = strings.Repeat("0f", 32)
	e, err := envelope.New("bp:1", "B1", at, withHash)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := envelope.Unmarshal(enc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := back.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if got := p.(*envelope.BillPublished).LookupHash; got != withHash.LookupHash {
		t.Fatalf("lookup_hash = %q after the round trip", got)
	}
	for _, bad := range []string{"0F" + strings.Repeat("0f", 31), strings.Repeat("0f", 31), strings.Repeat("0g", 32), strings.Repeat("0f", 33)} {
		b := sampleBill()
		b.LookupHash = bad
		if _, err := envelope.New("bp:1", "B1", at, b); !errors.Is(err, envelope.ErrInvalidPayload) {
			t.Errorf("lookup_hash %q: err = %v", bad, err)
		}
	}
}

func TestLaneStablePerKey(t *testing.T) {
	t.Parallel()
	a, _ := envelope.Lane(envelope.TypeBillPublished, "B1", 4)
	b, _ := envelope.Lane(envelope.TypeReceiptIssued, "B1", 4)
	if a != b {
		t.Fatalf("one key, two lanes: %s %s", a, b)
	}
	c, _ := envelope.Lane(envelope.TypePaymentConfirmed, "B1", 4)
	if c[:len(envelope.ToCore)] != string(envelope.ToCore) {
		t.Fatalf("payment lane %s not toward the core", c)
	}
}

func FuzzEnvelopeRoundTrip(f *testing.F) {
	e, _ := envelope.New("bp:1", "B1", time.Unix(1700000000, 0), sampleBill())
	enc, _ := e.Marshal()
	f.Add(enc)
	hashed := sampleBill()
	hashed.LookupHash = strings.Repeat("a1", 32)
	e, _ = envelope.New("bp:2", "B1", time.Unix(1700000000, 0), hashed)
	enc, _ = e.Marshal()
	f.Add(enc)
	f.Add([]byte("FPM1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := envelope.Unmarshal(b)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatalf("decoded envelope does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("not canonical:\n in %x\nout %x", b, again)
		}
	})
}

func ExampleEnvelope_Marshal() {
	e := envelope.Envelope{ID: "m1", Type: "t", Key: "k", CreatedAt: time.UnixMicro(1), Payload: []byte("{}")}
	b, _ := e.Marshal()
	fmt.Println(hex.EncodeToString(b))
	// Output: 46504d31026d310174016b0000000000000001027b7d
}
