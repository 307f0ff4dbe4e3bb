package money_test

import (
	"errors"
	"testing"

	"finepay/shared/money"
)

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   money.Fen
		want string
	}{{20000, "¥200.00"}, {5, "¥0.05"}, {0, "¥0.00"}, {-105, "-¥1.05"}, {123456789, "¥1234567.89"}}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%d: got %q want %q", tt.in, got, tt.want)
		}
	}
	if got := money.Fen(20050).Yuan(); got != "200.50" {
		t.Errorf("Yuan = %q", got)
	}
}

func TestParseYuan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want money.Fen
		err  bool
	}{
		{"200", 20000, false}, {"200.5", 20050, false}, {"200.50", 20050, false}, {"0.01", 1, false},
		{"-1.00", -100, false}, {"", 0, true}, {"1.234", 0, true}, {"1.", 0, true}, {".5", 0, true},
		{"1e3", 0, true}, {"`200.00", 0, true}, {"1,000.00", 0, true}, {"9999999999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := money.ParseYuan(tt.in)
		if tt.err {
			if !errors.Is(err, money.ErrParse) {
				t.Errorf("%q: err = %v, want ErrParse", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: got %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}
