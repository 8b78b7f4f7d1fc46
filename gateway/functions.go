package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/codestore"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/wire"
)

// The Lambda control plane on the gateway: functions, code, configuration,
// versions and aliases. The gateway validates with Lambda's rules, stores
// code bundles outside Raft (CodeStore), and forwards each write to
// placement, which applies it to the replicated ledger (and checks it
// again: anything on NATS can reach the leader).

// CodeStore keeps code bundles by digest (codestore.Store).
type CodeStore interface {
	Put(ctx context.Context, zip []byte) (string, error)
}

// Lambda's limits for CreateFunction.
const (
	minMemory, maxMemory   = 128, 10240
	minTimeout, maxTimeout = 1, 900
	// MaxZipBytes is Lambda's 50 MB direct-upload limit on a zip.
	MaxZipBytes = 50 << 20
	// maxCodeBody bounds a CreateFunction/UpdateFunctionCode body: the zip
	// in base64 plus the rest of the JSON.
	maxCodeBody = MaxZipBytes*4/3 + 1<<20
)

func arnOf(account, name string) string {
	return "arn:aws:lambda:us-east-1:" + account + ":function:" + name
}

// revisionID renders a ledger revision as Lambda's RevisionId (a UUID);
// parseRevision reads it back (0 for an id this cluster did not issue).
func revisionID(rev uint64) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", rev)
}

func parseRevision(id string) (uint64, *lambdaError) {
	if id == "" {
		return 0, nil
	}
	const prefix = "00000000-0000-4000-8000-"
	if !strings.HasPrefix(id, prefix) || len(id) != len(prefix)+12 {
		return 0, &lambdaError{http.StatusPreconditionFailed, "PreconditionFailedException", "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id", ""}
	}
	b, err := hex.DecodeString("0000" + id[len(prefix):])
	if err != nil {
		return 0, &lambdaError{http.StatusPreconditionFailed, "PreconditionFailedException", "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id", ""}
	}
	var rev uint64
	for _, x := range b {
		rev = rev<<8 | uint64(x)
	}
	return rev, nil
}

func lastModified(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000+0000")
}

// runnableRuntime reports whether workers run code of this runtime as a
// process: custom runtimes (a bootstrap), and Python and Node.js through
// the runtime clients workers ship.
func runnableRuntime(rt string) bool {
	switch {
	case rt == "provided" || rt == "provided.al2" || rt == "provided.al2023":
		return true
	case strings.HasPrefix(rt, "python3.") && len(rt) <= 12:
		return true
	case strings.HasPrefix(rt, "nodejs") && strings.HasSuffix(rt, ".x") && len(rt) <= 12:
		return true
	}
	return false
}

// syntheticRuntime reports whether a runtime name can be emulated without
// code: the synthetic runtime itself, or a Lambda runtime whose measured
// cold-start profile the synthetic runtime then uses.
func syntheticRuntime(r string) bool {
	if r == "synthetic" {
		return true
	}
	for _, p := range []string{"python", "nodejs", "java", "go", "provided", "dotnet", "ruby"} {
		if strings.HasPrefix(r, p) && len(r) <= 32 {
			return true
		}
	}
	return false
}

// syntheticFromEnv reads a synthetic function's profile from its
// environment (COLDSTART_PROFILE, COLDSTART_DURATION, COLDSTART_COLD_START,
// COLDSTART_KEEP_ALIVE, ...): how the official SDKs and the AWS CLI, which
// cannot send the Coldstart field, configure one.
func syntheticFromEnv(env map[string]string, cfg api.SyntheticConfig) api.SyntheticConfig {
	for k, dst := range map[string]*string{
		"COLDSTART_PROFILE": &cfg.Profile, "COLDSTART_DURATION": &cfg.Duration, "COLDSTART_COLD_START": &cfg.ColdStart,
		"COLDSTART_SANDBOX_CREATE": &cfg.SandboxCreate, "COLDSTART_RUNTIME_INIT": &cfg.RuntimeInit,
		"COLDSTART_FUNCTION_INIT": &cfg.FunctionInit, "COLDSTART_KEEP_ALIVE": &cfg.KeepAlive,
	} {
		if v, ok := env[k]; ok && *dst == "" {
			*dst = v
		}
	}
	return cfg
}

