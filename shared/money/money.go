// Package money holds amounts of Chinese yuan as an integer count of fen. Floats never carry money.
package money

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Fen is an amount in fen (0.01 yuan).
type Fen int64

// ErrParse is wrapped by ParseYuan errors.
var ErrParse = errors.New("money: not an amount in yuan")

// String renders the amount for people: ¥200.00, -¥0.05.
func (f Fen) String() string {
	sign := ""
	v := int64(f)
	if v < 0 {
		sign = "-"
		v = -v
	}
	return fmt.Sprintf("%s¥%d.%02d", sign, v/100, v%100)
}

// Yuan renders the amount as a plain decimal in yuan with two places, as channels and bill files
// write it: 200.00.
func (f Fen) Yuan() string {
	s := f.String()
	return strings.Replace(s, "¥", "", 1)
}

// ParseYuan reads a decimal amount in yuan with at most two decimals ("200", "200.5", "200.50",
// "-1.00"); a leading backtick, as in WeChat Pay bill files, is not accepted here: strip it first.
func ParseYuan(s string) (Fen, error) {
	orig := s
	neg := false
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || len(frac) > 2 || (hasDot && frac == "") {
		return 0, fmt.Errorf("%w: %q", ErrParse, orig)
	}
	for _, part := range []string{whole, frac} {
		for _, c := range part {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("%w: %q", ErrParse, orig)
			}
		}
	}
	if len(whole) > 15 {
		return 0, fmt.Errorf("%w: %q too large", ErrParse, orig)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrParse, orig)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	fr, _ := strconv.ParseInt(frac, 10, 64)
	v := w*100 + fr
	if neg {
		v = -v
	}
	return Fen(v), nil
}
