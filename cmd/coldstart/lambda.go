package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/coldstart-dev/coldstart/internal/client"
)

// The code, version, alias and provisioned-concurrency commands speak the
// Lambda API through the official SDK, signed like any AWS client: what
// works here works from any SDK, and the same credentials pass
// --strict-auth.

// sdk is a Lambda client for one command, remembering the last answer's
// body so that --json prints what the gateway sent rather than the SDK's
// rendering of it.
type sdk struct {
	*lambda.Client
	gateway string
	raw     *rawRecorder
}

type rawRecorder struct {
	hc   *http.Client
	mu   sync.Mutex
	last []byte
}

func (r *rawRecorder) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.hc.Do(req)
	if err != nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.last = b
	r.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

func (r *rawRecorder) body() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func newSDK(gateway string) *sdk {
	base := client.DefaultGateway(gateway)
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	base = strings.TrimRight(base, "/")
	creds := client.EnvCredentials()
	raw := &rawRecorder{hc: &http.Client{}}
	c := lambda.New(lambda.Options{
		Region:       client.Region,
		BaseEndpoint: aws.String(base),
		Credentials:  aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil }),
		HTTPClient:   raw,
	})
	return &sdk{Client: c, gateway: base, raw: raw}
}

// describe renders an SDK error as its Lambda error code and message.
func (s *sdk) describe(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if ae.ErrorMessage() == "" {
			return ae.ErrorCode()
		}
		return ae.ErrorCode() + ": " + ae.ErrorMessage()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err.Error()
	}
	return fmt.Sprintf("cannot reach the gateway at %s (is `coldstart up` running? set --gateway or $%s): %v", s.gateway, client.EnvGateway, err)
}

// fail prints err for cmd and returns exit code 1.
func (s *sdk) fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "coldstart %s: %s\n", cmd, s.describe(err))
	return 1
}

// printRaw prints the last answer's JSON as the gateway sent it, indented.
func (s *sdk) printRaw(w io.Writer) int {
	b := s.raw.body()
	var buf bytes.Buffer
	if json.Indent(&buf, b, "", "  ") != nil {
		buf.Reset()
		buf.Write(b)
	}
	fmt.Fprintln(w, strings.TrimRight(buf.String(), "\n"))
	return 0
}

// multiFlag collects a repeated flag (--env K=V --env K2=V2).
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// envMap turns K=V pairs into a map.
func envMap(pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want KEY=VALUE", p)
		}
		out[k] = v
	}
	return out, nil
}

// secondsFlag reads a timeout as whole seconds ("30") or a duration
// ("30s", "2m"): Lambda counts seconds, the older --timeout took durations.
type secondsFlag struct {
	n   int
	set bool
}

func (s *secondsFlag) String() string { return strconv.Itoa(s.n) + "s" }
func (s *secondsFlag) Set(v string) error {
	if n, err := strconv.Atoi(v); err == nil {
		s.n, s.set = n, true
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want seconds (30) or a duration (30s)")
	}
	if d%time.Second != 0 {
		return fmt.Errorf("%s is not whole seconds (Lambda's unit)", v)
	}
	s.n, s.set = int(d/time.Second), true
	return nil
}

// codeFlags are --zip FILE and --dir DIR.
type codeFlags struct{ zip, dir string }

func (c *codeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.zip, "zip", "", "deployment package: a zip file")
	fs.StringVar(&c.dir, "dir", "", "deployment package: a directory, zipped here (execute bits kept, so ./bootstrap stays runnable)")
}

func (c *codeFlags) given() bool { return c.zip != "" || c.dir != "" }

func (c *codeFlags) load() ([]byte, error) {
	switch {
	case c.zip != "" && c.dir != "":
		return nil, errors.New("give --zip or --dir, not both")
	case c.zip != "":
		return os.ReadFile(c.zip)
	case c.dir != "":
		return zipDir(c.dir)
	}
	return nil, errors.New("give the code: --zip FILE or --dir DIR")
}

