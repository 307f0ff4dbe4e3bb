package failpoint

import (
	"slices"
	"testing"
)

func TestParseAndHit(t *testing.T) {
	known := []string{"a", "b"}
	for _, tc := range []struct {
		name, spec string
		ok         bool
	}{
		{"empty", "", true},
		{"one", "a", true},
		{"counts", "a:3, b:1", true},
		{"fail/unknown", "c", false},
		{"fail/zero-count", "a:0", false},
		{"fail/bad-count", "a:x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.spec, known, nil)
			if (err == nil) != tc.ok {
				t.Fatalf("Parse(%q): %v", tc.spec, err)
			}
		})
	}

	var killed, logged []string
	s, err := Parse("a:3,b", known, func(n string) { logged = append(logged, n) })
	if err != nil || !s.Active() {
		t.Fatal(err)
	}
	s.kill = func() { killed = append(killed, "kill") }
	for range 2 {
		s.Hit("a")
	}
	if len(killed) != 0 {
		t.Fatal("killed before the count")
	}
	s.Hit("a")
	s.Hit("b")
	s.Hit("c")
	if !slices.Equal(logged, []string{"a", "b"}) || len(killed) != 2 {
		t.Fatalf("logged %v, killed %d times", logged, len(killed))
	}
	inert, _ := Parse("", known, nil)
	inert.kill = func() { t.Fatal("an empty spec killed") }
	inert.Hit("a")
}
