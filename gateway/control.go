package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// Lambda's limits for CreateFunction.
const (
	minMemory, maxMemory   = 128, 10240
	minTimeout, maxTimeout = 1, 900
)

func (g *Gateway) handleCreate(w http.ResponseWriter, r *http.Request) {
	var in api.CreateFunctionInput
	if e := g.decodeJSON(w, r, &in); e != nil {
		writeError(w, e)
		return
	}
	f, lerr := functionFromInput(g.account(r), in)
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpCreateFunction, Function: f}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.put(*resp.Function, resp.Index)
	writeJSON(w, http.StatusCreated, configOf(*resp.Function))
}

// functionFromInput validates a CreateFunction body with Lambda's rules.
func functionFromInput(account string, in api.CreateFunctionInput) (*wire.Function, *lambdaError) {
	if !ValidName(in.FunctionName) {
		return nil, errInvalidParam("1 validation error detected: Value '" + clip(in.FunctionName) + "' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+ and have length at most 64")
	}
	if in.Runtime == "" {
		in.Runtime = "synthetic"
	}
	if !syntheticRuntime(in.Runtime) {
		return nil, errInvalidParam("Value " + clip(in.Runtime) + " at 'runtime' is not supported on this cluster; use synthetic, or a Lambda runtime name (python3.12, nodejs22.x, java21, provided.al2023, ...) which runs as synthetic with that runtime's measured cold start")
	}
	if in.MemorySize == 0 {
		in.MemorySize = 128
	}
	if in.MemorySize < minMemory || in.MemorySize > maxMemory {
		return nil, errInvalidParam("1 validation error detected: Value '" + strconv.Itoa(in.MemorySize) + "' at 'memorySize' failed to satisfy constraint: Member must have value between 128 and 10240")
	}
	if in.Timeout == 0 {
		in.Timeout = 3
	}
	if in.Timeout < minTimeout || in.Timeout > maxTimeout {
		return nil, errInvalidParam("1 validation error detected: Value '" + strconv.Itoa(in.Timeout) + "' at 'timeout' failed to satisfy constraint: Member must have value between 1 and 900")
	}
	cfg := api.SyntheticConfig{}
	if in.Coldstart != nil {
		cfg = *in.Coldstart
	}
	if _, _, err := ProfileOf(in.Runtime, cfg); err != nil {
		return nil, errInvalidParam(err.Error())
	}
	raw, _ := json.Marshal(cfg)
	return &wire.Function{Account: account, Name: in.FunctionName, Runtime: in.Runtime, MemoryMB: in.MemorySize, TimeoutMs: int64(in.Timeout) * 1000, Synthetic: raw}, nil
}

// syntheticRuntime reports whether a runtime name can be emulated: the
// synthetic runtime itself, or a Lambda runtime whose measured cold-start
// profile the synthetic runtime then uses, so unmodified SDK and CLI calls
// (which must name a real runtime) create working functions.
func syntheticRuntime(r string) bool {
	if r == "synthetic" {
		return true
	}
	for _, p := range []string{"python", "nodejs", "java", "go", "provided", "dotnet", "ruby"} {
		if strings.HasPrefix(r, p) && len(r) <= 32 {
			return true
		}
	}
	return false
}

func configOf(f wire.Function) api.FunctionConfiguration {
	c := api.FunctionConfiguration{
		FunctionName: f.Name, FunctionArn: "arn:aws:lambda:us-east-1:" + f.Account + ":function:" + f.Name,
		Runtime: f.Runtime, MemorySize: f.MemoryMB, Timeout: int(f.TimeoutMs / 1000), Version: LatestVersion,
		LastModified: time.Unix(0, f.ModifiedNs).UTC().Format("2006-01-02T15:04:05.000+0000"), State: "Active",
	}
	if len(f.Synthetic) > 0 {
		var s api.SyntheticConfig
		if json.Unmarshal(f.Synthetic, &s) == nil {
			c.Coldstart = &s
		}
	}
	return c
}

