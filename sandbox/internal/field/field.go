// Package field validates request fields and decodes JSON bodies strictly, collecting every
// problem into one 400 answer such as
// {"code":"INVALID_ARGUMENT","message":"decision_no: must be 15-20 digits; fine: must be > 0"}.
package field

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"time"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/shanghai"
)

// CodeInvalid is the error code of a request that fails validation.
const CodeInvalid = "INVALID_ARGUMENT"

// Checker collects validation problems.
type Checker struct {
	problems []string
}

// Add records a problem with field name.
func (c *Checker) Add(name, format string, args ...any) {
	c.problems = append(c.problems, name+": "+fmt.Sprintf(format, args...))
}

// OK reports whether no problem was recorded.
func (c *Checker) OK() bool { return len(c.problems) == 0 }

// Err returns nil, or a 400 INVALID_ARGUMENT error listing every problem.
func (c *Checker) Err() error {
	if c.OK() {
		return nil
	}
	return apierr.Invalid(CodeInvalid, "%s", strings.Join(c.problems, "; "))
}

// Required checks that s is not empty; it reports whether it is present.
func (c *Checker) Required(name, s string) bool {
	if s == "" {
		c.Add(name, "is required")
		return false
	}
	return true
}

// Digits checks that s is min to max ASCII digits.
func (c *Checker) Digits(name, s string, minLen, maxLen int) {
	if !c.Required(name, s) {
		return
	}
	if len(s) < minLen || len(s) > maxLen || strings.Trim(s, "0123456789") != "" {
		if minLen == maxLen {
			c.Add(name, "must be %d digits", minLen)
		} else {
			c.Add(name, "must be %d-%d digits", minLen, maxLen)
		}
	}
}

// OptionalDigits checks s like Digits when it is not empty.
func (c *Checker) OptionalDigits(name, s string, n int) {
	if s != "" {
		c.Digits(name, s, n, n)
	}
}

// Match checks that s matches re, described to the client as desc.
func (c *Checker) Match(name, s string, re *regexp.Regexp, desc string) {
	if c.Required(name, s) && !re.MatchString(s) {
		c.Add(name, "must be %s", desc)
	}
}

// Positive checks n > 0.
func (c *Checker) Positive(name string, n int64) {
	if n <= 0 {
		c.Add(name, "must be > 0 (fen)")
	}
}

// NonNegative checks n >= 0.
func (c *Checker) NonNegative(name string, n int64) {
	if n < 0 {
		c.Add(name, "must be >= 0 (fen)")
	}
}

// Time checks an RFC 3339 time and returns it.
func (c *Checker) Time(name, s string) time.Time {
	if !c.Required(name, s) {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		c.Add(name, "must be an RFC 3339 time such as 2026-11-27T10:05:00+08:00")
	}
	return t
}

// Date checks a YYYY-MM-DD date and returns it as midnight in Asia/Shanghai.
func (c *Checker) Date(name, s string) time.Time {
	if !c.Required(name, s) {
		return time.Time{}
	}
	t, err := shanghai.ParseDate(s)
	if err != nil {
		c.Add(name, "must be a date YYYY-MM-DD")
	}
	return t
}

// Serial is the pattern of a violation serial number (违法序号): 1-32 letters or digits.
var Serial = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)

// OrderNo is the pattern of order numbers and trade numbers: 1-64 of [A-Za-z0-9_-].
var OrderNo = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// DecodeJSON decodes one JSON object from r into dst, refusing unknown fields, wrong types and
// trailing data with a 400 INVALID_JSON.
func DecodeJSON(r io.Reader, dst any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return apierr.Wrap(err, http.StatusBadRequest, "INVALID_JSON", "the body is not a valid request: %s", describe(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apierr.New(http.StatusBadRequest, "INVALID_JSON", "the body must hold exactly one JSON object")
	}
	return nil
}

func describe(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s must be a JSON %s", te.Field, jsonKind(te.Type.Kind()))
	}
	if errors.Is(err, io.EOF) {
		return "empty body"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "object"
}
