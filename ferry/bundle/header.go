package bundle

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"finepay/shared/envelope"
)

// Version is the bundle and acknowledgement format version this package writes and reads.
const Version = 1

// Sentinel errors. Every error of Open and OpenAck wraps one of them.
var (
	ErrMalformed      = errors.New("bundle: malformed")
	ErrLimit          = errors.New("bundle: limit exceeded")
	ErrSignature      = errors.New("bundle: signature does not verify")
	ErrDecrypt        = errors.New("bundle: cannot decrypt")
	ErrDigest         = errors.New("bundle: message digest mismatch")
	ErrSequence       = errors.New("bundle: bad sequence")
	ErrForbiddenType  = errors.New("bundle: message type not allowed in this lane")
	ErrInvalidMessage = errors.New("bundle: message fails its schema")
)

// Reason returns a short lowercase word for err, for metrics labels and audit records.
func Reason(err error) string {
	for _, r := range []struct {
		err  error
		word string
	}{
		{ErrLimit, "limit"}, {ErrSignature, "signature"}, {ErrDecrypt, "decrypt"},
		{ErrDigest, "digest"}, {ErrSequence, "sequence"}, {ErrForbiddenType, "forbidden_type"},
		{ErrInvalidMessage, "invalid_message"}, {ErrMalformed, "malformed"},
	} {
		if errors.Is(err, r.err) {
			return r.word
		}
	}
	return "other"
}

// Header describes a bundle. Its field order is its canonical JSON order.
type Header struct {
	Version  int       `json:"version"`
	BundleID string    `json:"bundle_id"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Lane     string    `json:"lane"`
	FirstSeq int64     `json:"first_seq"`
	LastSeq  int64     `json:"last_seq"`
	Created  time.Time `json:"created"`
	Digests  []string  `json:"digests"`
}

// Count is the number of messages the header announces.
func (h Header) Count() int { return len(h.Digests) }

var (
	reNode = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)
	reLane = regexp.MustCompile(`^(to-core|to-gateway)\.[0-9]{1,4}$`)
)

// lowerHex reports whether s is n lowercase hexadecimal digits.
func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// NewID returns a fresh bundle ID: 128 bits read from rand, in lowercase hex.
func NewID(rand io.Reader) (string, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("bundle: new ID: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// LaneDirection returns the direction a lane carries ("to-core.3" → envelope.ToCore).
func LaneDirection(lane string) (envelope.Direction, error) {
	if !reLane.MatchString(lane) {
		return "", fmt.Errorf("%w: lane %q", ErrMalformed, lane)
	}
	d, _, _ := strings.Cut(lane, ".")
	return envelope.Direction(d), nil
}

// ValidNode reports whether name is an acceptable node name.
func ValidNode(name string) bool { return reNode.MatchString(name) }

// validate checks the header's fields; limits are checked by the caller.
func (h Header) validate() error {
	switch {
	case h.Version != Version:
		return fmt.Errorf("%w: version %d", ErrMalformed, h.Version)
	case !lowerHex(h.BundleID, 32):
		return fmt.Errorf("%w: bundle ID %q", ErrMalformed, h.BundleID)
	case !reNode.MatchString(h.From) || !reNode.MatchString(h.To):
		return fmt.Errorf("%w: node names %q, %q", ErrMalformed, h.From, h.To)
	case !reLane.MatchString(h.Lane):
		return fmt.Errorf("%w: lane %q", ErrMalformed, h.Lane)
	case h.Created.IsZero() || h.Created.Location() != time.UTC:
		return fmt.Errorf("%w: created time", ErrMalformed)
	case len(h.Digests) == 0:
		return fmt.Errorf("%w: no messages", ErrMalformed)
	}
	for _, d := range h.Digests {
		if !lowerHex(d, 64) {
			return fmt.Errorf("%w: digest %q", ErrMalformed, d)
		}
	}
	if h.FirstSeq < 1 || h.LastSeq < h.FirstSeq || h.LastSeq-h.FirstSeq+1 != int64(len(h.Digests)) {
		return fmt.Errorf("%w: sequences %d..%d for %d messages", ErrSequence, h.FirstSeq, h.LastSeq, len(h.Digests))
	}
	return nil
}

// marshalHeader returns the canonical encoding of a valid header.
func marshalHeader(h Header) ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(h)
}

// parseHeader decodes a header and accepts it only in its canonical encoding.
func parseHeader(b []byte) (Header, error) {
	var h Header
	if err := json.Unmarshal(b, &h); err != nil {
		return Header{}, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if err := h.validate(); err != nil {
		return Header{}, err
	}
	again, err := json.Marshal(h)
	if err != nil || !bytes.Equal(again, b) {
		return Header{}, fmt.Errorf("%w: header is not in canonical form", ErrMalformed)
	}
	return h, nil
}

// canonicalTime is the form times take in headers and acknowledgements.
func canonicalTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// String summarises the header for logs.
func (h Header) String() string {
	return h.Lane + " " + strconv.FormatInt(h.FirstSeq, 10) + ".." + strconv.FormatInt(h.LastSeq, 10) + " bundle " + h.BundleID
}
