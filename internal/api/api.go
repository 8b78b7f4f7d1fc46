// Package api holds the wire types shared by the gateway's HTTP API and its
// clients (the CLI, the load generator, the simulator's --against mode): the
// Lambda shapes coldstart speaks, its own extensions, and the record of one
// finished invocation.
package api

// Headers coldstart adds to an Invoke response so that tools can tell cold
// from warm without scraping logs.
const (
	HeaderRequestID       = "X-Amzn-RequestId"
	HeaderErrorType       = "X-Amzn-ErrorType"
	HeaderFunctionError   = "X-Amz-Function-Error"
	HeaderExecutedVersion = "X-Amz-Executed-Version"
	HeaderLogResult       = "X-Amz-Log-Result"
	HeaderLogType         = "X-Amz-Log-Type"
	HeaderClientContext   = "X-Amz-Client-Context"
	HeaderInvocationType  = "X-Amz-Invocation-Type"

	HeaderCold       = "X-Coldstart-Cold"        // "true" | "false"
	HeaderInitMs     = "X-Coldstart-Init-Ms"     // cold-start duration, ms (float)
	HeaderDurationMs = "X-Coldstart-Duration-Ms" // handler duration, ms (float)
	HeaderBilledMs   = "X-Coldstart-Billed-Ms"   // billed ms (integer)
	HeaderSandbox    = "X-Coldstart-Sandbox"
	HeaderWorker     = "X-Coldstart-Worker"
)

// Paths of the API.
const (
	PathFunctions       = "/2015-03-31/functions"
	PathAccountSettings = "/2016-08-19/account-settings/"
	PathAccountLimit    = "/coldstart/v1/account/limit"
	PathStatus          = "/coldstart/v1/status"
	PathRecords         = "/coldstart/v1/records"
)

// ErrorBody is the JSON body of an invocation or control-plane error. Lambda
// spells the message member "message" on most shapes and "Message" on
// ResourceNotFound and ServiceException; MarshalError picks the right one.
type ErrorBody struct {
	Type    string `json:"Type"`
	Message string `json:"message,omitempty"`
	Msg     string `json:"Message,omitempty"`
	Reason  string `json:"Reason,omitempty"`
}

// Text returns whichever message member is set.
func (e ErrorBody) Text() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Msg
}

// SyntheticConfig is coldstart's extension to CreateFunction for the
// synthetic runtime. Durations are Go duration strings or distributions
// ("80ms", "uniform:50ms:150ms", "normal:100ms:20ms", "lognormal:100ms:0.5").
type SyntheticConfig struct {
	Duration      string `json:"Duration,omitempty"`      // handler duration
	ColdStart     string `json:"ColdStart,omitempty"`     // whole cold start, split over the phases
	SandboxCreate string `json:"SandboxCreate,omitempty"` // phase 1
	RuntimeInit   string `json:"RuntimeInit,omitempty"`   // phase 2
	FunctionInit  string `json:"FunctionInit,omitempty"`  // phase 3
	Profile       string `json:"Profile,omitempty"`       // runtime whose measured defaults to use (python3.12, java21, go, ...)
	KeepAlive     string `json:"KeepAlive,omitempty"`     // keep-alive TTL of idle sandboxes; default: the cluster's
}

// CreateFunctionInput is the CreateFunction request body (the subset used).
type CreateFunctionInput struct {
	FunctionName string           `json:"FunctionName"`
	Runtime      string           `json:"Runtime"` // "synthetic", or a Lambda runtime
	MemorySize   int              `json:"MemorySize,omitempty"`
	Timeout      int              `json:"Timeout,omitempty"` // seconds
	Handler      string           `json:"Handler,omitempty"`
	Description  string           `json:"Description,omitempty"`
	Role         string           `json:"Role,omitempty"`
	Environment  *Environment     `json:"Environment,omitempty"`
	Code         *FunctionCode    `json:"Code,omitempty"`
	Publish      bool             `json:"Publish,omitempty"`
	Coldstart    *SyntheticConfig `json:"Coldstart,omitempty"`
}

