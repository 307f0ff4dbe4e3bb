package spool

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"finepay/ferry/bundle"
	"finepay/shared/gm"
)

// Magics of the files this package defines ("FP", a letter, the format version).
const (
	ManifestMagic = "FPM1"
	RequestMagic  = "FPR1"
)

// Size limits of the encoded files.
const (
	MaxManifestBytes = 4 << 20
	MaxRequestBytes  = 1 << 20
)

const (
	preamble     = 8   // magic and body length
	maxSignature = 128 // an SM2 DER signature is at most 72 bytes
	maxLanes     = 4096
	maxEntries   = 65536
)

// Manifest is a node's signed statement of what it has sent and not yet seen acknowledged
// (Sent), and of how far it has committed what it receives (Received). Its field order is its
// canonical JSON order.
type Manifest struct {
	Version    int        `json:"version"`
	ManifestID string     `json:"manifest_id"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	At         time.Time  `json:"at"`
	OneWay     bool       `json:"one_way"`
	Sent       []SentLane `json:"sent"`
	Received   []Mark     `json:"received"`
}

// SentLane is one sending lane in a manifest: the highest sequence the peer acknowledged (as
// the writer knows it) and the bundles written since and not acknowledged, by first sequence.
type SentLane struct {
	Lane    string  `json:"lane"`
	Acked   int64   `json:"acked"`
	Bundles []Entry `json:"bundles"`
}

// Entry is one bundle in a manifest: its ID and sequences, when its file was last written and
// the SM3 digest of that file.
type Entry struct {
	BundleID string    `json:"bundle_id"`
	FirstSeq int64     `json:"first_seq"`
	LastSeq  int64     `json:"last_seq"`
	Written  time.Time `json:"written"`
	SM3      string    `json:"sm3"`
}

// Mark is a receiving lane and its high-water mark (highest contiguous sequence committed).
type Mark struct {
	Lane string `json:"lane"`
	HWM  int64  `json:"hwm"`
}

// Request is a node's signed request for bundles the appliance lost: for each lane, its
// high-water mark and the bundles the peer's manifest ManifestID listed that did not arrive.
type Request struct {
	Version    int       `json:"version"`
	RequestID  string    `json:"request_id"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	At         time.Time `json:"at"`
	ManifestID string    `json:"manifest_id"`
	Lanes      []Want    `json:"lanes"`
}

// Want is one lane of a resend request.
type Want struct {
	Lane    string    `json:"lane"`
	HWM     int64     `json:"hwm"`
	Missing []Missing `json:"missing"`
}

// Missing names a bundle to send again.
type Missing struct {
	BundleID string `json:"bundle_id"`
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
}

var (
	reNode = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)
	reLane = regexp.MustCompile(`^(to-core|to-gateway)\.[0-9]{1,4}$`)
)

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func canonicalTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func goodTime(t time.Time) bool {
	return !t.IsZero() && t.Location() == time.UTC && t.Equal(t.Truncate(time.Microsecond))
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", bundle.ErrMalformed, fmt.Sprintf(format, args...))
}

func checkHeader(version int, id, from, to string, at time.Time) error {
	switch {
	case version != 1:
		return malformed("version %d", version)
	case !lowerHex(id, 32):
		return malformed("ID %q", id)
	case !reNode.MatchString(from) || !reNode.MatchString(to) || from == to:
		return malformed("node names %q, %q", from, to)
	case !goodTime(at):
		return malformed("time")
	}
	return nil
}

