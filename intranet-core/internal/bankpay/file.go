package bankpay

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The end-of-day file of an agency bank (日终对账文件), as the adapter forwards it: UTF-8 text,
// lines separated by LF (CRLF accepted), fields by "|". The first line is the header
//
//	FPBANK|1|BANK_CODE|YYYYMMDD|COUNT|TOTAL
//
// then COUNT detail lines, one per payment the bank collected that day:
//
//	BANK_SERIAL|DECISION_NO|PAY_CODE|AMOUNT|FINE|LATE_FEE|PAID_AT
//
// amounts in fen, PAID_AT RFC 3339. TOTAL is the sum of AMOUNT. A final empty line is allowed.

// MaxFileBytes bounds a file; MaxFileLines bounds its detail lines.
const (
	MaxFileBytes = 1 << 20
	MaxFileLines = 20000
)

// ErrFile wraps every reason a file is refused.
var ErrFile = errors.New("bankpay: invalid end-of-day file")

// File is a parsed end-of-day file.
type File struct {
	BankCode string
	Date     string // YYYY-MM-DD
	Total    int64
	Lines    []FileLine
}

// FileLine is one payment of the file.
type FileLine struct {
	No         int // line number in the file, 2 for the first detail line
	BankSerial string
	DecisionNo string
	PayCode    string
	Amount     int64
	Fine       int64
	LateFee    int64
	PaidAt     time.Time
}

// ParseFile parses and checks an end-of-day file.
func ParseFile(text string) (File, error) {
	var f File
	if len(text) > MaxFileBytes {
		return f, fmt.Errorf("%w: larger than %d bytes", ErrFile, MaxFileBytes)
	}
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	if len(lines) == 0 {
		return f, fmt.Errorf("%w: empty", ErrFile)
	}
	h := strings.Split(lines[0], "|")
	if len(h) != 6 || h[0] != "FPBANK" || h[1] != "1" {
		return f, fmt.Errorf("%w: line 1: header must be FPBANK|1|BANK_CODE|YYYYMMDD|COUNT|TOTAL", ErrFile)
	}
	if !reBankCode.MatchString(h[2]) {
		return f, fmt.Errorf("%w: line 1: bank code must be 3 to 12 digits", ErrFile)
	}
	day, err := time.Parse("20060102", h[3])
	if err != nil || len(h[3]) != 8 {
		return f, fmt.Errorf("%w: line 1: date must be YYYYMMDD", ErrFile)
	}
	count, err := strconv.Atoi(h[4])
	if err != nil || count < 0 || count > MaxFileLines || h[4] != strconv.Itoa(count) {
		return f, fmt.Errorf("%w: line 1: count must be 0 to %d", ErrFile, MaxFileLines)
	}
	total, err := amount(h[5])
	if err != nil {
		return f, fmt.Errorf("%w: line 1: total %v", ErrFile, err)
	}
	if len(lines)-1 != count {
		return f, fmt.Errorf("%w: header says %d lines, the file has %d", ErrFile, count, len(lines)-1)
	}
	f = File{BankCode: h[2], Date: day.Format(time.DateOnly), Total: total}
	seen := map[string]int{}
	var sum int64
	for i, ln := range lines[1:] {
		no := i + 2
		c := strings.Split(ln, "|")
		if len(c) != 7 {
			return File{}, fmt.Errorf("%w: line %d: want 7 fields, got %d", ErrFile, no, len(c))
		}
		l := FileLine{No: no, BankSerial: c[0], DecisionNo: c[1], PayCode: c[2]}
		switch {
		case !reSerial.MatchString(l.BankSerial):
			return File{}, fmt.Errorf("%w: line %d: bank serial must be 1 to 32 letters or digits", ErrFile, no)
		case !reDecision.MatchString(l.DecisionNo):
			return File{}, fmt.Errorf("%w: line %d: decision number must be 15 to 20 digits", ErrFile, no)
		case !rePayCode.MatchString(l.PayCode):
			return File{}, fmt.Errorf("%w: line %d: payment code must be 1 to 64 letters or digits", ErrFile, no)
		}
		if prev, dup := seen[l.BankSerial]; dup {
			return File{}, fmt.Errorf("%w: line %d: bank serial %s already on line %d", ErrFile, no, l.BankSerial, prev)
		}
		seen[l.BankSerial] = no
		for j, dst := range []*int64{&l.Amount, &l.Fine, &l.LateFee} {
			if *dst, err = amount(c[3+j]); err != nil {
				return File{}, fmt.Errorf("%w: line %d: %s %v", ErrFile, no, [...]string{"amount", "fine", "late fee"}[j], err)
			}
		}
		if l.Amount != l.Fine+l.LateFee || l.Amount == 0 {
			return File{}, fmt.Errorf("%w: line %d: amount must be fine + late fee and more than 0", ErrFile, no)
		}
		if l.PaidAt, err = time.Parse(time.RFC3339, c[6]); err != nil {
			return File{}, fmt.Errorf("%w: line %d: paid time must be RFC 3339", ErrFile, no)
		}
		sum += l.Amount
		f.Lines = append(f.Lines, l)
	}
	if sum != total {
		return File{}, fmt.Errorf("%w: header total %d differs from the lines' sum %d", ErrFile, total, sum)
	}
	return f, nil
}

// amount parses a non-negative amount in fen of at most MaxAmount per line (and 10^15 in all).
func amount(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1e15 || s != strconv.FormatInt(n, 10) {
		return 0, errors.New("must be a whole number of fen")
	}
	return n, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
