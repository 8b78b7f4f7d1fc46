package wire

import (
	"bytes"
	"encoding/json"
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
