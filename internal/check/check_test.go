package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/quota"
)

// t0 is the first instant of the test runs; at(ms) is t0 plus ms.
const t0 = int64(1_750_000_000_000_000_000)

func at(ms float64) int64 { return t0 + int64(ms*1e6) }

type opt func(*api.Record)

// run is a record of fn on sandbox sb, held from ms from to ms to (its
// release 0.01 ms after the end of the handler).
func run(id, fn, sb string, from, to float64, opts ...opt) api.Record {
	r := api.Record{RequestID: id, Account: "A", Function: fn, Version: "$LATEST", Sandbox: sb, Worker: "w1",
		ReceivedNs: at(from), StartNs: at(from), EndNs: at(to), ReleasedNs: at(to + 0.01), Outcome: api.OutcomeOK}
	for _, o := range opts {
		o(&r)
	}
	return r
}

// cold: granted at ms g, the handler starting after a cold start.
func cold(g float64) opt {
	return func(r *api.Record) { r.Cold, r.GrantedNs, r.ReceivedNs = true, at(g), at(g+0.5) }
}

func fenced(r *api.Record) { r.Outcome = api.OutcomeFenced }

// abandoned is a grant at ms g that nothing ran in, cancelled at ms c and
// released by ms rel.
func abandoned(id, fn, sb string, g, c, rel float64) api.Record {
	return api.Record{RequestID: id, Account: "A", Function: fn, Version: "$LATEST", Sandbox: sb, Worker: "w1",
		GrantedNs: at(g), ReceivedNs: at(g), StartNs: at(c), EndNs: at(c), ReleasedNs: at(rel), Outcome: api.OutcomeAbandoned, Gateway: "g1"}
}

func received(ms float64) opt { return func(r *api.Record) { r.ReceivedNs = at(ms) } }
func released(ms float64) opt { return func(r *api.Record) { r.ReleasedNs = at(ms) } }
func account(a string) opt    { return func(r *api.Record) { r.Account = a } }

func throttle(id, fn string, ms float64, reason quota.Reason) api.Record {
	return api.Record{RequestID: id, Account: "A", Function: fn, ReceivedNs: at(ms), Outcome: api.OutcomeThrottled,
		Reason: string(reason), Gateway: "g1"}
}

func limitAt(ms float64, acct string, l int) LimitChange {
	return LimitChange{AtNs: at(ms), Account: acct, Limit: l}
}

func reservedAt(ms float64, acct, fn string, n int) LimitChange {
	if n < 0 {
		return LimitChange{AtNs: at(ms), Account: acct, Function: fn}
	}
	return LimitChange{AtNs: at(ms), Account: acct, Function: fn, Reserved: &n}
}