// FunctionCode is CreateFunction's Code: the zip, base64 in JSON ([]byte
// decodes it).
type FunctionCode struct {
	ZipFile  []byte `json:"ZipFile,omitempty"`
	S3Bucket string `json:"S3Bucket,omitempty"`
	ImageUri string `json:"ImageUri,omitempty"`
}

// Environment is a function's environment variables.
type Environment struct {
	Variables map[string]string `json:"Variables"`
}

// UpdateFunctionCodeInput is UpdateFunctionCode's body.
type UpdateFunctionCodeInput struct {
	ZipFile    []byte `json:"ZipFile,omitempty"`
	S3Bucket   string `json:"S3Bucket,omitempty"`
	ImageUri   string `json:"ImageUri,omitempty"`
	Publish    bool   `json:"Publish,omitempty"`
	DryRun     bool   `json:"DryRun,omitempty"`
	RevisionId string `json:"RevisionId,omitempty"`
}

// UpdateFunctionConfigurationInput is UpdateFunctionConfiguration's body.
type UpdateFunctionConfigurationInput struct {
	MemorySize  *int             `json:"MemorySize,omitempty"`
	Timeout     *int             `json:"Timeout,omitempty"`
	Handler     *string          `json:"Handler,omitempty"`
	Runtime     *string          `json:"Runtime,omitempty"`
	Description *string          `json:"Description,omitempty"`
	Role        *string          `json:"Role,omitempty"`
	Environment *Environment     `json:"Environment,omitempty"`
	RevisionId  string           `json:"RevisionId,omitempty"`
	Coldstart   *SyntheticConfig `json:"Coldstart,omitempty"`
}

// FunctionConfiguration is Lambda's FunctionConfiguration (the subset used).
type FunctionConfiguration struct {
	FunctionName     string           `json:"FunctionName"`
	FunctionArn      string           `json:"FunctionArn"`
	Runtime          string           `json:"Runtime"`
	Role             string           `json:"Role,omitempty"`
	Handler          string           `json:"Handler,omitempty"`
	CodeSize         int64            `json:"CodeSize"`
	CodeSha256       string           `json:"CodeSha256,omitempty"`
	Description      string           `json:"Description"`
	MemorySize       int              `json:"MemorySize"`
	Timeout          int              `json:"Timeout"`
	Version          string           `json:"Version"`
	LastModified     string           `json:"LastModified"`
	RevisionId       string           `json:"RevisionId,omitempty"`
	State            string           `json:"State"`
	LastUpdateStatus string           `json:"LastUpdateStatus,omitempty"`
	PackageType      string           `json:"PackageType,omitempty"`
	Architectures    []string         `json:"Architectures,omitempty"`
	Environment      *Environment     `json:"Environment,omitempty"`
	Coldstart        *SyntheticConfig `json:"Coldstart,omitempty"`
}

// AliasConfiguration is Lambda's AliasConfiguration.
type AliasConfiguration struct {
	AliasArn        string              `json:"AliasArn"`
	Name            string              `json:"Name"`
	FunctionVersion string              `json:"FunctionVersion"`
	Description     string              `json:"Description"`
	RoutingConfig   *AliasRoutingConfig `json:"RoutingConfig,omitempty"`
	RevisionId      string              `json:"RevisionId"`
}

// AliasRoutingConfig routes a share of an alias's invocations to a second
// version.
type AliasRoutingConfig struct {
	AdditionalVersionWeights map[string]float64 `json:"AdditionalVersionWeights,omitempty"`
}

// AliasInput is the body of CreateAlias and UpdateAlias.
type AliasInput struct {
	Name            string              `json:"Name,omitempty"`
	FunctionVersion string              `json:"FunctionVersion,omitempty"`
	Description     *string             `json:"Description,omitempty"`
	RoutingConfig   *AliasRoutingConfig `json:"RoutingConfig,omitempty"`
	RevisionId      string              `json:"RevisionId,omitempty"`
}

// PublishVersionInput is PublishVersion's body.
type PublishVersionInput struct {
	CodeSha256  string `json:"CodeSha256,omitempty"`
	Description string `json:"Description,omitempty"`
	RevisionId  string `json:"RevisionId,omitempty"`
}

