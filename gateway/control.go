package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/recordstream"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

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
	for _, s := range stats {
		st.Workers = append(st.Workers, api.WorkerStatus{ID: s.Worker, Idle: s.Idle, Busy: s.Busy, Processes: s.Processes, Limits: s.Limits})
	}
	sort.Slice(st.Workers, func(i, j int) bool { return st.Workers[i].ID < st.Workers[j].ID })
	st.Async = g.asyncStatus(ctx)
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

// handleRecords streams invocation records as NDJSON. Without since it
// streams those finishing while the client reads, until it goes away, from
// core NATS. With since (all, a duration ago such as 10m, or an RFC 3339
// time) it streams what the records stream kept from then on and, with
// follow=true, the new ones after them. function and request_id narrow
// either.
func (g *Gateway) handleRecords(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, errService("streaming unsupported"))
		return
	}
	q := r.URL.Query()
	f := recordstream.Filter{Function: q.Get("function"), RequestID: q.Get("request_id")}
	// Records are per account: the operator account sees every account's,
	// any other only its own.
	if acct := g.account(r); acct != DefaultAccount {
		f.Account = acct
	}
	if s := q.Get("since"); s != "" {
		since, err := recordstream.ParseSince(s, time.Now())
		if err != nil {
			writeError(w, errInvalidParam(err.Error()))
			return
		}
		follow := false
		if v := q.Get("follow"); v != "" {
			if follow, err = strconv.ParseBool(v); err != nil {
				writeError(w, errInvalidParam("follow "+strconv.Quote(v)+": want true or false"))
				return
			}
		}
		f.Since = since
		g.recordHistory(w, r, fl, f, follow)
		return
	}
	ch := make(chan []byte, 65536)
	var seen recordstream.Seen
	sub, err := g.nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) {
		if !seen.First(m) {
			return // a batch published again while its acknowledgement was late
		}
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
	// The server has the subscription before the client has the headers:
	// a record published after that reaches this reader.
	if err := g.nc.FlushTimeout(5 * time.Second); err != nil {
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
				if len(line) == 0 || !f.Match(line) {
					continue
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

// recordHistory streams what the records stream kept that f matches, then
// with follow the new records until the client goes away. The headers go
// once the stream's consumer exists, so a client that has them also gets
// every record stored afterwards; a failure before is an error answer, a
// failure after aborts the response, so that a cut history never reads as
// a complete one.
func (g *Gateway) recordHistory(w http.ResponseWriter, r *http.Request, fl http.Flusher, f recordstream.Filter, follow bool) {
	started := false
	err := recordstream.Read(r.Context(), g.nc, f, follow, recordstream.Sink{
		Ready: func() {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			fl.Flush()
			started = true
		},
		Record: func(line []byte) error {
			if _, err := w.Write(line); err != nil {
				return err
			}
			_, err := w.Write([]byte{'\n'})
			return err
		},
		CaughtUp: fl.Flush,
	})
	switch {
	case err == nil || r.Context().Err() != nil:
	case !started:
		writeError(w, errService(err.Error()))
	default:
		g.log.Warn("records history cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
}
