package worker

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/worker/pool"
	"github.com/coldstart-dev/coldstart/worker/synthetic"
)

// Headers of the invoke protocol between gateways and workers. The payload
// travels as the NATS message body, untouched.
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

	HdrStatus    = "Cs-Status" // reply: ok | busy | error
	HdrFuncError = "Cs-Ferr"   // reply: function error kind (Unhandled)
	HdrCold      = "Cs-Cold"
	HdrInitMs    = "Cs-Init"
	HdrDurMs     = "Cs-Dur"
	HdrBilledMs  = "Cs-Billed"
	HdrWorker    = "Cs-Worker"
	HdrError     = "Cs-Err" // reply with status error: platform error message
	HdrErrorType = "Cs-Etype"
)

// Reply statuses.
const (
	StatusOK    = "ok"
	StatusBusy  = "busy"
	StatusError = "error"
)

// SubjectRecords carries finished-invocation records, as batches of
// newline-separated api.Record JSON (see SplitRecords).
const SubjectRecords = "cs.records"

const queueWarm = "warm"

// WarmSubject is the subject a worker subscribes to while it holds an idle
// sandbox of k, so a gateway's request reaches an idle sandbox anywhere in
// the cluster, or gets "no responders" when there is none.
func WarmSubject(k pool.Key) string {
	return "cs.warm." + k.Account + "." + k.Function + "." + token(k.Version)
}

// InvokeSubject addresses a worker directly (cold starts on a granted sandbox).
func InvokeSubject(worker string) string { return "cs.worker." + worker + ".invoke" }

var tokenReplacer = strings.NewReplacer("$", "", ".", "_", "*", "_", ">", "_")

// token makes a version safe as a subject token; "$LATEST" is the common case.
func token(v string) string {
	if v == "$LATEST" {
		return "LATEST"
	}
	if !strings.ContainsAny(v, "$.*>") {
		return v
	}
	return tokenReplacer.Replace(v)
}

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
}

// EncodeSpec renders a spec for HdrSpec.
func EncodeSpec(s Spec) string {
	b, _ := json.Marshal(s)
	return string(b)
}
