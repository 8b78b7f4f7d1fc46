package placement

import (
	"crypto/rand"
	"encoding/hex"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/wire"
)

// The provisioner keeps every provisioned-concurrency config at its
// requested count of pre-warmed sandboxes. It runs on the leader only and
// decides nothing itself: each sandbox is a CreateSandbox grant
// (Provisioned) the ledger admits against the same limits as any other and
// refuses beyond the config's count, and each init's outcome is a
// SandboxReady command. A lost answer or a leader change only delays it.

// provisionEvery is how often the leader compares configs with sandboxes.
const provisionEvery = 250 * time.Millisecond

// prewarmTimeout bounds a worker's pre-warm: Lambda's 10 s init limit plus
// the cold-start phases around it.
const prewarmTimeout = 15 * time.Second

// provisionRetry is how long a version whose init failed waits before the
// next try.
const provisionRetry = 5 * time.Second

type provisioner struct {
	mu      sync.Mutex
	pending map[string]bool      // sandbox ids being pre-warmed
	backoff map[string]time.Time // function/version -> no new try before
	stuck   map[string]string    // function/version -> why the last round granted nothing
	kick    chan struct{}
}

// noteStuck logs why a config got no sandbox this round, once per change
// of reason: a config that stays IN_PROGRESS must say why in the logs
// without a line every 250 ms.
func (n *Node) noteStuck(key, why string) {
	n.prov.mu.Lock()
	if n.prov.stuck == nil {
		n.prov.stuck = map[string]string{}
	}
	changed := n.prov.stuck[key] != why
	if why == "" {
		delete(n.prov.stuck, key)
	} else {
		n.prov.stuck[key] = why
	}
	n.prov.mu.Unlock()
	if changed && why != "" {
		n.log.Info("provisioner: config not filled this round", "function", key, "why", why)
	}
}

// provisionSoon wakes the provisioner (a config or an alias changed).
func (n *Node) provisionSoon() {
	select {
	case n.prov.kick <- struct{}{}:
	default:
	}
}

func (n *Node) provisionLoop() {
	defer n.wg.Done()
	t := time.NewTicker(provisionEvery)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		case <-n.prov.kick:
		}
		if n.isServing() {
			n.provisionOnce()
		}
	}
}

// orphan is a granted provisioned sandbox no pre-warm of this leader is
// waiting on.
type orphan struct {
	key  string
	sb   Sandbox
	spec wire.Spec
}

type provTask struct {
	fn      *Function
	version string
	missing int
}

// provisionOnce starts the pre-warms that are missing and drops the
// provisioned sandboxes no config wants any more (config lowered or
// deleted, alias moved, version redeployed).
func (n *Node) provisionOnce() {
	var tasks []provTask
	var orphans []orphan
	excess := map[string][]string{}
	// The pending set is read before the ledger: a sandbox not pending
	// then and not Ready in the ledger after is nobody's pre-warm here.
	n.prov.mu.Lock()
	pending := len(n.prov.pending)
	mine := make(map[string]bool, pending)
	for id := range n.prov.pending {
		mine[id] = true
	}
	n.prov.mu.Unlock()
	n.fsm.Read(func(l *Ledger) {
		type vk struct{ fk, version string }
		want := map[vk]int{}
		revs := map[vk]uint64{}
		for fk, f := range l.s.Functions {
			for v, count := range l.ProvisionedTarget(f) {
				k := vk{fk, v}
				want[k] = count
				if fv := f.Version(v); fv != nil {
					revs[k] = fv.Created
				}
			}
		}
		held := map[vk]int{}
		for _, sb := range sortedSandboxes(l) {
			if !sb.Provisioned {
				continue
			}
			fk := wire.FunctionKey(sb.Account, sb.Function)
			f := l.s.Functions[fk]
			k := vk{fk, sb.Version}
			if f == nil || f.Created != sb.Incarnation || revs[k] != sb.Revision || held[k] >= want[k] {
				excess[sb.Worker] = append(excess[sb.Worker], sb.ID)
				continue
			}
			held[k]++
			if !sb.Ready && !mine[sb.ID] {
				// Granted, but its outcome never committed: a previous
				// leader pre-warmed it and lost leadership before it
				// could commit Ready, or a commit here failed. It holds
				// its slot, so no new grant replaces it: ask its worker
				// again (a repeated pre-warm answers the first one's
				// outcome) or the config stays IN_PROGRESS for good.
				if spec, err := wire.SpecFor(f, sb.Version); err == nil {
					orphans = append(orphans, orphan{key: fk + "/" + sb.Version, sb: *sb, spec: spec})
				}
			}
		}
		for k, w := range want {
			if held[k] < w {
				tasks = append(tasks, provTask{fn: l.s.Functions[k.fk].Clone(), version: k.version, missing: w - held[k]})
			}
		}
	})
	for w, ids := range excess {
		if _, err := n.workers.Drop(w, ids); err != nil {
			n.log.Warn("provisioner: worker did not drop", "worker", w, "err", err)
		}
	}
	for _, o := range orphans {
		n.prov.mu.Lock()
		n.prov.pending[o.sb.ID] = true
		n.prov.mu.Unlock()
		n.log.Info("provisioner: asking again for a pre-warm whose outcome was not committed", "sandbox", o.sb.ID, "worker", o.sb.Worker)
		go n.prewarm(o.key, o.sb, wire.GrantToken(n.cfg.GrantKey, &o.sb), o.spec)
	}
	if pending > 0 || len(orphans) > 0 {
		return // one round of pre-warms at a time: the ledger counts them once granted
	}
	now := time.Now()
	for _, t := range tasks {
		key := wire.FunctionKey(t.fn.Account, t.fn.Name) + "/" + t.version
		n.prov.mu.Lock()
		wait := n.prov.backoff[key].After(now)
		n.prov.mu.Unlock()
		if wait {
			continue
		}
		spec, err := wire.SpecFor(t.fn, t.version)
		if err != nil {
			n.noteStuck(key, "no spec: "+err.Error())
			continue
		}
		for i := 0; i < t.missing; i++ {
			var b [8]byte
			rand.Read(b[:])
			resp := n.createSandbox(CreateSandbox{ID: "pc-" + hex.EncodeToString(b[:]), Account: t.fn.Account, Function: t.fn.Name, Version: t.version, Now: time.Now().UnixNano(), Provisioned: true})
			g := resp.Grant
			if resp.Error != nil || g == nil || g.Sandbox == nil {
				// A throttle or no capacity: Lambda keeps the config
				// IN_PROGRESS and tries again.
				why := "no sandbox granted"
				switch {
				case resp.Error != nil:
					why = resp.Error.Type + ": " + resp.Error.Message
				case g != nil && g.Err != "":
					why = g.Err
				case g != nil && g.Warm:
					why = "an idle on-demand sandbox of the version holds the slot"
				case g != nil && g.Reason != "":
					why = "throttled: " + string(g.Reason)
				}
				n.noteStuck(key, why)
				break
			}
			n.noteStuck(key, "")
			n.prov.mu.Lock()
			n.prov.pending[g.Sandbox.ID] = true
			n.prov.mu.Unlock()
			go n.prewarm(key, *g.Sandbox, g.Token, spec)
		}
	}
}

