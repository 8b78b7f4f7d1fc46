package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/coldstart-dev/coldstart/internal/api"
)

const checkT0 = int64(1_750_000_000_000_000_000)

func checkRec(id, sb string, fromMs, toMs int64) api.Record {
	return api.Record{RequestID: id, Account: "A", Function: "f", Sandbox: sb, Worker: "w1",
		ReceivedNs: checkT0 + fromMs*1e6, StartNs: checkT0 + fromMs*1e6, EndNs: checkT0 + toMs*1e6, Outcome: api.OutcomeOK}
}

func ndjson(t *testing.T, lines ...any) string {
	var b strings.Builder
	for _, l := range lines {
		if s, ok := l.(string); ok {
			b.WriteString(s + "\n")
			continue
		}
		j, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, c := checkRec("req-a", "s1", 0, 100), checkRec("req-b", "s2", 10, 100), checkRec("req-c", "s3", 50, 60)
	clean := write("clean.ndjson", ndjson(t, a, b))
	over := write("over.ndjson", ndjson(t, a, b, c))
	malformed := write("malformed.ndjson", ndjson(t, a, "{not json", b))
	garbage := write("garbage.ndjson", "nope\nnot this either\n")
	limits := write("limits.ndjson", `{"at_ns":`+"1750000000040000000"+`,"account":"A","limit":1}`+"\n")
	badLimits := write("badlimits.ndjson", `{"account":"A","limt":1}`+"\n")
	th := api.Record{RequestID: "req-t", Account: "A", Function: "f", ReceivedNs: checkT0 + 50*1e6, Outcome: api.OutcomeThrottled, Reason: "ConcurrentInvocationLimitExceeded"}
	undeserved := write("undeserved.ndjson", ndjson(t, a, th))
	span := func(fromMs, toMs int64) string {
		return strconv.FormatInt(checkT0+fromMs*1e6, 10) + "/" + strconv.FormatInt(checkT0+toMs*1e6, 10)
	}

	cases := []struct {
		name    string
		args    []string
		stdin   string
		code    int
		out     []string // in stdout
		errText []string // in stderr
	}{
		{name: "clean", args: []string{"--records", clean, "--limit", "2"}, code: 0, out: []string{"PASS: 2 records", "A  "}},
		{name: "positional file", args: []string{clean, "--limit", "2"}, code: 0, out: []string{"PASS"}},
		{name: "over the limit", args: []string{"--records", over, "--limit", "2"}, code: 1,
			out: []string{"FAIL: 1 violations", "account-limit", "req-a", "req-b", "req-c", "s3"}},
		{name: "default limit", args: []string{"--records", over}, code: 0, out: []string{"1000"}},
		{name: "reserved", args: []string{"--records", over, "--reserved", "f=2"}, code: 1, out: []string{"reserved-limit"}},
		{name: "reserved none", args: []string{"--records", over, "--reserved", "A/f=none"}, code: 0},
		{name: "limit history", args: []string{"--records", clean, "--limits", limits, "--limit", "5", "--window", "0"}, code: 0,
			out: []string{"5->1"}},
		{name: "stdin", args: []string{"--records", "-", "--limit", "2"}, stdin: ndjson(t, a, b, c), code: 1, out: []string{"account-limit"}},
		{name: "json", args: []string{"--records", over, "--limit", "2", "--json"}, code: 1, out: []string{`"ok": false`, `"kind": "account-limit"`}},
		{name: "malformed line", args: []string{"--records", malformed, "--limit", "2"}, code: 0,
			out: []string{"PASS: 2 records", "1 malformed lines"}, errText: []string{malformed + ":2:"}},
		{name: "nothing readable", args: []string{"--records", garbage}, code: 2, errText: []string{"no readable record", ":1:", ":2:"}},
		{name: "undeserved 429", args: []string{"--records", undeserved, "--limit", "2", "--whole-run"}, code: 1, out: []string{"req-t"}},
		{name: "429 during a fault", args: []string{"--records", undeserved, "--limit", "2", "--whole-run", "--unsteady", span(40, 60)}, code: 0,
			out: []string{"1 throttles during faults not judged"}},
		{name: "bad unsteady span", args: []string{"--records", undeserved, "--unsteady", "soon/later"}, code: 2},
		{name: "missing file", args: []string{"--records", filepath.Join(dir, "nope")}, code: 2},
		{name: "bad limits file", args: []string{"--records", clean, "--limits", badLimits}, code: 2, errText: []string{"limt"}},
		{name: "no input", args: nil, code: 2},
		{name: "two inputs", args: []string{"--records", clean, "--follow"}, code: 2},
		{name: "bad reserved", args: []string{"--records", clean, "--reserved", "f"}, code: 2},
		{name: "help", args: []string{"--help"}, code: 0, out: []string{"Example", "--records", "--follow", "Exit status"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := checkMain(context.Background(), tc.args, strings.NewReader(tc.stdin), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errb.String())
			}
			for _, s := range tc.out {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.errText {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errb.String())
				}
			}
		})
	}
	// Through the command table, as `coldstart check` runs.
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "--records", over, "--limit", "2"}, &out, &errb); code != 1 {
		t.Fatalf("coldstart check: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// TestCheckCommandFollow checks a gateway's record stream: the limits come
// from its status, the verdict is printed when the stream ends.
func TestCheckCommandFollow(t *testing.T) {
	a, b := checkRec("req-a", "s1", 0, 100), checkRec("req-b", "s2", 10, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case api.PathStatus:
			json.NewEncoder(w).Encode(api.Status{Accounts: []api.AccountStatus{{Account: "A", Limit: 1}}})
		case api.PathRecords:
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Write([]byte(ndjson(t, a, "garbage", b)))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	code := checkMain(context.Background(), []string{"--follow", "--gateway", srv.URL, "--drain", "0"}, nil, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "account-limit") || !strings.Contains(out.String(), "1 malformed lines") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	// An explicit --limit wins over the status.
	out.Reset()
	errb.Reset()
	if code := checkMain(context.Background(), []string{"--live", "--gateway", srv.URL, "--limit", "2", "--drain", "0"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	// No gateway: unreadable input.
	srv.Close()
	if code := checkMain(context.Background(), []string{"--follow", "--gateway", srv.URL, "--drain", "0"}, nil, &out, &errb); code != 2 {
		t.Fatalf("exit %d with no gateway, want 2", code)
	}
}
