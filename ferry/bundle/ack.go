package bundle

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"finepay/shared/gm"
)

// AckMagic opens every acknowledgement: "FPA" and the format version.
const AckMagic = "FPA1"

// MaxAckBytes bounds an encoded acknowledgement.
const MaxAckBytes = 4096

const ackPreamble = 8

// Ack is a signed acknowledgement: From has committed Lane up to Seq (its highest contiguous
// sequence), answering bundle BundleID from To. Its field order is its canonical JSON order.
type Ack struct {
	Version  int       `json:"version"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Lane     string    `json:"lane"`
	Seq      int64     `json:"seq"`
	BundleID string    `json:"bundle_id"`
	At       time.Time `json:"at"`
}

func (a Ack) validate() error {
	switch {
	case a.Version != Version:
		return fmt.Errorf("%w: ack version %d", ErrMalformed, a.Version)
	case !reNode.MatchString(a.From) || !reNode.MatchString(a.To):
		return fmt.Errorf("%w: ack node names %q, %q", ErrMalformed, a.From, a.To)
	case !reLane.MatchString(a.Lane):
		return fmt.Errorf("%w: ack lane %q", ErrMalformed, a.Lane)
	case a.Seq < 0:
		return fmt.Errorf("%w: ack sequence %d", ErrSequence, a.Seq)
	case a.BundleID != "" && !lowerHex(a.BundleID, 32):
		return fmt.Errorf("%w: ack bundle ID %q", ErrMalformed, a.BundleID)
	case a.At.IsZero() || a.At.Location() != time.UTC:
		return fmt.Errorf("%w: ack time", ErrMalformed)
	}
	return nil
}

// SealAck encodes and signs a.
func SealAck(rand io.Reader, a Ack, signer gm.Signer) ([]byte, error) {
	a.Version = Version
	a.At = canonicalTime(a.At)
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("bundle: seal ack: %w", err)
	}
	body, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("bundle: seal ack: %w", err)
	}
	raw := make([]byte, 0, ackPreamble+len(body)+80)
	raw = append(raw, AckMagic...)
	raw = binary.BigEndian.AppendUint32(raw, uint32(len(body)))
	raw = append(raw, body...)
	sig, err := signer.Sign(rand, raw)
	if err != nil {
		return nil, fmt.Errorf("bundle: seal ack: %w", err)
	}
	return append(raw, sig...), nil
}

// ParsedAck is an acknowledgement split into its parts, nothing verified.
type ParsedAck struct {
	Ack       Ack
	Signed    []byte // bytes [0, 8+L): what the signature covers
	Signature []byte
}

// ParseAck splits raw and decodes its canonical body without verifying the signature.
func ParseAck(raw []byte) (*ParsedAck, error) {
	if len(raw) > MaxAckBytes {
		return nil, fmt.Errorf("%w: acknowledgement of %d bytes", ErrLimit, len(raw))
	}
	if len(raw) < ackPreamble || string(raw[:4]) != AckMagic {
		return nil, fmt.Errorf("%w: not a version %d acknowledgement (magic)", ErrMalformed, Version)
	}
	n := uint64(binary.BigEndian.Uint32(raw[4:]))
	end := ackPreamble + n
	if end >= uint64(len(raw)) || uint64(len(raw))-end > maxSignature {
		return nil, fmt.Errorf("%w: acknowledgement lengths", ErrMalformed)
	}
	body := raw[ackPreamble:end]
	var a Ack
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("%w: acknowledgement: %v", ErrMalformed, err)
	}
	if err := a.validate(); err != nil {
		return nil, err
	}
	if again, err := json.Marshal(a); err != nil || !bytes.Equal(again, body) {
		return nil, fmt.Errorf("%w: acknowledgement is not in canonical form", ErrMalformed)
	}
	return &ParsedAck{Ack: a, Signed: raw[:end:end], Signature: raw[end:]}, nil
}

// OpenAck parses raw and verifies its signature with the acknowledging node's signing key.
func OpenAck(raw []byte, from *gm.PublicKey) (Ack, error) {
	p, err := ParseAck(raw)
	if err != nil {
		return Ack{}, err
	}
	if err := from.Verify(p.Signed, p.Signature); err != nil {
		return Ack{}, fmt.Errorf("%w: acknowledgement: %v", ErrSignature, err)
	}
	return p.Ack, nil
}
