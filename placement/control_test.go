package placement

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
)

// ctl is a ledger driven one command at a time for the control plane's
// named cases.
type ctl struct {
	t   *testing.T
	l   *Ledger
	idx uint64
}

func newCtl(t *testing.T) *ctl {
	c := &ctl{t: t, l: NewLedger(quota.Rate{Burst: 100, Window: time.Second}, 1000)}
	c.ok(CmdRegisterWorker, Worker{ID: "w1", Capacity: 100})
	c.ok(CmdCreateFunction, Function{Account: "a", Name: "f", Runtime: "provided.al2023", MemoryMB: 128, TimeoutMs: 3000, CodeSha256: "c1"})
	return c
}

func (c *ctl) do(t CmdType, body any) (any, error) {
	b, _ := json.Marshal(body)
	c.idx++
	return c.l.Apply(t, b, c.idx)
}

func (c *ctl) ok(t CmdType, body any) any {
	v, err := c.do(t, body)
	if err != nil {
		c.t.Fatalf("command %d %+v: %v", t, body, err)
	}
	return v
}

func (c *ctl) fails(t CmdType, body any, want error) {
	if _, err := c.do(t, body); !errors.Is(err, want) {
		c.t.Fatalf("command %d %+v: got %v, want %v", t, body, err, want)
	}
}

func ptr[T any](v T) *T { return &v }

func TestPublishVersionsAreImmutableAndNumbered(t *testing.T) {
	c := newCtl(t)
	v1 := c.ok(CmdPublishVersion, PublishVersion{Account: "a", Name: "f"}).(*FunctionVersion)
	again := c.ok(CmdPublishVersion, PublishVersion{Account: "a", Name: "f"}).(*FunctionVersion)
	if v1.Version != 1 || again.Version != 1 {
		t.Fatalf("unchanged code published as %d then %d", v1.Version, again.Version)
	}
	c.ok(CmdUpdateFunction, UpdateFunction{Account: "a", Name: "f", MemoryMB: ptr(256)})
	v2 := c.ok(CmdPublishVersion, PublishVersion{Account: "a", Name: "f"}).(*FunctionVersion)
	if v2.Version != 2 || v2.MemoryMB != 256 {
		t.Fatalf("second version %+v", v2)
	}
	f := c.l.s.Functions["a/f"]
	if f.Version("1").MemoryMB != 128 {
		t.Fatal("version 1 changed with $LATEST")
	}
	// Numbers are never reused after a delete.
	c.ok(CmdDeleteFunction, DeleteFunction{Account: "a", Name: "f", Qualifier: "2"})
	c.ok(CmdUpdateFunction, UpdateFunction{Account: "a", Name: "f", CodeSha256: "c2"})
	if v := c.ok(CmdPublishVersion, PublishVersion{Account: "a", Name: "f"}).(*FunctionVersion); v.Version != 3 {
		t.Fatalf("version after deleting 2 is %d, want 3", v.Version)
	}
	// Preconditions.
	c.fails(CmdPublishVersion, PublishVersion{Account: "a", Name: "f", IfCodeSha256: "other"}, ErrPrecondition)
	c.fails(CmdUpdateFunction, UpdateFunction{Account: "a", Name: "f", IfRevision: 1, MemoryMB: ptr(512)}, ErrPrecondition)
	c.ok(CmdUpdateFunction, UpdateFunction{Account: "a", Name: "f", IfRevision: f.Revision, MemoryMB: ptr(512)})
	c.fails(CmdDeleteFunction, DeleteFunction{Account: "a", Name: "f", Qualifier: "$LATEST"}, quota.ErrInvalidParameter)
}

func TestAliasesRouteOnlyPublishedVersions(t *testing.T) {
	c := newCtl(t)
	c.ok(CmdPublishVersion, PublishVersion{Account: "a", Name: "f"})
	c.ok(CmdUpdateFunction, UpdateFunction{Account: "a", Name: "f", CodeSha256: "c2"})
	c.ok(CmdPublishVersion, PublishVersion{Account: "a", Name: "f"})
	c.fails(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "123", Create: true, FunctionVersion: "1"}, quota.ErrInvalidParameter)
	c.fails(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "live", Create: true, FunctionVersion: "9"}, ErrNotFound)
	c.fails(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "live", Create: true, FunctionVersion: "1", Weights: &map[string]float64{"2": 1.5}}, quota.ErrInvalidParameter)
	c.fails(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "live", Create: true, FunctionVersion: "$LATEST", Weights: &map[string]float64{"2": 0.5}}, quota.ErrInvalidParameter)
	a := c.ok(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "live", Create: true, FunctionVersion: "1", Weights: &map[string]float64{"2": 0.2}}).(*Alias)
	if a.Weights["2"] != 0.2 {
		t.Fatalf("alias %+v", a)
	}
	c.fails(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "live", Create: true, FunctionVersion: "1"}, ErrConflict)
	c.fails(CmdDeleteFunction, DeleteFunction{Account: "a", Name: "f", Qualifier: "2"}, ErrConflict)
	c.fails(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "live", IfRevision: a.Revision + 7, FunctionVersion: "2"}, ErrPrecondition)
	c.ok(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "live", IfRevision: a.Revision, FunctionVersion: "2", Weights: &map[string]float64{}})
	c.ok(CmdDeleteFunction, DeleteFunction{Account: "a", Name: "f", Qualifier: "1"})
	c.ok(CmdDeleteAlias, DeleteAlias{Account: "a", Function: "f", Name: "live"})
	c.fails(CmdDeleteAlias, DeleteAlias{Account: "a", Function: "f", Name: "live"}, ErrNotFound)
}

