package placement

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// The Lambda control plane's writes beyond create and delete: code and
// configuration updates of $LATEST, published versions, aliases,
// provisioned-concurrency configs and accounts with access keys. Like the
// rest of the ledger they read nothing but the state and the command.

// Errors of the control plane beyond ErrNotFound and ErrConflict.
var (
	// ErrPrecondition: a RevisionId or CodeSha256 precondition does not
	// hold (Lambda's PreconditionFailedException, 412).
	ErrPrecondition = fmt.Errorf("PreconditionFailedException")
	// ErrNoProvisionedConfig: Lambda's
	// ProvisionedConcurrencyConfigNotFoundException (404).
	ErrNoProvisionedConfig = fmt.Errorf("ProvisionedConcurrencyConfigNotFoundException")
)

// MaxEnvironmentBytes is Lambda's 4 KB limit on a function's environment.
const MaxEnvironmentBytes = 4096

func invalid(format string, a ...any) error {
	return &quota.ValidationError{Message: fmt.Sprintf(format, a...)}
}

func revisionMismatch() error {
	return fmt.Errorf("%w: The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id", ErrPrecondition)
}

// ValidEnvironment applies Lambda's rules to environment variables: keys
// [a-zA-Z][a-zA-Z0-9_]+, 4 KB in total, no reserved name.
func ValidEnvironment(env map[string]string) error {
	size := 0
	for k, v := range env {
		size += len(k) + len(v)
		if len(k) < 2 || !(k[0] >= 'a' && k[0] <= 'z' || k[0] >= 'A' && k[0] <= 'Z') {
			return invalid("Environment variable name %q must match [a-zA-Z][a-zA-Z0-9_]+", clipName(k))
		}
		for _, r := range k {
			if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return invalid("Environment variable name %q must match [a-zA-Z][a-zA-Z0-9_]+", clipName(k))
			}
		}
		if reservedEnv[k] {
			return invalid("Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: %s", k)
		}
	}
	if size > MaxEnvironmentBytes {
		return invalid("Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: %d bytes", size)
	}
	return nil
}

var reservedEnv = map[string]bool{
	"_HANDLER": true, "_X_AMZN_TRACE_ID": true, "AWS_REGION": true, "AWS_EXECUTION_ENV": true,
	"AWS_LAMBDA_FUNCTION_NAME": true, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true, "AWS_LAMBDA_FUNCTION_VERSION": true,
	"AWS_LAMBDA_INITIALIZATION_TYPE": true, "AWS_LAMBDA_LOG_GROUP_NAME": true, "AWS_LAMBDA_LOG_STREAM_NAME": true,
	"AWS_ACCESS_KEY": true, "AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true,
	"AWS_LAMBDA_RUNTIME_API": true, "LAMBDA_TASK_ROOT": true, "LAMBDA_RUNTIME_DIR": true,
}

