// Package clip bounds text that comes from outside (a request, a channel, a partner, an error
// quoting them) before it is stored or logged as text: valid UTF-8, no control characters, and
// at most a given number of bytes, cut at a character boundary.
package clip

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text returns s as valid UTF-8 (invalid bytes dropped) with every control character (NUL,
// newlines, escapes) replaced by a space, cut to at most n bytes without splitting a character.
func Text(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:max(n, 0)]
}
