package bundle

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"finepay/ferry/inbox"
	"finepay/shared/envelope"
	"finepay/shared/gm"
)

// Magic opens every bundle: "FPB" and the format version.
const Magic = "FPB1"

// Layout sizes.
const (
	preambleSize  = 16
	nonceSize     = gm.GCMNonceSize
	keySize       = gm.SM4KeySize
	maxWrappedKey = 512
	maxSignature  = 128
	lengthPrefix  = 4
)

// Default limits.
const (
	DefaultMaxBytes    = 1 << 20
	DefaultMaxMessages = 1024
)

// Limits bound what Open accepts. Zero fields take the defaults.
type Limits struct {
	MaxBytes    int // the whole sealed bundle
	MaxMessages int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxMessages <= 0 {
		l.MaxMessages = DefaultMaxMessages
	}
	return l
}

// Overhead is a generous bound on a bundle's size beyond its envelopes for n messages: preamble,
// header, wrapped key, nonce, tag, signature and the length prefixes. A sender that keeps the
// envelopes within MaxBytes-Overhead(n) stays within MaxBytes.
func Overhead(n int) int {
	return preambleSize + 512 + n*(64+3+lengthPrefix) + maxWrappedKey + nonceSize + 16 + maxSignature
}

// Parsed is a bundle split into its parts, with its header decoded but nothing verified.
type Parsed struct {
	Header     Header
	HeaderRaw  []byte
	WrappedKey []byte
	Nonce      []byte
	Ciphertext []byte
	Signature  []byte
	raw        []byte
	signed     []byte // SignedMessage, once computed
}

// Parse splits raw into its parts and checks the magic, the lengths, the limits and the header's
// canonical form. It verifies nothing cryptographic: see Verify and Open.
func Parse(raw []byte, l Limits) (*Parsed, error) {
	l = l.withDefaults()
	if len(raw) > l.MaxBytes {
		return nil, fmt.Errorf("%w: bundle of %d bytes exceeds %d", ErrLimit, len(raw), l.MaxBytes)
	}
	if len(raw) < preambleSize || string(raw[:4]) != Magic {
		return nil, fmt.Errorf("%w: not a version %d bundle (magic)", ErrMalformed, Version)
	}
	h := uint64(binary.BigEndian.Uint32(raw[4:]))
	w := uint64(binary.BigEndian.Uint32(raw[8:]))
	c := uint64(binary.BigEndian.Uint32(raw[12:]))
	if w == 0 || w > maxWrappedKey || c < 16 {
		return nil, fmt.Errorf("%w: wrapped key of %d bytes, ciphertext of %d", ErrMalformed, w, c)
	}
	sigAt := preambleSize + h + w + nonceSize + c
	if sigAt >= uint64(len(raw)) || uint64(len(raw))-sigAt > maxSignature {
		return nil, fmt.Errorf("%w: lengths do not match the bundle size", ErrMalformed)
	}
	p := &Parsed{raw: raw}
	at := uint64(preambleSize)
	next := func(n uint64) []byte { b := raw[at : at+n : at+n]; at += n; return b }
	p.HeaderRaw = next(h)
	p.WrappedKey = next(w)
	p.Nonce = next(nonceSize)
	p.Ciphertext = next(c)
	p.Signature = raw[at:]
	hdr, err := parseHeader(p.HeaderRaw)
	if err != nil {
		return nil, err
	}
	if n := hdr.Count(); n > l.MaxMessages {
		return nil, fmt.Errorf("%w: %d messages exceed %d", ErrLimit, n, l.MaxMessages)
	}
	p.Header = hdr
	return p, nil
}

// Bytes returns the bundle as parsed: exactly the input of Parse.
func (p *Parsed) Bytes() []byte { return p.raw }

// SignedMessage returns what the signature covers: preamble and header, then the SM3 digest of
// wrapped key ‖ nonce ‖ ciphertext. It is computed once per Parsed (the digest runs over the
// whole body), so a Parsed is not for concurrent use; the result is not to be modified.
func (p *Parsed) SignedMessage() []byte {
	if p.signed != nil {
		return p.signed
	}
	end := preambleSize + len(p.HeaderRaw)
	body := gm.SM3(p.raw[end : end+len(p.WrappedKey)+nonceSize+len(p.Ciphertext)])
	out := make([]byte, 0, end+len(body))
	out = append(out, p.raw[:end]...)
	p.signed = append(out, body[:]...)
	return p.signed
}