// checkCode validates a zip for runtime rt and stores it.
func (g *Gateway) checkCode(ctx context.Context, rt, handler string, zip []byte) (string, int64, *lambdaError) {
	if len(zip) > MaxZipBytes {
		return "", 0, errTooLarge("Unzipped size must be smaller than 262144000 bytes; zipped size must be smaller than 52428800 bytes")
	}
	if !runnableRuntime(rt) {
		return "", 0, errInvalidParam("Runtime " + clip(rt) + " cannot run code on this cluster: use provided.al2023, provided.al2, python3.x or nodejs*.x for code, or runtime synthetic (no code) for an emulated function")
	}
	b, err := codestore.Inspect(zip)
	if err != nil {
		return "", 0, &lambdaError{http.StatusBadRequest, "InvalidParameterValueException", "Could not unzip uploaded file. Please check your file, then try to upload again. (" + err.Error() + ")", ""}
	}
	if strings.HasPrefix(rt, "python") || strings.HasPrefix(rt, "nodejs") {
		if handler == "" {
			return "", 0, errInvalidParam("1 validation error detected: Value null at 'handler' failed to satisfy constraint: Member must not be null")
		}
	}
	if g.cfg.Code == nil {
		return "", 0, errService("this gateway has no code store: functions with code cannot be created here")
	}
	digest, err := g.cfg.Code.Put(ctx, zip)
	if err != nil {
		return "", 0, errService("storing the code bundle failed: " + err.Error())
	}
	_ = b
	return digest, int64(len(zip)), nil
}

func (g *Gateway) handleCreate(w http.ResponseWriter, r *http.Request) {
	var in api.CreateFunctionInput
	if e := g.decodeBody(r, &in); e != nil {
		writeError(w, e)
		return
	}
	acct := g.account(r)
	f, lerr := functionFromInput(acct, in)
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	if in.Code != nil && len(in.Code.ZipFile) > 0 {
		digest, size, e := g.checkCode(r.Context(), in.Runtime, in.Handler, in.Code.ZipFile)
		if e != nil {
			writeError(w, e)
			return
		}
		f.CodeSha256, f.CodeSize = digest, size
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpCreateFunction, Function: f}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.put(*resp.Function, resp.Index)
	out := configOf(*resp.Function, LatestVersion)
	if in.Publish {
		pr, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpPublishVersion, Publish: &wire.PublishVersion{Account: acct, Name: f.Name}}, controlBudget)
		if err == nil && pr.Version != nil {
			g.cache.wrote(pr.Index)
			out = versionConfig(*resp.Function, *pr.Version)
		}
	}
	writeJSON(w, http.StatusCreated, out)
}

