package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/check"
	"github.com/coldstart-dev/coldstart/internal/client"
)

// Exit codes of `coldstart check`.
const (
	checkPass       = 0
	checkViolation  = 1
	checkBadInput   = 2
	maxShownDecodes = 20
)

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return checkMain(ctx, args, os.Stdin, stdout, stderr)
}

// reservedFlag collects --reserved [ACCOUNT/]FUNCTION=N|none.
type reservedFlag []check.LimitChange

func (r *reservedFlag) String() string { return "" }

func (r *reservedFlag) Set(s string) error {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return errors.New("want [ACCOUNT/]FUNCTION=N")
	}
	c := check.LimitChange{Function: name}
	if a, f, ok := strings.Cut(name, "/"); ok {
		if a == "" || f == "" {
			return errors.New("want [ACCOUNT/]FUNCTION=N")
		}
		c.Account, c.Function = a, f
	}
	if val != "none" {
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return fmt.Errorf("reserved concurrency %q: want a number >= 0 or none", val)
		}
		c.Reserved = &n
	}
	*r = append(*r, c)
	return nil
}

func checkMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	recordsPath := fs.String("records", "", "records to check: a file of JSON lines (as coldstart records writes them), or - for stdin")
	follow := fs.Bool("follow", false, "check the live record stream of a running cluster, until Ctrl-C or --duration")
	fs.BoolVar(follow, "live", false, "the same as --follow")
	gw := gatewayFlag(fs)
	duration := fs.Duration("duration", 0, "with --follow: stop after this long (0: at Ctrl-C)")
	drain := fs.Duration("drain", time.Second, "with --follow: keep reading this long after stopping, for the records of invocations finishing then")
	limitsPath := fs.String("limits", "", "limit history: JSON lines {\"at_ns\":N,\"account\":\"A\",\"limit\":L} and {\"at_ns\":N,\"account\":\"A\",\"function\":\"F\",\"reserved\":R|null}")
	limit := fs.Int("limit", check.DefaultLimit, "account limit of every account the limit history does not set")
	var reserved reservedFlag
	fs.Var(&reserved, "reserved", "reserved concurrency `[ACCOUNT/]FUNCTION=N` (N may be none), from the start; repeatable")
	window := fs.Duration("window", check.DefaultWindow, "cross-node tolerance: a 429 is excused if the limit was reached this close to it; a lowered limit binds this long after it is made (0: none)")
	wholeRun := fs.Bool("whole-run", false, "the records cover the whole run (from before its first invocation to after its last): judge throttles at its edges too")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var unsteady intervals
	fs.Var(&unsteady, "unsteady", "a span `FROM/TO` (RFC 3339 or Unix ns) that is not steady state (a fault and its settling): 429s inside are not judged, limits still are; repeatable")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart check [--records FILE|-|--follow] [flags]",
		"Check a run's invocation records against coldstart's invariants, per account:\n"+
			"  - in-flight (capacity held, a sweep line) never starts above the account limit in force,\n"+
			"    nor a function's above its reserved concurrency;\n"+
			"  - no ConcurrentInvocationLimitExceeded / ReservedFunctionConcurrentInvocationLimitExceeded\n"+
			"    429 while in-flight was below the limit (within --window);\n"+
			"  - no sandbox cold-started twice (a grant applied twice), none running two invocations at once;\n"+
			"  - fenced invocations hold capacity until their lease expired, and started before it.\n"+
			"Prints a verdict per account and function, then each violation with its records.\n"+
			"Malformed lines are reported by line number and skipped.\n"+
			"Exit status: 0 pass, 1 a violation, 2 unreadable input or a usage error.",
		"coldstart records > run.ndjson     # while the run goes on; Ctrl-C after it\n"+
			"  coldstart check --records run.ndjson --limit 100 --reserved hello=10\n"+
			"  coldstart check --follow --duration 1m")
	if code >= 0 {
		return code
	}
	if len(pos) == 1 && *recordsPath == "" {
		*recordsPath = pos[0]
		pos = pos[1:]
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "coldstart check: unexpected argument %q (see --help)\n", pos[0])
		return checkBadInput
	}
	switch {
	case *follow && *recordsPath != "":
		fmt.Fprintln(stderr, "coldstart check: --records and --follow are exclusive")
		return checkBadInput
	case !*follow && *recordsPath == "":
		fmt.Fprintln(stderr, "coldstart check: give --records FILE (- for stdin) or --follow (see --help)")
		return checkBadInput
	case *limit <= 0:
		fmt.Fprintln(stderr, "coldstart check: --limit must be > 0")
		return checkBadInput
	case *window < 0:
		fmt.Fprintln(stderr, "coldstart check: --window must be >= 0")
		return checkBadInput
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	o := check.Options{DefaultLimit: *limit, Window: *window, Partial: !*wholeRun, Unsteady: unsteady}
	if *window == 0 {
		o.Window = -1
	}
	var history []check.LimitChange
	if *limitsPath != "" {
		h, ok := readLimits(*limitsPath, stderr)
		if !ok {
			return checkBadInput
		}
		history = h
	}

	var bad []check.DecodeError
	var records []api.Record
	inputBroken := false
	if *follow {
		c, ok := newClient(*gw, stderr)
		if !ok {
			return checkBadInput
		}
		if !explicit["limit"] && !explicit["limits"] {
			// The limits in force now, as the cluster reports them; flags
			// given explicitly override them.
			st, err := c.Status(ctx)
			if err != nil {
				fmt.Fprintf(stderr, "coldstart check: limits from status: %s (using --limit %d)\n", client.Describe(err, c.BaseURL()), *limit)
			} else {
				history = append(statusLimits(*st), history...)
			}
		}
		var err error
		records, bad, err = follows(ctx, c, *duration, *drain, stderr)
		reportDecodeErrors(stderr, "stream record", bad)
		if err != nil {
			fmt.Fprintf(stderr, "coldstart check: %s\n", client.Describe(err, c.BaseURL()))
			if len(records) == 0 {
				return checkBadInput
			}
			inputBroken = true
		}
	} else {
		in, name := stdin, "stdin"
		if *recordsPath != "-" {
			f, err := os.Open(*recordsPath)
			if err != nil {
				fmt.Fprintf(stderr, "coldstart check: %v\n", err)
				return checkBadInput
			}
			defer f.Close()
			in, name = f, *recordsPath
		}
		var err error
		records, bad, err = check.DecodeRecords(in)
		if err != nil {
			fmt.Fprintf(stderr, "coldstart check: %s: %v\n", name, err)
			return checkBadInput
		}
		reportDecodeErrors(stderr, name, bad)
		if len(records) == 0 && len(bad) > 0 {
			fmt.Fprintf(stderr, "coldstart check: %s: no readable record\n", name)
			return checkBadInput
		}
	}
	// Of changes at one instant the later wins: --reserved (from the start)
	// over what the file or the cluster's status says for the start.
	o.Limits = append(history, reserved...)

	rep := check.Run(records, o)
	rep.Malformed = len(bad)
	rep.DecodeErrors = bad[:min(len(bad), 100)]
	if *asJSON {
		if err := rep.WriteJSON(stdout); err != nil {
			return checkBadInput
		}
	} else {
		rep.WriteTable(stdout)
	}
	if rep.Unjudged > 0 {
		fmt.Fprintf(stderr, "coldstart check: %d throttles near the edges of the capture were not judged (records of invocations just before or after it may be missing); give --whole-run if the records cover the whole run\n", rep.Unjudged)
	}
	switch {
	case !rep.OK():
		return checkViolation
	case inputBroken:
		return checkBadInput
	}
	return checkPass
}