// zipEpoch is every entry's modification time, so that zipping the same
// tree twice gives the same bytes, hence the same CodeSha256: an
// update-code of unchanged files is recognisably no change.
var zipEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// zipDir zips the tree under root in memory: regular files with their
// permission bits (the execute bit is what makes bootstrap runnable),
// directories, and symlinks as links, in name order.
func zipDir(root string) ([]byte, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("--dir %s is not a directory", root)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var names []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, p := range names {
		info, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil, err
		}
		h, err := zip.FileInfoHeader(info)
		if err != nil {
			return nil, err
		}
		h.Name = filepath.ToSlash(rel)
		h.Modified = zipEpoch
		var content []byte
		switch {
		case info.IsDir():
			h.Name += "/"
			h.Method = zip.Store
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			content = []byte(filepath.ToSlash(target))
			h.Method = zip.Store
		case info.Mode().IsRegular():
			if content, err = os.ReadFile(p); err != nil {
				return nil, err
			}
			h.Method = zip.Deflate
		default:
			return nil, fmt.Errorf("%s: only files, directories and symlinks go in a deployment package", p)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(content); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// asConfig reads any of the SDK's function-configuration answers (their
// members are FunctionConfiguration's) as one type.
func asConfig(out any) *types.FunctionConfiguration {
	var c types.FunctionConfiguration
	b, _ := json.Marshal(out)
	_ = json.Unmarshal(b, &c)
	return &c
}

// printConfig prints a function configuration in a few lines.
func printConfig(w io.Writer, c *types.FunctionConfiguration) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("function", aws.ToString(c.FunctionName))
	row("version", aws.ToString(c.Version))
	row("arn", aws.ToString(c.FunctionArn))
	row("runtime", string(c.Runtime))
	row("handler", aws.ToString(c.Handler))
	if c.MemorySize != nil {
		row("memory", fmt.Sprintf("%d MB", *c.MemorySize))
	}
	if c.Timeout != nil {
		row("timeout", fmt.Sprintf("%d s", *c.Timeout))
	}
	if c.Environment != nil && len(c.Environment.Variables) > 0 {
		keys := make([]string, 0, len(c.Environment.Variables))
		for k := range c.Environment.Variables {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		row("environment", strings.Join(keys, ", "))
	}
	if sha := aws.ToString(c.CodeSha256); sha != "" {
		row("code", fmt.Sprintf("sha256 %s (%d bytes)", sha, c.CodeSize))
	}
	row("description", aws.ToString(c.Description))
	row("state", string(c.State))
	row("last update", string(c.LastUpdateStatus))
	row("revision", aws.ToString(c.RevisionId))
	tw.Flush()
}

// functionCreateCode creates a function from a zip or a directory.
func functionCreateCode(ctx context.Context, name string, code codeFlags, runtime, handler, description string, memory int, memorySet bool, timeout secondsFlag, env []string, publish, asJSON bool, gw string, stdout, stderr io.Writer) int {
	zipBytes, err := code.load()
	if err != nil {
		fmt.Fprintln(stderr, "coldstart function create:", err)
		return 2
	}
	vars, err := envMap(env)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart function create:", err)
		return 2
	}
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(name),
		Runtime:      types.Runtime(runtime),
		Role:         aws.String("arn:aws:iam::000000000000:role/coldstart"),
		Code:         &types.FunctionCode{ZipFile: zipBytes},
		Publish:      publish,
	}
	if handler != "" {
		in.Handler = aws.String(handler)
	}
	if description != "" {
		in.Description = aws.String(description)
	}
	if memorySet {
		in.MemorySize = aws.Int32(int32(memory))
	}
	if timeout.set {
		in.Timeout = aws.Int32(int32(timeout.n))
	}
	if len(vars) > 0 {
		in.Environment = &types.Environment{Variables: vars}
	}
	s := newSDK(gw)
	out, err := s.CreateFunction(ctx, in)
	if err != nil {
		return s.fail(stderr, "function create", err)
	}
	if asJSON {
		return s.printRaw(stdout)
	}
	printConfig(stdout, asConfig(out))
	return 0
}

