// Package payername opens the payer_name_enc field of the partner protocol (base64 of an SM2
// ciphertext, C1C3C2 ASN.1, to the partner's encryption certificate) and masks names for display.
package payername

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Decrypter opens SM2 ciphertexts; *gm.PrivateKey is one.
type Decrypter interface {
	Decrypt(ciphertext []byte) ([]byte, error)
}

// MaxRunes bounds a payer name.
const MaxRunes = 64

// ErrInvalid is wrapped by every error of Open.
var ErrInvalid = errors.New("payer_name_enc")

// Open decodes and decrypts enc and checks that it holds a plausible name.
func Open(d Decrypter, enc string) (string, error) {
	ct, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("%w: must be base64", ErrInvalid)
	}
	pt, err := d.Decrypt(ct)
	if err != nil {
		return "", fmt.Errorf("%w: does not decrypt with the partner's encryption key", ErrInvalid)
	}
	name := string(pt)
	switch {
	case !utf8.ValidString(name):
		return "", fmt.Errorf("%w: the plaintext is not UTF-8", ErrInvalid)
	case strings.TrimSpace(name) == "":
		return "", fmt.Errorf("%w: the name is empty", ErrInvalid)
	case utf8.RuneCountInString(name) > MaxRunes:
		return "", fmt.Errorf("%w: the name is longer than %d characters", ErrInvalid, MaxRunes)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", fmt.Errorf("%w: the name holds control characters", ErrInvalid)
	}
	return name, nil
}

// Mask keeps the first character of a name and replaces the others with '*': 张三 → 张*,
// 欧阳娜娜 → 欧***; a one-character name becomes *.
func Mask(name string) string {
	r := []rune(strings.TrimSpace(name))
	switch len(r) {
	case 0:
		return ""
	case 1:
		return "*"
	}
	return string(r[0]) + strings.Repeat("*", len(r)-1)
}

// Reason is the message of an Open error without the field name, for a validation answer.
func Reason(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
}
