package process

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzFunctionError: whatever a function POSTs as its error, the caller gets a
// JSON error document and a bounded, printable, non-empty errorType.
func FuzzFunctionError(f *testing.F) {
	f.Add([]byte(`{"errorMessage":"boom","errorType":"errorString"}`), "")
	f.Add([]byte(`{"errorMessage":"x","errorType":"string","stackTrace":[{"path":"a.go","line":1,"label":"f"}]}`), "")
	f.Add([]byte(`not json`), "Custom.Bad")
	f.Add([]byte(``), "")
	f.Add([]byte(`[1,2]`), "Unhandled")
	f.Add([]byte(`{"errorType":""}`), "H")
	f.Add([]byte(`{"errorType":"\u0000\u0007"}`), "")
	f.Add([]byte(`{"errorType":1}`), "")
	f.Add([]byte("\xff\xfe"), "\xff")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		typ, payload := functionError(body, header)
		if typ == "" || len(typ) > maxErrorTypeLen || !utf8.ValidString(typ) {
			t.Fatalf("errorType %q", typ)
		}
		for _, r := range typ {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in errorType %q", typ)
			}
		}
		if !json.Valid(payload) {
			t.Fatalf("payload not JSON: %q", payload)
		}
	})
}

// FuzzParseStat: /proc/<pid>/stat parsing never panics on odd command names.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1234 (bash) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0"))
	f.Add([]byte("7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0"))
	f.Add([]byte("9 ()"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseStat(1, b)
	})
}
