package bankpay

import (
	"regexp"
	"strings"
	"time"

	"finepay/intranet-core/internal/partnerin"
	"finepay/shared/bizdate"
)

var (
	reDecision = regexp.MustCompile(`^[0-9]{15,20}$`)
	reBankCode = regexp.MustCompile(`^[0-9]{3,12}$`)
	reSerial   = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)
	rePayCode  = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)
	reDate     = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	reSM3      = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// MaxAmount bounds every amount a bank reports (2,000,000 yuan: the largest fine and its late
// fee).
const MaxAmount = 200_000_000

// QueryRequest is the body of POST /partner/v1/bank/query.
type QueryRequest struct {
	DecisionNo string `json:"decision_no"`
	BankCode   string `json:"bank_code"`
}

// Validate names every field that fails.
func (r QueryRequest) Validate() error {
	p := partnerin.Problems{}
	p.Add(!reDecision.MatchString(r.DecisionNo), "decision_no", "must be 15 to 20 digits")
	p.Add(!reBankCode.MatchString(r.BankCode), "bank_code", "must be 3 to 12 digits")
	return p.Err()
}

// PaymentRequest is the body of POST /partner/v1/bank/payments: a payment an agency bank
// collected.
type PaymentRequest struct {
	BankCode   string `json:"bank_code"`
	BankSerial string `json:"bank_serial"`
	DecisionNo string `json:"decision_no"`
	PayCode    string `json:"pay_code"`
	Amount     int64  `json:"amount"`
	Fine       int64  `json:"fine"`
	LateFee    int64  `json:"late_fee"`
	PaidAt     string `json:"paid_at"`
}

// Validate checks the fields' formats and sums (not yet against what is owed) and returns the
// payment time.
func (r PaymentRequest) Validate(now time.Time) (time.Time, error) {
	p := partnerin.Problems{}
	p.Add(!reBankCode.MatchString(r.BankCode), "bank_code", "must be 3 to 12 digits")
	p.Add(!reSerial.MatchString(r.BankSerial), "bank_serial", "must be 1 to 32 letters or digits")
	p.Add(!reDecision.MatchString(r.DecisionNo), "decision_no", "must be 15 to 20 digits")
	p.Add(!rePayCode.MatchString(r.PayCode), "pay_code", "must be 1 to 64 letters or digits")
	p.Add(r.Fine <= 0 || r.Fine > MaxAmount, "fine", "must be 1 to 200000000 fen")
	p.Add(r.LateFee < 0 || r.LateFee > r.Fine, "late_fee", "must be 0 to the fine (Administrative Penalty Law art. 72)")
	p.Add(r.Amount <= 0 || r.Amount != r.Fine+r.LateFee, "amount", "must be fine + late_fee, in fen")
	paidAt, err := time.Parse(time.RFC3339, r.PaidAt)
	switch {
	case err != nil:
		p.Add(true, "paid_at", "must be an RFC 3339 time such as 2026-11-27T10:05:00+08:00")
	case paidAt.After(now.Add(5 * time.Minute)):
		p.Add(true, "paid_at", "must not be in the future")
	case paidAt.Before(now.AddDate(0, 0, -31)):
		p.Add(true, "paid_at", "must be within the last 31 days")
	}
	return paidAt, p.Err()
}

// canonical is the request as one string, for the idempotency hash of a bank serial.
func (r PaymentRequest) canonical() string {
	return strings.Join([]string{r.BankCode, r.BankSerial, r.DecisionNo, r.PayCode, itoa(r.Amount), itoa(r.Fine),
		itoa(r.LateFee), r.PaidAt}, "\x1f")
}

// ReconRequest is the body of POST /partner/v1/bank/reconciliations: a bank's end-of-day file.
type ReconRequest struct {
	BankCode     string `json:"bank_code"`
	BusinessDate string `json:"business_date"`
	File         string `json:"file"`
	FileSM3      string `json:"file_sm3"`
}

// Validate names every field that fails and returns the business date.
func (r ReconRequest) Validate(today bizdate.Date) (bizdate.Date, error) {
	p := partnerin.Problems{}
	p.Add(!reBankCode.MatchString(r.BankCode), "bank_code", "must be 3 to 12 digits")
	var d bizdate.Date
	if !reDate.MatchString(r.BusinessDate) {
		p.Add(true, "business_date", "must be a date YYYY-MM-DD")
	} else if x, err := bizdate.Parse(r.BusinessDate); err != nil || x.String() != r.BusinessDate {
		p.Add(true, "business_date", "must be a date YYYY-MM-DD")
	} else if today.Before(x) {
		p.Add(true, "business_date", "must not be in the future")
	} else {
		d = x
	}
	p.Add(r.File == "", "file", "is required")
	p.Add(len(r.File) > MaxFileBytes, "file", "must be at most 1 MiB")
	p.Add(!reSM3.MatchString(r.FileSM3), "file_sm3", "must be 64 lowercase hex digits (SM3 of file)")
	return d, p.Err()
}