func clipName(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// validAliasName is Lambda's alias pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+),
// 1 to 128 characters.
func validAliasName(n string) bool {
	if n == "" || len(n) > 128 {
		return false
	}
	digits := true
	for _, r := range n {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
		if r < '0' || r > '9' {
			digits = false
		}
	}
	return !digits
}

func (l *Ledger) function(account, name string) (*Function, error) {
	f := l.s.Functions[wire.FunctionKey(account, name)]
	if f == nil {
		return nil, fmt.Errorf("%w: Function not found: arn:aws:lambda:us-east-1:%s:function:%s", ErrNotFound, account, name)
	}
	return f, nil
}

func (l *Ledger) updateFunction(c UpdateFunction, idx uint64) (*Function, error) {
	f, err := l.function(c.Account, c.Name)
	if err != nil {
		return nil, err
	}
	if c.IfRevision != 0 && c.IfRevision != f.Revision {
		return nil, revisionMismatch()
	}
	next := f.Clone()
	if c.CodeSha256 != "" {
		next.CodeSha256, next.CodeSize = c.CodeSha256, c.CodeSize
	}
	if c.Runtime != nil {
		next.Runtime = *c.Runtime
	}
	if c.Handler != nil {
		next.Handler = *c.Handler
	}
	if c.MemoryMB != nil {
		next.MemoryMB = *c.MemoryMB
	}
	if c.TimeoutMs != nil {
		next.TimeoutMs = *c.TimeoutMs
	}
	if c.Environment != nil {
		next.Environment = cloneMap(*c.Environment)
	}
	if c.Description != nil {
		next.Description = *c.Description
	}
	if len(c.Synthetic) > 0 {
		next.Synthetic = append([]byte(nil), c.Synthetic...)
	}
	if err := validFunction(*next); err != nil {
		return nil, err
	}
	if err := ValidEnvironment(next.Environment); err != nil {
		return nil, err
	}
	if len(next.Handler) > 128 {
		return nil, invalid("1 validation error detected: Value at 'handler' failed to satisfy constraint: Member must have length less than or equal to 128")
	}
	next.Revision, next.ConfigRev, next.ModifiedNs = idx, idx, c.ModifiedNs
	*f = *next
	return f.Clone(), nil
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// versionOf is $LATEST's code and configuration as version n.
func versionOf(f *Function, n int, idx uint64, desc string) FunctionVersion {
	v := FunctionVersion{Version: n, Runtime: f.Runtime, Handler: f.Handler, MemoryMB: f.MemoryMB, TimeoutMs: f.TimeoutMs,
		Environment: f.Environment, Synthetic: f.Synthetic, Description: desc, CodeSha256: f.CodeSha256, CodeSize: f.CodeSize,
		Created: idx, ModifiedNs: f.ModifiedNs}
	return v.Clone()
}

// unchanged reports whether version v has $LATEST's code and configuration.
func unchanged(v FunctionVersion, f *Function) bool {
	w := versionOf(f, v.Version, v.Created, v.Description)
	w.ModifiedNs = v.ModifiedNs
	return equalVersions(v, w)
}

func equalVersions(a, b FunctionVersion) bool {
	if a.Version != b.Version || a.Runtime != b.Runtime || a.Handler != b.Handler || a.MemoryMB != b.MemoryMB ||
		a.TimeoutMs != b.TimeoutMs || a.CodeSha256 != b.CodeSha256 || a.CodeSize != b.CodeSize ||
		string(a.Synthetic) != string(b.Synthetic) || len(a.Environment) != len(b.Environment) {
		return false
	}
	for k, v := range a.Environment {
		if w, ok := b.Environment[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (l *Ledger) publishVersion(c PublishVersion, idx uint64) (*FunctionVersion, error) {
	f, err := l.function(c.Account, c.Name)
	if err != nil {
		return nil, err
	}
	if c.IfRevision != 0 && c.IfRevision != f.Revision {
		return nil, revisionMismatch()
	}
	if c.IfCodeSha256 != "" && c.IfCodeSha256 != f.CodeSha256 {
		return nil, fmt.Errorf("%w: CodeSHA256 (%s) is different from current CodeSHA256 in $LATEST (%s). Please try again with the CodeSHA256 in $LATEST.", ErrPrecondition, c.IfCodeSha256, f.CodeSha256)
	}
	// No new version for unchanged code and configuration: Lambda returns
	// the last one.
	if n := len(f.Versions); n > 0 && unchanged(f.Versions[n-1], f) {
		v := f.Versions[n-1].Clone()
		return &v, nil
	}
	f.LastVersion++
	v := versionOf(f, f.LastVersion, idx, c.Description)
	v.ModifiedNs = c.ModifiedNs
	f.Versions = append(f.Versions, v)
	f.Revision = idx
	out := v.Clone()
	return &out, nil
}

// deleteVersion deletes one published version, unless an alias names it.
// Its provisioned config goes with it; its sandboxes stay counted until
// their workers release them, like a deleted function's.
func (l *Ledger) deleteVersion(c DeleteFunction, idx uint64) (*Function, error) {
	f, err := l.function(c.Account, c.Name)
	if err != nil {
		return nil, err
	}
	if c.Qualifier == "$LATEST" {
		return nil, invalid("$LATEST version cannot be deleted without deleting the function.")
	}
	i := slices.IndexFunc(f.Versions, func(v FunctionVersion) bool { return strconv.Itoa(v.Version) == c.Qualifier })
	if i < 0 {
		return nil, fmt.Errorf("%w: Function not found: arn:aws:lambda:us-east-1:%s:function:%s:%s", ErrNotFound, c.Account, c.Name, c.Qualifier)
	}
	var users []string
	for name, a := range f.Aliases {
		if a.FunctionVersion == c.Qualifier || a.Weights[c.Qualifier] > 0 || hasKey(a.Weights, c.Qualifier) {
			users = append(users, name)
		}
	}
	if len(users) > 0 {
		sort.Strings(users)
		return nil, fmt.Errorf("%w: Unable to delete version because the following aliases reference it: [%s]", ErrConflict, strings.Join(users, ", "))
	}
	f.Versions = slices.Delete(f.Versions, i, i+1)
	delete(f.Provisioned, c.Qualifier)
	delete(f.EventConfigs, c.Qualifier)
	if len(f.EventConfigs) == 0 {
		f.EventConfigs = nil
	}
	if len(f.Versions) == 0 {
		f.Versions = nil
	}
	if len(f.Provisioned) == 0 {
		f.Provisioned = nil
	}
	f.Revision = idx
	return f.Clone(), nil
}

func hasKey(m map[string]float64, k string) bool {
	_, ok := m[k]
	return ok
}

func (l *Ledger) putAlias(c PutAlias, idx uint64) (*Alias, error) {
	f, err := l.function(c.Account, c.Function)
	if err != nil {
		return nil, err
	}
	if !validAliasName(c.Name) {
		return nil, invalid("1 validation error detected: Value '%s' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)", clipName(c.Name))
	}
	cur := f.Aliases[c.Name]
	var next Alias
	switch {
	case c.Create && cur != nil:
		return nil, fmt.Errorf("%w: Alias already exists: arn:aws:lambda:us-east-1:%s:function:%s:%s", ErrConflict, c.Account, c.Function, c.Name)
	case c.Create:
		next = Alias{Name: c.Name}
		if c.FunctionVersion == "" {
			return nil, invalid("1 validation error detected: Value null at 'functionVersion' failed to satisfy constraint: Member must not be null")
		}
	case cur == nil:
		return nil, fmt.Errorf("%w: Alias not found: arn:aws:lambda:us-east-1:%s:function:%s:%s", ErrNotFound, c.Account, c.Function, c.Name)
	default:
		if c.IfRevision != 0 && c.IfRevision != cur.Revision {
			return nil, revisionMismatch()
		}
		next = cur.Clone()
	}
	if c.FunctionVersion != "" {
		next.FunctionVersion = c.FunctionVersion
	}
	if c.Weights != nil {
		next.Weights = nil
		if len(*c.Weights) > 0 {
			next.Weights = map[string]float64{}
			for k, w := range *c.Weights {
				next.Weights[k] = w
			}
		}
	}
	if c.Description != nil {
		next.Description = *c.Description
	}
	if next.FunctionVersion != "$LATEST" && f.Version(next.FunctionVersion) == nil {
		return nil, fmt.Errorf("%w: Function not found: arn:aws:lambda:us-east-1:%s:function:%s:%s", ErrNotFound, c.Account, c.Function, next.FunctionVersion)
	}
	if len(next.Weights) > 1 {
		return nil, invalid("Number of items in AdditionalVersionWeights cannot be greater than 1")
	}
	for v, w := range next.Weights {
		switch {
		case next.FunctionVersion == "$LATEST" || v == "$LATEST":
			return nil, invalid("$LATEST is not supported for an alias pointing to more than 1 version")
		case v == next.FunctionVersion:
			return nil, invalid("Cannot add the primary version %s to AdditionalVersionWeights", v)
		case f.Version(v) == nil:
			return nil, fmt.Errorf("%w: Function not found: arn:aws:lambda:us-east-1:%s:function:%s:%s", ErrNotFound, c.Account, c.Function, v)
		case !(w >= 0 && w <= 1):
			return nil, invalid("1 validation error detected: Value '%v' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Member must have value between 0.0 and 1.0", w)
		}
	}
	// An alias with provisioned concurrency moves it to its new version:
	// that version must not be provisioned already, nor be $LATEST.
	if pc := f.Provisioned[c.Name]; pc != nil && next.FunctionVersion != l.provisionedVersion(f, c.Name) {
		if next.FunctionVersion == "$LATEST" {
			return nil, invalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
		}
		for q := range f.Provisioned {
			if q != c.Name && l.provisionedVersion(f, q) == next.FunctionVersion {
				return nil, fmt.Errorf("%w: Alias can't be updated to a version that already has a Provisioned Concurrency config (%s)", ErrConflict, q)
			}
		}
	}
	next.Revision = idx
	if f.Aliases == nil {
		f.Aliases = map[string]*Alias{}
	}
	f.Aliases[c.Name] = &next
	f.Revision = idx
	out := next.Clone()
	return &out, nil
}

func (l *Ledger) deleteAlias(c DeleteAlias, idx uint64) (*Function, error) {
	f, err := l.function(c.Account, c.Function)
	if err != nil {
		return nil, err
	}
	if f.Aliases[c.Name] == nil {
		return nil, fmt.Errorf("%w: Alias not found: arn:aws:lambda:us-east-1:%s:function:%s:%s", ErrNotFound, c.Account, c.Function, c.Name)
	}
	delete(f.Aliases, c.Name)
	delete(f.Provisioned, c.Name)
	delete(f.EventConfigs, c.Name)
	if len(f.EventConfigs) == 0 {
		f.EventConfigs = nil
	}
	if len(f.Aliases) == 0 {
		f.Aliases = nil
	}
	if len(f.Provisioned) == 0 {
		f.Provisioned = nil
	}
	f.Revision = idx
	return f.Clone(), nil
}

// provisionedVersion is the version a provisioned config of qualifier q
// applies to: q itself, or the version alias q names ("" when neither
// exists).
func (l *Ledger) provisionedVersion(f *Function, q string) string {
	if a := f.Aliases[q]; a != nil {
		return a.FunctionVersion
	}
	if f.Version(q) != nil {
		return q
	}
	return ""
}

// ProvisionedTarget is the version and requested count of every
// provisioned config of f, by version.
func (l *Ledger) ProvisionedTarget(f *Function) map[string]int {
	out := map[string]int{}
	for q, pc := range f.Provisioned {
		if v := l.provisionedVersion(f, q); v != "" && v != "$LATEST" {
			out[v] += pc.Requested
		}
	}
	return out
}

// unreservedProvisioned is the provisioned concurrency the account's
// functions without a reservation request (except function key except):
// it comes out of the unreserved pool.
func (l *Ledger) unreservedProvisioned(account, except string) int {
	t := 0
	for k, f := range l.s.Functions {
		if f.Account != account || f.Reserved != nil || k == except {
			continue
		}
		for _, pc := range f.Provisioned {
			t += pc.Requested
		}
	}
	return t
}

func provisionedTotal(f *Function, except string) int {
	t := 0
	for q, pc := range f.Provisioned {
		if q != except {
			t += pc.Requested
		}
	}
	return t
}

func (l *Ledger) setProvisioned(c SetProvisioned, idx uint64) (*Function, error) {
	f, err := l.function(c.Account, c.Function)
	if err != nil {
		return nil, err
	}
	if c.Requested == nil {
		if f.Provisioned[c.Qualifier] == nil {
			return nil, fmt.Errorf("%w: No Provisioned Concurrency Config found for this function", ErrNoProvisionedConfig)
		}
		delete(f.Provisioned, c.Qualifier)
		if len(f.Provisioned) == 0 {
			f.Provisioned = nil
		}
		f.Revision = idx
		return f.Clone(), nil
	}
	n := *c.Requested
	if c.Qualifier == "" || c.Qualifier == "$LATEST" {
		return nil, invalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
	}
	v := l.provisionedVersion(f, c.Qualifier)
	switch {
	case v == "":
		return nil, fmt.Errorf("%w: Function not found: arn:aws:lambda:us-east-1:%s:function:%s:%s", ErrNotFound, c.Account, c.Function, c.Qualifier)
	case v == "$LATEST":
		return nil, invalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
	case n < 1:
		return nil, invalid("1 validation error detected: Value '%d' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1", n)
	}
	for q := range f.Provisioned {
		if q != c.Qualifier && l.provisionedVersion(f, q) == v {
			return nil, fmt.Errorf("%w: Version %s already has a Provisioned Concurrency config (through %s)", ErrConflict, v, q)
		}
	}
	total := provisionedTotal(f, c.Qualifier) + n
	if f.Reserved != nil {
		if total > *f.Reserved {
			return nil, invalid("Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function")
		}
	} else {
		limit := l.Limit(c.Account)
		k := wire.FunctionKey(c.Account, c.Function)
		free := limit - l.reservedTotal(c.Account, "") - l.unreservedProvisioned(c.Account, k) - quota.Minimum(limit)
		if total > free {
			return nil, invalid("Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [%d].", max(free, 0))
		}
	}
	if f.Provisioned == nil {
		f.Provisioned = map[string]*ProvisionedConfig{}
	}
	f.Provisioned[c.Qualifier] = &ProvisionedConfig{Qualifier: c.Qualifier, Requested: n, Revision: idx, ModifiedNs: c.ModifiedNs}
	f.Revision = idx
	return f.Clone(), nil
}

// provisionedHeld counts the live provisioned sandboxes of one version of
// a function incarnation at its current revision.
func (l *Ledger) provisionedHeld(f *Function, version string, rev uint64) int {
	n := 0
	for _, sb := range l.s.Sandboxes {
		if sb.Provisioned && sb.Account == f.Account && sb.Function == f.Name && sb.Incarnation == f.Created && sb.Version == version && sb.Revision == rev {
			n++
		}
	}
	return n
}

func (l *Ledger) sandboxReady(c SandboxReady) []string {
	for _, id := range c.Ready {
		if sb := l.s.Sandboxes[id]; sb != nil && sb.Provisioned {
			sb.Ready = true
			if f := l.s.Functions[wire.FunctionKey(sb.Account, sb.Function)]; f != nil {
				for q, pc := range f.Provisioned {
					if l.provisionedVersion(f, q) == sb.Version {
						pc.Failure = ""
					}
				}
			}
		}
	}
	var failed []string
	for _, id := range c.Failed {
		sb := l.s.Sandboxes[id]
		if sb == nil || !sb.Provisioned {
			continue
		}
		if f := l.s.Functions[wire.FunctionKey(sb.Account, sb.Function)]; f != nil && f.Created == sb.Incarnation {
			for q, pc := range f.Provisioned {
				if l.provisionedVersion(f, q) == sb.Version {
					pc.Failure = clipFailure(c.Failure)
				}
			}
		}
		failed = append(failed, id)
	}
	sort.Strings(failed)
	return l.release(failed, "")
}

func clipFailure(s string) string {
	if len(s) > 512 {
		return s[:512]
	}
	if s == "" {
		return "initialization failed"
	}
	return s
}

// validAccountID: accounts are 12 digits, like AWS's.
func validAccountID(id string) bool {
	if len(id) != 12 {
		return false
	}
	for _, r := range id {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func (l *Ledger) keyInUse(id string) bool {
	for _, a := range l.s.Accounts {
		for _, k := range a.Keys {
			if k.ID == id {
				return true
			}
		}
	}
	return false
}

func validKey(k AccessKey) error {
	if len(k.ID) < 4 || len(k.ID) > 128 || len(k.Secret) < 4 || len(k.Secret) > 128 {
		return invalid("access key id and secret must be 4 to 128 characters")
	}
	return nil
}

func (l *Ledger) createAccount(c CreateAccount) (*Account, error) {
	if !validAccountID(c.ID) {
		return nil, invalid("account id %q must be 12 digits", clipName(c.ID))
	}
	a := l.s.Accounts[c.ID]
	if a != nil && a.Created {
		return nil, fmt.Errorf("%w: Account already exists: %s", ErrConflict, c.ID)
	}
	limit := c.Limit
	if limit == 0 {
		limit = l.Limit(c.ID)
	}
	if err := quota.CheckLimit(limit, l.reservedTotal(c.ID, "")+l.unreservedProvisioned(c.ID, "")); err != nil {
		return nil, err
	}
	var keys []AccessKey
	if a != nil {
		keys = a.Keys
	}
	if c.Key != nil {
		if err := validKey(*c.Key); err != nil {
			return nil, err
		}
		if l.keyInUse(c.Key.ID) {
			return nil, fmt.Errorf("%w: access key %s already exists", ErrConflict, c.Key.ID)
		}
		keys = append(slices.Clone(keys), *c.Key)
	}
	na := &Account{ID: c.ID, Limit: limit, Keys: keys, Created: true}
	l.s.Accounts[c.ID] = na
	cp := *na
	cp.Keys = slices.Clone(na.Keys)
	return &cp, nil
}

func (l *Ledger) addAccessKey(c AddAccessKey) (*Account, error) {
	a := l.s.Accounts[c.Account]
	if a == nil || !a.Created {
		return nil, fmt.Errorf("%w: Account not found: %s", ErrNotFound, c.Account)
	}
	if err := validKey(c.Key); err != nil {
		return nil, err
	}
	if l.keyInUse(c.Key.ID) {
		return nil, fmt.Errorf("%w: access key %s already exists", ErrConflict, c.Key.ID)
	}
	a.Keys = append(slices.Clone(a.Keys), c.Key)
	cp := *a
	cp.Keys = slices.Clone(a.Keys)
	return &cp, nil
}