func TestCheckRun(t *testing.T) {
	none := -time.Nanosecond // no window
	cases := []struct {
		name  string
		recs  []api.Record
		opt   Options
		kinds []string // the violations, by kind
		named []string // request ids the violations must name
	}{
		{
			name: "clean run at the limit",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100, cold(-5)), run("b", "f", "s2", 10, 90, cold(5)),
				run("c", "f", "s1", 100.02, 200), run("d", "f", "s2", 95, 180),
			},
			opt: Options{DefaultLimit: 2},
		},
		{
			name: "over the limit: three sandboxes at once",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100), run("b", "g", "s2", 10, 100), run("c", "f", "s3", 50, 60),
			},
			opt:   Options{DefaultLimit: 2},
			kinds: []string{KindAccountLimit},
			named: []string{"a", "b", "c"},
		},
		{
			name: "accounts are checked apart",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100), run("b", "f", "s2", 10, 100, account("B")),
			},
			opt: Options{DefaultLimit: 1},
		},
		{
			name: "the default limit is Lambda's",
			recs: func() []api.Record {
				var rs []api.Record
				for i := 0; i < DefaultLimit+1; i++ {
					rs = append(rs, run("r"+strconv.Itoa(i), "f", "s"+strconv.Itoa(i), 0, 100))
				}
				return rs
			}(),
			kinds: []string{KindAccountLimit},
		},
		{
			name: "a sandbox handed back and another taken at one instant",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100, released(100)), run("b", "f", "s2", 100, 200, cold(100)),
			},
			opt: Options{DefaultLimit: 1, Window: none},
		},
		{
			name: "limit lowered: holds begun before it run to their end",
			recs: []api.Record{
				run("a", "f", "s1", 0, 300), run("b", "f", "s2", 0, 300), run("c", "f", "s3", 0, 300),
				run("d", "f", "s4", 400, 500),
			},
			opt: Options{DefaultLimit: 3, Limits: []LimitChange{limitAt(100, "A", 1)}, Window: 10 * time.Millisecond},
		},
		{
			name: "limit lowered: a new hold above the new limit",
			recs: []api.Record{
				run("a", "f", "s1", 0, 300), run("b", "f", "s2", 150, 300),
			},
			opt:   Options{DefaultLimit: 3, Limits: []LimitChange{limitAt(100, "A", 1)}, Window: 10 * time.Millisecond},
			kinds: []string{KindAccountLimit},
			named: []string{"a", "b"},
		},
		{
			name: "limit lowered: the old limit binds for a window",
			recs: []api.Record{
				run("a", "f", "s1", 0, 300), run("b", "f", "s2", 0, 300), run("c", "f", "s3", 105, 300),
			},
			opt: Options{DefaultLimit: 3, Limits: []LimitChange{limitAt(100, "", 2)}, Window: 10 * time.Millisecond},
		},
		{
			name: "limit lowered: without a window it binds at once",
			recs: []api.Record{
				run("a", "f", "s1", 0, 300), run("b", "f", "s2", 0, 300), run("c", "f", "s3", 105, 300),
			},
			opt:   Options{DefaultLimit: 3, Limits: []LimitChange{limitAt(100, "", 2)}, Window: none},
			kinds: []string{KindAccountLimit},
			named: []string{"c"},
		},
		{
			name: "limit raised: new holds at once",
			recs: []api.Record{
				run("a", "f", "s1", 0, 300), run("b", "f", "s2", 100, 300),
			},
			opt: Options{DefaultLimit: 1, Limits: []LimitChange{limitAt(100, "A", 2)}, Window: none},
		},
		{
			name: "reserved function over its reservation",
			recs: []api.Record{
				run("a", "r", "s1", 0, 100), run("b", "r", "s2", 50, 100), run("c", "f", "s3", 50, 100),
			},
			opt:   Options{DefaultLimit: 100, Limits: []LimitChange{reservedAt(-1000, "", "r", 1)}},
			kinds: []string{KindReservedLimit},
			named: []string{"a", "b"},
		},
		{
			name: "reservation removed mid-run",
			recs: []api.Record{
				run("a", "r", "s1", 0, 1000), run("b", "r", "s2", 600, 1000),
			},
			opt: Options{DefaultLimit: 100, Limits: []LimitChange{reservedAt(-1000, "A", "r", 1), reservedAt(500, "A", "r", -1)}},
		},
		{
			name: "429 below the limit",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt:   Options{DefaultLimit: 3},
			kinds: []string{KindThrottle},
			named: []string{"t", "a"},
		},
		{
			name: "429 below the limit during a fault is not judged",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt: Options{DefaultLimit: 3, Unsteady: []Interval{{FromNs: at(400), ToNs: at(600)}}},
		},
		{
			name: "429 below the limit after the fault settled",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt:   Options{DefaultLimit: 3, Window: none, Unsteady: []Interval{{FromNs: at(100), ToNs: at(400)}}},
			kinds: []string{KindThrottle},
			named: []string{"t"},
		},
		{
			name: "429 at the limit",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), run("b", "f", "s2", 0, 1000),
				throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt: Options{DefaultLimit: 2},
		},
		{
			name: "429 just after a sandbox was released: excused by the window",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), run("b", "f", "s2", 0, 400),
				throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt: Options{DefaultLimit: 2},
		},
		{
			name: "429 just after a sandbox was released: no window",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), run("b", "f", "s2", 0, 400),
				throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt:   Options{DefaultLimit: 2, Window: none},
			kinds: []string{KindThrottle},
		},
		{
			name: "429 at the limit an abandoned grant filled",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), abandoned("b", "f", "s2", 100, 800, 820),
				throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt: Options{DefaultLimit: 2, Window: none},
		},
		{
			name: "429 after the abandoned grant's cancel",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), abandoned("b", "f", "s2", 100, 300, 320),
				throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt:   Options{DefaultLimit: 2, Window: none},
			kinds: []string{KindThrottle},
		},
		{
			name: "an abandoned grant past the limit",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), abandoned("b", "f", "s2", 100, 800, 820),
			},
			opt:   Options{DefaultLimit: 1},
			kinds: []string{KindAccountLimit},
		},
		{
			name: "429 after the limit was lowered to what is held",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt: Options{DefaultLimit: 5, Limits: []LimitChange{limitAt(300, "A", 1)}, Window: none},
		},
		{
			name: "rate-limit 429s are not about concurrency",
			recs: []api.Record{
				throttle("t1", "f", 0, quota.ReasonFunctionRate), throttle("t2", "r", 1, quota.ReasonReservedFunctionRate),
				run("a", "f", "s1", 10, 20),
			},
		},
		{
			name: "429 for the unreserved pool",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), run("b", "g", "s2", 0, 1000),
				throttle("t", "f", 500, quota.ReasonAccountConcurrency),
			},
			opt: Options{DefaultLimit: 10, Limits: []LimitChange{reservedAt(0, "A", "r", 8)}, Window: none},
		},
		{
			name: "429 for a reserved function at its reservation",
			recs: []api.Record{
				run("a", "r", "s1", 0, 1000), throttle("t", "r", 500, quota.ReasonReservedConcurrency),
			},
			opt: Options{Limits: []LimitChange{reservedAt(0, "A", "r", 1)}},
		},
		{
			name: "429 for a reserved function below its reservation",
			recs: []api.Record{
				run("a", "r", "s1", 0, 1000), throttle("t", "r", 500, quota.ReasonReservedConcurrency),
			},
			opt:   Options{Limits: []LimitChange{reservedAt(0, "A", "r", 2)}},
			kinds: []string{KindThrottle},
			named: []string{"t"},
		},
		{
			name: "429 for a reservation of 0",
			recs: []api.Record{throttle("t", "r", 500, quota.ReasonReservedConcurrency)},
			opt:  Options{Limits: []LimitChange{reservedAt(0, "A", "r", 0)}},
		},
		{
			name:  "429 for a reservation nobody set",
			recs:  []api.Record{throttle("t", "r", 500, quota.ReasonReservedConcurrency)},
			kinds: []string{KindThrottle},
		},
		{
			name: "throttled records hold nothing",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000),
				throttle("t1", "f", 100, quota.ReasonAccountConcurrency), throttle("t2", "f", 200, quota.ReasonAccountConcurrency),
				throttle("t3", "f", 200, quota.ReasonAccountConcurrency),
			},
			opt: Options{DefaultLimit: 1},
		},
		{
			name: "duplicate grant",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100, cold(-10)), run("b", "f", "s1", 200, 300, cold(190)),
			},
			kinds: []string{KindDuplicateGrant},
			named: []string{"a", "b"},
		},
		{
			name: "one sandbox, two invocations at once",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100), run("b", "f", "s1", 50, 150),
			},
			opt:   Options{DefaultLimit: 1},
			kinds: []string{KindSandboxOverlap},
			named: []string{"a", "b"},
		},
		{
			name: "one sandbox, overlap found past a short run",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100), run("b", "f", "s1", 10, 20), run("c", "f", "s1", 50, 60),
			},
			kinds: []string{KindSandboxOverlap, KindSandboxOverlap},
			named: []string{"a", "b", "c"},
		},
		{
			name: "a warm request received before its sandbox was released",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100, released(100.3)), run("b", "f", "s1", 100.1, 200, received(99.9)),
			},
			opt: Options{DefaultLimit: 1, Window: none},
		},
		{
			name: "fenced records hold until their lease expired",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100, fenced, released(5000)), run("b", "f", "s2", 200, 300),
			},
			opt: Options{DefaultLimit: 1, Window: none},
		},
		{
			name: "fenced records hold until their lease expired, not less",
			recs: []api.Record{
				run("a", "f", "s1", 0, 100, fenced), run("b", "f", "s2", 50, 300),
			},
			opt:   Options{DefaultLimit: 1},
			kinds: []string{KindAccountLimit},
			named: []string{"a", "b"},
		},
		{
			name: "a fenced invocation started after its lease expired",
			recs: []api.Record{
				run("a", "f", "s1", 200, 100, fenced, received(200)),
			},
			kinds: []string{KindFence},
			named: []string{"a"},
		},
		{
			name:  "a record that cannot be checked",
			recs:  []api.Record{run("a", "f", "s1", 0, 100), {RequestID: "x", Account: "A"}},
			kinds: []string{KindInvalidRecord},
			named: []string{"x"},
		},
		{
			name: "partial capture: a 429 at its edge is not judged",
			recs: []api.Record{
				run("a", "f", "s1", 0, 1000), throttle("t", "f", 999, quota.ReasonAccountConcurrency),
			},
			opt: Options{DefaultLimit: 3, Partial: true},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := Run(tc.recs, tc.opt)
			var kinds []string
			named := map[string]bool{}
			for _, v := range rep.Violations {
				kinds = append(kinds, v.Kind)
				for _, r := range v.Records {
					named[r.RequestID] = true
				}
			}
			sort.Strings(kinds)
			want := append([]string(nil), tc.kinds...)
			sort.Strings(want)
			if !reflect.DeepEqual(kinds, want) {
				var b bytes.Buffer
				rep.WriteTable(&b)
				t.Fatalf("violations %v, want %v\n%s", kinds, want, b.String())
			}
			if rep.OK() != (len(want) == 0) {
				t.Fatalf("OK() = %v with %d violations", rep.OK(), len(rep.Violations))
			}
			for _, id := range tc.named {
				if !named[id] {
					t.Errorf("violations do not name record %q: %+v", id, rep.Violations)
				}
			}
		})
	}
}

