package bankpay

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/intranet-core/internal/partnerin"
	"finepay/shared/bizdate"
)

func decode(body string, v any) error {
	e := echo.New()
	c := e.NewContext(httptest.NewRequest("POST", "/", strings.NewReader(body)), httptest.NewRecorder())
	return partnerin.Decode(c, v)
}

var fuzzNow = time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)

// FuzzDecodeQuery: the query decoder and validator never panic, and what validates is well formed.
func FuzzDecodeQuery(f *testing.F) {
	f.Add(`{"decision_no":"230102100012345678","bank_code":"104100000004"}`)
	f.Add(`{"decision_no":230102100012345678}`)
	f.Add(`{"decision_no":"2301","bank_code":"1","x":1}`)
	f.Add(`{} {}`)
	f.Fuzz(func(t *testing.T, body string) {
		var r QueryRequest
		if decode(body, &r) != nil || r.Validate() != nil {
			return
		}
		if !reDecision.MatchString(r.DecisionNo) || !reBankCode.MatchString(r.BankCode) {
			t.Fatalf("validated %+v", r)
		}
	})
}

// FuzzDecodePayment: the payment result decoder and validator never panic; what validates has
// consistent amounts and a payment time not in the future.
func FuzzDecodePayment(f *testing.F) {
	f.Add(`{"bank_code":"104100000004","bank_serial":"BS2026112700000011234","decision_no":"230102100012345678","pay_code":"23010026112700000016","amount":23000,"fine":20000,"late_fee":3000,"paid_at":"2026-11-27T10:05:00+08:00"}`)
	f.Add(`{"amount":-1,"fine":-1,"late_fee":0,"paid_at":"2026-13-01T00:00:00Z"}`)
	f.Add(`{"amount":9223372036854775807,"fine":9223372036854775807,"late_fee":1}`)
	f.Add(`{"paid_at":"2099-01-01T00:00:00+08:00"}`)
	f.Fuzz(func(t *testing.T, body string) {
		var r PaymentRequest
		if decode(body, &r) != nil {
			return
		}
		paidAt, err := r.Validate(fuzzNow)
		if err != nil {
			return
		}
		if r.Amount != r.Fine+r.LateFee || r.Fine <= 0 || r.Fine > MaxAmount || r.LateFee < 0 || r.LateFee > r.Fine ||
			paidAt.After(fuzzNow.Add(5*time.Minute)) || !reSerial.MatchString(r.BankSerial) {
			t.Fatalf("validated %+v", r)
		}
	})
}

// FuzzDecodeRecon: the reconciliation decoder, validator and file parser never panic; a parsed
// file's lines sum to its total.
func FuzzDecodeRecon(f *testing.F) {
	f.Add(`{"bank_code":"104100000004","business_date":"2026-11-27","file":"FPBANK|1|104100000004|20261127|0|0\n","file_sm3":"` + strings.Repeat("a", 64) + `"}`)
	f.Add(`{"business_date":"2026-02-30","file":""}`)
	f.Fuzz(func(t *testing.T, body string) {
		var r ReconRequest
		if decode(body, &r) != nil {
			return
		}
		if _, err := r.Validate(bizdate.Of(fuzzNow)); err != nil {
			return
		}
		checkFile(t, r.File)
	})
}

// FuzzParseFile: the end-of-day file parser never panics, and what it accepts is consistent.
func FuzzParseFile(f *testing.F) {
	f.Add("FPBANK|1|104100000004|20261127|2|43000\nBS1|230102100012345678|23010026112700000016|23000|20000|3000|2026-11-27T10:05:00+08:00\nBS2|230102100012345679|23010026112700000024|20000|20000|0|2026-11-27T11:05:00+08:00\n")
	f.Add("FPBANK|1|104100000004|20261127|0|0")
	f.Add("FPBANK|1|104100000004|20261127|1|1\r\nBS1|230102100012345678|1|1|1|0|2026-11-27T10:05:00Z")
	f.Add("FPBANK|1|104|20261127|1|-1\n|||||\n")
	f.Fuzz(checkFile)
}

func checkFile(t *testing.T, text string) {
	file, err := ParseFile(text)
	if err != nil {
		return
	}
	var sum int64
	seen := map[string]bool{}
	for _, l := range file.Lines {
		if l.Amount != l.Fine+l.LateFee || l.Amount <= 0 || seen[l.BankSerial] {
			t.Fatalf("accepted line %+v", l)
		}
		seen[l.BankSerial] = true
		sum += l.Amount
	}
	if sum != file.Total {
		t.Fatalf("lines sum to %d, total %d", sum, file.Total)
	}
}

func TestParseFile(t *testing.T) {
	good := "FPBANK|1|104100000004|20261127|2|43000\nBS1|230102100012345678|23010026112700000016|23000|20000|3000|2026-11-27T10:05:00+08:00\nBS2|230102100012345679|23010026112700000024|20000|20000|0|2026-11-27T11:05:00+08:00\n"
	f, err := ParseFile(good)
	if err != nil || f.BankCode != "104100000004" || f.Date != "2026-11-27" || len(f.Lines) != 2 || f.Lines[0].LateFee != 3000 {
		t.Fatalf("%+v %v", f, err)
	}
	for name, bad := range map[string]string{
		"count":         strings.Replace(good, "|2|43000", "|3|43000", 1),
		"total":         strings.Replace(good, "|2|43000", "|2|43001", 1),
		"sum":           strings.Replace(good, "|23000|20000|3000|", "|23000|20000|2000|", 1),
		"duplicate":     strings.Replace(good, "BS2|", "BS1|", 1),
		"header":        strings.Replace(good, "FPBANK|1|", "FPBANK|2|", 1),
		"date":          strings.Replace(good, "20261127", "20261327", 1),
		"leading zeros": strings.Replace(good, "|20000|20000|0|", "|020000|20000|0|", 1),
		"fields":        strings.Replace(good, "|2026-11-27T11:05:00+08:00", "", 1),
	} {
		if _, err := ParseFile(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
