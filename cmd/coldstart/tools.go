package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/client"
	"github.com/coldstart-dev/coldstart/loadgen"
	"github.com/coldstart-dev/coldstart/sim"
)

func runInvoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return client.InvokeMain(ctx, args, os.Stdin, stdout, stderr)
}
func runRecords(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return client.RecordsMain(ctx, args, stdout, stderr)
}
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return client.StatusMain(ctx, args, stdout, stderr)
}
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return loadgen.Main(ctx, args, stdout, stderr)
}
func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return sim.Main(ctx, args, stdout, stderr)
}

// parseCmd parses a client subcommand's flags (flags may follow positional
// arguments) and reports the exit code to use when it should stop.
func parseCmd(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, synopsis, what, example string) ([]string, int) {
	fs.Usage = client.Usage(fs, synopsis, what, example)
	if client.WantsHelp(args) {
		fs.SetOutput(stdout)
	} else {
		fs.SetOutput(stderr)
	}
	pos, err := client.ParseFlags(fs, args)
	if err == flag.ErrHelp {
		return nil, 0
	}
	if err != nil {
		return nil, 2
	}
	return pos, -1
}

func runFunction(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "create":
		return functionCreate(ctx, args, stdout, stderr)
	case "delete":
		return functionSimple(ctx, args, stdout, stderr, "delete", func(c *client.Client, name string) (any, error) {
			return nil, c.DeleteFunction(ctx, name)
		})
	case "get":
		return functionSimple(ctx, args, stdout, stderr, "get", func(c *client.Client, name string) (any, error) {
			return c.GetFunction(ctx, name)
		})
	case "list":
		return functionList(ctx, args, stdout, stderr)
	case "set-concurrency":
		return functionSetConcurrency(ctx, args, stdout, stderr)
	}
	w := stdout
	code := 0
	if sub != "" && sub != "-h" && sub != "--help" && sub != "help" {
		fmt.Fprintf(stderr, "coldstart function: unknown subcommand %q\n\n", sub)
		w, code = stderr, 2
	}
	fmt.Fprintln(w, `Usage: coldstart function <create|delete|get|list|set-concurrency> [flags]

Examples:
  coldstart function create hello --runtime synthetic --duration 80ms --cold-start 180ms --memory 512 --timeout 3s
  coldstart function set-concurrency hello 50        (reserved concurrency; "none" removes it)
  coldstart function list
  coldstart function delete hello`)
	return code
}

func functionCreate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("function create", flag.ContinueOnError)
	gw := gatewayFlag(fs)
	runtime := fs.String("runtime", "synthetic", "runtime (synthetic)")
	profile := fs.String("profile", "", "measured cold-start defaults to use: python3.12, nodejs22.x, java21, go, dotnet8, ruby3.3 ...")
	duration := fs.String("duration", "", "handler duration: 80ms, uniform:50ms:150ms, normal:100ms:20ms, lognormal:100ms:0.5")
	cold := fs.String("cold-start", "", "whole cold start (split over its three phases), or a distribution")
	create := fs.String("sandbox-create", "", "phase 1 override (distribution)")
	rinit := fs.String("runtime-init", "", "phase 2 override (distribution)")
	finit := fs.String("function-init", "", "phase 3 override (distribution)")
	keep := fs.String("keep-alive", "", "keep-alive TTL of idle sandboxes (default: the cluster's, 10m)")
	memory := fs.Int("memory", 128, "memory MB (128-10240)")
	timeout := fs.Duration("timeout", 3*time.Second, "timeout (1s-900s)")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart function create NAME [flags]",
		"Create a synthetic function: no process, its cold-start phases and handler duration drawn from distributions.",
		"coldstart function create hello --runtime synthetic --duration 80ms --cold-start 180ms --memory 512 --timeout 3s")
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart function create: want exactly one NAME")
		return 2
	}
	if *timeout%time.Second != 0 {
		fmt.Fprintln(stderr, "coldstart function create: --timeout must be whole seconds (Lambda's unit)")
		return 2
	}
	in := api.CreateFunctionInput{FunctionName: pos[0], Runtime: *runtime, MemorySize: *memory, Timeout: int(*timeout / time.Second),
		Coldstart: &api.SyntheticConfig{Duration: *duration, ColdStart: *cold, SandboxCreate: *create, RuntimeInit: *rinit, FunctionInit: *finit, Profile: *profile, KeepAlive: *keep}}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	out, err := c.CreateFunction(ctx, in)
	if err != nil {
		fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
		return 1
	}
	return printJSON(stdout, out)
}