// Verify checks the signature with the sender's public signing key.
func (p *Parsed) Verify(sender *gm.PublicKey) error {
	if err := sender.Verify(p.SignedMessage(), p.Signature); err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return nil
}

// Seal builds a bundle of msgs (canonical envelope encodings of consecutive sequences starting at
// h.FirstSeq) from h's bundle ID, nodes, lane, first sequence and creation time. It fills in the
// version, last sequence and digests, encrypts to the receiver's encryption key and signs with
// the sender's key, reading randomness from rand. It returns the bundle and its final header.
func Seal(rand io.Reader, h Header, msgs [][]byte, signer gm.Signer, to *gm.PublicKey) ([]byte, Header, error) {
	p, err := SealParsed(rand, h, msgs, signer, to)
	if err != nil {
		return nil, Header{}, err
	}
	return p.raw, p.Header, nil
}

// SealParsed is Seal returning the bundle as a Parsed, whose SignedMessage is already known (the
// relay hands it on to its evidence store, which keeps what was signed).
func SealParsed(rand io.Reader, h Header, msgs [][]byte, signer gm.Signer, to *gm.PublicKey) (*Parsed, error) {
	h.Version = Version
	h.Created = canonicalTime(h.Created)
	h.LastSeq = h.FirstSeq + int64(len(msgs)) - 1
	h.Digests = make([]string, len(msgs))
	for i, m := range msgs {
		d := gm.SM3(m)
		h.Digests[i] = hex.EncodeToString(d[:])
	}
	hdr, err := marshalHeader(h)
	if err != nil {
		return nil, fmt.Errorf("bundle: seal: %w", err)
	}
	secret := make([]byte, keySize+nonceSize)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return nil, fmt.Errorf("bundle: seal: random key: %w", err)
	}
	key, nonce := secret[:keySize], secret[keySize:]
	ct, err := gm.SealSM4GCM(key, nonce, encodeBody(msgs), hdr)
	if err != nil {
		return nil, fmt.Errorf("bundle: seal: %w", err)
	}
	wrapped, err := to.Encrypt(rand, key)
	if err != nil {
		return nil, fmt.Errorf("bundle: seal: wrap key: %w", err)
	}
	raw := make([]byte, 0, preambleSize+len(hdr)+len(wrapped)+nonceSize+len(ct)+80)
	raw = append(raw, Magic...)
	raw = binary.BigEndian.AppendUint32(raw, uint32(len(hdr)))
	raw = binary.BigEndian.AppendUint32(raw, uint32(len(wrapped)))
	raw = binary.BigEndian.AppendUint32(raw, uint32(len(ct)))
	raw = append(raw, hdr...)
	raw = append(raw, wrapped...)
	raw = append(raw, nonce...)
	raw = append(raw, ct...)
	p := &Parsed{Header: h, raw: raw, HeaderRaw: hdr, WrappedKey: wrapped, Nonce: nonce, Ciphertext: ct}
	sig, err := signer.Sign(rand, p.SignedMessage())
	if err != nil {
		return nil, fmt.Errorf("bundle: seal: %w", err)
	}
	p.raw = append(raw, sig...)
	p.Signature = p.raw[len(raw):]
	return p, nil
}

func encodeBody(msgs [][]byte) []byte {
	n := 0
	for _, m := range msgs {
		n += lengthPrefix + len(m)
	}
	b := make([]byte, 0, n)
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return b
}

