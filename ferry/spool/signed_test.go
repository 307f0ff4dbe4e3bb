package spool

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"finepay/ferry/bundle"
	"finepay/shared/gm"
)

const (
	idA = "0123456789abcdef0123456789abcdef"
	idB = "fedcba9876543210fedcba9876543210"
)

var (
	at  = time.Date(2025, 3, 1, 8, 0, 0, 123456000, time.UTC)
	sum = strings.Repeat("ab", 32)
)

func key(tb testing.TB) *gm.PrivateKey {
	tb.Helper()
	k, err := gm.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func sampleManifest() Manifest {
	return Manifest{
		ManifestID: idA, From: "ferry-intranet", To: "ferry-dmz", At: at,
		Sent: []SentLane{
			{Lane: "to-gateway.1", Acked: 0, Bundles: []Entry{}},
			{Lane: "to-gateway.0", Acked: 16, Bundles: []Entry{
				{BundleID: idB, FirstSeq: 25, LastSeq: 32, Written: at.Add(-time.Second), SM3: sum},
				{BundleID: idA, FirstSeq: 17, LastSeq: 24, Written: at.Add(-2 * time.Second), SM3: sum},
			}},
		},
		Received: []Mark{{Lane: "to-core.1", HWM: 3}, {Lane: "to-core.0", HWM: 9}},
	}
}

// relabel rewrites a signed file's body and signs it again, for cases about the body alone.
func relabel(tb testing.TB, raw []byte, k *gm.PrivateKey, edit func(string) string) []byte {
	tb.Helper()
	n := binary.BigEndian.Uint32(raw[4:])
	body := edit(string(raw[8 : 8+n]))
	out := append([]byte(nil), raw[:4]...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
	out = append(out, body...)
	sig, err := k.Sign(rand.Reader, out)
	if err != nil {
		tb.Fatal(err)
	}
	return append(out, sig...)
}

// A manifest seals in canonical form (lanes and bundles sorted), opens with the writer's key
// and with no other, and every change of a byte or of its form is refused.
func TestManifestSealOpen(t *testing.T) {
	t.Parallel()
	k, other := key(t), key(t)
	raw, err := SealManifest(rand.Reader, sampleManifest(), k)
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenManifest(raw, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if m.Sent[0].Lane != "to-gateway.0" || m.Sent[0].Bundles[0].FirstSeq != 17 || m.Received[0].Lane != "to-core.0" || !m.At.Equal(at) {
		t.Fatalf("not in canonical order: %+v", m)
	}
	again, err := SealManifest(rand.Reader, m, k)
	if err != nil || !bytes.Equal(signedPart(again), signedPart(raw)) {
		t.Fatalf("re-sealing the opened manifest changes its body: %v", err)
	}
	flipped := bytes.Clone(raw)
	flipped[20] ^= 0x01
	for _, tc := range []struct {
		name string
		raw  []byte
		key  *gm.PrivateKey
		want error
	}{
		{"fail/other-key", raw, other, bundle.ErrSignature},
		{"fail/flipped-byte", flipped, k, bundle.ErrMalformed},
		{"fail/truncated", raw[:len(raw)-3], k, bundle.ErrSignature},
		{"fail/cut-body", raw[:40], k, bundle.ErrMalformed},
		{"fail/empty", nil, k, bundle.ErrMalformed},
		{"fail/ack-magic", append([]byte(bundle.AckMagic), raw[4:]...), k, bundle.ErrMalformed},
		{"fail/white-space", relabel(t, raw, k, func(b string) string { return strings.Replace(b, ",", ", ", 1) }), k, bundle.ErrMalformed},
		{"fail/unknown-field", relabel(t, raw, k, func(b string) string { return strings.Replace(b, `"one_way":false`, `"one_way":false,"x":1`, 1) }), k, bundle.ErrMalformed},
		{"fail/null-list", relabel(t, raw, k, func(b string) string { return strings.Replace(b, `"received":[`, `"received":null,"r":[`, 1) }), k, bundle.ErrMalformed},
		{"fail/order", relabel(t, raw, k, func(b string) string {
			return strings.Replace(b, `"to-core.0","hwm":9},{"lane":"to-core.1"`, `"to-core.1","hwm":9},{"lane":"to-core.0"`, 1)
		}), k, bundle.ErrMalformed},
		{"fail/version", relabel(t, raw, k, func(b string) string { return strings.Replace(b, `"version":1`, `"version":2`, 1) }), k, bundle.ErrMalformed},
		{"fail/overlap", relabel(t, raw, k, func(b string) string { return strings.Replace(b, `"first_seq":25`, `"first_seq":20`, 1) }), k, bundle.ErrSequence},
		{"fail/below-acked", relabel(t, raw, k, func(b string) string { return strings.Replace(b, `"acked":16`, `"acked":17`, 1) }), k, bundle.ErrSequence},
		{"fail/local-time", relabel(t, raw, k, func(b string) string { return strings.Replace(b, `.123456Z"`, `.123456+08:00"`, 1) }), k, bundle.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OpenManifest(tc.raw, tc.key.Public()); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func signedPart(raw []byte) []byte {
	n := binary.BigEndian.Uint32(raw[4:])
	return raw[:8+n]
}

func TestManifestSealRefusesInvalid(t *testing.T) {
	t.Parallel()
	k := key(t)
	for _, tc := range []struct {
		name string
		edit func(*Manifest)
	}{
		{"fail/same-nodes", func(m *Manifest) { m.To = m.From }},
		{"fail/bad-id", func(m *Manifest) { m.ManifestID = "xyz" }},
		{"fail/bad-lane", func(m *Manifest) { m.Sent[0].Lane = "sideways.0" }},
		{"fail/twice-the-lane", func(m *Manifest) { m.Received[1].Lane = m.Received[0].Lane }},
		{"fail/bad-digest", func(m *Manifest) { m.Sent[1].Bundles[0].SM3 = "00" }},
		{"fail/no-time", func(m *Manifest) { m.Sent[1].Bundles[0].Written = time.Time{} }},
		{"fail/negative-mark", func(m *Manifest) { m.Received[0].HWM = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := sampleManifest()
			tc.edit(&m)
			if _, err := SealManifest(rand.Reader, m, k); err == nil {
				t.Fatal("sealed")
			}
		})
	}
}

func TestRequestSealOpen(t *testing.T) {
	t.Parallel()
	k := key(t)
	r := Request{RequestID: idB, From: "ferry-dmz", To: "ferry-intranet", At: at, ManifestID: idA,
		Lanes: []Want{{Lane: "to-gateway.0", HWM: 16, Missing: []Missing{{BundleID: idB, FirstSeq: 25, LastSeq: 32}, {BundleID: idA, FirstSeq: 17, LastSeq: 24}}}}}
	raw, err := SealRequest(rand.Reader, r, k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenRequest(raw, k.Public())
	if err != nil || got.Lanes[0].Missing[0].FirstSeq != 17 {
		t.Fatalf("%+v, %v", got, err)
	}
	if _, err := OpenRequest(raw, key(t).Public()); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("another key: %v", err)
	}
	if _, err := OpenManifest(raw, k.Public()); !errors.Is(err, bundle.ErrMalformed) {
		t.Fatalf("a request read as a manifest: %v", err)
	}
	r.Lanes[0].Missing[0].LastSeq = 10 // at or below the mark
	if _, err := SealRequest(rand.Reader, r, k); err == nil {
		t.Fatal("sealed a request for what was committed")
	}
}

// FuzzManifest feeds arbitrary bytes to the manifest and request decoders: they must not panic,
// whatever they accept must be its own canonical encoding byte for byte, and re-sealing it must
// give the same body.
func FuzzManifest(f *testing.F) {
	k := key(f)
	m, err := SealManifest(rand.Reader, sampleManifest(), k)
	if err != nil {
		f.Fatal(err)
	}
	r, err := SealRequest(rand.Reader, Request{RequestID: idB, From: "a", To: "b", At: at, ManifestID: idA,
		Lanes: []Want{{Lane: "to-core.0", HWM: 1, Missing: []Missing{{BundleID: idA, FirstSeq: 2, LastSeq: 3}}}}}, k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m)
	f.Add(r)
	f.Add(m[:len(m)/2])
	f.Add([]byte(ManifestMagic + "\x00\x00\x00\x02{}0"))
	f.Add([]byte(RequestMagic))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got, s, err := ParseManifest(raw); err == nil {
			if !bytes.Equal(append(bytes.Clone(s.Signed), s.Signature...), raw) {
				t.Fatal("ParseManifest does not round-trip")
			}
			again, err := SealManifest(rand.Reader, got, k)
			if err != nil || !bytes.Equal(signedPart(again), s.Signed) {
				t.Fatalf("re-sealing an accepted manifest gives another body: %v", err)
			}
		}
		if got, s, err := ParseRequest(raw); err == nil {
			if !bytes.Equal(append(bytes.Clone(s.Signed), s.Signature...), raw) {
				t.Fatal("ParseRequest does not round-trip")
			}
			again, err := SealRequest(rand.Reader, got, k)
			if err != nil || !bytes.Equal(signedPart(again), s.Signed) {
				t.Fatalf("re-sealing an accepted request gives another body: %v", err)
			}
		}
		_, _ = OpenManifest(raw, k.Public())
		_, _ = OpenRequest(raw, k.Public())
	})
}
