package wire

import "strings"

// Subjects of the placement service.
const (
	// SubjectLeader is subscribed by the Raft leader only, so a request
	// reaches the leader or gets NATS "no responders" at once: the fast,
	// distinct failure when there is no quorum (ErrNoLeader).
	SubjectLeader = "cs.placement.leader"
	// SubjectRead is served by every placement node (queue group
	// QueueRead): reads from local, possibly stale, state keep working
	// without a leader.
	SubjectRead = "cs.placement.read"
	// SubjectEvents carries change notices (Event) published by the leader.
	SubjectEvents = "cs.placement.events"
	// SubjectNodeRead + "." + id (NodeReadSubject) is one node's own read
	// (no queue group), for comparing replicas.
	SubjectNodeRead = "cs.placement.node"
)

// Queue groups. Every subscriber of a subject must use the same group, or
// a request is delivered once per group instead of once.
const (
	QueueRead = "placement" // SubjectRead
	QueueWarm = "warm"      // WarmSubject
)

// NodeReadSubject is placement node id's own read subject.
func NodeReadSubject(id string) string { return SubjectNodeRead + "." + id }

// Per-node request subjects. A node's identity is the subject it publishes
// on, and NATS permissions (internal/natsutil) let a worker publish only on
// its own WorkerOpSubject and a gateway only on its own GatewayOpSubject, so
// placement takes the caller's id from the subject, never from the body.
// The leader subscribes SubjectWorkerOps and SubjectGatewayOps while it
// leads.
const (
	SubjectWorkerOps  = "cs.placement.worker.*.*"
	SubjectGatewayOps = "cs.placement.gateway.*.*"
)

// WorkerOpSubject is where worker id sends op (OpRelease, OpReconcile,
// OpRenew, OpIdle).
func WorkerOpSubject(id, op string) string { return "cs.placement.worker." + id + "." + op }

// GatewayOpSubject is where gateway id sends op (OpCreateSandbox,
// OpCancel, OpSuspect, OpSnapshot).
func GatewayOpSubject(id, op string) string { return "cs.placement.gateway." + id + "." + op }

// ParseWorkerOpSubject is the inverse of WorkerOpSubject; ok is false for
// any other subject.
func ParseWorkerOpSubject(subj string) (id, op string, ok bool) {
	return parseOpSubject(subj, "worker")
}

// ParseGatewayOpSubject is the inverse of GatewayOpSubject; ok is false
// for any other subject.
func ParseGatewayOpSubject(subj string) (id, op string, ok bool) {
	return parseOpSubject(subj, "gateway")
}

// parseOpSubject splits "cs.placement.<kind>.<id>.<op>".
func parseOpSubject(subj, kind string) (id, op string, ok bool) {
	p := strings.Split(subj, ".")
	if len(p) != 5 || p[0] != "cs" || p[1] != "placement" || p[2] != kind || p[3] == "" || p[4] == "" {
		return "", "", false
	}
	return p[3], p[4], true
}

// Ops of a Request: the Op field on SubjectLeader and SubjectRead, the
// last subject token on WorkerOpSubject and GatewayOpSubject.
const (
	OpCreateFunction = "create_function"
	OpDeleteFunction = "delete_function"
	OpSetLimit       = "set_limit"
	OpSetReserved    = "set_reserved"
	OpCreateSandbox  = "create_sandbox"
	OpRelease        = "release"
	OpReconcile      = "reconcile"
	OpSuspect        = "suspect"  // a caller could not reach a worker
	OpSnapshot       = "snapshot" // read
	OpRenew          = "renew"    // a worker renews its lease (WorkerOpSubject)
	OpCancel         = "cancel"   // a gateway gives up on its own grant (GatewayOpSubject)
	OpIdle           = "idle"     // a worker's idle report (WorkerOpSubject, no reply)

	OpUpdateFunction = "update_function"
	OpPublishVersion = "publish_version"
	OpPutAlias       = "put_alias"
	OpDeleteAlias    = "delete_alias"
	OpSetProvisioned = "set_provisioned"
	OpCreateAccount  = "create_account"
	OpAddAccessKey   = "add_access_key"
	OpPutEventConfig = "put_event_config"
	OpSetOptions     = "set_function_options"
)

// WorkerSubject is where others ask worker something: op is one of the
// Worker* ops below.
func WorkerSubject(worker, op string) string { return "cs.worker." + worker + "." + op }

// Ops of WorkerSubject.
const (
	WorkerInvoke = "invoke" // gateway: a cold invoke on a granted sandbox (headers below)
	WorkerRetire = "retire" // placement: RetireRequest, answered with RetireAnswer
	WorkerDrop   = "drop"   // placement: DropRequest, answered with RetireAnswer
	WorkerStats  = "stats"  // gateway (status page): empty request, answered with Stats
	// WorkerPrewarm: placement's provisioner creates a granted
	// provisioned sandbox and runs its init (headers as a cold invoke, no
	// payload), answered when the sandbox is ready or failed.
	WorkerPrewarm = "prewarm"
)

// InvokeSubject addresses a worker directly (cold starts on a granted
// sandbox).
func InvokeSubject(worker string) string { return WorkerSubject(worker, WorkerInvoke) }

// WarmSubject is the subject a worker subscribes to (queue group
// QueueWarm) while it holds an idle sandbox of that function version, so a
// gateway's request reaches an idle sandbox anywhere in the cluster, or
// gets "no responders" when there is none. Account and function names are
// single subject tokens already (the gateway validates them); the version
// is escaped, "$LATEST" becoming "LATEST".
func WarmSubject(account, function, version string) string {
	return "cs.warm." + account + "." + function + "." + token(version)
}

// SubjectRecords carries finished-invocation records, as batches of
// newline-separated api.Record JSON (SplitRecords), from workers and from
// gateways (the invocations they throttle).
const SubjectRecords = "cs.records"

var tokenReplacer = strings.NewReplacer("$", "", ".", "_", "*", "_", ">", "_")

// token makes a version safe as a subject token; "$LATEST" is the common
// case.
func token(v string) string {
	if v == "$LATEST" {
		return "LATEST"
	}
	if !strings.ContainsAny(v, "$.*>") {
		return v
	}
	return tokenReplacer.Replace(v)
}
