package placement

import (
	"encoding/json"
	"errors"
	"fmt"
)

// CmdType is the first byte of every Raft log entry. Numbers are explicit and
// never reused: a log written by one release must replay on the next.
type CmdType uint8

const (
	CmdCreateFunction   CmdType = 1
	CmdDeleteFunction   CmdType = 2
	CmdSetAccountLimit  CmdType = 3
	CmdSetReserved      CmdType = 4
	CmdRegisterWorker   CmdType = 5
	CmdWorkerDead       CmdType = 6
	CmdCreateSandbox    CmdType = 7
	CmdReleaseSandboxes CmdType = 8
	CmdReconcileWorker  CmdType = 9
	CmdSetClusterID     CmdType = 10
	CmdUpdateFunction   CmdType = 11
	CmdPublishVersion   CmdType = 12
	CmdPutAlias         CmdType = 13
	CmdDeleteAlias      CmdType = 14
	CmdSetProvisioned   CmdType = 15
	CmdSandboxReady     CmdType = 16
	CmdCreateAccount    CmdType = 17
	CmdAddAccessKey     CmdType = 18
	CmdPutEventConfig   CmdType = 19
	CmdSetOptions       CmdType = 20

	// IgnoreUnknown marks a command that replicas which do not know its type
	// may skip (Nomad's IgnoreUnknownTypeFlag), so new optional commands can
	// roll out across mixed versions.
	IgnoreUnknown CmdType = 0x80
)

// ErrUnknownCommand is returned for a log entry of a type this build does not
// know and that is not marked IgnoreUnknown.
var ErrUnknownCommand = errors.New("unknown placement command")

// Encode frames a command as type byte + JSON body.
func Encode(t CmdType, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(t)}, b...), nil
}

// Decode splits a framed command.
func Decode(buf []byte) (CmdType, []byte, error) {
	if len(buf) == 0 {
		return 0, nil, fmt.Errorf("%w: empty entry", ErrUnknownCommand)
	}
	return CmdType(buf[0]), buf[1:], nil
}

// Command bodies. CmdCreateFunction and CmdRegisterWorker carry a Function
// and a Worker; the bodies a request carries unchanged are defined in wire
// (types.go). These are the log's own.

// WorkerDead releases a worker's sandboxes and forgets it. Incarnation
// (when set) must be the worker's current one: a verdict reached about an
// earlier registration does nothing to a later one.
type WorkerDead struct {
	ID          string `json:"id"`
	Incarnation uint64 `json:"incarnation,omitempty"`
}

// SetClusterID names the cluster; only the first one applied counts.
type SetClusterID struct {
	ID string `json:"id"`
}

// ReleaseSandboxes gives capacity back. An id the ledger does not hold is
// remembered for a minute (by Now, leader-stamped) and a later
// CreateSandbox with that id is refused: a gateway that gave up on a grant
// cancels it this way even if its request is still queued at the leader.
//
// Worker and Gateway are set by the leader from the subject the request came
// on: a worker releases only sandboxes placed on it (and only while it is
// the incarnation that holds them), a gateway only grants it requested.
type ReleaseSandboxes struct {
	IDs         []string `json:"ids"`
	Now         int64    `json:"now,omitempty"`
	Worker      string   `json:"worker,omitempty"`
	Incarnation uint64   `json:"incarnation,omitempty"`
	Gateway     string   `json:"gateway,omitempty"`
}
