package bundle_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
	"finepay/shared/envelope"
	"finepay/shared/gm"
)

type keys struct {
	senderSign, receiverSign, receiverEnc *gm.PrivateKey
}

func newKeys(tb testing.TB) keys {
	tb.Helper()
	var k keys
	for _, p := range []**gm.PrivateKey{&k.senderSign, &k.receiverSign, &k.receiverEnc} {
		key, err := gm.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		*p = key
	}
	return k
}

func encode(tb testing.TB, envs ...envelope.Envelope) [][]byte {
	tb.Helper()
	out := make([][]byte, len(envs))
	for i, e := range envs {
		b, err := e.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func header(tb testing.TB, lane string, first int64) bundle.Header {
	tb.Helper()
	id, err := bundle.NewID(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return bundle.Header{BundleID: id, From: fixture.Intranet, To: fixture.DMZ, Lane: lane, FirstSeq: first,
		Created: time.Date(2025, 3, 1, 8, 0, 0, 123456789, time.UTC)}
}

func seal(tb testing.TB, k keys, h bundle.Header, msgs [][]byte) []byte {
	tb.Helper()
	raw, _, err := bundle.Seal(rand.Reader, h, msgs, k.senderSign, k.receiverEnc.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := newKeys(t)
	envs := []envelope.Envelope{fixture.Bill(t, 1), fixture.Bill(t, 2), fixture.Bill(t, 3)}
	raw, sealed, err := bundle.Seal(rand.Reader, header(t, "to-gateway.2", 7), encode(t, envs...), k.senderSign, k.receiverEnc.Public())
	if err != nil {
		t.Fatal(err)
	}
	h, msgs, err := bundle.Open(raw, k.senderSign.Public(), k.receiverEnc, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if h.FirstSeq != 7 || h.LastSeq != 9 || h.Lane != "to-gateway.2" || h.BundleID != sealed.BundleID || len(h.Digests) != 3 {
		t.Fatalf("header %+v", h)
	}
	if !h.Created.Equal(time.Date(2025, 3, 1, 8, 0, 0, 123456000, time.UTC)) {
		t.Errorf("created %v, want microsecond precision", h.Created)
	}
	for i, m := range msgs {
		if m.Seq != int64(7+i) || m.Envelope.ID != envs[i].ID || !bytes.Equal(m.Raw, encode(t, envs[i])[0]) {
			t.Errorf("message %d: seq %d id %s", i, m.Seq, m.Envelope.ID)
		}
	}
	p, err := bundle.Parse(raw, bundle.Limits{})
	if err != nil || !bytes.Equal(p.Bytes(), raw) || p.Verify(k.senderSign.Public()) != nil {
		t.Fatalf("parse: %v", err)
	}
}

func TestOpenRejects(t *testing.T) {
	k := newKeys(t)
	msgs := encode(t, fixture.Bill(t, 1), fixture.Bill(t, 2))
	raw := seal(t, k, header(t, "to-gateway.0", 1), msgs)
	other := newKeys(t)
	cases := []struct {
		name   string
		raw    []byte
		sender *gm.PublicKey
		dec    gm.Decrypter
		limits bundle.Limits
		want   error
	}{
		{"fail/wrong-receiver-key", raw, k.senderSign.Public(), other.receiverEnc, bundle.Limits{}, bundle.ErrDecrypt},
		{"fail/untrusted-signer", raw, other.senderSign.Public(), k.receiverEnc, bundle.Limits{}, bundle.ErrSignature},
		{"fail/too-big", raw, k.senderSign.Public(), k.receiverEnc, bundle.Limits{MaxBytes: len(raw) - 1}, bundle.ErrLimit},
		{"fail/too-many-messages", raw, k.senderSign.Public(), k.receiverEnc, bundle.Limits{MaxMessages: 1}, bundle.ErrLimit},
		{"fail/empty", nil, k.senderSign.Public(), k.receiverEnc, bundle.Limits{}, bundle.ErrMalformed},
		{"fail/truncated", raw[:len(raw)-80], k.senderSign.Public(), k.receiverEnc, bundle.Limits{}, bundle.ErrMalformed},
		{"fail/trailing", append(bytes.Clone(raw), make([]byte, 100)...), k.senderSign.Public(), k.receiverEnc, bundle.Limits{}, bundle.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, msgs, err := bundle.Open(tc.raw, tc.sender, tc.dec, tc.limits)
			if !errors.Is(err, tc.want) || msgs != nil {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

// Every single flipped byte of a sealed bundle must make Open fail.
func TestOpenRejectsEveryFlippedByte(t *testing.T) {
	k := newKeys(t)
	raw := seal(t, k, header(t, "to-gateway.1", 1), encode(t, fixture.Bill(t, 1)))
	reasons := map[string]int{}
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x01
		_, msgs, err := bundle.Open(bad, k.senderSign.Public(), k.receiverEnc, bundle.Limits{})
		if err == nil || msgs != nil {
			t.Fatalf("byte %d of %d flipped: bundle accepted", i, len(raw))
		}
		reasons[bundle.Reason(err)]++
	}
	t.Logf("%d positions, rejected as %v", len(raw), reasons)
}

func TestOpenRejectsForbiddenDirection(t *testing.T) {
	k := newKeys(t)
	// A to-core message (payment.confirmed) inside a to-gateway lane.
	raw := seal(t, k, header(t, "to-gateway.0", 1), encode(t, fixture.Bill(t, 1), fixture.Payment(t, 1)))
	_, _, err := bundle.Open(raw, k.senderSign.Public(), k.receiverEnc, bundle.Limits{})
	if !errors.Is(err, bundle.ErrForbiddenType) {
		t.Fatalf("err %v, want ErrForbiddenType", err)
	}
}

func TestOpenRejectsUnknownTypeAndInvalidPayload(t *testing.T) {
	k := newKeys(t)
	unknown := fixture.Bill(t, 1)
	unknown.Type = "bill.deleted"
	invalid := fixture.Bill(t, 2)
	invalid.Payload = []byte(`{"bill_no":"B1","extra":1}`)
	for _, tc := range []struct {
		name string
		env  envelope.Envelope
		want error
	}{
		{"fail/unknown-type", unknown, bundle.ErrForbiddenType},
		{"fail/invalid-payload", invalid, bundle.ErrInvalidMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := seal(t, k, header(t, "to-gateway.0", 1), encode(t, tc.env))
			if _, _, err := bundle.Open(raw, k.senderSign.Public(), k.receiverEnc, bundle.Limits{}); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpenRejectsDuplicateMessageID(t *testing.T) {
	k := newKeys(t)
	b := fixture.Bill(t, 1)
	raw := seal(t, k, header(t, "to-gateway.0", 1), encode(t, b, b))
	if _, _, err := bundle.Open(raw, k.senderSign.Public(), k.receiverEnc, bundle.Limits{}); !errors.Is(err, bundle.ErrMalformed) {
		t.Fatalf("err %v, want ErrMalformed", err)
	}
}

func TestSealRefusesBadHeaders(t *testing.T) {
	k := newKeys(t)
	msgs := encode(t, fixture.Bill(t, 1))
	for _, tc := range []struct {
		name string
		edit func(*bundle.Header)
	}{
		{"fail/lane", func(h *bundle.Header) { h.Lane = "sideways.1" }},
		{"fail/id", func(h *bundle.Header) { h.BundleID = "XYZ" }},
		{"fail/first-seq", func(h *bundle.Header) { h.FirstSeq = 0 }},
		{"fail/node", func(h *bundle.Header) { h.From = "Bad Node" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := header(t, "to-gateway.0", 1)
			tc.edit(&h)
			if _, _, err := bundle.Seal(rand.Reader, h, msgs, k.senderSign, k.receiverEnc.Public()); err == nil {
				t.Fatal("sealed")
			}
		})
	}
	if _, _, err := bundle.Seal(rand.Reader, header(t, "to-gateway.0", 1), nil, k.senderSign, k.receiverEnc.Public()); err == nil {
		t.Fatal("sealed an empty bundle")
	}
}

func TestAckRoundTripAndTamper(t *testing.T) {
	k := newKeys(t)
	want := bundle.Ack{From: fixture.DMZ, To: fixture.Intranet, Lane: "to-gateway.3", Seq: 42,
		BundleID: "00112233445566778899aabbccddeeff", At: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	raw, err := bundle.SealAck(rand.Reader, want, k.receiverSign)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bundle.OpenAck(raw, k.receiverSign.Public())
	want.Version = bundle.Version
	if err != nil || got != want {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := bundle.OpenAck(raw, k.senderSign.Public()); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("other key: %v", err)
	}
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x80
		if _, err := bundle.OpenAck(bad, k.receiverSign.Public()); err == nil {
			t.Fatalf("ack byte %d flipped: accepted", i)
		}
	}
}

func TestHeaderMustBeCanonical(t *testing.T) {
	k := newKeys(t)
	raw := seal(t, k, header(t, "to-gateway.0", 1), encode(t, fixture.Bill(t, 1)))
	p, err := bundle.Parse(raw, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// The same header with a space after the first colon: same meaning, other bytes.
	loose := bytes.Replace(p.HeaderRaw, []byte(`"version":1`), []byte(`"version": 1`), 1)
	bad := append([]byte{}, raw[:4]...)
	bad = append(bad, byte(len(loose)>>24), byte(len(loose)>>16), byte(len(loose)>>8), byte(len(loose)))
	bad = append(bad, raw[8:16]...)
	bad = append(bad, loose...)
	bad = append(bad, raw[16+len(p.HeaderRaw):]...)
	if _, err := bundle.Parse(bad, bundle.Limits{}); !errors.Is(err, bundle.ErrMalformed) {
		t.Fatalf("non-canonical header: %v", err)
	}
}
