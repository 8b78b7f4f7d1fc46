package natsutil

import (
	"crypto/hmac"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/secret"
	"github.com/coldstart-dev/coldstart/wire"
)

// NATS roles. The three node roles are membership's; RoleTool is a
// read-only observer of invocation records (internal/testcluster's
// Recorder, an operator's tap). The CLI talks to gateways over HTTP only
// and needs no NATS identity.
const (
	RolePlacement = membership.RolePlacement
	RoleGateway   = membership.RoleGateway
	RoleWorker    = membership.RoleWorker
	RoleTool      = "tool"
)

// responseWindow bounds how long a node may answer a request it received:
// a warm or cold invoke answers when the handler ends, after at most the
// 900 s Lambda timeout plus the cold start.
const responseWindow = 20 * time.Minute

// UserName is the NATS user of node id of role: "<role>.<id>".
func UserName(role, id string) string { return role + "." + id }

// Password is the NATS password of user: hex(HMAC-SHA256(secret, user)).
// The server recomputes it from the secret, so it keeps no user list, and
// one node's password says nothing about another's.
func Password(clusterSecret []byte, user string) string {
	return hex.EncodeToString(secret.DeriveKey(clusterSecret, user))
}

// InboxPrefix is the reply-inbox prefix of a node: "_INBOX.<role>_<id>". A
// node may subscribe only below its own, so it cannot read replies meant
// for another node.
func InboxPrefix(role, id string) string { return "_INBOX." + role + "_" + id }

// ValidID says whether id can name a node on an authenticating server: it
// must be one subject token (no '.', '*', '>' or white space), or a node
// could widen its own subject grants into another node's.
func ValidID(id string) error {
	if id == "" {
		return fmt.Errorf("node id is empty")
	}
	if i := strings.IndexFunc(id, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f
	}); i >= 0 {
		return fmt.Errorf("node id %q: %q is not allowed (it must be one NATS subject token)", id, id[i])
	}
	return nil
}

// Permissions is the subject table of node id of role, or nil for an
// unknown role or an invalid id. It is the one place the cluster's trust
// boundary is written down; each entry names what needs it. Plain
// subjects are wire's constants; patterns with wildcards are spelled out,
// and the tests check them against wire's subject functions on a real
// server.
func Permissions(role, id string) *server.Permissions {
	if ValidID(id) != nil {
		return nil
	}
	inbox := InboxPrefix(role, id) + ".>" // replies to this node's requests
	switch role {
	case RolePlacement:
		// Placement is the control plane: it serves cs.placement.leader,
		// .read, .node.<id>, .worker.*.* and .gateway.*.*, publishes
		// cs.placement.events and asks workers on cs.worker.<id>.<op>
		// (retire, drop). The ledger holds code digests only, never the
		// bundles, and placement reads no logs: it has no $JS grant.
		return &server.Permissions{
			Publish:   allow("cs.>"),
			Subscribe: allow("cs.>", inbox),
			Response:  responses(), // answers to every request it serves
		}
	case RoleGateway:
		pub := []string{
			wire.SubjectLeader,                              // placement.Client.Do, ReadLeader: writes, create_sandbox, suspect, fresh snapshots
			wire.SubjectRead,                                // placement.Client.Read: snapshots from any placement node
			wire.SubjectNodeRead + ".*",                     // placement.Client.ReadNode: each node's own snapshot (status)
			"cs.placement.gateway." + id + ".>",             // wire.GatewayOpSubject: its own ops (create_sandbox, cancel, suspect)
			"cs.warm.>",                                     // wire.WarmSubject: warm invokes, any idle sandbox
			"cs.worker.*.invoke",                            // wire.InvokeSubject: cold invokes on a sandbox placement granted
			"cs.worker.*.stats",                             // wire.WorkerStats: every worker's stats (status page)
			wire.SubjectRecords, wire.SubjectRecords + ".>", // records of the throttled invocations it answers
		}
		pub = append(pub, codeRead...)
		pub = append(pub, codeWrite...)
		pub = append(pub, logsAdmin...)
		pub = append(pub, logsRead...)
		pub = append(pub, recordsAdmin...)
		pub = append(pub, recordsRead...)
		pub = append(pub, asyncGateway...)
		return &server.Permissions{
			Publish: allow(pub...),
			Subscribe: allow(
				wire.SubjectEvents,                            // cache invalidation
				"cs.timeline",                                 // gateway.SubjectTimeline: fault and chaos notices for the timeline
				wire.SubjectRecords, wire.SubjectRecords+".>", // /coldstart/v1/records streams live ones to the CLI
				inbox,
			),
		}
	case RoleWorker:
		pub := []string{
			"cs.placement.worker." + id + ".>",              // wire.WorkerOpSubject: renew, release, reconcile, idle
			wire.SubjectRecords, wire.SubjectRecords + ".>", // finished invocations
			logSubjects, // its sandboxes' log lines (logstream.Publisher), captured by the logs stream
		}
		pub = append(pub, codeRead...) // code bundles it runs (codestore.OpenReader, Get): read only
		return &server.Permissions{
			Publish: allow(pub...),
			Subscribe: allow(
				"cs.warm.>",          // wire.WarmSubject: its idle sandboxes (queue group)
				"cs.worker."+id+".>", // wire.WorkerSubject: invoke, retire, drop, stats
				wire.SubjectEvents,   // placement's change notices
				inbox,
			),
			Response: responses(), // answers to invokes and placement's and gateways' queries
		}
	case RoleTool:
		// JetStream API requests are publishes: the tool may make the
		// logs and records streams' read requests and publish nothing
		// else.
		return &server.Permissions{
			Publish: allow(slices.Concat(logsRead, recordsRead)...),
			// cs.dest.>: the destination records of asynchronous
			// invocations sent to nats: destinations, for the user's
			// consumers.
			Subscribe: allow(wire.SubjectRecords, wire.SubjectRecords+".>", "cs.dest.>", inbox),
		}
	}
	return nil
}

