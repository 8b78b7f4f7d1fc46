package wire

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
)

// Values of placement's ledger that messages carry. They are also entries
// of its Raft log and snapshots (see the package doc): placement names
// them through aliases.

// Function is a function's replicated configuration.
type Function struct {
	Account   string `json:"account"`
	Name      string `json:"name"`
	Runtime   string `json:"runtime"`
	MemoryMB  int    `json:"memory_mb"`
	TimeoutMs int64  `json:"timeout_ms"`
	Reserved  *int   `json:"reserved,omitempty"`
	// Synthetic is the synthetic runtime's configuration, kept as the user
	// gave it (api.SyntheticConfig as JSON) and parsed where it is used.
	Synthetic []byte `json:"synthetic,omitempty"`
	Revision  uint64 `json:"revision"` // Raft index of the last change
	// Created is the Raft index of the create: a function deleted and
	// created again under its name is a different function, and sandboxes
	// of the old one must never serve it.
	Created    uint64 `json:"created"`
	ModifiedNs int64  `json:"modified_ns"`

	// $LATEST's code and configuration beyond the above.
	Handler     string            `json:"handler,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Description string            `json:"description,omitempty"`
	CodeSha256  string            `json:"code_sha256,omitempty"` // Lambda's CodeSha256; the bundle is in codestore
	CodeSize    int64             `json:"code_size,omitempty"`
	// ConfigRev is the Raft index of the last change to $LATEST's code or
	// configuration (its create at first). It is $LATEST's Spec revision:
	// a sandbox created before a deploy never serves an invocation after it.
	ConfigRev uint64 `json:"config_rev,omitempty"`
	// LastVersion is the highest version number ever published; numbers
	// are never reused, even after a version is deleted.
	LastVersion int               `json:"last_version,omitempty"`
	Versions    []FunctionVersion `json:"versions,omitempty"`
	Aliases     map[string]*Alias `json:"aliases,omitempty"`
	// Provisioned holds the provisioned-concurrency configs by qualifier
	// (a version number or an alias name).
	Provisioned map[string]*ProvisionedConfig `json:"provisioned,omitempty"`
	// EventConfigs holds the asynchronous invocation configs by qualifier
	// ("$LATEST", a version number or an alias name).
	EventConfigs map[string]*EventInvokeConfig `json:"event_configs,omitempty"`
	// Idempotency is the platform's opt-in dedupe of this function's
	// invocations (nil: off).
	Idempotency *IdempotencyConfig `json:"idempotency,omitempty"`
	// Fault is a fault the platform injects into this function's
	// invocations (nil: none).
	Fault *FaultConfig `json:"fault,omitempty"`
}

// EventInvokeConfig is Lambda's FunctionEventInvokeConfig: retries, maximum
// event age and destinations of asynchronous invocations. Nil fields take
// Lambda's defaults (2 retries, 6 hours).
type EventInvokeConfig struct {
	Qualifier              string `json:"qualifier"`
	MaximumRetryAttempts   *int   `json:"maximum_retry_attempts,omitempty"`
	MaximumEventAgeSeconds *int   `json:"maximum_event_age_seconds,omitempty"`
	OnSuccess              string `json:"on_success,omitempty"`
	OnFailure              string `json:"on_failure,omitempty"`
	ModifiedNs             int64  `json:"modified_ns"`
}

// Lambda's asynchronous invocation defaults.
const (
	DefaultMaximumRetryAttempts = 2
	DefaultMaximumEventAge      = 21600 // seconds
)

// Retries is the config's MaximumRetryAttempts, or Lambda's default.
func (c *EventInvokeConfig) Retries() int {
	if c == nil || c.MaximumRetryAttempts == nil {
		return DefaultMaximumRetryAttempts
	}
	return *c.MaximumRetryAttempts
}

// MaxAgeSeconds is the config's MaximumEventAgeInSeconds, or Lambda's
// default.
func (c *EventInvokeConfig) MaxAgeSeconds() int {
	if c == nil || c.MaximumEventAgeSeconds == nil {
		return DefaultMaximumEventAge
	}
	return *c.MaximumEventAgeSeconds
}

// IdempotencyConfig turns on the platform's dedupe of a function's
// invocations: Key is "request-id", "header:NAME" or "json:PATH".
type IdempotencyConfig struct {
	Key   string `json:"key"`
	TTLMs int64  `json:"ttl_ms"`
}

// FaultConfig is a fault injected into a function's invocations: each one
// is hit with probability Rate (drawn from Seed), or exactly the
// invocations numbered in Nth (1-based, counted by each gateway since the
// fault was set), until UntilNs (0: until cleared).
type FaultConfig struct {
	Kind    string  `json:"kind"`
	Rate    float64 `json:"rate,omitempty"`
	Seed    int64   `json:"seed,omitempty"`
	Nth     []int   `json:"nth,omitempty"`
	UntilNs int64   `json:"until_ns,omitempty"`
	SetNs   int64   `json:"set_ns"`
	// DelayMs is add-delay's delay (default: half the function's timeout).
	DelayMs int64 `json:"delay_ms,omitempty"`
}

// Fault kinds.
const (
	FaultCrashAfterHandler  = "crash-after-handler"
	FaultDropResponse       = "drop-response"
	FaultTimeoutAfterEffect = "timeout-after-effect"
	FaultDuplicateDelivery  = "duplicate-delivery"
	FaultErrorBefore        = "error-before"
	FaultAddDelay           = "add-delay"
)

// FaultKinds lists every fault kind.
var FaultKinds = []string{FaultCrashAfterHandler, FaultDropResponse, FaultTimeoutAfterEffect, FaultDuplicateDelivery, FaultErrorBefore, FaultAddDelay}

// Rev is the Spec revision of $LATEST (ConfigRev, or Created for a
// function written before ConfigRev existed).
func (f *Function) Rev() uint64 {
	if f.ConfigRev != 0 {
		return f.ConfigRev
	}
	return f.Created
}

// Version returns published version v, or nil.
func (f *Function) Version(v string) *FunctionVersion {
	for i := range f.Versions {
		if strconv.Itoa(f.Versions[i].Version) == v {
			return &f.Versions[i]
		}
	}
	return nil
}

// Clone is a deep copy: ledger values are handed out as copies, and a
// Function holds maps and slices.
func (f *Function) Clone() *Function {
	cp := *f
	cp.Environment = cloneEnv(f.Environment)
	cp.Synthetic = append([]byte(nil), f.Synthetic...)
	if f.Synthetic == nil {
		cp.Synthetic = nil
	}
	if f.Reserved != nil {
		r := *f.Reserved
		cp.Reserved = &r
	}
	if f.Versions != nil {
		cp.Versions = make([]FunctionVersion, len(f.Versions))
		for i, v := range f.Versions {
			cp.Versions[i] = v.Clone()
		}
	}
	if f.Aliases != nil {
		cp.Aliases = make(map[string]*Alias, len(f.Aliases))
		for k, a := range f.Aliases {
			c := a.Clone()
			cp.Aliases[k] = &c
		}
	}
	if f.Provisioned != nil {
		cp.Provisioned = make(map[string]*ProvisionedConfig, len(f.Provisioned))
		for k, p := range f.Provisioned {
			c := *p
			cp.Provisioned[k] = &c
		}
	}
	if f.EventConfigs != nil {
		cp.EventConfigs = make(map[string]*EventInvokeConfig, len(f.EventConfigs))
		for k, c := range f.EventConfigs {
			cc := *c
			if c.MaximumRetryAttempts != nil {
				v := *c.MaximumRetryAttempts
				cc.MaximumRetryAttempts = &v
			}
			if c.MaximumEventAgeSeconds != nil {
				v := *c.MaximumEventAgeSeconds
				cc.MaximumEventAgeSeconds = &v
			}
			cp.EventConfigs[k] = &cc
		}
	}
	if f.Idempotency != nil {
		c := *f.Idempotency
		cp.Idempotency = &c
	}
	if f.Fault != nil {
		c := *f.Fault
		c.Nth = append([]int(nil), f.Fault.Nth...)
		cp.Fault = &c
	}
	return &cp
}

func cloneEnv(e map[string]string) map[string]string {
	if e == nil {
		return nil
	}
	out := make(map[string]string, len(e))
	for k, v := range e {
		out[k] = v
	}
	return out
}

// FunctionVersion is a published, immutable version: $LATEST's code and
// configuration as they were when it was published.
type FunctionVersion struct {
	Version     int               `json:"version"`
	Runtime     string            `json:"runtime"`
	Handler     string            `json:"handler,omitempty"`
	MemoryMB    int               `json:"memory_mb"`
	TimeoutMs   int64             `json:"timeout_ms"`
	Environment map[string]string `json:"environment,omitempty"`
	Synthetic   []byte            `json:"synthetic,omitempty"`
	Description string            `json:"description,omitempty"`
	CodeSha256  string            `json:"code_sha256,omitempty"`
	CodeSize    int64             `json:"code_size,omitempty"`
	// Created is the Raft index of the publish: the version's Spec revision.
	Created    uint64 `json:"created"`
	ModifiedNs int64  `json:"modified_ns"`
}

// Clone is a deep copy.
func (v FunctionVersion) Clone() FunctionVersion {
	v.Environment = cloneEnv(v.Environment)
	if v.Synthetic != nil {
		v.Synthetic = append([]byte(nil), v.Synthetic...)
	}
	return v
}

// Alias names a published version, optionally routing a share of the
// invocations to a second one (RoutingConfig.AdditionalVersionWeights).
type Alias struct {
	Name            string             `json:"name"`
	FunctionVersion string             `json:"function_version"`
	Weights         map[string]float64 `json:"weights,omitempty"`
	Description     string             `json:"description,omitempty"`
	Revision        uint64             `json:"revision"` // Raft index of its last change
}

// Clone is a deep copy.
func (a Alias) Clone() Alias {
	if a.Weights != nil {
		w := make(map[string]float64, len(a.Weights))
		for k, v := range a.Weights {
			w[k] = v
		}
		a.Weights = w
	}
	return a
}

// ProvisionedConfig is a provisioned-concurrency configuration of a version
// or an alias. An alias's config follows the alias: its sandboxes are of
// the version the alias names at the time.
type ProvisionedConfig struct {
	Qualifier  string `json:"qualifier"`
	Requested  int    `json:"requested"`
	Revision   uint64 `json:"revision"`
	ModifiedNs int64  `json:"modified_ns"`
	// Failure is why pre-warming last failed (an init error), "" otherwise.
	Failure string `json:"failure,omitempty"`
}

// AccessKey is a SigV4 access key of an account.
type AccessKey struct {
	ID        string `json:"id"`
	Secret    string `json:"secret"`
	CreatedNs int64  `json:"created_ns"`
}

// Sandbox is one granted execution environment. Everything it was
// admitted as (account, function incarnation, pool) is recorded at the grant
// and never changes: the counts are derived from these fields alone.
type Sandbox struct {
	ID       string `json:"id"`
	Account  string `json:"account"`
	Function string `json:"function"`
	Version  string `json:"version"`
	// Incarnation is the Created index of the function it was granted for.
	Incarnation uint64     `json:"incarnation"`
	Pool        quota.Pool `json:"pool"`
	Worker      string     `json:"worker"`
	// WorkerInc is the worker's incarnation at the grant: a worker that
	// restarted or lost its lease meanwhile must not start it.
	WorkerInc uint64 `json:"worker_inc"`
	// Requester is the gateway whose request made the grant ("" when the
	// request did not come through a gateway's own subject): only it may
	// cancel the grant.
	Requester string `json:"requester,omitempty"`
	MemoryMB  int    `json:"memory_mb"`
	CreatedNs int64  `json:"created_ns"`
	// Revision is the Spec revision of the version at the grant ($LATEST's
	// ConfigRev, or the published version's Created).
	Revision uint64 `json:"revision,omitempty"`
	// Provisioned sandboxes are pre-warmed by placement for a
	// provisioned-concurrency config; Ready once their init finished.
	Provisioned bool `json:"provisioned,omitempty"`
	Ready       bool `json:"ready,omitempty"`
}

// Worker is a worker node as placement knows it. Incarnation is the Raft
// index of its registration: it changes whenever placement gives up on the
// worker's sandboxes, so an answer or a grant from an older incarnation is
// recognisably stale.
type Worker struct {
	ID          string `json:"id"`
	Capacity    int    `json:"capacity"`
	MemoryMB    int    `json:"memory_mb"`
	Alive       bool   `json:"alive"`
	Incarnation uint64 `json:"incarnation"`
}

// Account holds an account's limit.
type Account struct {
	ID    string      `json:"id"`
	Limit int         `json:"limit"`
	Keys  []AccessKey `json:"keys,omitempty"`
	// Created marks an account made by CreateAccount (an entry may also
	// exist only because its limit was set).
	Created bool `json:"created,omitempty"`
}

// FunctionKey is the map key of a function, in placement's state and in
// Snapshot.Counts.
func FunctionKey(account, name string) string { return account + "/" + name }

// Grant is the answer to CreateSandbox: a sandbox, or a throttle.
type Grant struct {
	Sandbox *Sandbox     `json:"sandbox,omitempty"`
	Reason  quota.Reason `json:"reason,omitempty"`
	Reclaim quota.Scope  `json:"reclaim,omitempty"` // scope a victim may come from
	Err     string       `json:"err,omitempty"`
	Dropped []string     `json:"dropped,omitempty"` // reconcile: sandboxes the worker must drop
	// Warm tells the caller that an idle sandbox of the very function and
	// version asking exists: it must take the warm path, not a new sandbox.
	Warm bool `json:"warm,omitempty"`
	// Token is placement's signature over the grant (GrantToken), checked
	// by the worker before it creates the sandbox.
	Token string `json:"token,omitempty"`
}

// Request bodies placement commits to its log as they are (after setting
// the fields the leader owns).

// DeleteFunction deletes a function (OpDeleteFunction).
type DeleteFunction struct {
	Account string `json:"account"`
	Name    string `json:"name"`
	// Qualifier, when a version number, deletes only that version.
	Qualifier string `json:"qualifier,omitempty"`
}

// SetAccountLimit sets an account's concurrency limit (OpSetLimit).
type SetAccountLimit struct {
	Account string `json:"account"`
	Limit   int    `json:"limit"`
}

// SetReserved sets or deletes a function's reserved concurrency (OpSetReserved).
type SetReserved struct {
	Account  string `json:"account"`
	Name     string `json:"name"`
	Reserved *int   `json:"reserved"` // nil deletes the reservation
}

// CreateSandbox asks for one more sandbox. ID is chosen by the requester so
// that a retried request is applied once. Release lists idle sandboxes a
// worker has already retired to make room (they are released first,
// whatever the outcome).
type CreateSandbox struct {
	ID       string   `json:"id"`
	Account  string   `json:"account"`
	Function string   `json:"function"`
	Version  string   `json:"version"`
	Now      int64    `json:"now"` // leader's Unix ns, for the scaling-rate bucket
	Release  []string `json:"release,omitempty"`
	// Requester is the gateway that asked, taken by the leader from the
	// subject the request came on (never from a caller's body).
	Requester string `json:"requester,omitempty"`
	// Provisioned asks for a pre-warmed provisioned-concurrency sandbox;
	// only the leader's provisioner sets it.
	Provisioned bool `json:"provisioned,omitempty"`
	// Avoid lists workers the leader suspects (unreachable, silent): the
	// grant goes elsewhere when another worker has room. It is part of the
	// command, so every replica picks the same worker.
	Avoid []string `json:"avoid,omitempty"`
	// Deadline is when the caller stops waiting for the answer, on the
	// leader's clock (from Request.BudgetNs); zero: no deadline. It is not
	// part of the replicated command.
	Deadline time.Time `json:"-"`
}

// ReconcileWorker carries the sandboxes a worker actually holds. Sandboxes the
// ledger places on it that it does not hold and that are older than Grace are
// released (their grant was never used); sandboxes it holds that the ledger
// does not know are returned for the worker to drop.
type ReconcileWorker struct {
	Worker      string   `json:"worker"`
	Incarnation uint64   `json:"incarnation,omitempty"`
	Present     []string `json:"present"`
	Now         int64    `json:"now"`
	GraceNs     int64    `json:"grace_ns"`
}

// UpdateFunction changes $LATEST (OpUpdateFunction): its code, or any of
// its configuration fields (nil: unchanged). IfRevision, when set, must be
// the function's current Revision (RevisionId), or nothing changes.
type UpdateFunction struct {
	Account     string             `json:"account"`
	Name        string             `json:"name"`
	IfRevision  uint64             `json:"if_revision,omitempty"`
	CodeSha256  string             `json:"code_sha256,omitempty"`
	CodeSize    int64              `json:"code_size,omitempty"`
	Runtime     *string            `json:"runtime,omitempty"`
	Handler     *string            `json:"handler,omitempty"`
	MemoryMB    *int               `json:"memory_mb,omitempty"`
	TimeoutMs   *int64             `json:"timeout_ms,omitempty"`
	Environment *map[string]string `json:"environment,omitempty"`
	Description *string            `json:"description,omitempty"`
	Synthetic   json.RawMessage    `json:"synthetic,omitempty"`
	ModifiedNs  int64              `json:"modified_ns"`
}

// PublishVersion publishes $LATEST as a new version (OpPublishVersion),
// unless the last version has the same code and configuration, which is
// then returned. IfCodeSha256 and IfRevision are Lambda's preconditions.
type PublishVersion struct {
	Account      string `json:"account"`
	Name         string `json:"name"`
	IfRevision   uint64 `json:"if_revision,omitempty"`
	IfCodeSha256 string `json:"if_code_sha256,omitempty"`
	Description  string `json:"description,omitempty"`
	ModifiedNs   int64  `json:"modified_ns"`
}

// PutAlias creates (Create) or updates an alias (OpPutAlias). On update,
// empty FunctionVersion keeps the version, nil Weights keep the routing
// (an empty map removes it), nil Description keeps it.
type PutAlias struct {
	Account         string              `json:"account"`
	Function        string              `json:"function"`
	Name            string              `json:"name"`
	Create          bool                `json:"create,omitempty"`
	FunctionVersion string              `json:"function_version,omitempty"`
	Weights         *map[string]float64 `json:"weights,omitempty"`
	Description     *string             `json:"description,omitempty"`
	IfRevision      uint64              `json:"if_revision,omitempty"`
}

// DeleteAlias deletes an alias (OpDeleteAlias).
type DeleteAlias struct {
	Account  string `json:"account"`
	Function string `json:"function"`
	Name     string `json:"name"`
}

// SetProvisioned sets (Requested non-nil) or deletes a provisioned
// concurrency config (OpSetProvisioned).
type SetProvisioned struct {
	Account    string `json:"account"`
	Function   string `json:"function"`
	Qualifier  string `json:"qualifier"`
	Requested  *int   `json:"requested"`
	ModifiedNs int64  `json:"modified_ns"`
}

// SandboxReady reports pre-warmed provisioned sandboxes: Ready ones
// finished their init; Failed ones did not (Failure says why) and are
// released.
type SandboxReady struct {
	Ready   []string `json:"ready,omitempty"`
	Failed  []string `json:"failed,omitempty"`
	Failure string   `json:"failure,omitempty"`
}

// CreateAccount creates an account with its first access key
// (OpCreateAccount); AddAccessKey adds one (OpAddAccessKey).
type CreateAccount struct {
	ID    string     `json:"id"`
	Limit int        `json:"limit,omitempty"`
	Key   *AccessKey `json:"key,omitempty"`
}

// AddAccessKey adds a key to an existing account.
type AddAccessKey struct {
	Account string    `json:"account"`
	Key     AccessKey `json:"key"`
}

// PutEventConfig sets (Put), merges into (Merge) or deletes (Delete) an
// asynchronous invocation config (OpPutEventConfig).
type PutEventConfig struct {
	Account                string  `json:"account"`
	Function               string  `json:"function"`
	Qualifier              string  `json:"qualifier"`
	Merge                  bool    `json:"merge,omitempty"`
	Delete                 bool    `json:"delete,omitempty"`
	MaximumRetryAttempts   *int    `json:"maximum_retry_attempts,omitempty"`
	MaximumEventAgeSeconds *int    `json:"maximum_event_age_seconds,omitempty"`
	OnSuccess              *string `json:"on_success,omitempty"`
	OnFailure              *string `json:"on_failure,omitempty"`
	ModifiedNs             int64   `json:"modified_ns"`
}

// SetFunctionOptions sets or clears a function's platform idempotency and
// injected fault (OpSetFunctionOptions). Each nil field is left as it is;
// Clear* removes it.
type SetFunctionOptions struct {
	Account          string             `json:"account"`
	Function         string             `json:"function"`
	Idempotency      *IdempotencyConfig `json:"idempotency,omitempty"`
	ClearIdempotency bool               `json:"clear_idempotency,omitempty"`
	Fault            *FaultConfig       `json:"fault,omitempty"`
	ClearFault       bool               `json:"clear_fault,omitempty"`
}