func functionUpdateCode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("function update-code", flag.ContinueOnError)
	gw := gatewayFlag(fs)
	var code codeFlags
	code.register(fs)
	publish := fs.Bool("publish", false, "also publish a version of the new code")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	pos, rc := parseCmd(fs, args, stdout, stderr, "coldstart function update-code NAME --zip FILE|--dir DIR",
		"Replace a function's code ($LATEST). New invocations run it; sandboxes of the old code are retired.",
		"coldstart function update-code hello --dir ./hello")
	if rc >= 0 {
		return rc
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart function update-code: want exactly one NAME")
		return 2
	}
	zipBytes, err := code.load()
	if err != nil {
		fmt.Fprintln(stderr, "coldstart function update-code:", err)
		return 2
	}
	s := newSDK(*gw)
	out, err := s.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(pos[0]), ZipFile: zipBytes, Publish: *publish})
	if err != nil {
		return s.fail(stderr, "function update-code", err)
	}
	if *asJSON {
		return s.printRaw(stdout)
	}
	printConfig(stdout, asConfig(out))
	return 0
}

func functionUpdateConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("function update-config", flag.ContinueOnError)
	gw := gatewayFlag(fs)
	memory := fs.Int("memory", 0, "memory MB (128-10240)")
	var timeout secondsFlag
	fs.Var(&timeout, "timeout", "timeout in seconds (1-900), or a duration such as 30s")
	handler := fs.String("handler", "", "handler")
	runtime := fs.String("runtime", "", "runtime")
	description := fs.String("description", "", "description")
	var env multiFlag
	fs.Var(&env, "env", "environment variable KEY=VALUE (repeatable); the given set replaces the function's whole environment, as in Lambda")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	pos, rc := parseCmd(fs, args, stdout, stderr, "coldstart function update-config NAME [--memory MB] [--timeout S] [--handler H] [--env K=V ...]",
		"Change a function's configuration ($LATEST); only the flags given change.",
		"coldstart function update-config hello --memory 512 --timeout 10 --env STAGE=prod")
	if rc >= 0 {
		return rc
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart function update-config: want exactly one NAME")
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	in := &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(pos[0])}
	if set["memory"] {
		in.MemorySize = aws.Int32(int32(*memory))
	}
	if timeout.set {
		in.Timeout = aws.Int32(int32(timeout.n))
	}
	if set["handler"] {
		in.Handler = aws.String(*handler)
	}
	if set["runtime"] {
		in.Runtime = types.Runtime(*runtime)
	}
	if set["description"] {
		in.Description = aws.String(*description)
	}
	if set["env"] {
		vars, err := envMap(env)
		if err != nil {
			fmt.Fprintln(stderr, "coldstart function update-config:", err)
			return 2
		}
		in.Environment = &types.Environment{Variables: vars}
	}
	if !set["memory"] && !timeout.set && !set["handler"] && !set["runtime"] && !set["description"] && !set["env"] {
		fmt.Fprintln(stderr, "coldstart function update-config: nothing to change (give --memory, --timeout, --handler, --runtime, --description or --env)")
		return 2
	}
	s := newSDK(*gw)
	out, err := s.UpdateFunctionConfiguration(ctx, in)
	if err != nil {
		return s.fail(stderr, "function update-config", err)
	}
	if *asJSON {
		return s.printRaw(stdout)
	}
	printConfig(stdout, asConfig(out))
	return 0
}

func functionPublish(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("function publish", flag.ContinueOnError)
	gw := gatewayFlag(fs)
	description := fs.String("description", "", "the version's description")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	pos, rc := parseCmd(fs, args, stdout, stderr, "coldstart function publish NAME [--description TEXT]",
		"Publish an immutable version of $LATEST's code and configuration (none if nothing changed since the last one).",
		"coldstart function publish hello --description 'first release'")
	if rc >= 0 {
		return rc
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart function publish: want exactly one NAME")
		return 2
	}
	in := &lambda.PublishVersionInput{FunctionName: aws.String(pos[0])}
	if *description != "" {
		in.Description = aws.String(*description)
	}
	s := newSDK(*gw)
	out, err := s.PublishVersion(ctx, in)
	if err != nil {
		return s.fail(stderr, "function publish", err)
	}
	if *asJSON {
		return s.printRaw(stdout)
	}
	fmt.Fprintf(stdout, "%s: version %s (code sha256 %s)\n", pos[0], aws.ToString(out.Version), aws.ToString(out.CodeSha256))
	return 0
}

