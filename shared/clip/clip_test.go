package clip

import (
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"longer text", 6, "longer"},
		{"退款成功", 7, "退款"}, // 3 bytes a character: the third would be cut
		{"退款成功", 6, "退款"},
		{"a\x00b\nc\x1b", 10, "a b c "},
		{"ok\xff\xfezz", 10, "okzz"},
		{"退", 2, ""},
		{"", 0, ""},
	} {
		got := Text(c.in, c.n)
		if got != c.want || !utf8.ValidString(got) || len(got) > c.n {
			t.Errorf("Text(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func FuzzText(f *testing.F) {
	f.Add("退款成功\x00\xff", 5)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		got := Text(s, n)
		if len(got) > n || !utf8.ValidString(got) {
			t.Fatalf("Text(%q, %d) = %q", s, n, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", got)
			}
		}
	})
}