// prewarm asks the sandbox's worker to create it and run its init, then
// commits the outcome.
func (n *Node) prewarm(key string, sb Sandbox, token string, spec wire.Spec) {
	defer func() {
		n.prov.mu.Lock()
		delete(n.prov.pending, sb.ID)
		n.prov.mu.Unlock()
	}()
	m := nats.NewMsg(wire.WorkerSubject(sb.Worker, wire.WorkerPrewarm))
	h := m.Header
	h.Set(wire.HdrRequestID, sb.ID)
	h.Set(wire.HdrAccount, sb.Account)
	h.Set(wire.HdrFunction, sb.Function)
	h.Set(wire.HdrVersion, sb.Version)
	h.Set(wire.HdrSandbox, sb.ID)
	h.Set(wire.HdrSpec, wire.EncodeSpec(spec))
	h.Set(wire.HdrGranted, strconv.FormatInt(sb.CreatedNs, 10))
	h.Set(wire.HdrWorkerInc, strconv.FormatUint(sb.WorkerInc, 10))
	h.Set(wire.HdrGrantToken, token)
	reply, err := n.nc.RequestMsg(m, prewarmTimeout)
	switch {
	case err == nil && reply.Header.Get(wire.HdrStatus) == wire.StatusOK:
		if _, err := n.apply(CmdSandboxReady, SandboxReady{Ready: []string{sb.ID}}); err != nil {
			n.log.Warn("provisioner: ready not committed", "sandbox", sb.ID, "err", err)
		}
	case err == nil && reply.Header.Get(wire.HdrStatus) == wire.StatusError:
		failure := reply.Header.Get(wire.HdrErrorType) + ": " + reply.Header.Get(wire.HdrError)
		n.prov.mu.Lock()
		n.prov.backoff[key] = time.Now().Add(provisionRetry)
		n.prov.mu.Unlock()
		if _, err := n.apply(CmdSandboxReady, SandboxReady{Failed: []string{sb.ID}, Failure: failure}); err != nil {
			n.log.Warn("provisioner: failure not committed", "sandbox", sb.ID, "err", err)
		}
	default:
		// Busy (no lease) or unreachable: the worker created nothing.
		// Give the grant back; the next round places it again.
		why := "no answer"
		if err != nil {
			why = err.Error()
		} else if reply != nil {
			why = reply.Header.Get(wire.HdrStatus) + ": " + reply.Header.Get(wire.HdrError)
		}
		n.log.Warn("provisioner: pre-warm not done, grant given back", "sandbox", sb.ID, "worker", sb.Worker, "why", why)
		if _, err := n.apply(CmdReleaseSandboxes, ReleaseSandboxes{IDs: []string{sb.ID}}); err != nil {
			n.log.Warn("provisioner: release not committed", "sandbox", sb.ID, "err", err)
		}
	}
}

// sortedSandboxes lists the ledger's sandboxes oldest first (ties by id),
// so that the provisioner keeps the longest-warm ones.
func sortedSandboxes(l *Ledger) []*Sandbox {
	out := make([]*Sandbox, 0, len(l.s.Sandboxes))
	for _, sb := range l.s.Sandboxes {
		out = append(out, sb)
	}
	sortByAge(out)
	return out
}

func sortByAge(s []*Sandbox) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].CreatedNs != s[j].CreatedNs {
			return s[i].CreatedNs < s[j].CreatedNs
		}
		return s[i].ID < s[j].ID
	})
}