func (g *Gateway) handleList(w http.ResponseWriter, r *http.Request) {
	sn, err := g.pl.Read(r.Context())
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	out := api.ListFunctionsOutput{Functions: []api.FunctionConfiguration{}}
	acct := g.account(r)
	for _, f := range sn.Functions {
		if f.Account == acct {
			out.Functions = append(out.Functions, configOf(f))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// function resolves the {name} path value for control operations.
func (g *Gateway) function(w http.ResponseWriter, r *http.Request) (*fnEntry, string, bool) {
	ref, err := ParseFunctionName(r.PathValue("name"), "")
	if err != nil {
		writeError(w, errInvalidParam(err.Error()))
		return nil, "", false
	}
	acct := g.account(r)
	if ref.Account != "" && ref.Account != acct {
		writeError(w, errNotFound("Function not found: arn:aws:lambda:us-east-1:"+ref.Account+":function:"+ref.Name))
		return nil, "", false
	}
	g.refreshFresh(0) // control reads should see this gateway's own writes
	e := g.cache.get(acct, ref.Name)
	if e == nil {
		writeError(w, errNotFound("Function not found: arn:aws:lambda:us-east-1:"+acct+":function:"+ref.Name))
		return nil, "", false
	}
	return e, acct, true
}

func (g *Gateway) handleGet(w http.ResponseWriter, r *http.Request) {
	e, _, ok := g.function(w, r)
	if !ok {
		return
	}
	out := api.GetFunctionOutput{Configuration: configOf(e.fn)}
	if e.fn.Reserved != nil {
		out.Concurrency = &api.Concurrency{ReservedConcurrentExecutions: e.fn.Reserved}
	}
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) handleDelete(w http.ResponseWriter, r *http.Request) {
	e, acct, ok := g.function(w, r)
	if !ok {
		return
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpDeleteFunction, Delete: &wire.DeleteFunction{Account: acct, Name: e.fn.Name}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.drop(acct, e.fn.Name, resp.Index)
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) setReserved(w http.ResponseWriter, r *http.Request, n *int) {
	e, acct, ok := g.function(w, r)
	if !ok {
		return
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpSetReserved, Reserved: &wire.SetReserved{Account: acct, Name: e.fn.Name, Reserved: n}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.put(*resp.Function, resp.Index)
	if n == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, api.Concurrency{ReservedConcurrentExecutions: n})
}

func (g *Gateway) handlePutConcurrency(w http.ResponseWriter, r *http.Request) {
	var in api.Concurrency
	if e := g.decodeJSON(w, r, &in); e != nil {
		writeError(w, e)
		return
	}
	if in.ReservedConcurrentExecutions == nil {
		writeError(w, errInvalidParam("ReservedConcurrentExecutions is required"))
		return
	}
	g.setReserved(w, r, in.ReservedConcurrentExecutions)
}

func (g *Gateway) handleDeleteConcurrency(w http.ResponseWriter, r *http.Request) {
	g.setReserved(w, r, nil)
}

func (g *Gateway) handleGetConcurrency(w http.ResponseWriter, r *http.Request) {
	e, _, ok := g.function(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, api.Concurrency{ReservedConcurrentExecutions: e.fn.Reserved})
}

func (g *Gateway) accountSettings(sn *wire.Snapshot, acct string) api.AccountSettings {
	limit := quota.DefaultAccountLimit
	for _, a := range sn.Accounts {
		if a.ID == acct {
			limit = a.Limit
		}
	}
	out := api.AccountSettings{}
	reserved := 0
	for _, f := range sn.Functions {
		if f.Account != acct {
			continue
		}
		out.AccountUsage.FunctionCount++
		if f.Reserved != nil {
			reserved += *f.Reserved
		}
	}
	out.AccountLimit = api.AccountLimit{ConcurrentExecutions: limit, UnreservedConcurrentExecutions: limit - reserved}
	return out
}

func (g *Gateway) handleAccountSettings(w http.ResponseWriter, r *http.Request) {
	sn, err := g.pl.Read(r.Context())
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	writeJSON(w, http.StatusOK, g.accountSettings(sn, g.account(r)))
}

func (g *Gateway) handleSetLimit(w http.ResponseWriter, r *http.Request) {
	var in api.SetLimitInput
	if e := g.decodeJSON(w, r, &in); e != nil {
		writeError(w, e)
		return
	}
	acct := g.account(r)
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpSetLimit, Limit: &wire.SetAccountLimit{Account: acct, Limit: in.ConcurrentExecutions}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.wrote(resp.Index)
	g.refreshFresh(resp.Index)
	sn := g.cache.snapshot()
	if sn == nil {
		writeError(w, errService("no placement snapshot"))
		return
	}
	writeJSON(w, http.StatusOK, g.accountSettings(sn, acct))
}

// handleStatus assembles the cluster view: placement's snapshot, the member
// list, and each worker's live pool counts.
func (g *Gateway) handleStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	st := api.Status{}
	sn, err := g.pl.Read(ctx)
	if err != nil {
		sn = g.cache.snapshot() // stale beats nothing when placement is down
	}
	if g.cfg.Members != nil {
		st.Nodes = g.cfg.Members.Nodes()
	}
	stats := g.workerStats(ctx, sn)
	if sn != nil {
		st.Replicas = g.replicas(ctx, sn)
		st.Leader = sn.Leader
		for i := range st.Nodes {
			if st.Nodes[i].Role == "placement" {
				if st.Nodes[i].ID == sn.Leader {
					st.Nodes[i].State = "leader"
				} else if st.Nodes[i].State == "alive" {
					st.Nodes[i].State = "follower"
				}
			}
		}
		inflight := map[string]int{}
		idle := map[string]int{}
		for _, s := range stats {
			for _, k := range s.Keys {
				fk := wire.FunctionKey(k.Account, k.Function)
				idle[fk] += k.Idle
				inflight[fk] += k.Total - k.Idle
			}
		}
		accts := map[string]*api.AccountStatus{}
		for _, f := range sn.Functions {
			fk := wire.FunctionKey(f.Account, f.Name)
			st.Functions = append(st.Functions, api.FunctionStatus{Account: f.Account, Name: f.Name, Sandboxes: sn.Counts[fk], Idle: idle[fk], InFlight: inflight[fk], Reserved: f.Reserved})
			a := accts[f.Account]
			if a == nil {
				a = &api.AccountStatus{Account: f.Account, Limit: quota.DefaultAccountLimit, Sandboxes: sn.Accounted[f.Account]}
				accts[f.Account] = a
			}
			a.InFlight += inflight[fk]
		}
		for _, a := range sn.Accounts {
			if accts[a.ID] == nil {
				accts[a.ID] = &api.AccountStatus{Account: a.ID, Sandboxes: sn.Accounted[a.ID]}
			}
			accts[a.ID].Limit = a.Limit
		}
		for _, a := range accts {
			st.Accounts = append(st.Accounts, *a)
		}
		sort.Slice(st.Accounts, func(i, j int) bool { return st.Accounts[i].Account < st.Accounts[j].Account })
	}
	writeJSON(w, http.StatusOK, st)
}

// replicas asks every placement node for its own view, concurrently and
// briefly: a node that does not answer is shown as such.
func (g *Gateway) replicas(ctx context.Context, sn *wire.Snapshot) []api.Replica {
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	out := make([]api.Replica, len(sn.Peers))
	var wg sync.WaitGroup
	for i, p := range sn.Peers {
		wg.Add(1)
		go func(i int, id string) {
			defer wg.Done()
			out[i] = api.Replica{ID: id}
			s, err := g.pl.ReadNode(ctx, id)
			if err != nil || s == nil {
				out[i].Error = "no answer"
				return
			}
			out[i] = api.Replica{ID: id, Leader: s.Leader, Term: s.Term, Applied: s.Index, Digest: s.Digest, ClusterID: s.ClusterID}
		}(i, p.ID)
	}
	wg.Wait()
	return out
}

func (g *Gateway) workerStats(ctx context.Context, sn *wire.Snapshot) []wire.Stats {
	if sn == nil {
		return nil
	}
	var mu sync.Mutex
	var out []wire.Stats
	var wg sync.WaitGroup
	for _, wk := range sn.Workers {
		if !wk.Alive {
			continue
		}
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			m, err := g.nc.RequestWithContext(ctx, wire.WorkerSubject(id, wire.WorkerStats), nil)
			if err != nil {
				return
			}
			var s wire.Stats
			if json.Unmarshal(m.Data, &s) == nil {
				mu.Lock()
				out = append(out, s)
				mu.Unlock()
			}
		}(wk.ID)
	}
	wg.Wait()
	return out
}

// Pending limits of a records stream's subscription: its callback only
// hands batches (up to 256 records each) to the stream without blocking.
const (
	recordsPendingMsgs  = 4096
	recordsPendingBytes = 64 << 20
)

// handleRecords streams finished-invocation records as NDJSON until the
// client goes away.
func (g *Gateway) handleRecords(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, errService("streaming unsupported"))
		return
	}
	fn := r.URL.Query().Get("function")
	ch := make(chan []byte, 65536)
	sub, err := g.nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) {
		select {
		case ch <- m.Data:
		default: // a reader that cannot keep up loses records, not the gateway
		}
	})
	if err != nil {
		writeError(w, errService(err.Error()))
		return
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(recordsPendingMsgs, recordsPendingBytes); err != nil {
		writeError(w, errService(err.Error()))
		return
	}
	watch := dropWatch{sub: sub}
	// The stream lasts as long as its reader wants, past WriteTimeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	dirty := false
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-ch:
			for _, line := range bytes.Split(b, []byte{'\n'}) {
				if len(line) == 0 {
					continue
				}
				if fn != "" {
					var rec struct {
						Function string `json:"function"`
					}
					if json.Unmarshal(line, &rec) != nil || rec.Function != fn {
						continue
					}
				}
				w.Write(line)
				w.Write([]byte{'\n'})
				dirty = true
			}
		case <-tick.C:
			watch.check(g.log)
			if dirty {
				fl.Flush()
				dirty = false
			}
		}
	}
}
