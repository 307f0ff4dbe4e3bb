package nontaxsim

import (
	"testing"
	"time"
)

func TestPayCode(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	code := payCode("230100", day, 1)
	if len(code) != 20 || code[:19] != "2301002611270000001" {
		t.Fatalf("payCode = %q", code)
	}
	// Luhn: the whole code checks, and changing any one digit breaks it.
	if !luhnValid(code) {
		t.Fatalf("%s fails its check digit", code)
	}
	for i := range code {
		b := []byte(code)
		b[i] = '0' + (b[i]-'0'+1)%10
		if luhnValid(string(b)) {
			t.Errorf("changing digit %d of %s kept the check digit valid", i, code)
		}
	}
	if luhn("7992739871") != 3 { // the textbook example
		t.Errorf("luhn(7992739871) = %d, want 3", luhn("7992739871"))
	}
}

func luhnValid(s string) bool { return luhn(s[:len(s)-1]) == int(s[len(s)-1]-'0') }
