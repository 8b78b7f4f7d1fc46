package placement

import "github.com/coldstart-dev/coldstart/wire"

// The ledger's values that NATS messages carry are defined in wire, so
// that gateways and workers read them without importing placement. These
// aliases are deliberate: the ledger, its commands and its tests name its
// own state, and the Raft log's format is these types' JSON. A change to
// one of them is a change to both the log and the wire protocol; the log
// rules are in command.go, the wire rules in wire's package doc.
type (
	Function = wire.Function
	Sandbox  = wire.Sandbox
	Worker   = wire.Worker
	Account  = wire.Account
	Grant    = wire.Grant

	FunctionVersion   = wire.FunctionVersion
	Alias             = wire.Alias
	ProvisionedConfig = wire.ProvisionedConfig
	AccessKey         = wire.AccessKey
	EventInvokeConfig = wire.EventInvokeConfig
	IdempotencyConfig = wire.IdempotencyConfig
	FaultConfig       = wire.FaultConfig

	// Bodies of CmdDeleteFunction, CmdSetAccountLimit, CmdSetReserved,
	// CmdCreateSandbox and CmdReconcileWorker: the request bodies, as
	// received, with the fields the leader owns set.
	DeleteFunction     = wire.DeleteFunction
	SetAccountLimit    = wire.SetAccountLimit
	SetReserved        = wire.SetReserved
	CreateSandbox      = wire.CreateSandbox
	ReconcileWorker    = wire.ReconcileWorker
	UpdateFunction     = wire.UpdateFunction
	PublishVersion     = wire.PublishVersion
	PutAlias           = wire.PutAlias
	DeleteAlias        = wire.DeleteAlias
	SetProvisioned     = wire.SetProvisioned
	SandboxReady       = wire.SandboxReady
	CreateAccount      = wire.CreateAccount
	AddAccessKey       = wire.AddAccessKey
	PutEventConfig     = wire.PutEventConfig
	SetFunctionOptions = wire.SetFunctionOptions
)