func functionVersions(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("function versions", flag.ContinueOnError)
	gw := gatewayFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's answers as JSON")
	pos, rc := parseCmd(fs, args, stdout, stderr, "coldstart function versions NAME", "List a function's versions, $LATEST first.", "coldstart function versions hello")
	if rc >= 0 {
		return rc
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart function versions: want exactly one NAME")
		return 2
	}
	s := newSDK(*gw)
	var all []types.FunctionConfiguration
	var pages []json.RawMessage
	p := lambda.NewListVersionsByFunctionPaginator(s, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String(pos[0])})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return s.fail(stderr, "function versions", err)
		}
		all = append(all, out.Versions...)
		pages = append(pages, append([]byte(nil), s.raw.body()...))
	}
	if *asJSON {
		return printPages(stdout, pages)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tCODE SHA256\tMEMORY\tTIMEOUT\tLAST MODIFIED\tDESCRIPTION")
	for _, v := range all {
		fmt.Fprintf(tw, "%s\t%s\t%d MB\t%d s\t%s\t%s\n", aws.ToString(v.Version), dashIfEmpty(aws.ToString(v.CodeSha256)), aws.ToInt32(v.MemorySize), aws.ToInt32(v.Timeout), aws.ToString(v.LastModified), aws.ToString(v.Description))
	}
	tw.Flush()
	return 0
}

