package client

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// The entry points below are the client-side CLI commands (`coldstart invoke`,
// `coldstart records`, `coldstart status`). args excludes the program and
// command names. They return the process exit code: 0 success, 1 the request
// failed (API, network or function error), 2 bad usage.

const gatewayHelp = "gateway URL (default $" + EnvGateway + ", else " + DefaultGatewayURL + ")"

// InvokeMain runs `coldstart invoke NAME [--payload JSON]`: the function's
// answer goes to stdout, an error's type and message to stderr.
func InvokeMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("invoke", flag.ContinueOnError)
	payload := fs.String("payload", "{}", "event JSON; @FILE reads a file, - reads stdin")
	qualifier := fs.String("qualifier", "", "version or alias to invoke")
	gateway := fs.String("gateway", "", gatewayHelp)
	logTail := fs.Bool("log", false, "print the last 4 KB of the function's log to stderr")
	verbose := fs.Bool("v", false, "print request id, cold/warm, durations, sandbox and worker to stderr")
	invType := fs.String("invocation-type", "RequestResponse", "RequestResponse (wait for the answer), Event (queue it: 202, retried by the platform) or DryRun")
	fs.Usage = Usage(fs, "coldstart invoke NAME [flags]",
		"Invoke a function and print its answer (or, with --invocation-type Event, its request id once the event is stored).",
		`coldstart invoke hello --payload '{"name":"ada"}' -v`)
	pos, code := parse(fs, args, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart invoke: want exactly one function NAME (see --help)")
		return 2
	}
	body, err := ReadPayload(*payload, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "coldstart invoke: %v\n", err)
		return 2
	}
	c, err := New(DefaultGateway(*gateway), WithCredentials(EnvCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "coldstart invoke: %v\n", err)
		return 2
	}
	switch *invType {
	case "RequestResponse", "Event", "DryRun":
	default:
		fmt.Fprintf(stderr, "coldstart invoke: --invocation-type %q: want RequestResponse, Event or DryRun\n", *invType)
		return 2
	}
	res, err := c.Invoke(ctx, pos[0], body, InvokeOptions{Qualifier: *qualifier, LogTail: *logTail, InvocationType: *invType})
	if err != nil {
		fmt.Fprintln(stderr, Describe(err, c.BaseURL()))
		return 1
	}
	if *invType != "RequestResponse" {
		fmt.Fprintf(stdout, "%d %s: request %s\n", res.StatusCode, map[string]string{"Event": "accepted", "DryRun": "would run"}[*invType], dash(res.RequestID))
		return 0
	}
	if len(res.Payload) > 0 {
		stdout.Write(res.Payload)
		if res.Payload[len(res.Payload)-1] != '\n' {
			fmt.Fprintln(stdout)
		}
	}
	if *verbose {
		state := "warm"
		if res.Cold {
			state = fmt.Sprintf("cold (init %.1f ms)", res.InitMs)
		}
		fmt.Fprintf(stderr, "request %s  version %s  %s  duration %.1f ms  billed %d ms  sandbox %s  worker %s\n",
			dash(res.RequestID), dash(res.ExecutedVersion), state, res.DurationMs, res.BilledMs, dash(res.Sandbox), dash(res.Worker))
	}
	if *logTail && res.LogTail != "" {
		fmt.Fprint(stderr, res.LogTail)
		if !strings.HasSuffix(res.LogTail, "\n") {
			fmt.Fprintln(stderr)
		}
	}
	if res.FunctionError != "" {
		typ, msg := res.FunctionErrorBody()
		fmt.Fprintf(stderr, "FunctionError (%s): %s: %s\n", res.FunctionError, dash(typ), msg)
		return 1
	}
	return 0
}