// Validate checks a manifest's fields: each lane once and in order, bundles in order and above
// the acknowledged sequence, hex IDs and digests, canonical times.
func (m Manifest) Validate() error {
	if err := checkHeader(m.Version, m.ManifestID, m.From, m.To, m.At); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if m.Sent == nil || m.Received == nil {
		return malformed("manifest: sent and received must be lists")
	}
	if len(m.Sent) > maxLanes || len(m.Received) > maxLanes {
		return fmt.Errorf("%w: manifest: too many lanes", bundle.ErrLimit)
	}
	entries := 0
	for i, l := range m.Sent {
		if !reLane.MatchString(l.Lane) || (i > 0 && m.Sent[i-1].Lane >= l.Lane) {
			return malformed("manifest: sent lane %q (lanes once each, in order)", l.Lane)
		}
		if l.Acked < 0 || l.Bundles == nil {
			return malformed("manifest: lane %s: acked %d", l.Lane, l.Acked)
		}
		entries += len(l.Bundles)
		if entries > maxEntries {
			return fmt.Errorf("%w: manifest: too many bundles", bundle.ErrLimit)
		}
		prev := l.Acked
		for _, e := range l.Bundles {
			switch {
			case !lowerHex(e.BundleID, 32) || !lowerHex(e.SM3, 64) || !goodTime(e.Written):
				return malformed("manifest: lane %s: bundle %q", l.Lane, e.BundleID)
			case e.FirstSeq <= prev || e.LastSeq < e.FirstSeq:
				return fmt.Errorf("%w: manifest: lane %s: bundle %d..%d after %d", bundle.ErrSequence, l.Lane, e.FirstSeq, e.LastSeq, prev)
			}
			prev = e.LastSeq
		}
	}
	for i, r := range m.Received {
		if !reLane.MatchString(r.Lane) || (i > 0 && m.Received[i-1].Lane >= r.Lane) || r.HWM < 0 {
			return malformed("manifest: received lane %q", r.Lane)
		}
	}
	return nil
}

// Validate checks a request's fields.
func (r Request) Validate() error {
	if err := checkHeader(r.Version, r.RequestID, r.From, r.To, r.At); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	if !lowerHex(r.ManifestID, 32) || r.Lanes == nil {
		return malformed("request: manifest ID %q", r.ManifestID)
	}
	if len(r.Lanes) > maxLanes {
		return fmt.Errorf("%w: request: too many lanes", bundle.ErrLimit)
	}
	entries := 0
	for i, w := range r.Lanes {
		if !reLane.MatchString(w.Lane) || (i > 0 && r.Lanes[i-1].Lane >= w.Lane) || w.HWM < 0 || len(w.Missing) == 0 {
			return malformed("request: lane %q", w.Lane)
		}
		entries += len(w.Missing)
		if entries > maxEntries {
			return fmt.Errorf("%w: request: too many bundles", bundle.ErrLimit)
		}
		prev := w.HWM
		for _, m := range w.Missing {
			switch {
			case !lowerHex(m.BundleID, 32):
				return malformed("request: lane %s: bundle %q", w.Lane, m.BundleID)
			case m.FirstSeq < 1 || m.LastSeq < m.FirstSeq || m.LastSeq <= prev:
				return fmt.Errorf("%w: request: lane %s: bundle %d..%d", bundle.ErrSequence, w.Lane, m.FirstSeq, m.LastSeq)
			}
			prev = m.LastSeq
		}
	}
	return nil
}

// normalize puts m in canonical form: version, UTC microsecond times, lists not nil, lanes and
// bundles sorted.
func (m *Manifest) normalize() {
	m.Version = 1
	m.At = canonicalTime(m.At)
	if m.Sent == nil {
		m.Sent = []SentLane{}
	}
	if m.Received == nil {
		m.Received = []Mark{}
	}
	slices.SortFunc(m.Sent, func(a, b SentLane) int { return strings.Compare(a.Lane, b.Lane) })
	slices.SortFunc(m.Received, func(a, b Mark) int { return strings.Compare(a.Lane, b.Lane) })
	for i := range m.Sent {
		l := &m.Sent[i]
		if l.Bundles == nil {
			l.Bundles = []Entry{}
		}
		slices.SortFunc(l.Bundles, func(a, b Entry) int { return cmp.Compare(a.FirstSeq, b.FirstSeq) })
		for j := range l.Bundles {
			l.Bundles[j].Written = canonicalTime(l.Bundles[j].Written)
		}
	}
}

func (r *Request) normalize() {
	r.Version = 1
	r.At = canonicalTime(r.At)
	if r.Lanes == nil {
		r.Lanes = []Want{}
	}
	slices.SortFunc(r.Lanes, func(a, b Want) int { return strings.Compare(a.Lane, b.Lane) })
	for i := range r.Lanes {
		slices.SortFunc(r.Lanes[i].Missing, func(a, b Missing) int { return cmp.Compare(a.FirstSeq, b.FirstSeq) })
	}
}