// printPages prints one page's JSON as it is, several as an array.
func printPages(w io.Writer, pages []json.RawMessage) int {
	var v any = pages
	if len(pages) == 1 {
		v = pages[0]
	}
	return printJSON(w, v)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// weightsFlag reads --weight V=0.2 (repeatable).
type weightsFlag map[string]float64

func (w weightsFlag) String() string { return fmt.Sprint(map[string]float64(w)) }
func (w weightsFlag) Set(v string) error {
	ver, f, ok := strings.Cut(v, "=")
	x, err := strconv.ParseFloat(f, 64)
	if !ok || ver == "" || err != nil || x < 0 || x > 1 {
		return fmt.Errorf("want VERSION=WEIGHT with WEIGHT in [0,1], e.g. 2=0.2")
	}
	w[ver] = x
	return nil
}

func runAlias(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("function alias "+sub, flag.ContinueOnError)
	gw := gatewayFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	version := fs.String("version", "", "the version the alias points to")
	description := fs.String("description", "", "the alias's description")
	weights := weightsFlag{}
	noWeights := false
	switch sub {
	case "create", "update":
		fs.Var(weights, "weight", "route a share of invocations to another version: V=0.2 (repeatable)")
		if sub == "update" {
			fs.BoolVar(&noWeights, "no-weights", false, "remove the weighted routing")
		}
	case "list", "get", "delete":
	default:
		w, code := stdout, 0
		if sub != "" && sub != "-h" && sub != "--help" && sub != "help" {
			fmt.Fprintf(stderr, "coldstart function alias: unknown subcommand %q\n\n", sub)
			w, code = stderr, 2
		}
		fmt.Fprintln(w, `Usage: coldstart function alias <create|update|get|list|delete> NAME [ALIAS] [flags]

Examples:
  coldstart function alias create hello live --version 1
  coldstart function alias update hello live --version 1 --weight 2=0.2   (20% of live's invocations run version 2)
  coldstart function alias list hello
  coldstart function alias delete hello live`)
		return code
	}
	synopsis := "coldstart function alias " + sub + " NAME ALIAS"
	want := 2
	if sub == "list" {
		synopsis, want = "coldstart function alias list NAME", 1
	}
	pos, rc := parseCmd(fs, args, stdout, stderr, synopsis, "Manage a function's aliases (names for versions, optionally splitting traffic between two).",
		"coldstart function alias create hello live --version 1 --weight 2=0.2")
	if rc >= 0 {
		return rc
	}
	if len(pos) != want {
		fmt.Fprintf(stderr, "coldstart function alias %s: want %s\n", sub, strings.TrimPrefix(synopsis, "coldstart function alias "+sub+" "))
		return 2
	}
	cmd := "function alias " + sub
	s := newSDK(*gw)
	var routing *types.AliasRoutingConfiguration
	if len(weights) > 0 {
		routing = &types.AliasRoutingConfiguration{AdditionalVersionWeights: weights}
	}
	var a *types.AliasConfiguration
	switch sub {
	case "create":
		if *version == "" {
			fmt.Fprintln(stderr, "coldstart function alias create: --version is required")
			return 2
		}
		in := &lambda.CreateAliasInput{FunctionName: aws.String(pos[0]), Name: aws.String(pos[1]), FunctionVersion: version, RoutingConfig: routing}
		if *description != "" {
			in.Description = description
		}
		out, err := s.CreateAlias(ctx, in)
		if err != nil {
			return s.fail(stderr, cmd, err)
		}
		a = &types.AliasConfiguration{AliasArn: out.AliasArn, Name: out.Name, FunctionVersion: out.FunctionVersion, Description: out.Description, RoutingConfig: out.RoutingConfig, RevisionId: out.RevisionId}
	case "update":
		in := &lambda.UpdateAliasInput{FunctionName: aws.String(pos[0]), Name: aws.String(pos[1]), RoutingConfig: routing}
		if *version != "" {
			in.FunctionVersion = version
		}
		if *description != "" {
			in.Description = description
		}
		if noWeights {
			in.RoutingConfig = &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{}}
		}
		out, err := s.UpdateAlias(ctx, in)
		if err != nil {
			return s.fail(stderr, cmd, err)
		}
		a = &types.AliasConfiguration{AliasArn: out.AliasArn, Name: out.Name, FunctionVersion: out.FunctionVersion, Description: out.Description, RoutingConfig: out.RoutingConfig, RevisionId: out.RevisionId}
	case "get":
		out, err := s.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String(pos[0]), Name: aws.String(pos[1])})
		if err != nil {
			return s.fail(stderr, cmd, err)
		}
		a = &types.AliasConfiguration{AliasArn: out.AliasArn, Name: out.Name, FunctionVersion: out.FunctionVersion, Description: out.Description, RoutingConfig: out.RoutingConfig, RevisionId: out.RevisionId}
	case "delete":
		if _, err := s.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String(pos[0]), Name: aws.String(pos[1])}); err != nil {
			return s.fail(stderr, cmd, err)
		}
		if *asJSON {
			return printJSON(stdout, map[string]string{})
		}
		fmt.Fprintf(stdout, "%s:%s: deleted\n", pos[0], pos[1])
		return 0
	case "list":
		var all []types.AliasConfiguration
		var pages []json.RawMessage
		p := lambda.NewListAliasesPaginator(s, &lambda.ListAliasesInput{FunctionName: aws.String(pos[0])})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return s.fail(stderr, cmd, err)
			}
			all = append(all, out.Aliases...)
			pages = append(pages, append([]byte(nil), s.raw.body()...))
		}
		if *asJSON {
			return printPages(stdout, pages)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ALIAS\tVERSION\tROUTING\tDESCRIPTION")
		for _, a := range all {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", aws.ToString(a.Name), aws.ToString(a.FunctionVersion), routingText(a.RoutingConfig), aws.ToString(a.Description))
		}
		tw.Flush()
		return 0
	}
	if *asJSON {
		return s.printRaw(stdout)
	}
	fmt.Fprintf(stdout, "%s:%s -> version %s", pos[0], aws.ToString(a.Name), aws.ToString(a.FunctionVersion))
	if r := routingText(a.RoutingConfig); r != "-" {
		fmt.Fprintf(stdout, "  (%s)", r)
	}
	fmt.Fprintln(stdout)
	return 0
}