// functionFromInput validates a CreateFunction body with Lambda's rules
// (the code itself is checked and stored by checkCode).
func functionFromInput(account string, in api.CreateFunctionInput) (*wire.Function, *lambdaError) {
	if !ValidName(in.FunctionName) {
		return nil, errInvalidParam("1 validation error detected: Value '" + clip(in.FunctionName) + "' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+ and have length at most 64")
	}
	if in.Runtime == "" {
		in.Runtime = "synthetic"
	}
	if in.MemorySize == 0 {
		in.MemorySize = 128
	}
	if in.Timeout == 0 {
		in.Timeout = 3
	}
	if e := checkSizes(in.MemorySize, in.Timeout); e != nil {
		return nil, e
	}
	if len(in.Handler) > 128 || len(in.Description) > 256 {
		return nil, errInvalidParam("1 validation error detected: Handler must be at most 128 and Description at most 256 characters")
	}
	f := &wire.Function{Account: account, Name: in.FunctionName, Runtime: in.Runtime, MemoryMB: in.MemorySize, TimeoutMs: int64(in.Timeout) * 1000, Handler: in.Handler, Description: in.Description}
	if in.Environment != nil && len(in.Environment.Variables) > 0 {
		f.Environment = in.Environment.Variables
		if err := validEnv(f.Environment); err != nil {
			return nil, err
		}
	}
	hasCode := in.Code != nil && len(in.Code.ZipFile) > 0
	switch {
	case in.Code != nil && (in.Code.S3Bucket != "" || in.Code.ImageUri != ""):
		return nil, errInvalidParam("Code.S3Bucket and Code.ImageUri are not supported on this cluster: send the zip as Code.ZipFile")
	case hasCode && in.Runtime == "synthetic":
		return nil, errInvalidParam("Runtime synthetic runs no code, and a zip is never ignored: create it without Code, or with a runtime that runs code (provided.al2023, python3.x, nodejs*.x)")
	case hasCode:
		if !runnableRuntime(in.Runtime) {
			return nil, errInvalidParam("Runtime " + clip(in.Runtime) + " cannot run code on this cluster: use provided.al2023, provided.al2, python3.x or nodejs*.x for code, or runtime synthetic (no code) for an emulated function")
		}
		return f, nil
	}
	if !syntheticRuntime(in.Runtime) {
		return nil, errInvalidParam("Value " + clip(in.Runtime) + " at 'runtime' is not supported on this cluster; use synthetic, or a Lambda runtime name (python3.12, nodejs22.x, java21, provided.al2023, ...)")
	}
	cfg := api.SyntheticConfig{}
	if in.Coldstart != nil {
		cfg = *in.Coldstart
	}
	cfg = syntheticFromEnv(f.Environment, cfg)
	if _, _, err := ProfileOf(in.Runtime, cfg); err != nil {
		return nil, errInvalidParam(err.Error())
	}
	f.Synthetic, _ = json.Marshal(cfg)
	return f, nil
}

// validEnv applies placement's environment rules at the edge.
func validEnv(env map[string]string) *lambdaError {
	if err := placement.ValidEnvironment(env); err != nil {
		return errInvalidParam(err.Error())
	}
	return nil
}

func checkSizes(mem, timeout int) *lambdaError {
	if mem < minMemory || mem > maxMemory {
		return errInvalidParam("1 validation error detected: Value '" + strconv.Itoa(mem) + "' at 'memorySize' failed to satisfy constraint: Member must have value between 128 and 10240")
	}
	if timeout < minTimeout || timeout > maxTimeout {
		return errInvalidParam("1 validation error detected: Value '" + strconv.Itoa(timeout) + "' at 'timeout' failed to satisfy constraint: Member must have value between 1 and 900")
	}
	return nil
}

// configOf is $LATEST's FunctionConfiguration.
func configOf(f wire.Function, _ string) api.FunctionConfiguration {
	c := api.FunctionConfiguration{
		FunctionName: f.Name, FunctionArn: arnOf(f.Account, f.Name),
		Runtime: f.Runtime, Handler: f.Handler, MemorySize: f.MemoryMB, Timeout: int(f.TimeoutMs / 1000), Version: LatestVersion,
		LastModified: lastModified(f.ModifiedNs), State: "Active", LastUpdateStatus: "Successful", PackageType: "Zip",
		Architectures: []string{"x86_64"}, CodeSha256: f.CodeSha256, CodeSize: f.CodeSize, Description: f.Description,
		RevisionId: revisionID(f.Revision), Role: "arn:aws:iam::" + f.Account + ":role/coldstart",
	}
	if len(f.Environment) > 0 {
		c.Environment = &api.Environment{Variables: f.Environment}
	}
	if len(f.Synthetic) > 0 && f.CodeSha256 == "" {
		var s api.SyntheticConfig
		if json.Unmarshal(f.Synthetic, &s) == nil {
			c.Coldstart = &s
		}
	}
	return c
}

