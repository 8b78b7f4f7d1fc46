package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/coldstart-dev/coldstart/internal/client"
)

// runRetries runs `coldstart retries report [NAME] [--since D] [--json]`.
func runRetries(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("retries "+sub, flag.ContinueOnError)
	gw := gatewayFlag(fs)
	since := fs.String("since", "all", "records kept from then on: all, a duration ago (10m) or an RFC 3339 time")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	reruns := fs.Bool("reruns", false, "list only the requests whose handler ran more than once")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart retries report [NAME] [--since all|10m|RFC3339] [--reruns] [--json]",
		`What each request went through across its deliveries, from the records the cluster kept and
the dead-letter stream: attempts, outcomes in order (ok[crash-after-handler]: the handler ran,
its result was lost; ok(replayed): answered from the platform's idempotency store;
ok(duplicate): a second delivery of the same event), the final state (succeeded,
dead-lettered, in flight, failed) and whether the handler ran more than once (RUNS > 1:
a non-idempotent side effect happened that many times).`,
		"coldstart retries report payments-naive\n  coldstart retries report payments-naive --reruns\n  coldstart retries report --since 10m --json")
	if code >= 0 {
		return code
	}
	if sub != "report" {
		fmt.Fprintln(stderr, "coldstart retries: want report (see coldstart retries report --help)")
		return 2
	}
	if len(pos) > 1 {
		fmt.Fprintln(stderr, "coldstart retries report: at most one function NAME")
		return 2
	}
	if err := client.ParseSince(*since); err != nil {
		fmt.Fprintln(stderr, "coldstart retries report:", err)
		return 2
	}
	fn := ""
	if len(pos) == 1 {
		fn = pos[0]
	}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	rep, err := c.RetriesReport(ctx, fn, *since)
	if err != nil {
		fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
		return 1
	}
	if *reruns {
		var keep []client.RequestHistory
		for _, h := range rep.Requests {
			if h.RanMoreThanOnce {
				keep = append(keep, h)
			}
		}
		rep.Requests = keep
	}
	if *asJSON {
		if rep.Requests == nil {
			rep.Requests = []client.RequestHistory{}
		}
		return printJSON(stdout, rep)
	}
	writeRetriesReport(stdout, rep)
	return 0
}

// writeRetriesReport prints the requests and the summary.
func writeRetriesReport(w io.Writer, rep client.RetriesReport) {
	if len(rep.Requests) > 0 {
		t := client.Table{Header: []string{"REQUEST", "FUNCTION", "ATTEMPTS", "RUNS", "STATE", "OUTCOMES"}, Right: []bool{false, false, true, true, false, false}}
		for _, h := range rep.Requests {
			runs := strconv.Itoa(h.Runs)
			if h.RanMoreThanOnce {
				runs += "!"
			}
			state := h.State
			if h.DeadLetter != "" && state == client.StateDeadLettered {
				state += " (" + h.DeadLetter + ")"
			}
			t.Rows = append(t.Rows, []string{h.RequestID, h.Function, strconv.Itoa(h.Attempts), runs, state, strings.Join(h.Outcomes, " > ")})
		}
		t.Write(w)
		fmt.Fprintln(w)
	}
	s := rep.Summary
	t := client.Table{Header: []string{"REQUESTS", "SUCCEEDED", "DEAD-LETTERED", "IN FLIGHT", "FAILED", "RAN MORE THAN ONCE", "REPLAYED DUPLICATES", "INJECTED FAULTS"},
		Right: []bool{true, true, true, true, true, true, true, false}}
	t.Rows = [][]string{{strconv.Itoa(s.Requests), strconv.Itoa(s.Succeeded), strconv.Itoa(s.DeadLettered), strconv.Itoa(s.InFlight), strconv.Itoa(s.Failed),
		strconv.Itoa(s.RanMoreThanOnce), strconv.Itoa(s.ReplayedDuplicates), client.FaultsText(s.Faults)}}
	t.Write(w)
}
