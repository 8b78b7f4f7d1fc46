package loadgen

import (
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// r builds a record of function f, version $LATEST, on sandbox sb, received
// at recv ms and ending at end ms.
func r(sb string, recv, end int64, cold bool) api.Record {
	ms := int64(time.Millisecond)
	return api.Record{Account: "a", Function: "f", Version: "$LATEST", Sandbox: sb,
		ReceivedNs: recv * ms, StartNs: recv * ms, EndNs: end * ms, Cold: cold}
}

func with(rec api.Record, edit func(*api.Record)) api.Record { edit(&rec); return rec }

func TestAvoidableColdStarts(t *testing.T) {
	cases := []struct {
		name    string
		records []api.Record
		slack   time.Duration
		want    int
	}{
		{"no records", nil, 0, 0},
		{"no cold starts", []api.Record{r("A", 0, 80, false), r("A", 100, 180, false)}, 0, 0},
		{
			"the first cold starts of a burst are not avoidable",
			[]api.Record{r("A", 0, 260, true), r("B", 1, 261, true), r("C", 2, 262, true)}, 0, 0,
		},
		{
			"another sandbox idle, never used again",
			[]api.Record{r("A", 0, 260, true), r("B", 500, 760, true)}, 0, 1,
		},
		{
			"another sandbox idle, used again later",
			[]api.Record{r("A", 0, 260, true), r("B", 500, 760, true), r("A", 900, 980, false)}, 0, 1,
		},
		{
			"the other sandbox was busy (its invocation still running)",
			[]api.Record{r("A", 0, 600, true), r("B", 500, 760, true)}, 0, 0,
		},
		{
			"the other sandbox had just been taken again (next received before)",
			[]api.Record{r("A", 0, 260, true), r("A", 495, 575, false), r("B", 500, 760, true)}, 0, 0,
		},
		{
			"idle, but for less than the slack",
			[]api.Record{r("A", 0, 495, true), r("B", 500, 760, true)}, 10 * time.Millisecond, 0,
		},
		{
			"idle for longer than the slack",
			[]api.Record{r("A", 0, 480, true), r("B", 500, 760, true)}, 10 * time.Millisecond, 1,
		},
		{
			"idle sandbox of another version does not count",
			[]api.Record{with(r("A", 0, 260, true), func(x *api.Record) { x.Version = "1" }), r("B", 500, 760, true)}, 0, 0,
		},
		{
			"idle sandbox of another function does not count",
			[]api.Record{with(r("A", 0, 260, true), func(x *api.Record) { x.Function = "g" }), r("B", 500, 760, true)}, 0, 0,
		},
		{
			"idle sandbox of another account does not count",
			[]api.Record{with(r("A", 0, 260, true), func(x *api.Record) { x.Account = "b" }), r("B", 500, 760, true)}, 0, 0,
		},
		{
			"a sandbox created after the cold start does not count",
			[]api.Record{r("B", 500, 760, true), r("A", 600, 860, true)}, 0, 0,
		},
		{
			"each cold start is judged on its own: one idle sandbox, two cold starts",
			[]api.Record{r("A", 0, 260, true), r("B", 500, 760, true), r("C", 510, 770, true)}, 0, 2,
		},
		{
			"records in any order",
			[]api.Record{r("A", 900, 980, false), r("B", 500, 760, true), r("A", 0, 260, true)}, 0, 1,
		},
		{
			"no received_ns: start minus init is used",
			[]api.Record{
				r("A", 0, 260, true),
				with(r("B", 0, 0, true), func(x *api.Record) {
					x.ReceivedNs, x.InitMs = 0, 180
					x.StartNs, x.EndNs = int64(680*time.Millisecond), int64(760*time.Millisecond) // received at 500
				}),
			},
			300 * time.Millisecond, 0, // idle from 260+300=560 > 500: not avoidable
		},
		{
			"no received_ns, idle long enough",
			[]api.Record{
				r("A", 0, 260, true),
				with(r("B", 0, 0, true), func(x *api.Record) {
					x.ReceivedNs, x.InitMs = 0, 180
					x.StartNs, x.EndNs = int64(680*time.Millisecond), int64(760*time.Millisecond)
				}),
			},
			200 * time.Millisecond, 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := AvoidableColdStarts(tc.records, tc.slack); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}