// versionConfig is a published version's FunctionConfiguration.
func versionConfig(f wire.Function, v wire.FunctionVersion) api.FunctionConfiguration {
	c := api.FunctionConfiguration{
		FunctionName: f.Name, FunctionArn: arnOf(f.Account, f.Name) + ":" + strconv.Itoa(v.Version),
		Runtime: v.Runtime, Handler: v.Handler, MemorySize: v.MemoryMB, Timeout: int(v.TimeoutMs / 1000), Version: strconv.Itoa(v.Version),
		LastModified: lastModified(v.ModifiedNs), State: "Active", LastUpdateStatus: "Successful", PackageType: "Zip",
		Architectures: []string{"x86_64"}, CodeSha256: v.CodeSha256, CodeSize: v.CodeSize, Description: v.Description,
		RevisionId: revisionID(v.Created), Role: "arn:aws:iam::" + f.Account + ":role/coldstart",
	}
	if len(v.Environment) > 0 {
		c.Environment = &api.Environment{Variables: v.Environment}
	}
	return c
}

// qualifiedConfig is the configuration a qualifier names: $LATEST, a
// version, or (for GetFunction) the version an alias names.
func qualifiedConfig(f wire.Function, q string) (api.FunctionConfiguration, *lambdaError) {
	if q == "" || q == LatestVersion {
		return configOf(f, LatestVersion), nil
	}
	v := f.Version(q)
	if v == nil {
		if a := f.Aliases[q]; a != nil {
			if a.FunctionVersion == LatestVersion {
				return configOf(f, LatestVersion), nil
			}
			v = f.Version(a.FunctionVersion)
		}
	}
	if v == nil {
		return api.FunctionConfiguration{}, errNotFound("Function not found: " + arnOf(f.Account, f.Name) + ":" + q)
	}
	return versionConfig(f, *v), nil
}

// function resolves the {name} path value (and Qualifier) for control
// operations. Another account's function answers exactly like a missing
// one.
func (g *Gateway) function(w http.ResponseWriter, r *http.Request) (*fnEntry, string, bool) {
	e, acct, _, ok := g.functionRef(w, r)
	return e, acct, ok
}

func (g *Gateway) functionRef(w http.ResponseWriter, r *http.Request) (*fnEntry, string, FunctionRef, bool) {
	ref, err := ParseFunctionName(r.PathValue("name"), r.URL.Query().Get("Qualifier"))
	if err != nil {
		writeError(w, errInvalidParam(err.Error()))
		return nil, "", ref, false
	}
	acct := g.account(r)
	if ref.Account != "" && ref.Account != acct {
		writeError(w, errNotFound("Function not found: "+arnOf(ref.Account, ref.Name)))
		return nil, "", ref, false
	}
	g.refreshFresh(0) // control reads should see this gateway's own writes
	e := g.cache.get(acct, ref.Name)
	if e == nil {
		writeError(w, errNotFound("Function not found: "+arnOf(acct, ref.Name)))
		return nil, "", ref, false
	}
	return e, acct, ref, true
}

func (g *Gateway) handleGet(w http.ResponseWriter, r *http.Request) {
	e, _, ref, ok := g.functionRef(w, r)
	if !ok {
		return
	}
	cfg, lerr := qualifiedConfig(e.fn, ref.Qualifier)
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	out := map[string]any{"Configuration": cfg}
	if cfg.CodeSha256 != "" {
		out["Code"] = map[string]string{"RepositoryType": "coldstart", "Location": "nats://" + codestore.Bucket + "/" + cfg.CodeSha256}
	}
	if e.fn.Reserved != nil {
		out["Concurrency"] = api.Concurrency{ReservedConcurrentExecutions: e.fn.Reserved}
	}
	out["Tags"] = map[string]string{}
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) handleGetConfiguration(w http.ResponseWriter, r *http.Request) {
	e, _, ref, ok := g.functionRef(w, r)
	if !ok {
		return
	}
	cfg, lerr := qualifiedConfig(e.fn, ref.Qualifier)
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	writeJSON(w, http.StatusOK, cfg)
}

