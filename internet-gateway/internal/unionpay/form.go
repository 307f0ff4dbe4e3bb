package unionpay

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// ParseForm reads an application/x-www-form-urlencoded body (a notification) into its fields,
// URL-decoded. A malformed body, or a name given twice, is ErrInvalid.
func ParseForm(body []byte) (map[string]string, error) {
	vs, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("%w: form: %w", ErrInvalid, err)
	}
	out := make(map[string]string, len(vs))
	for k, v := range vs {
		if len(v) != 1 {
			return nil, fmt.Errorf("%w: form: %.64q given %d times", ErrInvalid, k, len(v))
		}
		out[k] = v[0]
	}
	return out, nil
}

// ParseResponse reads an answer: name=value pairs joined with &, values not URL-encoded. A
// value may be a {...} group that holds & and = itself; the value runs to the & after its
// closing brace. An empty name, a pair without =, an unclosed brace or a name given twice is
// ErrInvalid.
func ParseResponse(body []byte) (map[string]string, error) {
	s := strings.TrimRight(string(body), "\r\n")
	out := map[string]string{}
	if s == "" {
		return nil, fmt.Errorf("%w: empty answer", ErrInvalid)
	}
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("%w: answer: a pair without a name or =", ErrInvalid)
		}
		name := s[:eq]
		if strings.ContainsAny(name, "&{}") {
			return nil, fmt.Errorf("%w: answer: name %.32q", ErrInvalid, name)
		}
		s = s[eq+1:]
		end, depth := len(s), 0
	scan:
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case '{':
				depth++
			case '}':
				if depth == 0 {
					return nil, fmt.Errorf("%w: answer: unbalanced } in %.32q", ErrInvalid, name)
				}
				depth--
			case '&':
				if depth == 0 {
					end = i
					break scan
				}
			}
		}
		if depth != 0 {
			return nil, fmt.Errorf("%w: answer: unclosed { in %.32q", ErrInvalid, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%w: answer: %.32q given twice", ErrInvalid, name)
		}
		out[name] = s[:end]
		if end == len(s) {
			break
		}
		s = s[end+1:]
		if s == "" {
			return nil, fmt.Errorf("%w: answer ends with &", ErrInvalid)
		}
	}
	return out, nil
}

// SigningText is the text that is hashed and signed: every field but signature, sorted by
// name, name=value joined with &, empty values included.
func SigningText(fields map[string]string) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		if k != "signature" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(fields[k])
	}
	return b.String()
}