func decodeBody(b []byte, want int) ([][]byte, error) {
	out := make([][]byte, 0, want)
	for len(b) > 0 {
		if len(b) < lengthPrefix {
			return nil, fmt.Errorf("%w: truncated message length", ErrMalformed)
		}
		n := uint64(binary.BigEndian.Uint32(b))
		b = b[lengthPrefix:]
		if n > envelope.MaxEncoded || n > uint64(len(b)) {
			return nil, fmt.Errorf("%w: message of %d bytes", ErrMalformed, n)
		}
		if len(out) == want {
			return nil, fmt.Errorf("%w: more messages than the header's %d", ErrSequence, want)
		}
		out = append(out, b[:n:n])
		b = b[n:]
	}
	if len(out) != want {
		return nil, fmt.Errorf("%w: %d messages, header announces %d", ErrSequence, len(out), want)
	}
	return out, nil
}

// Open verifies and decrypts a bundle from the trusted sender addressed to the holder of dec,
// and returns its header and messages (see the package documentation for the checks and their
// order). Nothing of a bundle that fails is returned.
func Open(raw []byte, sender *gm.PublicKey, dec gm.Decrypter, l Limits) (Header, []inbox.Incoming, error) {
	p, out, err := OpenParsed(raw, sender, dec, l)
	if err != nil {
		return Header{}, nil, err
	}
	return p.Header, out, nil
}

// OpenParsed is Open returning the bundle as a Parsed, whose SignedMessage is already known.
func OpenParsed(raw []byte, sender *gm.PublicKey, dec gm.Decrypter, l Limits) (*Parsed, []inbox.Incoming, error) {
	p, err := Parse(raw, l)
	if err != nil {
		return nil, nil, err
	}
	if err := p.Verify(sender); err != nil {
		return nil, nil, err
	}
	body, err := p.decrypt(dec)
	if err != nil {
		return nil, nil, err
	}
	msgs, err := decodeBody(body, p.Header.Count())
	if err != nil {
		return nil, nil, err
	}
	out, err := p.Header.messages(msgs)
	if err != nil {
		return nil, nil, err
	}
	return p, out, nil
}

func (p *Parsed) decrypt(dec gm.Decrypter) ([]byte, error) {
	key, err := dec.Decrypt(p.WrappedKey)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrDecrypt, err)
	}
	if len(key) != keySize {
		return nil, fmt.Errorf("%w: key of %d bytes", ErrDecrypt, len(key))
	}
	body, err := gm.OpenSM4GCM(key, p.Nonce, p.Ciphertext, p.HeaderRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrDecrypt, err)
	}
	return body, nil
}

// messages checks each message against the header and the catalogue; msgs are parts of the
// decrypted body, which nothing else holds.
func (h Header) messages(msgs [][]byte) ([]inbox.Incoming, error) {
	dir, err := LaneDirection(h.Lane)
	if err != nil {
		return nil, err
	}
	out := make([]inbox.Incoming, len(msgs))
	ids := make(map[string]bool, len(msgs))
	for i, m := range msgs {
		seq := h.FirstSeq + int64(i)
		d := gm.SM3(m)
		if want, err := hex.DecodeString(h.Digests[i]); err != nil || !bytes.Equal(want, d[:]) {
			return nil, fmt.Errorf("%w: message %d (seq %d)", ErrDigest, i, seq)
		}
		env, err := checkEnvelope(m, dir)
		if err != nil {
			return nil, fmt.Errorf("seq %d: %w", seq, err)
		}
		if ids[env.ID] {
			return nil, fmt.Errorf("%w: message ID %s twice", ErrMalformed, env.ID)
		}
		ids[env.ID] = true
		out[i] = inbox.Incoming{Seq: seq, Envelope: env, Raw: m}
	}
	return out, nil
}

func checkEnvelope(raw []byte, dir envelope.Direction) (envelope.Envelope, error) {
	env, err := envelope.Unmarshal(raw)
	if err != nil {
		return env, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	spec, err := envelope.Lookup(env.Type)
	if err != nil {
		return env, fmt.Errorf("%w: %v", ErrForbiddenType, err)
	}
	if spec.Direction != dir && spec.Direction != envelope.Either {
		return env, fmt.Errorf("%w: %s travels %s, lane carries %s", ErrForbiddenType, env.Type, spec.Direction, dir)
	}
	if err := env.Check(); err != nil {
		if errors.Is(err, envelope.ErrUnknownType) {
			return env, fmt.Errorf("%w: %v", ErrForbiddenType, err)
		}
		return env, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	return env, nil
}