// paging applies Lambda's Marker/MaxItems to n items: the marker is the
// index of the next item.
func paging(r *http.Request, n int) (from, to int, next string, lerr *lambdaError) {
	q := r.URL.Query()
	maxItems := 50
	if s := q.Get("MaxItems"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 10000 {
			return 0, 0, "", errInvalidParam("1 validation error detected: Value '" + clip(s) + "' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000")
		}
		maxItems = v
	}
	if s := q.Get("Marker"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > n {
			return 0, 0, "", errInvalidParam("Invalid Marker " + clip(s))
		}
		from = v
	}
	to = min(n, from+maxItems)
	if to < n {
		next = strconv.Itoa(to)
	}
	return from, to, next, nil
}

func (g *Gateway) handleList(w http.ResponseWriter, r *http.Request) {
	sn, err := g.pl.Read(r.Context())
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	all := []api.FunctionConfiguration{}
	acct := g.account(r)
	allVersions := r.URL.Query().Get("FunctionVersion") == "ALL"
	for _, f := range sn.Functions {
		if f.Account != acct {
			continue
		}
		all = append(all, configOf(f, LatestVersion))
		if allVersions {
			for _, v := range f.Versions {
				all = append(all, versionConfig(f, v))
			}
		}
	}
	from, to, next, lerr := paging(r, len(all))
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	writeJSON(w, http.StatusOK, api.ListFunctionsOutput{Functions: all[from:to], NextMarker: next})
}

func (g *Gateway) handleDelete(w http.ResponseWriter, r *http.Request) {
	e, acct, ref, ok := g.functionRef(w, r)
	if !ok {
		return
	}
	q := ref.Qualifier
	if q == LatestVersion && r.URL.Query().Get("Qualifier") == "" {
		q = ""
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpDeleteFunction, Delete: &wire.DeleteFunction{Account: acct, Name: e.fn.Name, Qualifier: q}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	if q == "" {
		g.cache.drop(acct, e.fn.Name, resp.Index)
	} else if resp.Function != nil {
		g.cache.put(*resp.Function, resp.Index)
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeInput starts a control-plane write on {name}: the function, the
// body decoded into in, and the RevisionId precondition the body names.
func (g *Gateway) writeInput(w http.ResponseWriter, r *http.Request, in any, revisionID func() string) (*fnEntry, string, uint64, bool) {
	e, acct, ok := g.function(w, r)
	if !ok {
		return nil, "", 0, false
	}
	if lerr := g.decodeBody(r, in); lerr != nil {
		writeError(w, lerr)
		return nil, "", 0, false
	}
	rev, lerr := parseRevision(revisionID())
	if lerr != nil {
		writeError(w, lerr)
		return nil, "", 0, false
	}
	return e, acct, rev, true
}

// update forwards an UpdateFunction and answers $LATEST's new
// configuration (or, with publish, the version it published).
func (g *Gateway) update(w http.ResponseWriter, r *http.Request, u *wire.UpdateFunction, publish bool) {
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpUpdateFunction, Update: u}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.put(*resp.Function, resp.Index)
	out := configOf(*resp.Function, LatestVersion)
	if publish {
		pr, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpPublishVersion, Publish: &wire.PublishVersion{Account: u.Account, Name: u.Name}}, controlBudget)
		if err != nil {
			writeError(w, placementError(err))
			return
		}
		g.cache.wrote(pr.Index)
		out = versionConfig(*resp.Function, *pr.Version)
	}
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) handleUpdateCode(w http.ResponseWriter, r *http.Request) {
	var in api.UpdateFunctionCodeInput
	e, acct, rev, ok := g.writeInput(w, r, &in, func() string { return in.RevisionId })
	if !ok {
		return
	}
	if in.S3Bucket != "" || in.ImageUri != "" || len(in.ZipFile) == 0 {
		writeError(w, errInvalidParam("Please provide a source for function code: ZipFile (S3Bucket and ImageUri are not supported on this cluster)"))
		return
	}
	if e.fn.CodeSha256 == "" && e.fn.Runtime == "synthetic" {
		writeError(w, errInvalidParam("Runtime synthetic runs no code: change the runtime with UpdateFunctionConfiguration first, or create the function with code"))
		return
	}
	digest, size, lerr := g.checkCode(r.Context(), e.fn.Runtime, e.fn.Handler, in.ZipFile)
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	if in.DryRun {
		out := configOf(e.fn, LatestVersion)
		out.CodeSha256, out.CodeSize = digest, size
		writeJSON(w, http.StatusOK, out)
		return
	}
	g.update(w, r, &wire.UpdateFunction{Account: acct, Name: e.fn.Name, IfRevision: rev, CodeSha256: digest, CodeSize: size}, in.Publish)
}

