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
	case "set-idempotency":
		return functionSetIdempotency(ctx, args, stdout, stderr)
	case "update-code":
		return functionUpdateCode(ctx, args, stdout, stderr)
	case "update-config":
		return functionUpdateConfig(ctx, args, stdout, stderr)
	case "publish":
		return functionPublish(ctx, args, stdout, stderr)
	case "versions":
		return functionVersions(ctx, args, stdout, stderr)
	case "alias":
		return runAlias(ctx, args, stdout, stderr)
	case "provisioned":
		return runProvisioned(ctx, args, stdout, stderr)
	}
	w := stdout
	code := 0
	if sub != "" && sub != "-h" && sub != "--help" && sub != "help" {
		fmt.Fprintf(stderr, "coldstart function: unknown subcommand %q\n\n", sub)
		w, code = stderr, 2
	}
	fmt.Fprintln(w, `Usage: coldstart function <command> [flags]   (coldstart function <command> --help for its flags)

Commands: create, delete, get, list, set-concurrency, update-code, update-config,
publish, versions, alias (create|update|get|list|delete), provisioned (set|get|delete)

Examples:
  coldstart function create hello --runtime synthetic --duration 80ms --cold-start 180ms --memory 512 --timeout 3s
  coldstart function create echo --dir ./echo --runtime provided.al2023 --env STAGE=dev
  coldstart function update-code echo --dir ./echo
  coldstart function update-config echo --memory 512 --timeout 10
  coldstart function publish echo
  coldstart function versions echo
  coldstart function alias create echo live --version 1 --weight 2=0.2
  coldstart function provisioned set echo --qualifier live --count 2
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
	timeout := secondsFlag{n: 3}
	fs.Var(&timeout, "timeout", "timeout in seconds (1-900), or a duration such as 3s")
	var code codeFlags
	code.register(fs)
	handler := fs.String("handler", "", "handler (code only; provided.* runtimes run ./bootstrap and pass it the handler)")
	description := fs.String("description", "", "description")
	publish := fs.Bool("publish", false, "also publish version 1 (code only)")
	var env multiFlag
	fs.Var(&env, "env", "environment variable KEY=VALUE (repeatable; code only)")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	pos, rc := parseCmd(fs, args, stdout, stderr, "coldstart function create NAME [flags]",
		"Create a function. With --zip or --dir it runs that code (runtime provided.al2023 unless --runtime\n"+
			"says otherwise: an executable ./bootstrap speaking the Lambda Runtime API). Without code it is a\n"+
			"synthetic function: no process, its cold-start phases and handler duration drawn from distributions.",
		"coldstart function create echo --dir ./echo --runtime provided.al2023 --memory 256 --timeout 10 --env STAGE=dev")
	if rc >= 0 {
		return rc
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart function create: want exactly one NAME")
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if code.given() {
		rt := *runtime
		if !set["runtime"] {
			rt = "provided.al2023"
		}
		return functionCreateCode(ctx, pos[0], code, rt, *handler, *description, *memory, set["memory"], timeout, env, *publish, *asJSON, *gw, stdout, stderr)
	}
	if len(env) > 0 || *handler != "" || *publish {
		fmt.Fprintln(stderr, "coldstart function create: --env, --handler and --publish need code (--zip or --dir)")
		return 2
	}
	in := api.CreateFunctionInput{FunctionName: pos[0], Runtime: *runtime, MemorySize: *memory, Timeout: timeout.n, Description: *description,
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
	case "create", "keys":
		return accountAdmin(ctx, sub, fs, gw, args, stdout, stderr)
	default:
		w, code := stdout, 0
		if sub != "" && sub != "-h" && sub != "--help" && sub != "help" {
			fmt.Fprintf(stderr, "coldstart account: unknown subcommand %q\n\n", sub)
			w, code = stderr, 2
		}
		fmt.Fprintln(w, `Usage: coldstart account <set-limit N|show|create|keys ID> [flags]

set-limit and show act on the calling account; create and keys are the operator's
(account 000000000000) and print a new key's secret once.

Example:
  coldstart account set-limit 100
  coldstart account show
  coldstart account create --id 123456789012 --limit 50
  coldstart account keys 123456789012 --create`)
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

// accountAdmin runs `account create` and `account keys`.
func accountAdmin(ctx context.Context, sub string, fs *flag.FlagSet, gw *string, args []string, stdout, stderr io.Writer) int {
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	var id *string
	var limit *int
	var create *bool
	synopsis, what, example := "coldstart account keys ID [--create]", "List an account's access keys; --create adds one and prints its secret (shown once).", "coldstart account keys 123456789012 --create"
	if sub == "create" {
		id = fs.String("id", "", "the account id, 12 digits (default: random)")
		limit = fs.Int("limit", 0, "the account's concurrency limit (default: the cluster's)")
		synopsis, what, example = "coldstart account create [--id 12DIGITS] [--limit N]", "Create an account with one access key, and print the key's secret (shown once).", "coldstart account create --id 123456789012 --limit 50"
	} else {
		create = fs.Bool("create", false, "add an access key")
	}
	pos, code := parseCmd(fs, args, stdout, stderr, synopsis, what, example)
	if code >= 0 {
		return code
	}
	if (sub == "create" && len(pos) != 0) || (sub == "keys" && len(pos) != 1) {
		fmt.Fprintf(stderr, "coldstart account %s: see --help for the arguments\n", sub)
		return 2
	}
	c, ok := newClient(*gw, stderr)
	if !ok {
		return 2
	}
	var out *api.AccountInfo
	var err error
	switch {
	case sub == "create":
		out, err = c.CreateAccount(ctx, *id, *limit)
	case *create:
		out, err = c.CreateAccessKey(ctx, pos[0])
	default:
		out, err = c.GetAccount(ctx, pos[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "coldstart account %s: %s\n", sub, client.Describe(err, c.BaseURL()))
		return 1
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	limitText := "default"
	if out.Limit > 0 {
		limitText = strconv.Itoa(out.Limit)
	}
	fmt.Fprintf(stdout, "account %s  concurrency limit %s\n", out.Account, limitText)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCESS KEY\tSECRET\tCREATED")
	var fresh *api.KeyInfo
	for i, k := range out.Keys {
		s := "(not shown again)"
		if k.SecretAccessKey != "" {
			s, fresh = k.SecretAccessKey, &out.Keys[i]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k.AccessKeyID, s, k.Created)
	}
	tw.Flush()
	if fresh != nil {
		fmt.Fprintf(stdout, "\nsign as this account: export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s\n", fresh.AccessKeyID, fresh.SecretAccessKey)
	}
	return 0
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
