package idempotency

import (
	"bytes"
	"testing"
)

// FuzzPath: any expression either fails to compile or evaluates without
// panicking; whatever it selects canonicalises, and the canonical form is a
// fixed point (decoding and re-canonicalising it changes nothing), which is
// what makes keys stable.
func FuzzPath(f *testing.F) {
	for _, s := range []string{
		"", "id", "a.b.c", "a[0]", "a[-1].b", "[a, b]", "{x: a, y: b.c}", `"quoted key".x`,
		"powertools_json(body).id", "a.[b, c]", "a.{k: b}", "@", "a[*]", "[[a]]", "{a: {b: c}}",
	} {
		f.Add(s, []byte(sampleEvent))
	}
	f.Add("x", []byte(`{"x": [1.5e300, -0, "\u00e9", {"b": 1, "a": 2}]}`))
	f.Fuzz(func(t *testing.T, expr string, doc []byte) {
		p, err := CompilePath(expr)
		if err != nil {
			return
		}
		ev, err := decodeJSON(doc)
		if err != nil {
			return
		}
		v, err := p.Search(ev)
		if err != nil {
			return
		}
		c1, err := canonicalJSON(nil, v)
		if err != nil {
			t.Fatalf("canonical(%v): %v", v, err)
		}
		if bytes.Contains(c1, []byte("Infinity")) || bytes.Contains(c1, []byte("NaN")) {
			return // Python's extension of JSON; not re-decodable
		}
		back, err := decodeJSON(c1)
		if err != nil {
			t.Fatalf("canonical form %s does not decode: %v", c1, err)
		}
		c2, err := canonicalJSON(nil, back)
		if err != nil || !bytes.Equal(c1, c2) {
			t.Fatalf("not a fixed point:\n%s\n%s (%v)", c1, c2, err)
		}
	})
}

// FuzzDecodeRecord: stored values from anywhere (another tool, a bad
// writer) decode or are refused without panicking, and what decodes
// survives a round trip.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range []string{
		`{"status": "INPROGRESS", "expiration": 1700003600, "in_progress_expiration": 1700000030000, "validation": "abc"}`,
		`{"data": "{\"statusCode\": 200}", "status": "COMPLETED", "expiration": 1700003600}`,
		`{"status": "COMPLETED", "expiration": 1, "data": "/w==", "data_encoding": "base64"}`,
		`{"status": "EXPIRED"}`, `not json`, `{}`, `null`, `{"status": 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord("k", b)
		if err != nil {
			return
		}
		enc, err := EncodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := DecodeRecord("k", enc)
		if err != nil || r2 != r {
			t.Fatalf("round trip %+v -> %s -> %+v, %v", r, enc, r2, err)
		}
		r.Response() // must not panic on any stored data
	})
}