func (g *Gateway) handleUpdateConfiguration(w http.ResponseWriter, r *http.Request) {
	var in api.UpdateFunctionConfigurationInput
	e, acct, rev, ok := g.writeInput(w, r, &in, func() string { return in.RevisionId })
	if !ok {
		return
	}
	u := &wire.UpdateFunction{Account: acct, Name: e.fn.Name, IfRevision: rev, Handler: in.Handler, Description: in.Description, Runtime: in.Runtime}
	mem, tmo := e.fn.MemoryMB, int(e.fn.TimeoutMs/1000)
	if in.MemorySize != nil {
		mem = *in.MemorySize
		u.MemoryMB = in.MemorySize
	}
	if in.Timeout != nil {
		tmo = *in.Timeout
		ms := int64(*in.Timeout) * 1000
		u.TimeoutMs = &ms
	}
	if lerr := checkSizes(mem, tmo); lerr != nil {
		writeError(w, lerr)
		return
	}
	if in.Runtime != nil {
		switch {
		case e.fn.CodeSha256 != "" && !runnableRuntime(*in.Runtime):
			writeError(w, errInvalidParam("Runtime "+clip(*in.Runtime)+" cannot run this function's code on this cluster: use provided.al2023, provided.al2, python3.x or nodejs*.x"))
			return
		case e.fn.CodeSha256 == "" && !syntheticRuntime(*in.Runtime):
			writeError(w, errInvalidParam("Value "+clip(*in.Runtime)+" at 'runtime' is not supported on this cluster"))
			return
		}
	}
	env := e.fn.Environment
	if in.Environment != nil {
		v := in.Environment.Variables
		if v == nil {
			v = map[string]string{}
		}
		if lerr := validEnv(v); lerr != nil {
			writeError(w, lerr)
			return
		}
		u.Environment = &v
		env = v
	}
	if e.fn.CodeSha256 == "" && (in.Coldstart != nil || in.Environment != nil) {
		var cfg api.SyntheticConfig
		if in.Coldstart != nil {
			cfg = *in.Coldstart
		} else if len(e.fn.Synthetic) > 0 {
			json.Unmarshal(e.fn.Synthetic, &cfg)
		}
		cfg = syntheticFromEnv(env, cfg)
		rt := e.fn.Runtime
		if in.Runtime != nil {
			rt = *in.Runtime
		}
		if _, _, err := ProfileOf(rt, cfg); err != nil {
			writeError(w, errInvalidParam(err.Error()))
			return
		}
		u.Synthetic, _ = json.Marshal(cfg)
	}
	g.update(w, r, u, false)
}