func TestCheckRows(t *testing.T) {
	recs := []api.Record{
		run("a", "f", "s1", 0, 100, cold(-10)), run("b", "f", "s1", 100.5, 150),
		run("c", "r", "s2", 20, 120, cold(10)), run("d", "r", "s3", 30, 60, fenced),
		throttle("t", "r", 50, quota.ReasonReservedConcurrency),
		run("e", "f", "s4", 0, 10, account("B")),
	}
	rep := Run(recs, Options{DefaultLimit: 10, Limits: []LimitChange{reservedAt(0, "A", "r", 2), limitAt(1000, "A", 5)}})
	if !rep.OK() {
		t.Fatalf("violations: %+v", rep.Violations)
	}
	want := []Row{
		{Account: "A", Records: 5, Cold: 2, Throttled: 1, Fenced: 1, Peak: 3, Limits: []int{10}},
		{Account: "A", Function: "f", Records: 2, Cold: 1, Peak: 1},
		{Account: "A", Function: "r", Records: 3, Cold: 1, Throttled: 1, Fenced: 1, Peak: 2, Limits: []int{2}},
		{Account: "B", Records: 1, Peak: 1, Limits: []int{10}},
		{Account: "B", Function: "f", Records: 1, Peak: 1},
	}
	if !reflect.DeepEqual(rep.Rows, want) {
		t.Fatalf("rows:\n got %+v\nwant %+v", rep.Rows, want)
	}
	if rep.Records != 6 || rep.BaseNs != at(-10) || rep.ThrottleReasons[string(quota.ReasonReservedConcurrency)] != 1 {
		t.Fatalf("report: %+v", rep)
	}
	// A limit change inside the run shows in the rows.
	rep = Run(recs, Options{DefaultLimit: 10, Limits: []LimitChange{limitAt(50, "A", 5)}})
	if got := rep.Rows[0].Limits; !reflect.DeepEqual(got, []int{10, 5}) {
		t.Fatalf("limits %v, want [10 5]", got)
	}
}