// readLimits reads a limit history file; any bad line makes it unusable
// (a skipped limit change would change the verdict).
func readLimits(path string, stderr io.Writer) ([]check.LimitChange, bool) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "coldstart check: %v\n", err)
		return nil, false
	}
	defer f.Close()
	h, bad, err := check.DecodeLimits(f)
	if err != nil {
		fmt.Fprintf(stderr, "coldstart check: %s: %v\n", path, err)
		return nil, false
	}
	if len(bad) > 0 {
		reportDecodeErrors(stderr, path, bad)
		fmt.Fprintf(stderr, "coldstart check: %s: %d bad lines; fix them, a skipped limit change would change the verdict\n", path, len(bad))
		return nil, false
	}
	return h, true
}

func reportDecodeErrors(w io.Writer, name string, bad []check.DecodeError) {
	for i, e := range bad {
		if i == maxShownDecodes {
			fmt.Fprintf(w, "coldstart check: %s: ... and %d more malformed lines\n", name, len(bad)-maxShownDecodes)
			return
		}
		fmt.Fprintf(w, "coldstart check: %s:%d: %s: %s\n", name, e.Line, e.Err, e.Text)
	}
}

// statusLimits turns the cluster's current limits into a limit history
// that holds from the start.
func statusLimits(st api.Status) []check.LimitChange {
	var out []check.LimitChange
	for _, a := range st.Accounts {
		if a.Limit > 0 {
			out = append(out, check.LimitChange{Account: a.Account, Limit: a.Limit})
		}
	}
	for _, f := range st.Functions {
		if f.Reserved != nil {
			n := *f.Reserved
			out = append(out, check.LimitChange{Account: f.Account, Function: f.Name, Reserved: &n})
		}
	}
	return out
}

