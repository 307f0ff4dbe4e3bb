package console

import (
	"crypto/pbkdf2"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/emmansun/gmsm/sm3"
)

// DefaultIterations is the PBKDF2 iteration count of new password hashes.
const DefaultIterations = 120_000

// MinIterations is the fewest iterations a stored hash may have.
const MinIterations = 100_000

const hashScheme = "pbkdf2-sm3"

// HashPassword derives a PBKDF2-HMAC-SM3 hash of password with a random 16-byte salt:
// "pbkdf2-sm3$ITERATIONS$SALT$KEY" (salt and key base64url, key 32 bytes).
func HashPassword(rnd io.Reader, password string, iterations int) (string, error) {
	if iterations < MinIterations {
		return "", fmt.Errorf("console: %d PBKDF2 iterations, want at least %d", iterations, MinIterations)
	}
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return "", fmt.Errorf("console: salt: %w", err)
	}
	key, err := pbkdf2.Key(sm3.New, password, salt, iterations, 32)
	if err != nil {
		return "", fmt.Errorf("console: pbkdf2: %w", err)
	}
	enc := base64.RawURLEncoding
	return strings.Join([]string{hashScheme, strconv.Itoa(iterations), enc.EncodeToString(salt), enc.EncodeToString(key)}, "$"), nil
}

// CheckPassword reports whether password matches an encoded hash, in constant time.
func CheckPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < MinIterations || iter > 10_000_000 {
		return false
	}
	enc := base64.RawURLEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got, err := pbkdf2.Key(sm3.New, password, salt, iter, len(want))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}

// ErrWeakPassword is returned for a password that does not meet the policy.
var ErrWeakPassword = errors.New("console: password must have at least 8 characters of at least two kinds (letters, digits, other)")

// CheckPolicy enforces the password policy: at least 8 characters, of at least two kinds.
func CheckPolicy(p string) error {
	if len([]rune(p)) < 8 {
		return ErrWeakPassword
	}
	var letter, digit, other bool
	for _, r := range p {
		switch {
		case unicode.IsLetter(r):
			letter = true
		case unicode.IsDigit(r):
			digit = true
		default:
			other = true
		}
	}
	kinds := 0
	for _, k := range []bool{letter, digit, other} {
		if k {
			kinds++
		}
	}
	if kinds < 2 {
		return ErrWeakPassword
	}
	return nil
}
