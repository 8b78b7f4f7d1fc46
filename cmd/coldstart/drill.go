package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coldstart-dev/coldstart/internal/drill"
)

// drillStdin is where an interactive drill reads the operator's answer.
var drillStdin io.Reader = os.Stdin

// gatewayList is the repeatable --gateway flag of coldstart drill.
type gatewayList []string

func (g *gatewayList) String() string     { return strings.Join(*g, ",") }
func (g *gatewayList) Set(s string) error { *g = append(*g, splitList(s)...); return nil }

func runDrill(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "list":
		return drillList(args, stdout, stderr)
	case "run":
		return drillRun(ctx, args, stdout, stderr)
	case "-h", "--help", "help":
		drillUsage(stdout)
		return 0
	}
	drillUsage(stderr)
	return drill.ExitUsage
}

func drillUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: coldstart drill list [--json]
       coldstart drill run NAME [--target up|compose] [--answer X] [--json] [--gateway URL ...]

Graded incident drills against a running cluster. A drill creates its own functions,
starts load, injects a fault it does not name, and asks what broke. It grades the
answer from what really happened: the fault it injected, and the signal that fault
must show (when the signal does not appear, the run is reported invalid instead of
graded). coldstart check runs over the drill's records; a violation fails the run.
Each drill links to its section of docs/triage.md.

Exit status: 0 right answer and check passed, 1 wrong answer, 2 usage,
3 run not graded (the signal did not appear or the fault could not be injected),
4 coldstart check found a violation.

Example:
  coldstart up --time-scale 10 &
  coldstart drill list
  coldstart drill run quorum-loss
  coldstart drill run throttle-storm --answer c --json
`)
}

func drillList(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drill list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the drills as JSON")
	_, code := parseCmd(fs, args, stdout, stderr, "coldstart drill list [--json]", "List the drills: name, what the operator sees, rough length.", "coldstart drill list")
	if code >= 0 {
		return code
	}
	if *asJSON {
		type entry struct{ Name, Title, Duration, Runbook string }
		var out []entry
		for _, s := range drill.Specs {
			out = append(out, entry{s.Name, s.Title, s.Duration, s.Link()})
		}
		return printJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DRILL\tWHAT YOU WILL SEE\tLENGTH")
	for _, s := range drill.Specs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Title, s.Duration)
	}
	tw.Flush()
	fmt.Fprintln(stdout, "\nRun one: coldstart drill run NAME   (runbook: "+drill.TriageDoc+")")
	return 0
}

func drillRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drill run", flag.ContinueOnError)
	var gws gatewayList
	fs.Var(&gws, "gateway", "gateway `URL` (repeatable or comma-separated; default $COLDSTART_GATEWAY, else http://127.0.0.1:9000); load is spread over them")
	target := fs.String("target", "up", "where faults go: up (the admin endpoint of coldstart up) or compose (docker kill, pause, network disconnect of the compose cluster's containers)")
	answer := fs.String("answer", "", "answer non-interactively with this choice (letter or cause id), once the drill has seen its signal")
	asJSON := fs.Bool("json", false, "print the result as JSON (progress goes to stderr)")
	admin := fs.String("admin", envOr("COLDSTART_ADMIN", "127.0.0.1:9100"), "admin address of coldstart up")
	data := fs.String("data", envOr("COLDSTART_DATA", "./.coldstart"), "data directory of coldstart up (admin token, port plan); the drill's records are saved under DATA/drills")
	redisURL := fs.String("redis", "", "redis-down only: the cluster's Redis (default: the one in DATA/cluster.json)")
	project := fs.String("project", "", "with --target compose: the compose project (default $COMPOSE_PROJECT_NAME, else the one running coldstart)")
	redisPID := fs.Int("redis-pid", 0, "redis-down only, --target up: `PID` of the Redis server to stop and continue (default: as Redis reports it in INFO); with compose the redis container is paused")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart drill run NAME [--target up|compose] [--answer X] [--json] [--gateway URL ...]",
		"Run one drill (coldstart drill list names them). Without --answer it asks on the terminal\n"+
			"and keeps the fault in place until you answer.",
		"coldstart drill run quorum-loss\n  coldstart drill run redis-down --answer redis-down --json")
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart drill run: want one drill name (see coldstart drill list)")
		return drill.ExitUsage
	}
	spec, ok := drill.SpecByName(pos[0])
	if !ok {
		fmt.Fprintf(stderr, "coldstart drill run: no drill %q (see coldstart drill list)\n", pos[0])
		return drill.ExitUsage
	}
	if *answer != "" {
		if _, err := spec.Resolve(*answer); err != nil {
			fmt.Fprintln(stderr, "coldstart drill run:", err)
			return drill.ExitUsage
		}
	}
	progress := stdout
	if *asJSON {
		progress = stderr
	}
	opts := drillOptions{spec: spec, gateways: gws, admin: *admin, data: *data, target: *target,
		answer: *answer, redisURL: *redisURL, redisPID: *redisPID, project: *project, out: progress, in: drillStdin}
	start := time.Now()
	res, err := runOneDrill(ctx, opts)
	var usage *drillSetupError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, "coldstart drill run:", err)
		return drill.ExitInvalid
	case err != nil && !errors.Is(err, drill.ErrInvalidRun):
		fmt.Fprintln(stderr, "coldstart drill run:", err)
		if res == nil {
			return drill.ExitInvalid
		}
	}
	res.DurationMs = time.Since(start).Milliseconds()
	if *asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		printDrillResult(stdout, spec, res)
	}
	return res.ExitCode
}

func printDrillResult(w io.Writer, s drill.Spec, r *drill.Result) {
	fmt.Fprintln(w)
	switch {
	case !r.Valid:
		fmt.Fprintf(w, "NOT GRADED: %s\n", r.Invalid)
	case r.Correct:
		fmt.Fprintf(w, "RIGHT: %s\n", r.RightText)
	default:
		fmt.Fprintf(w, "WRONG: you chose %q; it was: %s\n", r.AnswerText, r.RightText)
	}
	if r.Valid {
		fmt.Fprintf(w, "time to diagnosis: %s\n", (time.Duration(r.TimeToDiagnosis) * time.Millisecond).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "injected: %s\n", strings.Join(r.Fault, "; "))
	if len(r.Recovery) > 0 {
		fmt.Fprintf(w, "undone:   %s\n", strings.Join(r.Recovery, "; "))
	}
	fmt.Fprintf(w, "decisive signal: %s\n", r.Signal)
	for _, e := range r.Evidence {
		mark := "seen"
		if !e.Present {
			mark = "NOT seen"
		}
		fmt.Fprintf(w, "  [%s] %s: %s\n", mark, e.What, e.Detail)
	}
	verdict := "pass"
	if !r.Check {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "coldstart check over %d records: %s (%s)\n", r.Records, verdict, r.CheckSummary)
	if r.ReproduceCommand != "" {
		fmt.Fprintf(w, "  again by hand: %s\n", r.ReproduceCommand)
	}
	fmt.Fprintf(w, "runbook: %s\n", r.Runbook)
}
