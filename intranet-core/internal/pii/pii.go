// Package pii protects the personal fields the core keeps (party name, plate): SM4-GCM
// encryption at rest under the data key, an SM3-HMAC blind index for looking a record up by a
// field without decrypting every row, and the masks shown wherever a field leaves the intranet.
//
// The 16-byte data key is never used directly: an encryption key and an index key are derived
// from it with HMAC-SM3 under fixed labels, so that the blind index reveals nothing about the
// encryption key and vice versa.
//
// A sealed field is: version byte 0x01, a 12-byte random nonce, the SM4-GCM ciphertext and its
// 16-byte tag. The additional data binds the ciphertext to its column and row (for example
// "bills.party_name:B2026112700000001"), so a ciphertext copied to another row does not open.
package pii

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"finepay/shared/gm"
)

// KeySize is the size of the data key in bytes.
const KeySize = gm.SM4KeySize

const sealVersion = 1

// ErrOpen is returned when a sealed field does not open (wrong key, row or column, or tampered).
var ErrOpen = errors.New("pii: sealed field does not open")

// Vault seals and opens personal fields and computes their blind index.
type Vault struct {
	encKey   []byte
	indexKey []byte
	rand     io.Reader
}

// NewVault derives the vault's keys from a 16-byte data key. rand is the nonce source
// (crypto/rand.Reader when nil).
func NewVault(dataKey []byte, rnd io.Reader) (*Vault, error) {
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("pii: data key is %d bytes, want %d", len(dataKey), KeySize)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Vault{
		encKey:   gm.HMACSM3(dataKey, []byte("finepay/pii/encrypt/v1"))[:gm.SM4KeySize],
		indexKey: gm.HMACSM3(dataKey, []byte("finepay/pii/index/v1")),
		rand:     rnd,
	}, nil
}

// Seal encrypts value for the given column and row.
func (v *Vault) Seal(column, row, value string) ([]byte, error) {
	nonce := make([]byte, gm.GCMNonceSize)
	if _, err := io.ReadFull(v.rand, nonce); err != nil {
		return nil, fmt.Errorf("pii: nonce: %w", err)
	}
	ct, err := gm.SealSM4GCM(v.encKey, nonce, []byte(value), aad(column, row))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+len(nonce)+len(ct))
	out = append(out, sealVersion)
	out = append(out, nonce...)
	return append(out, ct...), nil
}

// Open decrypts a value sealed by Seal for the same column and row.
func (v *Vault) Open(column, row string, sealed []byte) (string, error) {
	if len(sealed) < 1+gm.GCMNonceSize+gm.GCMTagSize || sealed[0] != sealVersion {
		return "", ErrOpen
	}
	nonce := sealed[1 : 1+gm.GCMNonceSize]
	pt, err := gm.OpenSM4GCM(v.encKey, nonce, sealed[1+gm.GCMNonceSize:], aad(column, row))
	if err != nil {
		return "", ErrOpen
	}
	return string(pt), nil
}

func aad(column, row string) []byte { return []byte(column + ":" + row) }

// Index returns the blind index of value for a kind of field ("name", "plate"): the hex
// HMAC-SM3 of the normalised value under the index key. Equal values give equal indexes.
func (v *Vault) Index(kind, value string) string {
	return hex.EncodeToString(gm.HMACSM3(v.indexKey, []byte(kind+"\x00"+Normalize(value))))
}

// Normalize trims surrounding white space and upper-cases ASCII letters, so that lookups do not
// depend on how a clerk typed a value.
func Normalize(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

// MaskName keeps the first character of a name and replaces every other character with '*':
// 张三 → 张*, 张三丰 → 张**, 欧阳娜娜 → 欧***. A one-character name becomes "*". This is the rule
// the e-receipt platform uses for payer_masked too, so the payer sees one form everywhere.
func MaskName(name string) string {
	r := []rune(strings.TrimSpace(name))
	switch len(r) {
	case 0:
		return ""
	case 1:
		return "*"
	}
	return string(r[0]) + strings.Repeat("*", len(r)-1)
}

// MaskPlate keeps the first two characters (province and issuing office) and the last one and
// replaces the middle with '*': 黑A12345 → 黑A****5. Plates of three characters or fewer are
// masked entirely.
func MaskPlate(plate string) string {
	r := []rune(strings.TrimSpace(plate))
	if len(r) <= 3 {
		return strings.Repeat("*", len(r))
	}
	return string(r[:2]) + strings.Repeat("*", len(r)-3) + string(r[len(r)-1])
}

// LoadOrCreateKey reads the hex data key at path. When the file does not exist it creates it
// (mode 0600, directory 0700) with KeySize random bytes and logs a warning, so that a first
// start works; production installs provision the key.
func LoadOrCreateKey(path string, rnd io.Reader, log *slog.Logger) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(k) != KeySize {
			return nil, fmt.Errorf("pii: data key file %s must hold %d bytes in hex", path, KeySize)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pii: data key: %w", err)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	k := make([]byte, KeySize)
	if _, err := io.ReadFull(rnd, k); err != nil {
		return nil, fmt.Errorf("pii: data key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("pii: data key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pii: create data key: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("pii: write data key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	log.Warn("created a new data key for personal fields; back it up, data sealed under it is unreadable without it", "path", path)
	return k, nil
}
