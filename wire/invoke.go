package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/worker/synthetic"
)

// Headers of the invoke protocol between gateways and workers, on
// WarmSubject and InvokeSubject. The payload travels as the NATS message
// body, untouched.
const (
	HdrRequestID = "Cs-Req"
	HdrAccount   = "Cs-Acct"
	HdrFunction  = "Cs-Fn"
	HdrVersion   = "Cs-Ver"
	HdrSpec      = "Cs-Spec"    // cold invoke: the function's Spec (JSON)
	HdrRev       = "Cs-Rev"     // warm invoke: the function's Spec.Revision
	HdrSandbox   = "Cs-Sandbox" // cold invoke: the granted sandbox id
	HdrGranted   = "Cs-Granted" // cold invoke: Unix ns of the grant
	HdrLogTail   = "Cs-Log"     // request: "tail"; reply: base64 log tail
	// HdrClientContext carries X-Amz-Client-Context, decoded (JSON).
	HdrClientContext = "Cs-Ctx"
	// HdrAttempt and HdrTrigger (request): an asynchronous event's attempt
	// number and trigger (api.Trigger*), for the record.
	HdrAttempt = "Cs-Attempt"
	HdrTrigger = "Cs-Trigger"
	// HdrFault (request): a fault the gateway injects into this
	// invocation (wire.Fault*), carried out by the worker.
	HdrFault = "Cs-Fault"
	// HdrIdemConfig (request): the function's platform idempotency,
	// "KEY;TTL_MS" (absent: off). It travels with every invocation, warm
	// ones included, so a change applies from the next one.
	HdrIdemConfig = "Cs-Idemcfg"
	// HdrIdemKey (request): the value of the header a function's
	// idempotency key names (header:NAME).
	HdrIdemKey = "Cs-Idem"
	// HdrReplayed (reply): "true" when the response is the one stored for
	// an earlier invocation with the same idempotency key (the handler did
	// not run).
	HdrReplayed = "Cs-Replayed"
	// HdrProvisioned (reply): "true" when a provisioned sandbox served it.
	HdrProvisioned = "Cs-Prov"

	// Cold invoke: placement's grant.
	HdrWorkerInc  = "Cs-Winc"  // the worker incarnation the grant was placed on
	HdrGrantToken = "Cs-Grant" // GrantToken over the grant

	HdrStatus    = "Cs-Status" // reply: StatusOK | StatusBusy | StatusError
	HdrFuncError = "Cs-Ferr"   // reply: function error kind (Unhandled)
	HdrCold      = "Cs-Cold"
	HdrInitMs    = "Cs-Init"
	HdrDurMs     = "Cs-Dur"
	HdrBilledMs  = "Cs-Billed"
	HdrWorker    = "Cs-Worker"
	HdrError     = "Cs-Err" // reply with status error: platform error message
	HdrErrorType = "Cs-Etype"
)

// Reply statuses (HdrStatus).
const (
	StatusOK = "ok"
	// StatusBusy: the worker started nothing (no idle sandbox left, or no
	// lease); the gateway tries elsewhere.
	StatusBusy  = "busy"
	StatusError = "error"
)

