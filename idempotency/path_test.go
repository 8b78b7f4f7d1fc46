package idempotency

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"strings"
	"testing"
)

const sampleEvent = `{
  "body": "{\"order\": {\"id\": 7, \"lines\": [1, 2]}, \"user\": \"u1\"}",
  "headers": {"Idempotency-Key": "abc", "x": null},
  "requestContext": {"requestId": "r-1", "stages": ["a", "b", "c"]},
  "records": [{"id": 1}, {"id": 2}],
  "b64": "eyJrIjogMX0=",
  "n": 0,
  "f": false
}`

func TestPathSearch(t *testing.T) {
	ev, err := decodeJSON([]byte(sampleEvent))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"", ""}, // whole event: checked separately below
		{"requestContext.requestId", `"r-1"`},
		{`headers."Idempotency-Key"`, `"abc"`},
		{"requestContext.stages[0]", `"a"`},
		{"requestContext.stages[-1]", `"c"`},
		{"requestContext.stages[3]", `null`},
		{"records[1].id", `2`},
		{"[requestContext.requestId, n]", `["r-1", 0]`},
		{"{rid: requestContext.requestId, \"h k\": headers.x}", `{"h k": null, "rid": "r-1"}`},
		{"requestContext.[requestId, stages[1]]", `["r-1", "b"]`},
		{"requestContext.{id: requestId}", `{"id": "r-1"}`},
		{"missing.[a, b]", `null`},
		{"missing.deeper[0]", `null`},
		{"n.x", `null`},
		{"powertools_json(body).order.id", `7`},
		{"powertools_json(body).[user, order.lines]", `["u1", [1, 2]]`},
		{"powertools_json(powertools_base64(b64)).k", `1`},
		{"powertools_json(missing)", `null`},
		{`powertools_json(body).["user", "order".id]`, `["u1", 7]`},
		{"@.f", `false`},
		{" records [ 0 ] . id ", `1`},
	} {
		if tc.path == "" {
			continue
		}
		p, err := CompilePath(tc.path)
		if err != nil {
			t.Errorf("CompilePath(%q): %v", tc.path, err)
			continue
		}
		v, err := p.Search(ev)
		if err != nil {
			t.Errorf("Search(%q): %v", tc.path, err)
			continue
		}
		got, err := canonicalJSON(nil, v)
		if err != nil || string(got) != tc.want {
			t.Errorf("Search(%q) = %s, %v; want %s", tc.path, got, err, tc.want)
		}
	}
}

func TestPathErrors(t *testing.T) {
	for _, p := range []string{
		"a[*]", "a[]", "a.*", "a[?b]", "a[0:2]", "a | b", "`1`", "'x'", "length(a)",
		"a.", "[a,", "{a b}", "{a: }", "\"unterminated", "a[0", "a[x]", "a b", ".a",
		strings.Repeat("[", 100) + "a" + strings.Repeat("]", 100),
	} {
		if _, err := CompilePath(p); err == nil {
			t.Errorf("CompilePath(%q) accepted", p)
		}
	}
	ev, _ := decodeJSON([]byte(`{"body": "not json", "n": 1}`))
	for _, p := range []string{"powertools_json(body)", "powertools_json(n)", "powertools_base64(body)", "powertools_base64_gzip(body)"} {
		if _, err := mustPath(t, p).Search(ev); err == nil {
			t.Errorf("Search(%q) did not fail", p)
		}
	}
}

func TestPathGzip(t *testing.T) {
	// Compressed base64 data, as a CloudWatch Logs subscription delivers it.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(`{"k": 2}`))
	zw.Close()
	ev := map[string]any{"data": base64.StdEncoding.EncodeToString(buf.Bytes())}
	v, err := mustPath(t, "powertools_json(powertools_base64_gzip(data)).k").Search(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := canonicalJSON(nil, v); string(got) != "2" {
		t.Fatalf("got %s", got)
	}
}

func mustPath(t *testing.T, s string) *Path {
	t.Helper()
	p, err := CompilePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMissingKey(t *testing.T) {
	for _, tc := range []struct {
		json    string
		missing bool
	}{
		{`null`, true}, {`""`, true}, {`[]`, true}, {`[null, null]`, true}, {`{}`, true},
		{`{"a": null}`, false}, {`0`, false}, {`false`, false}, {`"x"`, false}, {`[null, 1]`, false},
	} {
		v, _ := decodeJSON([]byte(tc.json))
		if got := missingKey(v); got != tc.missing {
			t.Errorf("missingKey(%s) = %v", tc.json, got)
		}
	}
}

// Python's json.dumps(json.loads(in), sort_keys=True), computed with
// CPython 3 for each input.
func TestCanonicalJSONMatchesPython(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"b":1,"a":[1,2,{"d":null,"c":true}]}`, `{"a": [1, 2, {"c": true, "d": null}], "b": 1}`},
		{`1.0`, `1.0`},
		{`-0`, `0`},
		{`-0.0`, `-0.0`},
		{`100`, `100`},
		{`1e2`, `100.0`},
		{`0.1`, `0.1`},
		{`1e16`, `1e+16`},
		{`1e15`, `1000000000000000.0`},
		{`123456789012345678`, `123456789012345678`},
		{`1234567890123456789.0`, `1.2345678901234568e+18`},
		{`0.0001`, `0.0001`},
		{`0.00001`, `1e-05`},
		{`1.5e-7`, `1.5e-07`},
		{`1e308`, `1e+308`},
		{`1e400`, `Infinity`},
		{`-1e400`, `-Infinity`},
		{`5e-324`, `5e-324`},
		{`3.14159`, `3.14159`},
		{`12345.678`, `12345.678`},
		{`"é\u2028😀"`, `"\u00e9\u2028\ud83d\ude00"`},
		{`"\u0000\u001f\u007f/<>&'"`, `"\u0000\u001f\u007f/<>&'"`},
		{`"a\"b\\c\n\r\t\b\f"`, `"a\"b\\c\n\r\t\b\f"`},
		{`{"é":1,"z":2,"A":3,"a":4}`, `{"A": 3, "a": 4, "z": 2, "\u00e9": 1}`},
		{`[]`, `[]`},
		{`{}`, `{}`},
	} {
		v, err := decodeJSON([]byte(tc.in))
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		got, err := canonicalJSON(nil, v)
		if err != nil || string(got) != tc.want {
			t.Errorf("canonical(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}