func functionSimple(ctx context.Context, args []string, stdout, stderr io.Writer, verb string, do func(*client.Client, string) (any, error)) int {
	fs := flag.NewFlagSet("function "+verb, flag.ContinueOnError)
	gw := gatewayFlag(fs)
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart function "+verb+" NAME", verb+" a function.", "coldstart function "+verb+" hello")
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "coldstart function %s: want exactly one NAME\n", verb)
		return 2
	}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	out, err := do(c, pos[0])
	if err != nil {
		fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
		return 1
	}
	if out == nil {
		fmt.Fprintf(stdout, "%s: done\n", pos[0])
		return 0
	}
	return printJSON(stdout, out)
}

func functionList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("function list", flag.ContinueOnError)
	gw := gatewayFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, code := parseCmd(fs, args, stdout, stderr, "coldstart function list", "List functions.", "coldstart function list --json"); code >= 0 {
		return code
	}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	out, err := c.ListFunctions(ctx)
	if err != nil {
		fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
		return 1
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRUNTIME\tMEMORY\tTIMEOUT\tDURATION\tCOLD START")
	for _, f := range out.Functions {
		d, cs := "", ""
		if f.Coldstart != nil {
			d, cs = f.Coldstart.Duration, f.Coldstart.ColdStart
		}
		fmt.Fprintf(tw, "%s\t%s\t%d MB\t%ds\t%s\t%s\n", f.FunctionName, f.Runtime, f.MemorySize, f.Timeout, d, cs)
	}
	tw.Flush()
	return 0
}

func functionSetConcurrency(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("function set-concurrency", flag.ContinueOnError)
	gw := gatewayFlag(fs)
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart function set-concurrency NAME N|none",
		"Set a function's reserved concurrency (a guarantee and a cap; 0 throttles every invocation; none removes it).",
		"coldstart function set-concurrency hello 50")
	if code >= 0 {
		return code
	}
	if len(pos) != 2 {
		fmt.Fprintln(stderr, "coldstart function set-concurrency: want NAME and N (or none)")
		return 2
	}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	if pos[1] == "none" {
		if err := c.DeleteConcurrency(ctx, pos[0]); err != nil {
			fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
			return 1
		}
		fmt.Fprintf(stdout, "%s: reserved concurrency removed\n", pos[0])
		return 0
	}
	n, err := strconv.Atoi(pos[1])
	if err != nil {
		fmt.Fprintf(stderr, "coldstart function set-concurrency: %q is not a number\n", pos[1])
		return 2
	}
	out, err := c.PutConcurrency(ctx, pos[0], n)
	if err != nil {
		fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
		return 1
	}
	return printJSON(stdout, out)
}

func runAccount(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("account "+sub, flag.ContinueOnError)
	gw := gatewayFlag(fs)
	switch sub {
	case "set-limit", "show":
	default:
		w, code := stdout, 0
		if sub != "" && sub != "-h" && sub != "--help" && sub != "help" {
			fmt.Fprintf(stderr, "coldstart account: unknown subcommand %q\n\n", sub)
			w, code = stderr, 2
		}
		fmt.Fprintln(w, "Usage: coldstart account <set-limit N|show> [--gateway URL]\n\nExample:\n  coldstart account set-limit 100\n  coldstart account show")
		return code
	}
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart account "+sub, "Account concurrency settings.", "coldstart account set-limit 100")
	if code >= 0 {
		return code
	}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	var out *api.AccountSettings
	var err error
	if sub == "show" {
		out, err = c.GetAccountSettings(ctx)
	} else {
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "coldstart account set-limit: want N")
			return 2
		}
		n, perr := strconv.Atoi(pos[0])
		if perr != nil {
			fmt.Fprintf(stderr, "coldstart account set-limit: %q is not a number\n", pos[0])
			return 2
		}
		out, err = c.SetAccountLimit(ctx, n)
	}
	if err != nil {
		fmt.Fprintln(stderr, client.Describe(err, c.BaseURL()))
		return 1
	}
	return printJSON(stdout, out)
}

func printJSON(w io.Writer, v any) int {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
	return 0
}

// gatewayFlag and newClient are the gateway plumbing every client command shares.
func gatewayFlag(fs *flag.FlagSet) *string {
	return fs.String("gateway", "", "gateway URL (default $COLDSTART_GATEWAY, else http://127.0.0.1:9000)")
}

func newClient(gateway string, stderr io.Writer) (*client.Client, bool) {
	c, err := client.New(client.DefaultGateway(gateway), client.WithCredentials(client.EnvCredentials()))
	if err != nil {
		fmt.Fprintln(stderr, "coldstart:", err)
		return nil, false
	}
	return c, true
}
