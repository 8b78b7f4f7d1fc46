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

// TestRegressionReservationIntoProvisionedFloor: found by the model. A
// function created with a reservation, or an account created with a
// limit, must leave the unreserved pool its floor above the provisioned
// concurrency of the account's unreserved functions.
func TestRegressionReservationIntoProvisionedFloor(t *testing.T) {
	c := newCtl(t)
	c.ok(CmdSetAccountLimit, SetAccountLimit{Account: "a", Limit: 104})
	c.ok(CmdPublishVersion, PublishVersion{Account: "a", Name: "f"})
	c.ok(CmdSetProvisioned, SetProvisioned{Account: "a", Function: "f", Qualifier: "1", Requested: ptr(3)})
	// 104 - 100 floor = 4 unreserved above the floor; 3 are provisioned.
	c.fails(CmdCreateFunction, Function{Account: "a", Name: "g", MemoryMB: 128, TimeoutMs: 3000, Reserved: ptr(2)}, quota.ErrInvalidParameter)
	c.ok(CmdCreateFunction, Function{Account: "a", Name: "g", MemoryMB: 128, TimeoutMs: 3000, Reserved: ptr(1)})
}

func TestEventConfigsAndOptions(t *testing.T) {
	c := newCtl(t)
	c.ok(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", MaximumRetryAttempts: ptr(0)})
	c.fails(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", MaximumRetryAttempts: ptr(3)}, quota.ErrInvalidParameter)
	c.fails(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", MaximumEventAgeSeconds: ptr(59)}, quota.ErrInvalidParameter)
	c.fails(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", Qualifier: "7"}, ErrNotFound)
	c.fails(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", OnFailure: ptr("sqs://queue")}, quota.ErrInvalidParameter)
	c.fails(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", OnFailure: ptr("arn:aws:lambda:us-east-1:999999999999:function:x")}, quota.ErrInvalidParameter)
	f := c.ok(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", Merge: true, OnFailure: ptr("nats:orders.failed")}).(*Function)
	if ec := f.EventConfigs["$LATEST"]; ec.Retries() != 0 || ec.OnFailure != "nats:orders.failed" || ec.MaxAgeSeconds() != 21600 {
		t.Fatalf("merged config %+v", *ec)
	}
	f = c.ok(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", MaximumEventAgeSeconds: ptr(120)}).(*Function)
	if ec := f.EventConfigs["$LATEST"]; ec.Retries() != 2 || ec.OnFailure != "" || ec.MaxAgeSeconds() != 120 {
		t.Fatalf("a put replaces the config: %+v", *ec)
	}
	c.ok(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", Delete: true})
	c.fails(CmdPutEventConfig, PutEventConfig{Account: "a", Function: "f", Delete: true}, ErrNotFound)
	c.fails(CmdSetOptions, SetFunctionOptions{Account: "a", Function: "f", Idempotency: &IdempotencyConfig{Key: "cookie:x", TTLMs: 60000}}, quota.ErrInvalidParameter)
	c.fails(CmdSetOptions, SetFunctionOptions{Account: "a", Function: "f", Fault: &FaultConfig{Kind: "melt", Rate: 0.5}}, quota.ErrInvalidParameter)
	c.fails(CmdSetOptions, SetFunctionOptions{Account: "a", Function: "f", Fault: &FaultConfig{Kind: "drop-response"}}, quota.ErrInvalidParameter)
	f = c.ok(CmdSetOptions, SetFunctionOptions{Account: "a", Function: "f", Idempotency: &IdempotencyConfig{Key: "json:order.id", TTLMs: 3600000}, Fault: &FaultConfig{Kind: "drop-response", Nth: []int{2, 5}}}).(*Function)
	if f.Idempotency == nil || f.Fault == nil || f.Fault.Nth[1] != 5 {
		t.Fatalf("options %+v %+v", f.Idempotency, f.Fault)
	}
	f = c.ok(CmdSetOptions, SetFunctionOptions{Account: "a", Function: "f", ClearFault: true}).(*Function)
	if f.Fault != nil || f.Idempotency == nil {
		t.Fatalf("clearing the fault: %+v %+v", f.Idempotency, f.Fault)
	}
}

// FuzzControlCommands applies arbitrary bodies of every control-plane
// command to a ledger holding a function with versions, an alias and
// configs: no panic, and the state still validates and recounts.
func FuzzControlCommands(f *testing.F) {
	f.Add(uint8(11), []byte(`{"account":"a","name":"f","memory_mb":256}`))
	f.Add(uint8(12), []byte(`{"account":"a","name":"f","if_code_sha256":"x"}`))
	f.Add(uint8(13), []byte(`{"account":"a","function":"f","name":"live","create":true,"function_version":"1","weights":{"1":2}}`))
	f.Add(uint8(15), []byte(`{"account":"a","function":"f","qualifier":"live","requested":-3}`))
	f.Add(uint8(16), []byte(`{"ready":["p1"],"failed":["p1","x"]}`))
	f.Add(uint8(17), []byte(`{"id":"000000000000","key":{"id":"k","secret":""}}`))
	f.Add(uint8(19), []byte(`{"account":"a","function":"f","qualifier":"live","maximum_retry_attempts":9}`))
	f.Add(uint8(20), []byte(`{"account":"a","function":"f","fault":{"kind":"drop-response","nth":[0,-1]}}`))
	f.Fuzz(func(t *testing.T, cmd uint8, body []byte) {
		c := newCtl(&testing.T{})
		c.ok(CmdPublishVersion, PublishVersion{Account: "a", Name: "f"})
		c.ok(CmdPutAlias, PutAlias{Account: "a", Function: "f", Name: "live", Create: true, FunctionVersion: "1"})
		c.idx++
		c.l.Apply(CmdType(11+cmd%10), body, c.idx)
		if err := Validate(&c.l.s); err != nil {
			t.Fatalf("state after command %d %q: %v", 11+cmd%10, body, err)
		}
		if d := c.l.Accounting().Diff(c.l.Recount()); d != "" {
			t.Fatalf("counts after command %d: %s", 11+cmd%10, d)
		}
	})
}