// SealManifest encodes m in canonical form and signs it.
func SealManifest(rand io.Reader, m Manifest, signer gm.Signer) ([]byte, error) {
	m.normalize()
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("spool: seal manifest: %w", err)
	}
	return seal(rand, ManifestMagic, m, MaxManifestBytes, signer)
}

// SealRequest encodes r in canonical form and signs it.
func SealRequest(rand io.Reader, r Request, signer gm.Signer) ([]byte, error) {
	r.normalize()
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("spool: seal request: %w", err)
	}
	return seal(rand, RequestMagic, r, MaxRequestBytes, signer)
}

func seal(rand io.Reader, magic string, v any, max int, signer gm.Signer) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("spool: seal %s: %w", magic, err)
	}
	if preamble+len(body)+maxSignature > max {
		return nil, fmt.Errorf("spool: seal %s: %w: %d bytes", magic, bundle.ErrLimit, len(body))
	}
	raw := make([]byte, 0, preamble+len(body)+maxSignature)
	raw = append(raw, magic...)
	raw = binary.BigEndian.AppendUint32(raw, uint32(len(body)))
	raw = append(raw, body...)
	sig, err := signer.Sign(rand, raw)
	if err != nil {
		return nil, fmt.Errorf("spool: seal %s: %w", magic, err)
	}
	return append(raw, sig...), nil
}

// Signed is a manifest or request split into its parts, nothing verified.
type Signed struct {
	Signed    []byte // bytes [0, 8+L): what the signature covers
	Signature []byte
}

// split checks raw's magic, lengths and limit and decodes its body into v, accepting only the
// canonical encoding.
func split(raw []byte, magic string, max int, v interface{ Validate() error }) (Signed, error) {
	if len(raw) > max {
		return Signed{}, fmt.Errorf("%w: %s file of %d bytes", bundle.ErrLimit, magic, len(raw))
	}
	if len(raw) < preamble || string(raw[:4]) != magic {
		return Signed{}, malformed("not a %s file (magic)", magic)
	}
	end := preamble + uint64(binary.BigEndian.Uint32(raw[4:]))
	if end >= uint64(len(raw)) || uint64(len(raw))-end > maxSignature {
		return Signed{}, malformed("%s lengths", magic)
	}
	body := raw[preamble:end]
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Signed{}, malformed("%s body: %v", magic, err)
	}
	if err := v.Validate(); err != nil {
		return Signed{}, err
	}
	if again, err := json.Marshal(v); err != nil || !bytes.Equal(again, body) {
		return Signed{}, malformed("%s body is not in canonical form", magic)
	}
	return Signed{Signed: raw[:end:end], Signature: raw[end:]}, nil
}

// ParseManifest decodes a manifest without verifying its signature.
func ParseManifest(raw []byte) (Manifest, Signed, error) {
	var m Manifest
	s, err := split(raw, ManifestMagic, MaxManifestBytes, &m)
	if err != nil {
		return Manifest{}, Signed{}, err
	}
	return m, s, nil
}

// OpenManifest decodes a manifest and verifies its signature with the writer's signing key.
func OpenManifest(raw []byte, from *gm.PublicKey) (Manifest, error) {
	m, s, err := ParseManifest(raw)
	if err != nil {
		return Manifest{}, err
	}
	if err := from.Verify(s.Signed, s.Signature); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %v", bundle.ErrSignature, err)
	}
	return m, nil
}

// ParseRequest decodes a resend request without verifying its signature.
func ParseRequest(raw []byte) (Request, Signed, error) {
	var r Request
	s, err := split(raw, RequestMagic, MaxRequestBytes, &r)
	if err != nil {
		return Request{}, Signed{}, err
	}
	return r, s, nil
}

// OpenRequest decodes a resend request and verifies its signature with the writer's key.
func OpenRequest(raw []byte, from *gm.PublicKey) (Request, error) {
	r, s, err := ParseRequest(raw)
	if err != nil {
		return Request{}, err
	}
	if err := from.Verify(s.Signed, s.Signature); err != nil {
		return Request{}, fmt.Errorf("%w: request: %v", bundle.ErrSignature, err)
	}
	return r, nil
}