// RecordsMain runs `coldstart records`: one JSON line per finished
// invocation, until interrupted (or --count records); with --since, the
// kept ones first, ending after them unless --follow.
func RecordsMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("records", flag.ContinueOnError)
	var q RecordsQuery
	fs.StringVar(&q.Function, "function", "", "only this function's records")
	fs.StringVar(&q.RequestID, "request-id", "", "only this request's records (its attempts, for an asynchronous one)")
	fs.StringVar(&q.Since, "since", "", "first the records the cluster kept from then on: a duration ago (10m), an RFC 3339 time, or all (default: only records finishing from now on)")
	fs.BoolVar(&q.Follow, "follow", false, "with --since: go on with new records after the kept ones (without --since records always follow)")
	count := fs.Int("count", 0, "stop after N records (0: until interrupted, or the end of the kept ones)")
	gateway := fs.String("gateway", "", gatewayHelp)
	fs.Usage = Usage(fs, "coldstart records [flags]",
		"Stream one JSON line per finished invocation (request_id, account, function, version,\n"+
			"sandbox, worker, start_ns, end_ns, cold, init_ms, duration_ms, billed_ms, outcome, ...).\n"+
			"Without --since, only those finishing while it runs; with it, those kept since then\n"+
			"(the gateway's --records-max-age, 24h by default) first.",
		"coldstart records --function hello --count 100 > records.ndjson\n"+
			"  coldstart records --since 10m --request-id REQUEST_ID\n"+
			"  coldstart records --since all --follow")
	pos, code := parse(fs, args, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "coldstart records: unexpected argument %q (see --help)\n", pos[0])
		return 2
	}
	if q.Since != "" {
		if err := ParseSince(q.Since); err != nil {
			fmt.Fprintf(stderr, "coldstart records: %v\n", err)
			return 2
		}
	}
	c, err := New(DefaultGateway(*gateway), WithCredentials(EnvCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "coldstart records: %v\n", err)
		return 2
	}
	enc := json.NewEncoder(stdout)
	n := 0
	err = c.QueryRecords(ctx, q, func(r api.Record) error {
		if err := enc.Encode(r); err != nil {
			return err
		}
		n++
		if *count > 0 && n >= *count {
			return ErrStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, Describe(err, c.BaseURL()))
		return 1
	}
	return 0
}

// StatusMain runs `coldstart status`: nodes, leader, accounts and functions.
func StatusMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	gateway := fs.String("gateway", "", gatewayHelp)
	fs.Usage = Usage(fs, "coldstart status [flags]",
		"Show the cluster: nodes and roles, the placement leader, in-flight invocations\n"+
			"against each account's limit, and sandboxes per function.",
		"coldstart status --gateway http://127.0.0.1:9000")
	pos, code := parse(fs, args, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "coldstart status: unexpected argument %q (see --help)\n", pos[0])
		return 2
	}
	c, err := New(DefaultGateway(*gateway), WithCredentials(EnvCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "coldstart status: %v\n", err)
		return 2
	}
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Fprintln(stderr, Describe(err, c.BaseURL()))
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return 1
		}
		return 0
	}
	if err := FormatStatus(stdout, *st); err != nil {
		return 1
	}
	return 0
}

// Describe turns a client error into one line for a human: the exception
// name and message for API errors, a hint for an unreachable gateway.
func Describe(err error, gateway string) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Error()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err.Error()
	}
	return fmt.Sprintf("cannot reach the gateway at %s (is `coldstart up` running? set --gateway or $%s): %v", gateway, EnvGateway, err)
}

// ReadPayload resolves a --payload value: literal text, @FILE, or - (stdin).
func ReadPayload(arg string, stdin io.Reader) ([]byte, error) {
	switch {
	case arg == "-":
		if stdin == nil {
			return nil, errors.New("--payload -: no stdin")
		}
		return io.ReadAll(io.LimitReader(stdin, maxPayloadBytes))
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, fmt.Errorf("--payload: %w", err)
		}
		return b, nil
	}
	return []byte(arg), nil
}

// ParseFlags parses args allowing flags after positional arguments
// ("invoke NAME --payload X"), which the flag package alone stops at. It
// returns the positional arguments; everything after "--" is positional.
func ParseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// WantsHelp reports whether args ask for help (-h, -help, --help before any "--").
func WantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// parse runs ParseFlags and maps the outcome to an exit code: -1 means go on.
// Help goes to stdout with exit 0; a usage error to stderr with exit 2.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) ([]string, int) {
	if WantsHelp(args) {
		fs.SetOutput(stdout)
	} else {
		fs.SetOutput(stderr)
	}
	pos, err := ParseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, 0
	}
	if err != nil {
		return nil, 2
	}
	return pos, -1
}

// Usage returns a flag.FlagSet Usage func that prints a command's synopsis,
// description, example and flags to the flag set's output.
func Usage(fs *flag.FlagSet, synopsis, what, example string) func() {
	return func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\n%s\n\nExample:\n  %s\n\nFlags:\n", synopsis, what, example)
		fs.PrintDefaults()
	}
}
