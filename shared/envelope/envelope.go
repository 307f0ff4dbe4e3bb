// Package envelope defines the messages that cross the network boundary between the
// internet-side gateway and the intranet core, and their canonical byte encoding.
//
// # Envelope
//
// Every message is an Envelope: an ID fixed by the originator (the same business fact always
// yields the same ID, so a receiver can deduplicate under a unique constraint), a type from the
// catalogue, a key (the business identity the message is about, e.g. a bill number, which also
// picks the ferry lane so that messages about one bill stay in order), the time it was created,
// and a payload (the JSON encoding of the type's payload struct).
//
// # Canonical encoding, version 1
//
// The encoding is what is digested (SM3) and signed inside ferry bundles, so it is fixed byte
// for byte:
//
//	magic     4 bytes  "FPM1"
//	id        uvarint length, then bytes   (1..64 bytes of [A-Za-z0-9._:-])
//	type      uvarint length, then bytes   (1..64 bytes, a catalogue type)
//	key       uvarint length, then bytes   (0..128 bytes, UTF-8)
//	created   8 bytes, big-endian int64 Unix microseconds (UTC)
//	payload   uvarint length, then bytes   (0..MaxPayload bytes)
//
// Lengths are unsigned varints as in encoding/binary, minimally encoded. Nothing may follow the
// payload. Decoding rejects anything that does not re-encode to the same bytes, so every
// envelope has exactly one encoding.
package envelope

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Magic opens every encoded envelope.
const Magic = "FPM1"

// Size limits of the fields.
const (
	MaxIDLen    = 64
	MaxTypeLen  = 64
	MaxKeyLen   = 128
	MaxPayload  = 64 << 10
	MaxEncoded  = MaxPayload + 512
	minEnvelope = len(Magic) + 1 + 1 + 1 + 8 + 1
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("envelope: malformed")

// Envelope is one message crossing the boundary.
type Envelope struct {
	ID        string
	Type      string
	Key       string
	CreatedAt time.Time
	Payload   []byte
}

// Validate checks the field limits of the encoding (not the payload's schema: see Check).
func (e Envelope) Validate() error {
	if err := checkID(e.ID); err != nil {
		return err
	}
	if len(e.Type) == 0 || len(e.Type) > MaxTypeLen {
		return fmt.Errorf("%w: type length %d", ErrMalformed, len(e.Type))
	}
	if len(e.Key) > MaxKeyLen || !utf8.ValidString(e.Key) {
		return fmt.Errorf("%w: key", ErrMalformed)
	}
	if len(e.Payload) > MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrMalformed, len(e.Payload), MaxPayload)
	}
	if e.CreatedAt.IsZero() {
		return fmt.Errorf("%w: created time is zero", ErrMalformed)
	}
	return nil
}

func checkID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return fmt.Errorf("%w: id length %d", ErrMalformed, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return fmt.Errorf("%w: id has byte %q", ErrMalformed, c)
		}
	}
	return nil
}

// Marshal returns the canonical encoding. CreatedAt is truncated to microseconds.
func (e Envelope) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, minEnvelope+len(e.ID)+len(e.Type)+len(e.Key)+len(e.Payload)+12)
	b = append(b, Magic...)
	b = appendBytes(b, []byte(e.ID))
	b = appendBytes(b, []byte(e.Type))
	b = appendBytes(b, []byte(e.Key))
	b = binary.BigEndian.AppendUint64(b, uint64(e.CreatedAt.UnixMicro()))
	b = appendBytes(b, e.Payload)
	return b, nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// Unmarshal decodes a canonical encoding. It accepts exactly the bytes Marshal produces.
func Unmarshal(b []byte) (Envelope, error) {
	var e Envelope
	if len(b) > MaxEncoded {
		return e, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(b), MaxEncoded)
	}
	if len(b) < minEnvelope || string(b[:len(Magic)]) != Magic {
		return e, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	r := reader{b: b[len(Magic):]}
	id := r.field(MaxIDLen)
	typ := r.field(MaxTypeLen)
	key := r.field(MaxKeyLen)
	created := r.uint64()
	payload := r.field(MaxPayload)
	if r.err != nil {
		return e, r.err
	}
	if len(r.b) != 0 {
		return e, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	e = Envelope{ID: string(id), Type: string(typ), Key: string(key), CreatedAt: time.UnixMicro(int64(created)).UTC()}
	if len(payload) > 0 {
		e.Payload = bytes.Clone(payload)
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) field(max int) []byte {
	if r.err != nil {
		return nil
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = fmt.Errorf("%w: bad length", ErrMalformed)
		return nil
	}
	// Minimal encoding only: re-encoding must give the same number of bytes.
	if k != len(binary.AppendUvarint(nil, n)) {
		r.err = fmt.Errorf("%w: non-minimal length", ErrMalformed)
		return nil
	}
	if n > uint64(max) || n > uint64(len(r.b)-k) {
		r.err = fmt.Errorf("%w: field length %d", ErrMalformed, n)
		return nil
	}
	v := r.b[k : k+int(n)]
	r.b = r.b[k+int(n):]
	return v
}

func (r *reader) uint64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = fmt.Errorf("%w: short created time", ErrMalformed)
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}