func TestCheckMaxInFlight(t *testing.T) {
	recs := []api.Record{
		run("a", "f", "s1", 0, 100), run("b", "f", "s2", 50, 150), run("c", "g", "s3", 60, 70),
		run("d", "f", "s2", 150, 160, received(149)), // same sandbox as b: one unit
		throttle("t", "f", 55, quota.ReasonAccountConcurrency),
	}
	if got := MaxInFlight(recs, nil); got != 3 {
		t.Errorf("MaxInFlight = %d, want 3", got)
	}
	if got := MaxInFlight(recs, func(r api.Record) bool { return r.Function == "f" }); got != 2 {
		t.Errorf("MaxInFlight(f) = %d, want 2", got)
	}
	if got := MaxInFlight(nil, nil); got != 0 {
		t.Errorf("MaxInFlight(nil) = %d", got)
	}
	r := run("x", "f", "s", 10, 20, cold(5), released(30))
	if HeldFrom(r) != at(5) || HeldUntil(r) != at(30) {
		t.Errorf("held %d..%d", HeldFrom(r), HeldUntil(r))
	}
	fenced(&r)
	if HeldUntil(r) != at(20) {
		t.Errorf("fenced held until %d, want its end", HeldUntil(r))
	}
}

func TestCheckDecodeRecords(t *testing.T) {
	good, _ := json.Marshal(run("a", "f", "s1", 0, 100))
	thr, _ := json.Marshal(throttle("t", "f", 5, quota.ReasonAccountConcurrency))
	long := `{"request_id":"` + strings.Repeat("x", MaxLine) + `"}`
	input := strings.Join([]string{
		string(good),                   // 1
		"",                             // 2: blank, skipped
		"not json",                     // 3
		string(thr) + "\r",             // 4: CRLF
		`{"request_id":"b","account":`, // 5: truncated
		"null",                         // 6
		`[1,2]`,                        // 7
		`{"request_id":"c","account":"A","received_ns":"soon"}`,      // 8
		`{"request_id":"d","received_ns":1,"start_ns":1,"end_ns":2}`, // 9: no account
		long,                 // 10
		string(good) + ` {}`, // 11: trailing data
		`{"request_id":"e","account":"A","received_ns":5,"start_ns":9,"end_ns":7}`, // 12: end before start
		string(good), // 13, no final newline
	}, "\n")
	recs, bad, err := DecodeRecords(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[1].RequestID != "t" {
		t.Fatalf("records %+v", recs)
	}
	var lines []int
	for _, e := range bad {
		lines = append(lines, e.Line)
		if e.Err == "" || len(e.Text) > 100 {
			t.Errorf("decode error %+v", e)
		}
	}
	if want := []int{3, 5, 6, 7, 8, 9, 10, 11, 12}; !reflect.DeepEqual(lines, want) {
		t.Fatalf("bad lines %v, want %v: %+v", lines, want, bad)
	}
	recs, bad, err = DecodeRecords(strings.NewReader(""))
	if err != nil || len(recs) != 0 || len(bad) != 0 {
		t.Fatalf("empty input: %v %v %v", recs, bad, err)
	}
}

type failingReader struct{ data string }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.data == "" {
		return 0, errFail
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

var errFail = errors.New("disk on fire")

func TestCheckDecodeReadError(t *testing.T) {
	good, _ := json.Marshal(run("a", "f", "s1", 0, 100))
	recs, _, err := DecodeRecords(&failingReader{string(good) + "\n"})
	if err == nil || len(recs) != 1 {
		t.Fatalf("records %d, err %v; want the record read before the failure and the error", len(recs), err)
	}
}

func TestCheckDecodeLimits(t *testing.T) {
	input := strings.Join([]string{
		`{"at_ns":5,"account":"A","limit":10}`,
		`{"at_ns":6,"account":"A","function":"f","reserved":3}`,
		`{"at_ns":7,"account":"A","function":"f","reserved":null}`,
		`{"account":"","limit":0}`,
		`{"at_ns":8,"account":"A","function":"f"}`,                // no reserved
		`{"at_ns":8,"account":"A"}`,                               // no limit
		`{"at_ns":8,"account":"A","limit":-1}`,                    // negative
		`{"at_ns":8,"account":"A","function":"f","reserved":-2}`,  // negative
		`{"at_ns":8,"account":"A","limit":3,"reserved":1}`,        // reserved without function
		`{"at_ns":8,"account":"A","function":"f","limit":3}`,      // limit on a function
		`{"at_ns":8,"account":"A","limit":3,"reseved":1}`,         // unknown member
		`{"at_ns":8,"account":"A","function":"f","reserved":"2"}`, // not a number
		`null`,
	}, "\n")
	got, bad, err := DecodeLimits(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	three := 3
	want := []LimitChange{
		{AtNs: 5, Account: "A", Limit: 10},
		{AtNs: 6, Account: "A", Function: "f", Reserved: &three},
		{AtNs: 7, Account: "A", Function: "f"},
		{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changes %+v, want %+v", got, want)
	}
	if len(bad) != 9 || bad[0].Line != 5 || bad[8].Line != 13 {
		t.Fatalf("bad lines: %+v", bad)
	}
	for _, c := range want {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseLimitChange(b)
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("%s round-trips to %+v, %v", b, back, err)
		}
	}
}

func TestCheckWriteTable(t *testing.T) {
	recs := []api.Record{
		run("req-a", "f", "sb-1", 0, 100, cold(-10)), run("req-b", "f", "sb-2", 10, 100),
		throttle("req-t", "f", 500, quota.ReasonAccountConcurrency),
	}
	var b bytes.Buffer
	rep := Run(recs, Options{DefaultLimit: 1, Window: 10 * time.Millisecond})
	rep.Malformed = 2
	rep.WriteTable(&b)
	out := b.String()
	for _, s := range []string{"ACCOUNT", "FAIL (2)", "FAIL: 2 violations", "account-limit", "throttle", "req-a", "req-b", "req-t",
		"sb-2", "w1", "+20.000ms", "2 malformed lines"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	b.Reset()
	rep = Run(recs[:1], Options{})
	rep.WriteTable(&b)
	if !strings.Contains(b.String(), "PASS: 1 records") {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back struct {
		OK bool `json:"ok"`
		Report
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || !back.OK || back.Records != 1 || len(back.Rows) != 2 {
		t.Fatalf("json %s: %v", b.String(), err)
	}
}

// TestCheckManyViolations: a run far over its limit is reported in bounded
// space, each violation naming at most maxListed+1 records.
func TestCheckManyViolations(t *testing.T) {
	var recs []api.Record
	for i := 0; i < 300; i++ {
		recs = append(recs, run("r"+strconv.Itoa(i), "f", "s"+strconv.Itoa(i), float64(i), 1000))
	}
	rep := Run(recs, Options{DefaultLimit: 10})
	if len(rep.Violations) != 290 {
		t.Fatalf("%d violations, want 290", len(rep.Violations))
	}
	last := rep.Violations[len(rep.Violations)-1]
	if len(last.Records) > maxListed+1 || last.MoreRecords == 0 || last.Held != 299 {
		t.Fatalf("last violation: %d records, %d more, held %d", len(last.Records), last.MoreRecords, last.Held)
	}
	var b bytes.Buffer
	rep.WriteTable(&b)
	if !strings.Contains(b.String(), "more violations") {
		t.Fatal("the table lists every violation")
	}
}
