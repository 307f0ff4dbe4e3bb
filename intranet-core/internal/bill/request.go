package bill

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"finepay/shared/bizdate"
)

// CreateRequest is what the window platform (or a clerk through the console) sends to create
// the payable bill of a decision.
type CreateRequest struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	PartyName       string `json:"party_name"`
	Plate           string `json:"plate"`
	Fine            int64  `json:"fine"` // fen
	ServedDate      string `json:"served_date"`
	UnitCode        string `json:"unit_code"`
	ItemCode        string `json:"item_code"`
	// LateFeeApplies says whether late fees accrue after the 15-day grace period; true when
	// absent.
	LateFeeApplies *bool `json:"late_fee_applies,omitempty"`
}

// MaxFine is the largest fine a bill may carry (1,000,000 yuan).
const MaxFine = 100_000_000

// FieldError names a field that failed validation.
type FieldError struct {
	Field   string // the JSON name
	Message string // English, for the API
	Zh      string // Chinese, for the console
}

// ValidationError lists every field that failed.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Has reports whether field failed.
func (e *ValidationError) Has(field string) bool {
	for _, f := range e.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

var (
	reDecision = regexp.MustCompile(`^[0-9]{15,20}$`)
	reSerial   = regexp.MustCompile(`^[0-9A-Za-z]{1,32}$`)
	reUnit     = regexp.MustCompile(`^[0-9]{6}$`)
	reItem     = regexp.MustCompile(`^[0-9]{1,20}$`)
	reDate     = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	// A Chinese plate: province, issuing-office letter, 4–5 letters or digits, and a last letter,
	// digit or class character (挂 trailer, 学 learner, 警 police, 港/澳 Hong Kong/Macau, 领/使
	// consular, 试 test, 超 over-size). 7 characters, 8 for new-energy plates.
	rePlate = regexp.MustCompile(`^[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领][A-Z][A-Z0-9]{4,5}[A-Z0-9挂学警港澳领使试超]$`)
)

// Normalize trims white space and upper-cases the plate.
func (r *CreateRequest) Normalize() {
	r.DecisionNo = strings.TrimSpace(r.DecisionNo)
	r.ViolationSerial = strings.TrimSpace(r.ViolationSerial)
	r.PartyName = strings.TrimSpace(r.PartyName)
	r.Plate = strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(r.Plate), " ", ""))
	r.ServedDate = strings.TrimSpace(r.ServedDate)
	r.UnitCode = strings.TrimSpace(r.UnitCode)
	r.ItemCode = strings.TrimSpace(r.ItemCode)
}

// Applies returns LateFeeApplies with its default.
func (r *CreateRequest) Applies() bool { return r.LateFeeApplies == nil || *r.LateFeeApplies }

// Validate checks every field against the business date today and returns a
// *ValidationError naming each one that fails, or nil.
func (r *CreateRequest) Validate(today bizdate.Date) error {
	var fs []FieldError
	add := func(field, msg, zh string) { fs = append(fs, FieldError{field, msg, zh}) }
	if !reDecision.MatchString(r.DecisionNo) {
		add("decision_no", "must be 15 to 20 digits", "处罚决定书编号应为15至20位数字")
	}
	if !reSerial.MatchString(r.ViolationSerial) {
		add("violation_serial", "must be 1 to 32 digits or letters", "违法序号应为1至32位数字或字母")
	}
	if n := utf8.RuneCountInString(r.PartyName); n < 1 || n > 32 || !utf8.ValidString(r.PartyName) ||
		strings.IndexFunc(r.PartyName, unicode.IsControl) >= 0 || strings.IndexFunc(r.PartyName, unicode.IsLetter) < 0 {
		add("party_name", "must be 1 to 32 characters with at least one letter and no control characters", "当事人姓名应为1至32个字符")
	}
	if !rePlate.MatchString(r.Plate) {
		add("plate", "must be a Chinese plate of 7 or 8 characters, e.g. 黑A12345", "号牌号码应为7或8位的机动车号牌,例如黑A12345")
	}
	if r.Fine <= 0 {
		add("fine", "must be more than 0 fen", "罚款金额应大于0")
	} else if r.Fine > MaxFine {
		add("fine", fmt.Sprintf("must be at most %d fen", MaxFine), "罚款金额超出上限")
	}
	if !reDate.MatchString(r.ServedDate) {
		add("served_date", "must be a date YYYY-MM-DD", "送达日期格式应为YYYY-MM-DD")
	} else if d, err := bizdate.Parse(r.ServedDate); err != nil || d.String() != r.ServedDate {
		add("served_date", "must be a date YYYY-MM-DD", "送达日期格式应为YYYY-MM-DD")
	} else if today.Before(d) {
		add("served_date", "must not be in the future", "送达日期不能晚于今天")
	}
	if !reUnit.MatchString(r.UnitCode) {
		add("unit_code", "must be 6 digits", "执收单位编码应为6位数字")
	}
	if !reItem.MatchString(r.ItemCode) {
		add("item_code", "must be 1 to 20 digits", "收费项目编码应为1至20位数字")
	}
	if len(fs) > 0 {
		return &ValidationError{Fields: fs}
	}
	return nil
}

// canonical is the input as one string, for the idempotency hash.
func (r *CreateRequest) canonical() string {
	return strings.Join([]string{r.DecisionNo, r.ViolationSerial, r.PartyName, r.Plate, fmt.Sprint(r.Fine),
		r.ServedDate, r.UnitCode, r.ItemCode, fmt.Sprint(r.Applies())}, "\x1f")
}
