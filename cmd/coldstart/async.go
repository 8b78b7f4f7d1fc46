package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/client"
	"github.com/coldstart-dev/coldstart/wire"
)

// The commands of asynchronous invocations and the platform's options:
// coldstart dlq, coldstart chaos inject|clear, coldstart function
// set-idempotency, coldstart retries report.

func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	gw := gatewayFlag(fs)
	fn := fs.String("function", "", "only this function's dead letters")
	asJSON := fs.Bool("json", false, "print the API's answer")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart dlq list [--function F] | show REQUEST_ID | redrive [--function F] [REQUEST_ID]",
		"The dead-letter stream: events that exhausted their retries or aged out. redrive puts them back in the queue (their records show trigger redrive).",
		"coldstart dlq list --function payments\n  coldstart dlq show 3f2c...\n  coldstart dlq redrive --function payments")
	if code >= 0 {
		return code
	}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	switch sub {
	case "list":
		dls, err := c.DeadLetters(ctx, *fn)
		if err != nil {
			fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
			return 1
		}
		if *asJSON {
			return printJSON(stdout, dls)
		}
		t := client.Table{Header: []string{"REQUEST", "FUNCTION", "CONDITION", "ATTEMPTS", "ERROR", "DEAD-LETTERED"}, Right: []bool{false, false, false, true, false, false}}
		for _, d := range dls {
			t.Rows = append(t.Rows, []string{d.RequestID, d.Function, d.Condition, strconv.Itoa(d.ApproximateInvokeCount), clipText(d.ErrorMessage, 60), time.Unix(0, d.DeadLetteredNs).UTC().Format(time.RFC3339)})
		}
		t.Write(stdout)
		fmt.Fprintf(stdout, "%d dead letters\n", len(dls))
		return 0
	case "show":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "coldstart dlq show: want one REQUEST_ID")
			return 2
		}
		d, err := c.DeadLetter(ctx, pos[0])
		if err != nil {
			fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
			return 1
		}
		return printJSON(stdout, d)
	case "redrive":
		id := ""
		if len(pos) == 1 {
			id = pos[0]
		}
		n, err := c.Redrive(ctx, *fn, id)
		if err != nil {
			fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
			return 1
		}
		fmt.Fprintf(stdout, "%d events back in the queue\n", n)
		return 0
	}
	fmt.Fprintln(stderr, "coldstart dlq: want list, show or redrive (see --help)")
	return 2
}

func clipText(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// chaosInject runs `coldstart chaos inject NAME --fault KIND ...` and
// `coldstart chaos clear NAME`.
func chaosInject(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos "+verb, flag.ContinueOnError)
	gw := gatewayFlag(fs)
	kind := fs.String("fault", "", "the fault: "+strings.Join(wire.FaultKinds, ", "))
	rate := fs.Float64("rate", 0, "probability that an invocation is hit (0-1]")
	seed := fs.Int64("seed", 0, "seed of the rate's draws (the same seed replays the same schedule per gateway); 0 random")
	nth := fs.String("nth", "", "comma-separated invocation numbers to hit (1-based, counted per gateway from now), instead of --rate")
	dur := fs.Duration("for", 0, "how long the fault lasts (0: until cleared)")
	delay := fs.Duration("delay", 0, "add-delay: how late the handler starts (default half the function's timeout)")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart chaos inject NAME --fault KIND (--rate P [--seed S] | --nth N,M) [--for D] | chaos clear NAME",
		`Inject a fault into a function's invocations, from the next one (the platform's own faults, which in-sandbox tools cannot make):
  crash-after-handler   the handler ran; the worker dies before the result is acknowledged
  drop-response         the handler ran; its response never reaches the caller
  timeout-after-effect  the handler ran; the caller gets Sandbox.Timedout
  duplicate-delivery    the same event delivered twice, concurrently
  error-before          a platform error; the handler does not run
  add-delay             the handler starts late (past its timeout: a real timeout)
Hit invocations are marked in their records (fault).`,
		"coldstart chaos inject payments --fault crash-after-handler --rate 0.3 --seed 7\n  coldstart chaos clear payments")
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "coldstart chaos %s: want one function NAME\n", verb)
		return 2
	}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	if verb == "clear" {
		if err := c.ClearFault(ctx, pos[0]); err != nil {
			fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
			return 1
		}
		fmt.Fprintf(stdout, "%s: no injected fault\n", pos[0])
		return 0
	}
	in := api.FaultInput{Kind: *kind, Rate: *rate, Seed: *seed, ForSeconds: dur.Seconds(), DelayMs: delay.Milliseconds()}
	if *nth != "" {
		for _, f := range strings.Split(*nth, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				fmt.Fprintf(stderr, "coldstart chaos inject: --nth %q: %v\n", *nth, err)
				return 2
			}
			in.Nth = append(in.Nth, n)
		}
	}
	if _, err := c.InjectFault(ctx, pos[0], in); err != nil {
		fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
		return 1
	}
	what := fmt.Sprintf("rate %.2f", *rate)
	if len(in.Nth) > 0 {
		what = "invocations " + *nth
	}
	fmt.Fprintf(stdout, "%s: %s injected (%s) from the next invocation\n", pos[0], *kind, what)
	return 0
}

// functionSetIdempotency runs `coldstart function set-idempotency`.
func functionSetIdempotency(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("function set-idempotency", flag.ContinueOnError)
	gw := gatewayFlag(fs)
	key := fs.String("key", "request-id", "the idempotency key: request-id, header:NAME or json:PATH")
	ttl := fs.Duration("ttl", time.Hour, "how long a completed invocation's response is kept")
	off := fs.Bool("off", false, "turn the platform's idempotency off")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart function set-idempotency NAME [--key request-id|header:NAME|json:PATH] [--ttl 1h] [--off]",
		"Turn on the platform's dedupe of a function's invocations: before the handler runs the worker claims the key in Redis (SET NX PX); a duplicate gets the stored response without running, or a retryable error while the first still runs.",
		"coldstart function set-idempotency payments --key json:order_id --ttl 1h")
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart function set-idempotency: want one function NAME")
		return 2
	}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	if *off {
		if err := c.ClearIdempotency(ctx, pos[0]); err != nil {
			fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
			return 1
		}
		fmt.Fprintf(stdout, "%s: platform idempotency off\n", pos[0])
		return 0
	}
	if _, err := c.SetIdempotency(ctx, pos[0], api.IdempotencyInput{Key: *key, TTLSeconds: ttl.Seconds()}); err != nil {
		fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
		return 1
	}
	fmt.Fprintf(stdout, "%s: platform idempotency on (key %s, ttl %s)\n", pos[0], *key, *ttl)
	return 0
}