// routingText renders weights as "2: 20%".
func routingText(r *types.AliasRoutingConfiguration) string {
	if r == nil || len(r.AdditionalVersionWeights) == 0 {
		return "-"
	}
	var parts []string
	for v, w := range r.AdditionalVersionWeights {
		parts = append(parts, fmt.Sprintf("%s: %s%%", v, strconv.FormatFloat(w*100, 'f', -1, 64)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func runProvisioned(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("provisioned "+sub, flag.ContinueOnError)
	gw := gatewayFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	qualifier := fs.String("qualifier", "", "version or alias (required: provisioned concurrency never applies to $LATEST)")
	count := 0
	switch sub {
	case "set":
		fs.IntVar(&count, "count", 0, "sandboxes to keep initialized")
	case "get", "delete":
	default:
		w, code := stdout, 0
		if sub != "" && sub != "-h" && sub != "--help" && sub != "help" {
			fmt.Fprintf(stderr, "coldstart provisioned: unknown subcommand %q\n\n", sub)
			w, code = stderr, 2
		}
		fmt.Fprintln(w, `Usage: coldstart function provisioned <set|get|delete> NAME --qualifier Q [--count N]
       (coldstart provisioned ... is the same)

Examples:
  coldstart function provisioned set hello --qualifier live --count 5
  coldstart function provisioned get hello --qualifier live
  coldstart function provisioned delete hello --qualifier live`)
		return code
	}
	pos, rc := parseCmd(fs, args, stdout, stderr, "coldstart function provisioned "+sub+" NAME --qualifier Q",
		"Provisioned concurrency: sandboxes of a version or alias kept initialized, ready before the first invocation.",
		"coldstart function provisioned set hello --qualifier live --count 5")
	if rc >= 0 {
		return rc
	}
	if len(pos) != 1 || *qualifier == "" {
		fmt.Fprintf(stderr, "coldstart provisioned %s: want NAME and --qualifier\n", sub)
		return 2
	}
	cmd := "provisioned " + sub
	s := newSDK(*gw)
	var requested, allocated, available *int32
	var status, reason string
	switch sub {
	case "set":
		out, err := s.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String(pos[0]), Qualifier: qualifier, ProvisionedConcurrentExecutions: aws.Int32(int32(count))})
		if err != nil {
			return s.fail(stderr, cmd, err)
		}
		requested, allocated, available, status, reason = out.RequestedProvisionedConcurrentExecutions, out.AllocatedProvisionedConcurrentExecutions, out.AvailableProvisionedConcurrentExecutions, string(out.Status), aws.ToString(out.StatusReason)
	case "get":
		out, err := s.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String(pos[0]), Qualifier: qualifier})
		if err != nil {
			return s.fail(stderr, cmd, err)
		}
		requested, allocated, available, status, reason = out.RequestedProvisionedConcurrentExecutions, out.AllocatedProvisionedConcurrentExecutions, out.AvailableProvisionedConcurrentExecutions, string(out.Status), aws.ToString(out.StatusReason)
	case "delete":
		if _, err := s.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: aws.String(pos[0]), Qualifier: qualifier}); err != nil {
			return s.fail(stderr, cmd, err)
		}
		if *asJSON {
			return printJSON(stdout, map[string]string{})
		}
		fmt.Fprintf(stdout, "%s:%s: provisioned concurrency removed\n", pos[0], *qualifier)
		return 0
	}
	if *asJSON {
		return s.printRaw(stdout)
	}
	fmt.Fprintf(stdout, "%s:%s  requested %d  allocated %d  available %d  status %s", pos[0], *qualifier, aws.ToInt32(requested), aws.ToInt32(allocated), aws.ToInt32(available), status)
	if reason != "" {
		fmt.Fprintf(stdout, " (%s)", reason)
	}
	fmt.Fprintln(stdout)
	return 0
}