// Spec is what a worker needs to know about a function to run it; the
// gateway sends it with every cold start, so workers hold no control-plane
// state of their own.
type Spec struct {
	// Revision identifies the function incarnation (placement's create
	// index). A sandbox keeps the Spec it was created with; a warm request
	// names the revision it wants, so a sandbox of a deleted-and-recreated
	// function never serves the new one, and warm requests need not carry
	// the Spec at all.
	Revision  uint64            `json:"rev"`
	Runtime   string            `json:"runtime"`
	MemoryMB  int               `json:"memory_mb"`
	TimeoutMs int64             `json:"timeout_ms"`
	KeepAlive time.Duration     `json:"keep_alive,omitempty"` // 0: the worker's default
	Profile   synthetic.Profile `json:"profile"`
	// A real function (Synthetic false): its code bundle by digest, its
	// handler and environment.
	Version     string            `json:"version,omitempty"`
	Handler     string            `json:"handler,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	CodeSha256  string            `json:"code_sha256,omitempty"`
	// Synthetic marks a function run by the synthetic runtime (its
	// Profile), not by a process.
	Synthetic bool `json:"synthetic,omitempty"`
}

// SpecFor is the Spec of version ("$LATEST" or a published number) of f,
// or an error when f has no such version or a bad synthetic config. A
// function without code runs synthetic (the runtime name picks the
// profile); one with code runs its code.
func SpecFor(f *Function, version string) (Spec, error) {
	rt, mem, tmo, handler, env, code, syn, rev := f.Runtime, f.MemoryMB, f.TimeoutMs, f.Handler, f.Environment, f.CodeSha256, f.Synthetic, f.Rev()
	if version != "" && version != "$LATEST" {
		v := f.Version(version)
		if v == nil {
			return Spec{}, fmt.Errorf("function %s has no version %s", f.Name, version)
		}
		rt, mem, tmo, handler, env, code, syn, rev = v.Runtime, v.MemoryMB, v.TimeoutMs, v.Handler, v.Environment, v.CodeSha256, v.Synthetic, v.Created
	} else {
		version = "$LATEST"
	}
	var cfg api.SyntheticConfig
	if len(syn) > 0 {
		if err := json.Unmarshal(syn, &cfg); err != nil {
			return Spec{}, fmt.Errorf("synthetic config: %w", err)
		}
	}
	prof, keep, err := ProfileOf(rt, cfg)
	if err != nil {
		return Spec{}, err
	}
	return Spec{Revision: rev, Runtime: rt, MemoryMB: mem, TimeoutMs: tmo, KeepAlive: keep, Profile: prof,
		Version: version, Handler: handler, Environment: env, CodeSha256: code, Synthetic: code == ""}, nil
}

// ProfileOf builds a synthetic profile from a function's configuration:
// measured defaults for cfg.Profile (or the runtime name), then whatever the
// user set explicitly.
func ProfileOf(runtime string, cfg api.SyntheticConfig) (synthetic.Profile, time.Duration, error) {
	base := cfg.Profile
	if base == "" {
		base = runtime
	}
	p := synthetic.DefaultProfile(base)
	set := func(dst *synthetic.Dist, s, what string) error {
		if s == "" {
			return nil
		}
		d, err := synthetic.ParseDist(s)
		if err != nil {
			return fmt.Errorf("Coldstart.%s: %w", what, err)
		}
		*dst = d
		return nil
	}
	if cfg.ColdStart != "" {
		d, err := synthetic.ParseDist(cfg.ColdStart)
		if err != nil {
			return p, 0, fmt.Errorf("Coldstart.ColdStart: %w", err)
		}
		if d.Kind == synthetic.Fixed {
			p = p.WithColdStart(d.A)
		} else {
			// A distribution for the whole cold start goes to runtime init;
			// the other phases are zero.
			p.SandboxCreate, p.FunctionInit, p.RuntimeInit = synthetic.FixedDist(0), synthetic.FixedDist(0), d
		}
	}
	for _, s := range []struct {
		dst  *synthetic.Dist
		v, n string
	}{{&p.SandboxCreate, cfg.SandboxCreate, "SandboxCreate"}, {&p.RuntimeInit, cfg.RuntimeInit, "RuntimeInit"}, {&p.FunctionInit, cfg.FunctionInit, "FunctionInit"}, {&p.Duration, cfg.Duration, "Duration"}} {
		if err := set(s.dst, s.v, s.n); err != nil {
			return p, 0, err
		}
	}
	var keep time.Duration
	if cfg.KeepAlive != "" {
		d, err := time.ParseDuration(cfg.KeepAlive)
		if err != nil || d <= 0 {
			return p, 0, fmt.Errorf("Coldstart.KeepAlive: %q is not a positive duration", cfg.KeepAlive)
		}
		keep = d
	}
	return p, keep, nil
}

// EncodeSpec renders a spec for HdrSpec.
func EncodeSpec(s Spec) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// SplitRecords decodes one message on SubjectRecords (newline-separated
// api.Record JSON). Lines that do not decode are skipped: a reader must
// not die on garbage.
func SplitRecords(data []byte) []api.Record {
	var out []api.Record
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		var r api.Record
		if len(line) > 0 && json.Unmarshal(line, &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// EncodeIdemConfig renders a function's platform idempotency for
// HdrIdemConfig; DecodeIdemConfig reads it back (nil: off or garbage).
func EncodeIdemConfig(c *IdempotencyConfig) string {
	return c.Key + ";" + strconv.FormatInt(c.TTLMs, 10)
}

func DecodeIdemConfig(v string) *IdempotencyConfig {
	key, ttl, ok := strings.Cut(v, ";")
	ms, err := strconv.ParseInt(ttl, 10, 64)
	if !ok || err != nil || key == "" || ms <= 0 {
		return nil
	}
	return &IdempotencyConfig{Key: key, TTLMs: ms}
}
