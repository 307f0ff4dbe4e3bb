package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"finepay/ferry/merkle"
	"finepay/shared/gm"
)

// Checkpoint is a tree head of the log: the head of its first Size records, as the ferry Origin
// saw it at Time.
//
// Its signed form, the note, is text in the manner of a C2SP signed note's body
// (c2sp.org/tlog-checkpoint): five lines, each ended by a newline,
//
//	ferry-dmz                                      origin: the node that signs
//	1234                                           size, decimal
//	3q2+7w...=                                     the tree head, standard base64 with padding
//	time 2025-03-01T08:00:00Z                      when it was made, RFC 3339 UTC, seconds
//	hash sm3                                       the tree's hash: sm3 or sha256
//
// signed with the node's SM2 signing key (SM3, user ID 1234567812345678, DER). OpenSSL 3 checks
// the signature of an exported checkpoint.txt with its checkpoint.sig and pub.pem:
//
//	openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -digest sm3 \
//	    -pkeyopt distid:1234567812345678 -in checkpoint.txt -sigfile checkpoint.sig
type Checkpoint struct {
	Origin string
	Size   int64
	Root   []byte
	Time   time.Time
	Hash   merkle.Hash
}

// ErrNote: a checkpoint note that is not in its canonical form.
var ErrNote = errors.New("audit: malformed checkpoint")

// ErrCheckpointSignature: a checkpoint whose signature does not verify.
var ErrCheckpointSignature = errors.New("audit: checkpoint signature does not verify")

const timeLayout = "2006-01-02T15:04:05Z"

func validOrigin(s string) bool {
	if s == "" || len(s) > maxShort {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// Note returns the checkpoint's canonical text, the bytes that are signed.
func (c Checkpoint) Note() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n%d\n%s\ntime %s\nhash %s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root),
		c.Time.UTC().Format(timeLayout), c.Hash)
	return b.Bytes()
}

func (c Checkpoint) validate() error {
	switch {
	case !validOrigin(c.Origin):
		return fmt.Errorf("%w: origin %q", ErrNote, c.Origin)
	case c.Size < 0:
		return fmt.Errorf("%w: size %d", ErrNote, c.Size)
	case !c.Hash.Valid():
		return fmt.Errorf("%w: hash", ErrNote)
	case len(c.Root) != merkle.Size:
		return fmt.Errorf("%w: root of %d bytes", ErrNote, len(c.Root))
	}
	return nil
}

// ParseNote decodes a checkpoint note and accepts it only in its canonical form.
func ParseNote(note []byte) (Checkpoint, error) {
	var c Checkpoint
	s := string(note)
	if !strings.HasSuffix(s, "\n") {
		return c, fmt.Errorf("%w: no final newline", ErrNote)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != 5 {
		return c, fmt.Errorf("%w: %d lines, want 5", ErrNote, len(lines))
	}
	var err error
	c.Origin = lines[0]
	if c.Size, err = strconv.ParseInt(lines[1], 10, 64); err != nil {
		return c, fmt.Errorf("%w: size %q", ErrNote, lines[1])
	}
	if c.Root, err = base64.StdEncoding.DecodeString(lines[2]); err != nil {
		return c, fmt.Errorf("%w: root %q", ErrNote, lines[2])
	}
	t, ok := strings.CutPrefix(lines[3], "time ")
	if c.Time, err = time.Parse(timeLayout, t); !ok || err != nil {
		return c, fmt.Errorf("%w: time line %q", ErrNote, lines[3])
	}
	name, ok := strings.CutPrefix(lines[4], "hash ")
	if c.Hash, err = merkle.ParseHash(name); !ok || err != nil {
		return c, fmt.Errorf("%w: hash line %q", ErrNote, lines[4])
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	if !bytes.Equal(c.Note(), note) {
		return c, fmt.Errorf("%w: not in canonical form", ErrNote)
	}
	return c, nil
}

// SignCheckpoint returns c's note and its SM2 signature by signer.
func SignCheckpoint(rand io.Reader, signer gm.Signer, c Checkpoint) (note, sig []byte, err error) {
	c.Time = c.Time.UTC().Truncate(time.Second)
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	note = c.Note()
	sig, err = signer.Sign(rand, note)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return note, sig, nil
}

// VerifyCheckpoint checks a note's signature with the signer's public key and decodes it.
func VerifyCheckpoint(note, sig []byte, pub *gm.PublicKey) (Checkpoint, error) {
	c, err := ParseNote(note)
	if err != nil {
		return c, err
	}
	if err := pub.Verify(note, sig); err != nil {
		return c, fmt.Errorf("%w: %s size %d: %v", ErrCheckpointSignature, c.Origin, c.Size, err)
	}
	return c, nil
}
