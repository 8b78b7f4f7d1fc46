// Package wire is the protocol the cluster's nodes speak over NATS: every
// subject, queue group, header, status, op name and message body that
// passes between gateways, workers and placement nodes. Each of those
// packages imports wire rather than another node's package, so none needs
// a peer's code to speak to it.
//
// What is written here is the compatibility contract between nodes, which
// in a rolling upgrade run different builds in one cluster: a subject,
// queue group, header, status, op or JSON field name, once released, keeps
// its spelling and its meaning and is never reused for something else; a
// new field is optional (omitempty, its zero value meaning what its
// absence meant before), and a reader ignores what it does not know. A
// change that cannot follow these rules needs a new name (a new op, a new
// subject), with both spoken until every node knows the new one.
//
// Some bodies are also entries of placement's Raft log: Function, Sandbox,
// Worker, Account and Grant, and the request bodies placement commits
// unchanged (DeleteFunction, SetAccountLimit, SetReserved, CreateSandbox,
// ReconcileWorker). They are defined once, here, and placement names them
// through type aliases; a change to one changes both formats, so it must
// also keep old logs replaying (placement/command.go).
//
// The package holds declarations and the grant token, no connection. It
// imports the standard library and leaf packages only: quota (scopes,
// reasons, rates), internal/api (the invocation record on SubjectRecords)
// and worker/synthetic (the profile a Spec carries, whose JSON form is
// synthetic's own: a copy here would be a second definition of it to keep
// in step). The grant token (GrantToken, VerifyGrant) is here because
// placement signs and workers verify it, so both must compute it from one
// definition. The placement client stays in placement (placement.Client):
// it is behaviour over a NATS connection (timeouts, mapping "no
// responders" to ErrNoLeader), and the worker and the gateway hold it
// through their own small interfaces (worker.Placement, gateway.Placer),
// so neither imports placement for it. ErrUnavailable and ErrNoLeader are
// defined here so that such callers can test for them.
package wire
