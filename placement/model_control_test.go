package placement

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"testing"

	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// The control-plane half of the model: code and configuration updates,
// versions, aliases and provisioned concurrency, mixed into the same
// random sequences as grants, releases and faults (model_test.go).

var modelAliases = []string{"live", "beta"}

// pickVersion is a version to ask a grant for: $LATEST, a published one,
// or one that does not exist.
func (m *model) pickVersion(acct, fn string) string {
	f := m.l.s.Functions[wire.FunctionKey(acct, fn)]
	switch {
	case m.src.intn(3) > 0 || f == nil:
		return "$LATEST"
	case len(f.Versions) > 0 && m.src.intn(4) > 0:
		return strconv.Itoa(f.Versions[m.src.intn(len(f.Versions))].Version)
	}
	return strconv.Itoa(1 + m.src.intn(5))
}

// provisionedVersion is a version with a provisioned config when there
// is one (for provisioned grants), else any version.
func (m *model) provisionedVersion(acct, fn string) string {
	f := m.l.s.Functions[wire.FunctionKey(acct, fn)]
	if f != nil {
		var vs []string
		for v := range m.l.ProvisionedTarget(f) {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		if len(vs) > 0 && m.src.intn(4) > 0 {
			return vs[m.src.intn(len(vs))]
		}
	}
	return m.pickVersion(acct, fn)
}

// anyProvisioned is a provisioned sandbox when there is one.
func (m *model) anyProvisioned() string {
	var ids []string
	for id, sb := range m.l.s.Sandboxes {
		if sb.Provisioned {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return m.anyLive()
	}
	sort.Strings(ids)
	return ids[m.src.intn(len(ids))]
}

// pickPublished is a published version when there is one, else $LATEST.
func (m *model) pickPublished(acct, fn string) string {
	f := m.l.s.Functions[wire.FunctionKey(acct, fn)]
	if f == nil || len(f.Versions) == 0 {
		return "$LATEST"
	}
	return strconv.Itoa(f.Versions[m.src.intn(len(f.Versions))].Version)
}

// staleOrCurrent is a RevisionId precondition: none, the current one, or a
// stale one.
func (m *model) staleOrCurrent(f *Function) uint64 {
	if f == nil {
		return 0
	}
	switch m.src.intn(3) {
	case 0:
		return 0
	case 1:
		return f.Revision
	}
	return f.Revision + 1 + uint64(m.src.intn(3))
}

func (m *model) controlStep(op int) {
	acct, fn := m.pick(modelAccounts), m.pick(modelFunctions)
	k := wire.FunctionKey(acct, fn)
	if m.l.s.Functions[k] == nil && m.src.intn(2) == 0 {
		// Keep functions around long enough to grow versions and aliases.
		m.apply(CmdCreateFunction, Function{Account: acct, Name: fn, MemoryMB: 128, TimeoutMs: 3000})
	}
	f := m.l.s.Functions[k]
	var before *Function
	if f != nil {
		before = f.Clone()
	}
	digest := m.l.Digest()
	switch op {
	case 0, 1: // update code or configuration, maybe with a stale RevisionId
		u := UpdateFunction{Account: acct, Name: fn, IfRevision: m.staleOrCurrent(f), ModifiedNs: m.now()}
		switch m.src.intn(4) {
		case 0:
			u.CodeSha256, u.CodeSize = fmt.Sprintf("code-%d", m.src.intn(3)), 100
		case 1:
			mem := 128 * (1 + m.src.intn(3))
			u.MemoryMB = &mem
		case 2:
			env := map[string]string{"K": strconv.Itoa(m.src.intn(2))}
			u.Environment = &env
		default:
			h := fmt.Sprintf("h%d", m.src.intn(2))
			u.Handler = &h
		}
		_, err := m.applyErr(CmdUpdateFunction, u)
		m.checkPrecondition(err, u.IfRevision, before, digest)
		if err == nil && f != nil && f.ConfigRev != m.idx {
			m.t.Fatalf("step %d: update applied at %d but ConfigRev is %d", m.steps, m.idx, f.ConfigRev)
		}
	case 2, 3: // publish
		p := PublishVersion{Account: acct, Name: fn, IfRevision: m.staleOrCurrent(f), ModifiedNs: m.now()}
		v, err := m.applyErr(CmdPublishVersion, p)
		m.checkPrecondition(err, p.IfRevision, before, digest)
		if err == nil && before != nil {
			ver := v.(*FunctionVersion)
			if n := len(before.Versions); n > 0 && sameCode(before.Versions[n-1], before) {
				if ver.Version != before.Versions[n-1].Version || len(f.Versions) != n {
					m.t.Fatalf("step %d: publishing unchanged code made version %d (last %d)", m.steps, ver.Version, before.Versions[n-1].Version)
				}
			} else if ver.Version != before.LastVersion+1 {
				m.t.Fatalf("step %d: published version %d after %d", m.steps, ver.Version, before.LastVersion)
			}
		}
	case 4: // delete a version (maybe one an alias names)
		q := m.pickPublished(acct, fn)
		_, err := m.applyErr(CmdDeleteFunction, DeleteFunction{Account: acct, Name: fn, Qualifier: q})
		if err == nil && before != nil && q != "$LATEST" {
			for _, a := range before.Aliases {
				if a.FunctionVersion == q || a.Weights[q] > 0 {
					m.t.Fatalf("step %d: deleted version %s that alias %s names", m.steps, q, a.Name)
				}
			}
		}
	case 5: // create or update an alias, with or without routing
		if f != nil && len(f.Versions) < 2 && m.src.intn(2) == 0 {
			code := fmt.Sprintf("code-%d", m.idx)
			m.applyErr(CmdUpdateFunction, UpdateFunction{Account: acct, Name: fn, CodeSha256: code, CodeSize: 1, ModifiedNs: m.now()})
			m.applyErr(CmdPublishVersion, PublishVersion{Account: acct, Name: fn, ModifiedNs: m.now()})
		}
		a := PutAlias{Account: acct, Function: fn, Name: m.pick(modelAliases), Create: m.src.intn(2) == 0, FunctionVersion: m.pickPublished(acct, fn), IfRevision: 0}
		if m.src.intn(4) == 0 {
			a.FunctionVersion = m.pickVersion(acct, fn)
		}
		if m.src.intn(2) == 0 {
			wv := m.pickPublished(acct, fn)
			for try := 0; try < 3 && wv == a.FunctionVersion; try++ {
				wv = m.pickPublished(acct, fn)
			}
			w := map[string]float64{wv: float64(m.src.intn(12)) / 10}
			a.Weights = &w
		}
		m.applyErr(CmdPutAlias, a)
	case 6: // delete an alias
		m.applyErr(CmdDeleteAlias, DeleteAlias{Account: acct, Function: fn, Name: m.pick(modelAliases)})
	case 8: // an asynchronous invocation config put, merged or deleted
		q := m.pickVersion(acct, fn)
		if m.src.intn(3) == 0 {
			q = m.pick(modelAliases)
		}
		retries, age := m.src.intn(4)-1, 30+m.src.intn(4)*30
		dest := []string{"", "nats:orders.failed", "arn:aws:lambda:us-east-1:" + acct + ":function:g", "sqs://x"}[m.src.intn(4)]
		m.applyErr(CmdPutEventConfig, PutEventConfig{Account: acct, Function: fn, Qualifier: q, Merge: m.src.intn(3) == 0, Delete: m.src.intn(5) == 0,
			MaximumRetryAttempts: &retries, MaximumEventAgeSeconds: &age, OnFailure: &dest, ModifiedNs: m.now()})
	case 9: // platform idempotency or an injected fault set or cleared
		o := SetFunctionOptions{Account: acct, Function: fn}
		switch m.src.intn(4) {
		case 0:
			o.Idempotency = &IdempotencyConfig{Key: []string{"request-id", "header:Idem-Key", "json:order.id", "bogus"}[m.src.intn(4)], TTLMs: int64(m.src.intn(3)) * 60000}
		case 1:
			o.ClearIdempotency = true
		case 2:
			o.Fault = &FaultConfig{Kind: []string{wire.FaultDropResponse, wire.FaultDuplicateDelivery, "melt"}[m.src.intn(3)], Rate: float64(m.src.intn(3)) / 2}
		default:
			o.ClearFault = true
		}
		m.applyErr(CmdSetOptions, o)
	default: // provisioned concurrency set, changed or deleted, or a ready report
		if m.src.intn(2) == 0 {
			var ready, failed []string
			for _, id := range []string{m.anyLive(), m.anyProvisioned(), m.anyProvisioned()} {
				if m.src.intn(2) == 0 {
					ready = append(ready, id)
				} else {
					failed = append(failed, id)
				}
			}
			m.applyErr(CmdSandboxReady, SandboxReady{Ready: ready, Failed: failed, Failure: "init failed"})
			break
		}
		if f != nil && len(f.Versions) == 0 && m.src.intn(3) > 0 {
			m.applyErr(CmdPublishVersion, PublishVersion{Account: acct, Name: fn, ModifiedNs: m.now()})
		}
		q := m.pickPublished(acct, fn)
		switch m.src.intn(4) {
		case 0:
			q = m.pick(modelAliases)
		case 1:
			q = m.pickVersion(acct, fn)
		}
		var n *int
		if v := m.src.intn(5) - 1; v >= 0 {
			n = &v
		}
		m.applyErr(CmdSetProvisioned, SetProvisioned{Account: acct, Function: fn, Qualifier: q, Requested: n, ModifiedNs: m.now()})
	}
}

// applyErr applies a command as the model's next log entry and returns
// the ledger's answer and error.
func (m *model) applyErr(t CmdType, body any) (any, error) {
	b, err := json.Marshal(body)
	if err != nil {
		m.t.Fatal(err)
	}
	m.idx++
	m.log = append(m.log, entry{t, b})
	return m.l.Apply(t, b, m.idx)
}

// sameCode reports whether version v has $LATEST's code and configuration
// (spelled out here, independently of the ledger's own comparison).
func sameCode(v FunctionVersion, f *Function) bool {
	type cfg struct {
		Runtime, Handler, Code string
		Mem                    int
		Timeout                int64
		Env                    map[string]string
		Syn                    string
	}
	a, _ := json.Marshal(cfg{v.Runtime, v.Handler, v.CodeSha256, v.MemoryMB, v.TimeoutMs, v.Environment, string(v.Synthetic)})
	b, _ := json.Marshal(cfg{f.Runtime, f.Handler, f.CodeSha256, f.MemoryMB, f.TimeoutMs, f.Environment, string(f.Synthetic)})
	return string(a) == string(b)
}

// checkPrecondition: a write whose RevisionId is stale fails and changes
// nothing.
func (m *model) checkPrecondition(err error, ifRev uint64, before *Function, digest string) {
	if before != nil && ifRev != 0 && ifRev != before.Revision {
		if err == nil {
			m.t.Fatalf("step %d: a write with stale revision %d (current %d) succeeded", m.steps, ifRev, before.Revision)
		}
		if d := m.l.Digest(); d != digest {
			m.t.Fatalf("step %d: a refused write changed the state", m.steps)
		}
	}
}

// checkControl checks invariants 6, 7 and 9 on the live state.
func (m *model) checkControl() {
	keys := make([]string, 0, len(m.l.s.Functions))
	for k := range m.l.s.Functions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := m.l.s.Functions[k]
		inc := fmt.Sprintf("%s#%d", k, f.Created)
		prev := 0
		for _, v := range f.Versions {
			if v.Version <= prev || v.Version > f.LastVersion {
				m.t.Fatalf("step %d: %s versions out of order: %d after %d (last %d)", m.steps, k, v.Version, prev, f.LastVersion)
			}
			prev = v.Version
			b, _ := json.Marshal(v)
			vk := fmt.Sprintf("%s/%d", inc, v.Version)
			if old, ok := m.published[vk]; ok && old != string(b) {
				m.t.Fatalf("step %d: published version %s changed:\n%s\n%s", m.steps, vk, old, b)
			}
			m.published[vk] = string(b)
		}
		if f.LastVersion < m.lastNum[inc] {
			m.t.Fatalf("step %d: %s version numbers went back from %d to %d", m.steps, k, m.lastNum[inc], f.LastVersion)
		}
		m.lastNum[inc] = f.LastVersion
		for name, a := range f.Aliases {
			if a.Name != name || (a.FunctionVersion != "$LATEST" && f.Version(a.FunctionVersion) == nil) {
				m.t.Fatalf("step %d: alias %s of %s names %q, not a published version", m.steps, name, k, a.FunctionVersion)
			}
			for v, w := range a.Weights {
				if f.Version(v) == nil || w < 0 || w > 1 || v == a.FunctionVersion || a.FunctionVersion == "$LATEST" {
					m.t.Fatalf("step %d: alias %s of %s routes %v to %s", m.steps, name, k, w, v)
				}
			}
		}
		total, byVersion := 0, map[string]string{}
		for q, pc := range f.Provisioned {
			v := m.l.provisionedVersion(f, q)
			if v == "" || v == "$LATEST" || pc.Requested < 0 {
				m.t.Fatalf("step %d: provisioned config %s of %s resolves to %q", m.steps, q, k, v)
			}
			if other, dup := byVersion[v]; dup {
				m.t.Fatalf("step %d: version %s of %s provisioned twice (%s and %s)", m.steps, v, k, other, q)
			}
			byVersion[v] = q
			total += pc.Requested
		}
		for q, ec := range f.EventConfigs {
			if ec == nil || ec.Qualifier != q || (q != "$LATEST" && m.l.provisionedVersion(f, q) == "") {
				m.t.Fatalf("step %d: event config %q of %s for a qualifier that does not exist", m.steps, q, k)
			}
			if r := ec.Retries(); r < 0 || r > 2 {
				m.t.Fatalf("step %d: event config %q of %s retries %d", m.steps, q, k, r)
			}
			if a := ec.MaxAgeSeconds(); a < 60 || a > 21600 {
				m.t.Fatalf("step %d: event config %q of %s max age %d", m.steps, q, k, a)
			}
			for _, d := range []string{ec.OnSuccess, ec.OnFailure} {
				if ValidDestination(f.Account, d) != nil {
					m.t.Fatalf("step %d: event config %q of %s has destination %q", m.steps, q, k, d)
				}
			}
		}
		if f.Idempotency != nil && (ValidIdempotencyKey(f.Idempotency.Key) != nil || f.Idempotency.TTLMs < 1000) {
			m.t.Fatalf("step %d: %s idempotency %+v", m.steps, k, *f.Idempotency)
		}
		if f.Fault != nil && validFault(*f.Fault) != nil {
			m.t.Fatalf("step %d: %s fault %+v", m.steps, k, *f.Fault)
		}
		if f.Reserved != nil && total > *f.Reserved {
			m.t.Fatalf("step %d: %s provisioned %d above its reservation %d", m.steps, k, total, *f.Reserved)
		}
	}
	for _, a := range modelAccounts {
		if pc, floor := m.l.unreservedProvisioned(a, ""), m.l.Limit(a)-m.l.reservedTotal(a, "")-quota.Minimum(m.l.Limit(a)); pc > 0 && pc > floor {
			m.t.Fatalf("step %d: account %s provisions %d of its unreserved pool, above %d", m.steps, a, pc, floor)
		}
	}
	for id, sb := range m.l.s.Sandboxes {
		if sb.Ready && !sb.Provisioned {
			m.t.Fatalf("step %d: sandbox %s ready but not provisioned", m.steps, id)
		}
	}
}

// TestControlModelReachesItsStates makes sure the sequences exercise the
// control plane: versions published and refused, aliases with routing,
// provisioned configs and grants, stale revisions, refused deletes.
func TestControlModelReachesItsStates(t *testing.T) {
	var published, aliases, routed, pcs, pcGrants, ready, stale, refusedDeletes int
	for seed := 0; seed < 80; seed++ {
		m := newModel(t, prng{rand.New(rand.NewPCG(uint64(seed), 11))})
		for i := 0; i < 400; i++ {
			m.step()
		}
		l := NewLedger(m.l.rate, m.l.defLimit)
		for i, e := range m.log {
			v, err := l.Apply(e.t, e.body, uint64(i+1))
			if e.t == CmdSandboxReady {
				for _, sb := range l.s.Sandboxes {
					if sb.Ready {
						ready++
					}
				}
			}
			switch {
			case errors.Is(err, ErrPrecondition):
				stale++
			case e.t == CmdDeleteFunction && errors.Is(err, ErrConflict):
				refusedDeletes++
			case err != nil:
			case e.t == CmdPublishVersion:
				published++
			case e.t == CmdPutAlias:
				aliases++
				if len(v.(*Alias).Weights) > 0 {
					routed++
				}
			case e.t == CmdSetProvisioned:
				pcs++
			case e.t == CmdCreateSandbox:
				if g := v.(*Grant); g.Sandbox != nil && g.Sandbox.Provisioned {
					pcGrants++
				}
			}
		}
	}
	t.Logf("published %d, aliases %d (routed %d), provisioned configs %d, provisioned grants %d, ready %d, stale %d, refused deletes %d", published, aliases, routed, pcs, pcGrants, ready, stale, refusedDeletes)
	if published < 100 || aliases < 50 || routed < 10 || pcs < 20 || pcGrants < 10 || stale < 50 || refusedDeletes < 3 {
		t.Fatal("sequences too tame for the control plane")
	}
}