// ProvisionedConcurrencyConfig is Put/GetProvisionedConcurrencyConfig's
// answer (and an item of the list, with FunctionArn).
type ProvisionedConcurrencyConfig struct {
	FunctionArn                              string `json:"FunctionArn,omitempty"`
	RequestedProvisionedConcurrentExecutions int    `json:"RequestedProvisionedConcurrentExecutions"`
	AvailableProvisionedConcurrentExecutions int    `json:"AvailableProvisionedConcurrentExecutions"`
	AllocatedProvisionedConcurrentExecutions int    `json:"AllocatedProvisionedConcurrentExecutions"`
	Status                                   string `json:"Status"`
	StatusReason                             string `json:"StatusReason,omitempty"`
	LastModified                             string `json:"LastModified"`
}

// ProvisionedInput is PutProvisionedConcurrencyConfig's body.
type ProvisionedInput struct {
	ProvisionedConcurrentExecutions int `json:"ProvisionedConcurrentExecutions"`
}

// AccountInfo answers the account admin API (coldstart account ...).
// Secrets appear only in the answer that created them.
type AccountInfo struct {
	Account string    `json:"Account"`
	Limit   int       `json:"Limit"`
	Keys    []KeyInfo `json:"Keys"`
}

// KeyInfo is one access key; Secret only when just created.
type KeyInfo struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey,omitempty"`
	Created         string `json:"Created,omitempty"`
}

// Paths of the account admin API.
const (
	PathAccounts = "/coldstart/v1/accounts"
)

// Concurrency is the body of Put/GetFunctionConcurrency.
type Concurrency struct {
	ReservedConcurrentExecutions *int `json:"ReservedConcurrentExecutions,omitempty"`
}

// GetFunctionOutput is the GetFunction response.
type GetFunctionOutput struct {
	Configuration FunctionConfiguration `json:"Configuration"`
	Concurrency   *Concurrency          `json:"Concurrency,omitempty"`
}

// ListFunctionsOutput is the ListFunctions response.
type ListFunctionsOutput struct {
	Functions  []FunctionConfiguration `json:"Functions"`
	NextMarker string                  `json:"NextMarker,omitempty"`
}

// AccountLimit / AccountUsage / AccountSettings mirror GetAccountSettings.
type AccountLimit struct {
	ConcurrentExecutions           int `json:"ConcurrentExecutions"`
	UnreservedConcurrentExecutions int `json:"UnreservedConcurrentExecutions"`
}
type AccountUsage struct {
	FunctionCount int `json:"FunctionCount"`
}
type AccountSettings struct {
	AccountLimit AccountLimit `json:"AccountLimit"`
	AccountUsage AccountUsage `json:"AccountUsage"`
}

// SetLimitInput is the body of PUT /coldstart/v1/account/limit.
type SetLimitInput struct {
	ConcurrentExecutions int `json:"ConcurrentExecutions"`
}

// Record is one finished invocation, as workers publish it. StartNs/EndNs are
// Unix nanoseconds of the handler's run (after any cold start).
type Record struct {
	RequestID  string `json:"request_id"`
	Account    string `json:"account"`
	Function   string `json:"function"`
	Version    string `json:"version"`
	Sandbox    string `json:"sandbox"`
	Worker     string `json:"worker"`
	ReceivedNs int64  `json:"received_ns"` // when the worker took the request
	// GrantedNs is when placement granted the sandbox of a cold start: the
	// sandbox is held (and counted against the limits) from then on.
	GrantedNs int64 `json:"granted_ns,omitempty"`
	StartNs   int64 `json:"start_ns"`
	EndNs     int64 `json:"end_ns"`
	// ReleasedNs is when the sandbox went back to its pool (after metering
	// and logging): it is held for the invocation until then.
	ReleasedNs int64   `json:"released_ns,omitempty"`
	Cold       bool    `json:"cold"`
	InitMs     float64 `json:"init_ms"`
	DurationMs float64 `json:"duration_ms"`
	BilledMs   int64   `json:"billed_ms"`
	MemoryMB   int     `json:"memory_mb"`
	GBs        float64 `json:"gb_s"`
	Outcome    string  `json:"outcome"` // ok | function_error | timeout | fenced | throttled
	// Reason is the ThrottleReason of a throttled record (published by the
	// gateway that answered the 429; ReceivedNs is when it answered).
	Reason string `json:"reason,omitempty"`
	// Gateway is the gateway that published a throttled record.
	Gateway string `json:"gateway,omitempty"`
	// CodeSha256 is the code the invocation ran ("" for synthetic), and
	// Provisioned whether its sandbox was a provisioned one.
	CodeSha256  string `json:"code_sha256,omitempty"`
	Revision    uint64 `json:"revision,omitempty"`
	Provisioned bool   `json:"provisioned,omitempty"`
	MaxMemoryMB int    `json:"max_memory_mb,omitempty"`
	// Attempt is the 1-based delivery attempt of the request this record
	// ran (0: a record from before attempts were counted, or a throttle).
	Attempt int `json:"attempt,omitempty"`
	// Trigger is what made the invocation happen: one of the Trigger*
	// values ("": unknown, as in records from before it was set).
	Trigger string `json:"trigger,omitempty"`
	// Fault is the kind of fault injected into this invocation ("": none).
	Fault string `json:"fault,omitempty"`
	// Replayed: the platform's idempotency answered with the response
	// stored for an earlier invocation with the same key; the handler did
	// not run.
	Replayed bool `json:"replayed,omitempty"`
}

