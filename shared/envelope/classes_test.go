package envelope

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"testing"
)

// The field checks are plain loops; each must accept exactly what its pattern accepts.
func TestFieldClassesMatchTheirPatterns(t *testing.T) {
	checks := []struct {
		pattern string
		check   func(string) bool
	}{
		{`^[0-9]+$`, digits},
		{`^[A-Za-z0-9_-]{1,64}$`, ident},
		{`^[A-Za-z0-9_-]{22,64}$`, token},
		{`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`, date},
		{`^[A-Za-z0-9]{1,40}$`, refundNo},
	}
	fixed := []string{"", "0", "2026-11-27", "2026-1-27", "2026-11-277", "20261127", "a-b_c", "a b", "é", "x\n",
		"0123456789012345678901", "012345678901234567890", string(make([]byte, 64)), "Zz09_-"}
	r := rand.New(rand.NewPCG(1, 2))
	// Half of the random inputs draw only from the classes' own characters, so that many pass.
	alphabets := []string{"09azAZ_-. \n\x00é:", "0123456789azAZ_-"}
	for _, c := range checks {
		re := regexp.MustCompile(c.pattern)
		inputs := append([]string(nil), fixed...)
		for range 20000 {
			b := make([]byte, r.IntN(70))
			alphabet := alphabets[r.IntN(2)]
			for i := range b {
				b[i] = alphabet[r.IntN(len(alphabet))]
			}
			if r.IntN(4) == 0 { // shaped like a date, now and then with a wrong character
				b = []byte(fmt.Sprintf("%04d-%02d-%02d", r.IntN(10000), r.IntN(100), r.IntN(100)))
				if r.IntN(2) == 0 {
					b[r.IntN(len(b))] = alphabet[r.IntN(len(alphabet))]
				}
			}
			inputs = append(inputs, string(b))
		}
		passed := 0
		for _, s := range inputs {
			if re.MatchString(s) {
				passed++
			}
			if got, want := c.check(s), re.MatchString(s); got != want {
				t.Fatalf("%s: %q: check says %t, pattern %t", c.pattern, s, got, want)
			}
		}
		if passed < 100 {
			t.Fatalf("%s: only %d of %d inputs match: the comparison says little", c.pattern, passed, len(inputs))
		}
	}
}
