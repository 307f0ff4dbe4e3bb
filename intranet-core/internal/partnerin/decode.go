package partnerin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"

	"finepay/shared/httpx"
)

// Decode reads the request body into v: one JSON object of v's fields, nothing else. Unknown
// fields, wrong JSON types and trailing data are refused with 400 INVALID_JSON.
func Decode(c echo.Context, v any) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return httpx.Wrap(http.StatusBadRequest, "INVALID_JSON", "reading the body failed", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return httpx.Wrap(http.StatusBadRequest, "INVALID_JSON", "the body must be one JSON object of the documented fields: "+err.Error(), err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return httpx.NewError(http.StatusBadRequest, "INVALID_JSON", "the body has data after the JSON object")
	}
	return nil
}

// Problems collects field validation failures.
type Problems map[string]string

// Add records that field fails with why, when bad.
func (p Problems) Add(bad bool, field, why string) {
	if bad {
		p[field] = why
	}
}

// Err is nil when nothing failed, or 400 INVALID_ARGUMENT naming every failing field.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + p[k]
	}
	return httpx.NewError(http.StatusBadRequest, "INVALID_ARGUMENT", strings.Join(parts, "; "))
}