// JetStream grants. Each JetStream API call is a request on a
// $JS.API subject naming the stream, so a grant names the stream (and,
// for consumers, the filter subject) rather than $JS.API.>. The lists are
// what nats.go v1.55 sends for each call codestore and logstream make;
// the replies come on the caller's own inbox.
const (
	codeStream  = "OBJ_cs-code" // codestore.StreamName
	codeSubject = "$O.cs-code." // the bucket's chunk (C) and meta (M) subjects
	logsStream  = "CS_LOGS"     // logstream.Stream
	logSubjects = "cs.logs.>"   // logstream.SubjectFor
	// recordsStream captures wire.SubjectRecords (recordstream.Stream):
	// publishers keep their core-NATS grant and need none here.
	recordsStream = "CS_RECORDS"
)

var (
	// codeRead reads bundles (codestore.OpenReader and Store.Get).
	codeRead = []string{
		"$JS.API.STREAM.INFO." + codeStream,                                   // bind to the bucket; count an object's chunks
		"$JS.API.DIRECT.GET." + codeStream + "." + codeSubject + "M.>",        // an object's record (last message on its meta subject)
		"$JS.API.CONSUMER.CREATE." + codeStream + ".*." + codeSubject + "C.*", // the ordered push consumer on one object's chunks
		"$JS.API.CONSUMER.DELETE." + codeStream + ".*",                        // ... deleted when the object is read
		"$JS.FC." + codeStream + ".>", "$JS.FC.*.*." + codeStream + ".>",      // its flow-control replies (v1 and v2 ack formats)
	}
	// codeWrite creates the bucket and stores bundles (codestore.Open,
	// Store.Put). Workers lack it: they cannot put, delete or purge.
	codeWrite = []string{
		"$JS.API.STREAM.CREATE." + codeStream, // Open: the bucket if missing
		"$JS.API.STREAM.PURGE." + codeStream,  // Put over a broken object purges its old chunks
		codeSubject + ">",                     // chunk and record messages
	}
	// logsAdmin creates the logs stream and sets its retention
	// (logstream.Ensure).
	logsAdmin = []string{
		"$JS.API.STREAM.CREATE." + logsStream,
		"$JS.API.STREAM.UPDATE." + logsStream,
	}
	// logsRead reads one function's lines (logstream.Read).
	logsRead = []string{
		"$JS.API.STREAM.INFO." + logsStream,                           // the stream exists
		"$JS.API.CONSUMER.CREATE." + logsStream + ".*." + logSubjects, // an ordered consumer filtered on cs.logs.<acct>.<fn>
		"$JS.API.CONSUMER.MSG.NEXT." + logsStream + ".*",              // its pulls
		"$JS.API.CONSUMER.DELETE." + logsStream + ".*",                // ... deleted when done, and on its resets
	}
	// recordsAdmin creates the records stream and sets its retention
	// (recordstream.Ensure).
	recordsAdmin = []string{
		"$JS.API.STREAM.CREATE." + recordsStream,
		"$JS.API.STREAM.UPDATE." + recordsStream,
	}
	// recordsRead reads the kept records (recordstream.Read). Its
	// consumer has no filter subject (the stream holds nothing else), so
	// the create request names no subject: a filtered create is refused.
	recordsRead = []string{
		"$JS.API.STREAM.INFO." + recordsStream,              // the stream exists
		"$JS.API.CONSUMER.CREATE." + recordsStream + ".*",   // an ordered consumer over the whole stream
		"$JS.API.CONSUMER.MSG.NEXT." + recordsStream + ".*", // its pulls
		"$JS.API.CONSUMER.DELETE." + recordsStream + ".*",   // ... deleted when done, and on its resets
	}
)