// follows reads the gateway's record stream until ctx is done or d has
// passed, and then for drain more. Lines that are not records are counted
// as malformed (numbered by their place in the stream).
func follows(ctx context.Context, c *client.Client, d, drain time.Duration, stderr io.Writer) ([]api.Record, []check.DecodeError, error) {
	run := ctx
	if d > 0 {
		var cancel context.CancelFunc
		run, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	streamCtx, stop := context.WithCancel(context.Background())
	defer stop()
	st, err := c.OpenRecords(streamCtx, "")
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	go func() {
		select {
		case <-run.Done():
			time.Sleep(drain)
		case <-streamCtx.Done():
		}
		stop()
	}()
	fmt.Fprintf(stderr, "coldstart check: checking the records of %s; Ctrl-C prints the verdict\n", c.BaseURL())
	var recs []api.Record
	var bad []check.DecodeError
	for n := 1; ; n++ {
		r, err := st.Next()
		if err != nil {
			var se *json.SyntaxError
			var te *json.UnmarshalTypeError
			switch {
			case errors.As(err, &se) || errors.As(err, &te):
				bad = append(bad, check.DecodeError{Line: n, Err: err.Error()})
				continue
			case errors.Is(err, io.EOF) || streamCtx.Err() != nil:
				return recs, bad, nil
			}
			return recs, bad, err
		}
		if verr := check.Validate(r); verr != nil {
			bad = append(bad, check.DecodeError{Line: n, Err: verr.Error(), Text: r.RequestID})
			continue
		}
		recs = append(recs, r)
	}
}

// intervals is a repeatable FROM/TO flag.
type intervals []check.Interval

func (v *intervals) String() string { return fmt.Sprint(len(*v)) }

func (v *intervals) Set(s string) error {
	from, to, ok := strings.Cut(s, "/")
	if !ok {
		return fmt.Errorf("want FROM/TO, got %q", s)
	}
	f, err := parseInstant(from)
	if err != nil {
		return err
	}
	t, err := parseInstant(to)
	if err != nil {
		return err
	}
	if t < f {
		return fmt.Errorf("%q ends before it starts", s)
	}
	*v = append(*v, check.Interval{FromNs: f, ToNs: t})
	return nil
}

func parseInstant(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither RFC 3339 nor Unix ns", s)
	}
	return t.UnixNano(), nil
}