// Triggers of a Record.
const (
	TriggerSync      = "sync"      // a RequestResponse invoke, answered to its caller
	TriggerEvent     = "event"     // the first attempt of an asynchronous (Event) invoke
	TriggerRetry     = "retry"     // a later attempt of an asynchronous invoke that failed
	TriggerRedrive   = "redrive"   // an asynchronous event delivered again from where it was parked
	TriggerDuplicate = "duplicate" // an asynchronous event delivered more than once, as Lambda may
)

// Outcomes of a Record.
const (
	OutcomeOK      = "ok"
	OutcomeError   = "function_error"
	OutcomeTimeout = "timeout"
	// OutcomeFenced: the invocation was still running when its worker's
	// lease expired; the worker killed it and never delivered its result.
	// EndNs is the lease's expiry, when the platform stopped counting it.
	OutcomeFenced = "fenced"
	// OutcomeThrottled: a 429 answered by a gateway (no sandbox was used).
	OutcomeThrottled = "throttled"
	// OutcomeRejected: the platform's idempotency refused the invocation
	// (a duplicate still in progress, another payload under the key, no
	// Redis): the handler did not run; Reason is the error type.
	OutcomeRejected = "rejected"
	// OutcomeInjected: an injected fault (error-before) failed the
	// invocation before any sandbox ran it.
	OutcomeInjected = "injected"
	// OutcomeAbandoned: placement granted a sandbox for a cold start whose
	// gateway gave up before any invocation ran in it (the grant's answer
	// came too late, or the worker could not take it), and the gateway
	// cancelled it. Nothing ran, yet the grant held a slot of the account
	// from GrantedNs until the cancel: EndNs is when the gateway sent the
	// cancel, ReleasedNs when placement answered that it was released.
	OutcomeAbandoned = "abandoned"
)

// Node is one cluster member in a Status.
type Node struct {
	ID     string `json:"id"`
	Role   string `json:"role"` // placement | gateway | worker
	Addr   string `json:"addr"`
	State  string `json:"state"` // alive | suspect | dead | leader | follower | candidate
	Detail string `json:"detail,omitempty"`
}

// FunctionStatus is one function's line in a Status.
type FunctionStatus struct {
	Account   string `json:"account"`
	Name      string `json:"name"`
	Sandboxes int    `json:"sandboxes"`
	Idle      int    `json:"idle"`
	InFlight  int    `json:"in_flight"`
	Reserved  *int   `json:"reserved,omitempty"`
}

// Replica is one placement node's ledger as it reports it.
type Replica struct {
	ID        string `json:"id"`
	Leader    string `json:"leader"` // the leader it knows
	Term      uint64 `json:"term"`
	Applied   uint64 `json:"applied"`
	Digest    string `json:"digest"`
	ClusterID string `json:"cluster_id,omitempty"`
	Error     string `json:"error,omitempty"` // it did not answer
}