func (g *Gateway) handlePublish(w http.ResponseWriter, r *http.Request) {
	var in api.PublishVersionInput
	e, acct, rev, ok := g.writeInput(w, r, &in, func() string { return in.RevisionId })
	if !ok {
		return
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpPublishVersion, Publish: &wire.PublishVersion{Account: acct, Name: e.fn.Name, IfRevision: rev, IfCodeSha256: in.CodeSha256, Description: in.Description}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.wrote(resp.Index)
	g.refreshFresh(resp.Index)
	writeJSON(w, http.StatusCreated, versionConfig(e.fn, *resp.Version))
}

func (g *Gateway) handleListVersions(w http.ResponseWriter, r *http.Request) {
	e, _, ok := g.function(w, r)
	if !ok {
		return
	}
	all := []api.FunctionConfiguration{configOf(e.fn, LatestVersion)}
	for _, v := range e.fn.Versions {
		all = append(all, versionConfig(e.fn, v))
	}
	from, to, next, lerr := paging(r, len(all))
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	out := map[string]any{"Versions": all[from:to]}
	if next != "" {
		out["NextMarker"] = next
	}
	writeJSON(w, http.StatusOK, out)
}

func aliasConfig(f wire.Function, a wire.Alias) api.AliasConfiguration {
	c := api.AliasConfiguration{AliasArn: arnOf(f.Account, f.Name) + ":" + a.Name, Name: a.Name, FunctionVersion: a.FunctionVersion, Description: a.Description, RevisionId: revisionID(a.Revision)}
	if len(a.Weights) > 0 {
		c.RoutingConfig = &api.AliasRoutingConfig{AdditionalVersionWeights: a.Weights}
	}
	return c
}

func (g *Gateway) putAlias(w http.ResponseWriter, r *http.Request, create bool) {
	var in api.AliasInput
	e, acct, rev, ok := g.writeInput(w, r, &in, func() string { return in.RevisionId })
	if !ok {
		return
	}
	name := in.Name
	if !create {
		name = r.PathValue("alias")
	}
	pa := &wire.PutAlias{Account: acct, Function: e.fn.Name, Name: name, Create: create, FunctionVersion: in.FunctionVersion, Description: in.Description, IfRevision: rev}
	if in.RoutingConfig != nil {
		wts := in.RoutingConfig.AdditionalVersionWeights
		if wts == nil {
			wts = map[string]float64{}
		}
		pa.Weights = &wts
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpPutAlias, Alias: pa}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.wrote(resp.Index)
	g.refreshFresh(resp.Index)
	status := http.StatusOK
	if create {
		status = http.StatusCreated
	}
	writeJSON(w, status, aliasConfig(e.fn, *resp.Alias))
}

func (g *Gateway) handleCreateAlias(w http.ResponseWriter, r *http.Request) { g.putAlias(w, r, true) }
func (g *Gateway) handleUpdateAlias(w http.ResponseWriter, r *http.Request) { g.putAlias(w, r, false) }

func (g *Gateway) handleGetAlias(w http.ResponseWriter, r *http.Request) {
	e, _, ok := g.function(w, r)
	if !ok {
		return
	}
	a := e.fn.Aliases[r.PathValue("alias")]
	if a == nil {
		writeError(w, errNotFound("Cannot find alias arn: "+arnOf(e.fn.Account, e.fn.Name)+":"+clip(r.PathValue("alias"))))
		return
	}
	writeJSON(w, http.StatusOK, aliasConfig(e.fn, *a))
}

func (g *Gateway) handleDeleteAlias(w http.ResponseWriter, r *http.Request) {
	e, acct, ok := g.function(w, r)
	if !ok {
		return
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpDeleteAlias, DeleteAlias: &wire.DeleteAlias{Account: acct, Function: e.fn.Name, Name: r.PathValue("alias")}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	if resp.Function != nil {
		g.cache.put(*resp.Function, resp.Index)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) handleListAliases(w http.ResponseWriter, r *http.Request) {
	e, _, ok := g.function(w, r)
	if !ok {
		return
	}
	names := make([]string, 0, len(e.fn.Aliases))
	for n, a := range e.fn.Aliases {
		if v := r.URL.Query().Get("FunctionVersion"); v == "" || a.FunctionVersion == v {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	from, to, next, lerr := paging(r, len(names))
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	out := []api.AliasConfiguration{}
	for _, n := range names[from:to] {
		out = append(out, aliasConfig(e.fn, *e.fn.Aliases[n]))
	}
	body := map[string]any{"Aliases": out}
	if next != "" {
		body["NextMarker"] = next
	}
	writeJSON(w, http.StatusOK, body)
}

// decodeBody reads a JSON body the auth layer already read (bounded per
// route) and decodes it; an empty body is an empty object.
func (g *Gateway) decodeBody(r *http.Request, v any) *lambdaError {
	body, lerr := g.readBody(nil, r, maxCodeBody, "Request must be smaller than 69905067 bytes for the operation")
	if lerr != nil {
		return lerr
	}
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errInvalidContent("Could not parse request body into json: " + err.Error())
	}
	return nil
}
