// Package lookup holds the keyed hash that lets a payer find a bill on the internet side by its
// decision number and the last four characters of the vehicle's plate (DESIGN §6, privacy),
// without the gateway ever holding a plate, or a pair of decision number and plate, in clear.
//
// The core, which knows the full plate, computes
//
//	HMAC-SM3(key, "finepay/lookup/v1" 0x1f decision_no 0x1f upper(last four characters of the plate))
//
// under the lookup key it shares with the gateway, and publishes its lowercase hex with the bill
// (bill.published, lookup_hash). The gateway stores only that hash and, for a lookup, computes
// the same over what the payer typed: a bill is found when the two are equal, so that "no such
// decision" and "wrong plate characters" are one and the same answer (no row with that hash).
package lookup

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"finepay/shared/gm"
)

// KeySize is the size of the lookup key in bytes.
const KeySize = 32

// HashLen is the length of a lookup hash in hex characters.
const HashLen = 64

const label = "finepay/lookup/v1"

// Errors of input validation; their text is for the payer's developer, the gateway shows its own.
var (
	ErrDecisionNo = errors.New("lookup: the decision number must be 15 to 20 digits")
	ErrPlateTail  = errors.New("lookup: the plate's last characters must be 4 letters or digits")
)

var reDecision = regexp.MustCompile(`^[0-9]{15,20}$`)

// NormalizeDecisionNo trims white space and checks 15–20 digits.
func NormalizeDecisionNo(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !reDecision.MatchString(s) {
		return "", ErrDecisionNo
	}
	return s, nil
}

// NormalizePlateTail trims white space, upper-cases ASCII letters and checks exactly four
// characters, each a letter (Latin, or the class character a plate may end with, such as 学) or
// a digit.
func NormalizePlateTail(s string) (string, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) != 4 {
		return "", ErrPlateTail
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r > unicode.MaxASCII && unicode.IsLetter(r)) {
			return "", ErrPlateTail
		}
	}
	return s, nil
}

// PlateTail returns the last four characters of a full plate, upper-cased (黑A12345 → 2345).
func PlateTail(plate string) (string, error) {
	r := []rune(strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(plate), " ", "")))
	if len(r) < 4 {
		return "", ErrPlateTail
	}
	return NormalizePlateTail(string(r[len(r)-4:]))
}

// Hash is the lookup hash of a decision number and a plate's last four characters, both
// normalised first. It fails for input that does not validate.
func Hash(key []byte, decisionNo, plateTail string) (string, error) {
	if len(key) != KeySize {
		return "", fmt.Errorf("lookup: key of %d bytes, want %d", len(key), KeySize)
	}
	d, err := NormalizeDecisionNo(decisionNo)
	if err != nil {
		return "", err
	}
	p, err := NormalizePlateTail(plateTail)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(gm.HMACSM3(key, []byte(label+"\x1f"+d+"\x1f"+p))), nil
}

// DecisionKey is a keyed digest of a decision number alone, for naming per-decision state (a
// rate-limit counter) without writing the number in clear: lowercase hex of 16 bytes.
func DecisionKey(key []byte, decisionNo string) string {
	return hex.EncodeToString(gm.HMACSM3(key, []byte(label+"/decision\x1f"+strings.TrimSpace(decisionNo)))[:16])
}

// ValidHash reports whether s looks like a lookup hash: 64 lowercase hex characters.
func ValidHash(s string) bool {
	if len(s) != HashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// LoadKey reads a lookup key file: 32 bytes in hex (64 characters), surrounding white space
// ignored.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lookup: key: %w (make certs creates lookup.key)", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != KeySize {
		return nil, fmt.Errorf("lookup: key file %s must hold %d bytes in hex", path, KeySize)
	}
	return k, nil
}

// LoadOptionalKey reads the lookup key file at path for a process that can run without one: nil
// and no error when path is empty or the file is absent (logged as a warning, with what is
// missing without it), an error when the file cannot be read or is malformed.
func LoadOptionalKey(path string, log *slog.Logger, without string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	k, err := LoadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		log.Warn("no lookup key: "+without, "path", path)
		return nil, nil
	}
	return k, err
}