// AccountStatus is one account's line in a Status.
type AccountStatus struct {
	Account   string `json:"account"`
	Limit     int    `json:"limit"`
	Sandboxes int    `json:"sandboxes"`
	InFlight  int    `json:"in_flight"`
}

// Status is GET /coldstart/v1/status.
type Status struct {
	Leader string `json:"leader"`
	Nodes  []Node `json:"nodes"`
	// Replicas is every placement node's own view: replicas that agree
	// report the same digest at the same applied index.
	Replicas  []Replica        `json:"replicas,omitempty"`
	Accounts  []AccountStatus  `json:"accounts"`
	Functions []FunctionStatus `json:"functions"`
	Workers   []WorkerStatus   `json:"workers,omitempty"`
	// Async is the queue of asynchronous invocations.
	Async *AsyncStatus `json:"async,omitempty"`
}

// AsyncStatus is the state of the asynchronous invocation queue.
type AsyncStatus struct {
	Queued      int `json:"queued"`       // waiting for a dispatcher (retries included)
	InFlight    int `json:"in_flight"`    // being invoked
	Redelivered int `json:"redelivered"`  // delivered more than once and not yet done
	DeadLetters int `json:"dead_letters"` // in the dead-letter stream
	// Lambda's async metrics as counted by the gateway that answered
	// (each gateway's are on its /metrics).
	Gateway                     string `json:"gateway,omitempty"`
	Received                    int64  `json:"async_events_received"`
	Dropped                     int64  `json:"async_events_dropped"`
	DeadLetterErrors            int64  `json:"dead_letter_errors"`
	DestinationDeliveryFailures int64  `json:"destination_delivery_failures"`
}

// DeadLetter is one event in the dead-letter stream (coldstart dlq).
type DeadLetter struct {
	RequestID              string `json:"RequestId"`
	Function               string `json:"Function"`
	Qualifier              string `json:"Qualifier,omitempty"`
	Condition              string `json:"Condition"` // RetriesExhausted | EventAgeExceeded
	ErrorCode              int    `json:"ErrorCode"`
	ErrorMessage           string `json:"ErrorMessage"`
	ApproximateInvokeCount int    `json:"ApproximateInvokeCount"`
	EnqueuedNs             int64  `json:"EnqueuedNs"`
	DeadLetteredNs         int64  `json:"DeadLetteredNs"`
	Sequence               uint64 `json:"Sequence"`
	Payload                string `json:"Payload,omitempty"`
}

// FaultInput is the body of PUT /coldstart/v1/functions/{name}/fault
// (coldstart chaos inject): a kind of wire.FaultKinds, hit at Rate (drawn
// from Seed) or at the invocation numbers Nth, for ForSeconds (0: until
// cleared); DelayMs is add-delay's delay.
type FaultInput struct {
	Kind       string  `json:"Kind"`
	Rate       float64 `json:"Rate,omitempty"`
	Seed       int64   `json:"Seed,omitempty"`
	Nth        []int   `json:"Nth,omitempty"`
	ForSeconds float64 `json:"ForSeconds,omitempty"`
	DelayMs    int64   `json:"DelayMs,omitempty"`
}

// IdempotencyInput is the body of PUT
// /coldstart/v1/functions/{name}/idempotency: Key is request-id,
// header:NAME or json:PATH.
type IdempotencyInput struct {
	Key        string  `json:"Key"`
	TTLSeconds float64 `json:"TTLSeconds"`
}

// FunctionOptions answers the options API.
type FunctionOptions struct {
	Fault       any `json:"Fault"`
	Idempotency any `json:"Idempotency"`
}

// PathFunctionOptions prefixes the options API: PathFunctionOptions +
// NAME + "/fault" or "/idempotency".
const PathFunctionOptions = "/coldstart/v1/functions/"

// PathDLQ is the dead-letter API.
const PathDLQ = "/coldstart/v1/dlq"

// WorkerStatus is one worker's line in a Status: its sandboxes, and the
// isolation in force for its process sandboxes.
type WorkerStatus struct {
	ID        string `json:"id"`
	Idle      int    `json:"idle"`
	Busy      int    `json:"busy"`
	Processes int    `json:"processes"`
	Limits    string `json:"limits"`
}
