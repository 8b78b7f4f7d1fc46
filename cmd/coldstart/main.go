// Command coldstart runs every role of a coldstart cluster and its tools.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"up":          {"run a whole cluster in one process (3 placement, 2 gateways, 3 workers, NATS, Redis)", runUp},
	"placement":   {"run one placement node (Raft)", runPlacement},
	"worker":      {"run one worker node", runWorker},
	"gateway":     {"run one gateway node (Lambda HTTP API)", runGateway},
	"nats":        {"run an embedded NATS server (for clusters without a nats-server binary)", runNATS},
	"invoke":      {"invoke a function", runInvoke},
	"function":    {"functions: create (code or synthetic), update code and configuration, publish, versions, aliases, provisioned and reserved concurrency", runFunction},
	"provisioned": {"provisioned concurrency: set, get, delete (same as function provisioned)", runProvisioned},
	"account":     {"accounts: set-limit, show; create and keys (operator)", runAccount},
	"logs":        {"print or follow a function's log lines", runLogs},
	"load":        {"open-loop load generator", runLoad},
	"records":     {"stream one JSON line per finished invocation", runRecords},
	"dlq":         {"dead-lettered asynchronous events: list, show, redrive", runDLQ},
	"retries":     {"report what each request went through across its deliveries, and which handlers ran more than once", runRetries},
	"drill":       {"graded incident drills: inject a hidden fault under load, ask what broke, grade the answer", runDrill},
	"check":       {"check invocation records against the limits and invariants (file, stdin or live)", runCheck},
	"status":      {"cluster status: nodes, leader, sandboxes, in-flight against limits", runStatus},
	"top":         {"live terminal view: per-function rates, latency, throttles, concurrency; nodes; timeline", runTop},
	"sim":         {"trace-driven simulator on the same policy code", runSim},
	"chaos":       {"kill, restart, pause and partition nodes of a running `coldstart up`", runChaos},
	"healthcheck": {"exit 0 when a node's /healthz answers (for container probes)", runHealthcheck},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "coldstart: a multi-node emulator of a Lambda-style serverless platform.")
	fmt.Fprintln(w, "\nUsage: coldstart <command> [flags]   (coldstart <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nExample:\n  coldstart up &\n  coldstart function create hello --runtime synthetic --duration 80ms --cold-start 180ms\n  coldstart invoke hello --payload '{}'")
}

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "coldstart: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

// envOr returns the environment variable's value, or def.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