// asyncGateway is what a gateway's asynchronous invocations need: storing
// events (a JetStream publish on cs.events.<acct>.<fn>), dispatching them
// through the shared durable consumer (fetch, ack, nak with delay,
// in-progress), the dead-letter stream (publish, list, delete on redrive),
// the per-event attempt state (KV bucket cs-async), and destination
// records on cs.dest.>. Only the gateway's own streams are named.
var asyncGateway = []string{
	"cs.events.>", "cs.dlq.>", "cs.dest.>",
	"$JS.API.INFO",
	"$JS.API.STREAM.*.CS_EVENTS", "$JS.API.STREAM.*.CS_DLQ", "$JS.API.STREAM.*.KV_cs-async",
	"$JS.API.STREAM.MSG.*.CS_DLQ", "$JS.API.STREAM.MSG.*.KV_cs-async",
	"$JS.API.CONSUMER.*.CS_EVENTS", "$JS.API.CONSUMER.*.CS_EVENTS.>", "$JS.API.CONSUMER.MSG.NEXT.CS_EVENTS.*",
	"$JS.API.CONSUMER.*.CS_DLQ", "$JS.API.CONSUMER.*.CS_DLQ.>", "$JS.API.CONSUMER.MSG.NEXT.CS_DLQ.*",
	"$JS.API.DIRECT.GET.KV_cs-async.>", "$JS.API.DIRECT.GET.CS_DLQ.>",
	"$JS.ACK.CS_EVENTS.>", "$JS.ACK.CS_DLQ.>",
	"$KV.cs-async.>",
}

func allow(subjects ...string) *server.SubjectPermission {
	// A copy: callers pass the shared grant lists.
	return &server.SubjectPermission{Allow: append([]string(nil), subjects...)}
}

// responses lets a node answer each request delivered to it once, within
// responseWindow, whatever the reply subject.
func responses() *server.ResponsePermission {
	return &server.ResponsePermission{MaxMsgs: 1, Expires: responseWindow}
}

// nodeAuth is the server's authentication hook: a client is admitted as
// user "<role>.<id>" when its password is Password(secret, user), and gets
// Permissions(role, id).
type nodeAuth struct{ secret []byte }

func (a nodeAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	role, id, ok := strings.Cut(o.Username, ".")
	if !ok {
		return false
	}
	perms := Permissions(role, id)
	if perms == nil {
		return false
	}
	if !hmac.Equal([]byte(o.Password), []byte(Password(a.secret, o.Username))) {
		return false
	}
	c.RegisterUser(&server.User{Username: o.Username, Permissions: perms})
	return true
}