func TestProvisionedConcurrencyLifecycle(t *testing.T) {
	c := newCtl(t)
	c.fails(CmdSetProvisioned, SetProvisioned{Account: "a", Function: "f", Qualifier: "$LATEST", Requested: ptr(2)}, quota.ErrInvalidParameter)
	c.ok(CmdPublishVersion, PublishVersion{Account: "a", Name: "f"})
	c.ok(CmdSetReserved, SetReserved{Account: "a", Name: "f", Reserved: ptr(3)})
	c.fails(CmdSetProvisioned, SetProvisioned{Account: "a", Function: "f", Qualifier: "1", Requested: ptr(4)}, quota.ErrInvalidParameter)
	c.ok(CmdSetProvisioned, SetProvisioned{Account: "a", Function: "f", Qualifier: "1", Requested: ptr(2)})
	c.ok(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "live", Create: true, FunctionVersion: "1"})
	c.fails(CmdSetProvisioned, SetProvisioned{Account: "a", Function: "f", Qualifier: "live", Requested: ptr(1)}, ErrConflict)
	c.fails(CmdSetReserved, SetReserved{Account: "a", Name: "f", Reserved: ptr(1)}, quota.ErrInvalidParameter)
	var ids []string
	for i, id := range []string{"p1", "p2", "p3"} {
		g := c.ok(CmdCreateSandbox, CreateSandbox{ID: id, Account: "a", Function: "f", Version: "1", Provisioned: true, Now: int64(i)}).(*Grant)
		if i < 2 && (g.Sandbox == nil || !g.Sandbox.Provisioned || g.Sandbox.Pool != quota.PoolReserved) {
			t.Fatalf("provisioned grant %d: %+v", i, g)
		}
		if i == 2 && g.Err != ErrProvisionedFull {
			t.Fatalf("third provisioned grant for 2 requested: %+v", g)
		}
		if g.Sandbox != nil {
			ids = append(ids, id)
		}
	}
	c.ok(CmdSandboxReady, SandboxReady{Ready: ids[:1], Failed: ids[1:], Failure: "Runtime.ExitError"})
	f := c.l.s.Functions["a/f"]
	if !c.l.s.Sandboxes["p1"].Ready || c.l.s.Sandboxes["p2"] != nil || f.Provisioned["1"].Failure != "Runtime.ExitError" {
		t.Fatalf("after ready/failed: %+v %+v %+v", c.l.s.Sandboxes["p1"], c.l.s.Sandboxes["p2"], f.Provisioned["1"])
	}
	// Provisioned sandboxes count against the reservation like any other.
	if _, fn := c.l.Usage("a", "f"); fn.Sandboxes != 1 {
		t.Fatalf("function counts %+v", fn)
	}
	// Deleting the version deletes its config; deleting a missing config
	// is its own error.
	c.ok(CmdDeleteAlias, DeleteAlias{Account: "a", Function: "f", Name: "live"})
	c.ok(CmdDeleteFunction, DeleteFunction{Account: "a", Name: "f", Qualifier: "1"})
	c.fails(CmdSetProvisioned, SetProvisioned{Account: "a", Function: "f", Qualifier: "1"}, ErrNoProvisionedConfig)
}

func TestAccountsAndKeys(t *testing.T) {
	c := newCtl(t)
	c.fails(CmdCreateAccount, CreateAccount{ID: "abc"}, quota.ErrInvalidParameter)
	c.ok(CmdSetAccountLimit, SetAccountLimit{Account: "111111111111", Limit: 50})
	a := c.ok(CmdCreateAccount, CreateAccount{ID: "111111111111", Key: &AccessKey{ID: "AKIA1", Secret: "s3cret"}}).(*Account)
	if a.Limit != 50 || len(a.Keys) != 1 || !a.Created {
		t.Fatalf("account %+v", a)
	}
	c.fails(CmdCreateAccount, CreateAccount{ID: "111111111111"}, ErrConflict)
	c.fails(CmdCreateAccount, CreateAccount{ID: "222222222222", Key: &AccessKey{ID: "AKIA1", Secret: "other"}}, ErrConflict)
	c.ok(CmdAddAccessKey, AddAccessKey{Account: "111111111111", Key: AccessKey{ID: "AKIA2", Secret: "s3cret2"}})
	c.fails(CmdAddAccessKey, AddAccessKey{Account: "333333333333", Key: AccessKey{ID: "AKIA3", Secret: "xxxx"}}, ErrNotFound)
	// A later limit change keeps the keys.
	c.ok(CmdSetAccountLimit, SetAccountLimit{Account: "111111111111", Limit: 60})
	if got := c.l.s.Accounts["111111111111"]; len(got.Keys) != 2 || !got.Created {
		t.Fatalf("limit change lost the keys: %+v", got)
	}
}
