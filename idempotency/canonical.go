package idempotency

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Keys and validation hashes are the hash of the selected data serialised
// exactly as Python's json.dumps(data, sort_keys=True) does, so a Go handler
// and a Python (Powertools) handler computing a key for the same event agree:
//
//   - separators ", " between items and ": " after keys, no other spaces;
//   - object keys sorted by code point (byte order of UTF-8 is the same);
//   - strings with ensure_ascii: \" \\ \n \r \t \b \f, every other
//     character outside ' '..'~' as \uXXXX (lower-case hex, UTF-16
//     surrogate pairs above U+FFFF); '/' is not escaped;
//   - numbers as Python parses them: no '.', 'e' or 'E' -> int, printed in
//     full ("-0" -> "0"); otherwise float, printed as repr(float): the
//     shortest round-trip digits, fixed notation with at least one
//     fractional digit ("1.0", "0.0001") when the decimal exponent is in
//     [-4, 16), else d[.ddd]e+XX ("1e+16", "1e-05"); out of range ->
//     "Infinity" / "-Infinity";
//   - true, false, null as in JSON.
//
// Duplicate object keys keep the last value in both languages. Not
// reproduced: lone UTF-16 surrogates in input strings, which Go decodes to
// U+FFFD and Python keeps as they are.

// decodeJSON parses one JSON value keeping numbers as written.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("idempotency: trailing data after JSON value")
	}
	return v, nil
}

// canonicalJSON appends v (as produced by decodeJSON) in Python's
// json.dumps(v, sort_keys=True) form.
func canonicalJSON(buf []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...), nil
	case bool:
		if x {
			return append(buf, "true"...), nil
		}
		return append(buf, "false"...), nil
	case string:
		return appendPyString(buf, x), nil
	case json.Number:
		return appendPyNumber(buf, string(x))
	case float64:
		return appendPyFloat(buf, x), nil
	case []any:
		buf = append(buf, '[')
		for i, e := range x {
			if i > 0 {
				buf = append(buf, ", "...)
			}
			var err error
			if buf, err = canonicalJSON(buf, e); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ", "...)
			}
			buf = appendPyString(buf, k)
			buf = append(buf, ": "...)
			var err error
			if buf, err = canonicalJSON(buf, x[k]); err != nil {
				return nil, err
			}
		}
		return append(buf, '}'), nil
	}
	return nil, fmt.Errorf("idempotency: cannot canonicalise %T", v)
}

const hexDigits = "0123456789abcdef"

func appendPyString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	for _, r := range s {
		switch {
		case r == '"':
			buf = append(buf, `\"`...)
		case r == '\\':
			buf = append(buf, `\\`...)
		case r == '\n':
			buf = append(buf, `\n`...)
		case r == '\r':
			buf = append(buf, `\r`...)
		case r == '\t':
			buf = append(buf, `\t`...)
		case r == '\b':
			buf = append(buf, `\b`...)
		case r == '\f':
			buf = append(buf, `\f`...)
		case r >= ' ' && r <= '~':
			buf = append(buf, byte(r))
		case r > 0xFFFF:
			r1, r2 := utf16.EncodeRune(r)
			buf = appendU(appendU(buf, r1), r2)
		default:
			buf = appendU(buf, r)
		}
	}
	return append(buf, '"')
}

func appendU(buf []byte, r rune) []byte {
	return append(buf, '\\', 'u',
		hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

func appendPyNumber(buf []byte, s string) ([]byte, error) {
	if !strings.ContainsAny(s, ".eE") {
		n, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return nil, fmt.Errorf("idempotency: bad number %q", s)
		}
		return n.Append(buf, 10), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return nil, fmt.Errorf("idempotency: bad number %q", s)
	}
	return appendPyFloat(buf, f), nil
}

// appendPyFloat writes repr(f) as CPython's float_repr does.
func appendPyFloat(buf []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(buf, "Infinity"...)
	case math.IsInf(f, -1):
		return append(buf, "-Infinity"...)
	case math.IsNaN(f):
		return append(buf, "NaN"...)
	}
	// Shortest round-trip digits, as CPython's dtoa mode 0.
	e := strconv.FormatFloat(f, 'e', -1, 64) // [-]d[.ddd]e±XX
	neg := e[0] == '-'
	if neg {
		e = e[1:]
		buf = append(buf, '-')
	}
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	decpt := x + 1 // value = 0.digits * 10^decpt
	if decpt <= -4 || decpt > 16 {
		buf = append(buf, digits[0])
		if len(digits) > 1 {
			buf = append(buf, '.')
			buf = append(buf, digits[1:]...)
		}
		buf = append(buf, 'e')
		if x < 0 {
			buf = append(buf, '-')
			x = -x
		} else {
			buf = append(buf, '+')
		}
		if x < 10 {
			buf = append(buf, '0')
		}
		return strconv.AppendInt(buf, int64(x), 10)
	}
	switch {
	case decpt <= 0:
		buf = append(buf, "0."...)
		buf = append(buf, strings.Repeat("0", -decpt)...)
		buf = append(buf, digits...)
	case decpt >= len(digits):
		buf = append(buf, digits...)
		buf = append(buf, strings.Repeat("0", decpt-len(digits))...)
		buf = append(buf, ".0"...)
	default:
		buf = append(buf, digits[:decpt]...)
		buf = append(buf, '.')
		buf = append(buf, digits[decpt:]...)
	}
	return buf
}
