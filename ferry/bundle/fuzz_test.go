package bundle_test

import (
	"bytes"
	"testing"

	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
)

// FuzzBundleOpen feeds arbitrary bytes to the bundle and acknowledgement decoders. They must
// never panic; whatever Parse accepts must come back byte for byte, and whatever Open accepts
// must be what Parse saw.
func FuzzBundleOpen(f *testing.F) {
	k := newKeys(f)
	valid := seal(f, k, header(f, "to-gateway.0", 1), encode(f, fixture.Bill(f, 1), fixture.Bill(f, 2)))
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(bundle.Magic))
	f.Add([]byte(bundle.AckMagic + "\x00\x00\x00\x02{}0"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := bundle.Parse(raw, bundle.Limits{})
		if err == nil && !bytes.Equal(p.Bytes(), raw) {
			t.Fatal("Parse does not round-trip")
		}
		h, msgs, err := bundle.Open(raw, k.senderSign.Public(), k.receiverEnc, bundle.Limits{})
		if err == nil {
			if p == nil || h.BundleID != p.Header.BundleID || len(msgs) != h.Count() {
				t.Fatal("Open accepted what Parse did not describe")
			}
		}
		if pa, err := bundle.ParseAck(raw); err == nil && !bytes.Equal(append(bytes.Clone(pa.Signed), pa.Signature...), raw) {
			t.Fatal("ParseAck does not round-trip")
		}
		_, _ = bundle.OpenAck(raw, k.receiverSign.Public())
	})
}
