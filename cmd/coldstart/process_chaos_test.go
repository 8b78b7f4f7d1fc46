//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/client"
	"github.com/coldstart-dev/coldstart/internal/faultnet"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/recordstream"
	"github.com/coldstart-dev/coldstart/internal/secret"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/wire"
)

// TestProcessChaosDrill is the chaos drill of internal/testcluster
// (TestChaosDrillLimitHoldsUnderEveryFault) with every role in its own
// process: NATS, 3 placement nodes, 2 gateways and 3 workers on loopback,
// authenticated by one cluster secret. Pauses are real SIGSTOPs, which
// freeze a process's timers and goroutines, not only its sockets. 5x
// overload of 400 ms invocations against an account limit of 20 runs
// while, one after another:
//
//  1. a worker is stopped for twice its lease TTL: invocations running then
//     come back fenced, ending no later than the leader released the worker;
//  2. a worker is cut off from NATS, and so from placement, and healed (its
//     NATS connection runs through a proxy the test controls);
//  3. the placement leader is stopped for 3 s: a new leader is elected
//     within 3 election timeouts and the old one is a follower once it runs
//     again;
//  4. a follower is stopped for 3 s.
//
// coldstart check must pass over the whole run, every 200 has its record,
// and the replicas end with the same ledger digest at the same index.
// CS_DRILL_RECORDS=FILE writes the run's records there (for `coldstart
// check --records FILE`); CS_DRILL_LOGS=DIR writes each process's log there.
func TestProcessChaosDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a 9-process cluster")
	}
	const limit = 20
	ttl := placement.DefaultLease.TTL
	election := placement.Tuned.Election // what `coldstart placement` runs with

	dir := t.TempDir()
	data := drillDataDir(t, dir)
	bin := filepath.Join(dir, "coldstart")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ports, err := freePorts("127.0.0.1", 17)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	addr := func() string { next++; return "127.0.0.1:" + strconv.Itoa(ports[next-1]) }
	natsAddr := addr()
	natsURL := "nats://" + natsAddr
	secretFile := filepath.Join(dir, "cluster-secret")
	sec, _, err := secret.LoadOrCreate(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	cl := &drillCluster{t: t, bin: bin, env: append(os.Environ(), "COLDSTART_CLUSTER_SECRET_FILE="+secretFile)}
	t.Cleanup(cl.stop)

	if _, err := cl.start("nats", "nats", "--listen", natsAddr, "--store", filepath.Join(data, "nats")); err != nil {
		t.Fatal(err)
	}
	pids := []string{"p1", "p2", "p3"}
	raftAddrs, placeGossip, admin := map[string]string{}, map[string]string{}, map[string]string{}
	var peers, seeds []string
	for _, id := range pids {
		raftAddrs[id], placeGossip[id], admin[id] = addr(), addr(), addr()
		peers = append(peers, id+"="+raftAddrs[id])
		seeds = append(seeds, placeGossip[id])
	}
	join := strings.Join(seeds, ",")
	// Placement nodes wait for each other's Raft: start them together. The
	// admin endpoint (--http) tells each node's own Raft state, also while
	// another node is stopped. The scaling rate is off, as in the
	// in-process drill: only the concurrency limit throttles.
	errs := make(chan error, len(pids))
	for _, id := range pids {
		go func(id string) {
			_, err := cl.start(id, "placement", "--id", id, "--raft", raftAddrs[id], "--peers", strings.Join(peers, ","),
				"--data", filepath.Join(data, "placement"), "--nats", natsURL, "--gossip", placeGossip[id], "--join", join,
				"--http", admin[id], "--scale-rate", "off")
			errs <- err
		}(id)
	}
	for range pids {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Three workers. w2 reaches NATS only through link, which the test can
	// cut: the worker talks to placement over NATS alone, so that cuts it
	// off from placement too. Its gossip stays up; memberlist is a hint
	// that grants avoid a worker, never what releases it.
	link, err := newNATSLink("w2", natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(link.close)
	for _, id := range []string{"w1", "w2", "w3"} {
		url := natsURL
		if id == "w2" {
			url = "nats://" + link.addr()
		}
		if _, err := cl.start(id, "worker", "--id", id, "--nats", url, "--gossip", addr(), "--join", join); err != nil {
			t.Fatal(err)
		}
	}
	var urls []string
	for _, id := range []string{"g1", "g2"} {
		listen := addr()
		if _, err := cl.start(id, "gateway", "--id", id, "--listen", listen, "--nats", natsURL, "--gossip", addr(), "--join", join); err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "http://"+listen)
	}

	// The records, as internal/testcluster's Recorder takes them: the
	// tool role may only listen on cs.records.
	rec, err := newDrillRecorder(natsURL, sec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.close)
	// Placement snapshots are a request, which the tool role may not
	// publish; the test reads them as a gateway of its own.
	reader, err := natsutil.Connect(natsURL, "gateway-drill", natsutil.NodeConnectOptions(natsutil.RoleGateway, "drill", natsutil.Password(sec, natsutil.UserName(natsutil.RoleGateway, "drill"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)

	waitUntil(t, "a leader with the 3 workers registered", 30*time.Second, func() bool {
		s, err := readSnapshot(reader)
		return err == nil && s.Leader != "" && len(s.Workers) == 3
	})
	api0, err := client.New(urls[0])
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the account limit set", 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := api0.SetAccountLimit(ctx, limit)
		return err == nil
	})
	for _, fn := range []string{"drill", "drill2"} {
		// Timeout 3 s (Lambda's default) bounds how long a gateway waits
		// for a reply lost with a partitioned worker: 3 s plus its margin.
		in := api.CreateFunctionInput{FunctionName: fn, Runtime: "synthetic", MemorySize: 512, Timeout: 3, Coldstart: &api.SyntheticConfig{Duration: "400ms", ColdStart: "50ms"}}
		waitUntil(t, "function "+fn+" created", 20*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := api0.CreateFunction(ctx, in)
			return err == nil
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan []drillOutcome, 1)
	// 5x the limit in closed-loop clients, on both gateways.
	go func() {
		done <- drillLoad(ctx, urls, map[string]int{"drill": 3 * limit, "drill2": 2 * limit}, 20*time.Millisecond)
	}()

	// The load runs for fixed spans between faults (the drill's schedule,
	// not a wait for anything).
	run := func(d time.Duration) { time.Sleep(d) }
	faults := testcluster.Faults{Handler: 400 * time.Millisecond}
	fault, settle := faults.Ended, testcluster.Settle
	type workerFault struct {
		worker   string
		from, to time.Time
	}
	var workerFaults []workerFault

	run(2 * time.Second)
	// 1. A worker stopped for twice its lease TTL, then continued.
	at := time.Now()
	cl.signal("w1", "pause")
	run(2 * ttl)
	cl.signal("w1", "resume")
	workerFaults = append(workerFaults, workerFault{"w1", at, time.Now()})
	fault(at)
	run(settle + time.Second)

	// 2. A worker cut off from NATS (and so from placement), then healed.
	at = time.Now()
	link.fault.Partition(link.id)
	run(2 * ttl)
	link.fault.Heal(link.id)
	cut := workerFault{"w2", at, time.Now()}
	workerFaults = append(workerFaults, cut)
	fault(at)
	run(settle + time.Second)

	// 3. The placement leader stopped for 3 s, then continued.
	old := ""
	waitUntil(t, "one placement leader", 5*time.Second, func() bool { old = soleLeader(admin); return old != "" })
	stopped := time.Now()
	cl.signal(old, "pause")
	var elected time.Duration
	newLeader := ""
	waitUntil(t, "a new leader while "+old+" is stopped", 3*time.Second, func() bool {
		for _, id := range pids {
			if id != old {
				if l, err := isLeader(admin[id]); err == nil && l {
					elected, newLeader = time.Since(stopped), id
					return true
				}
			}
		}
		return false
	})
	run(time.Until(stopped.Add(3 * time.Second)))
	cl.signal(old, "resume")
	fault(stopped)
	// A follower again: not leading, and hearing from the new leader.
	waitUntil(t, "the old leader "+old+" a follower again", 3*time.Second, func() bool {
		st, err := placementRaft(admin[old])
		return err == nil && !st.leader && st.lastContact >= 0 && st.lastContact < election.Seconds()
	})
	if max := 3 * election; elected > max {
		t.Errorf("new leader %s after %s, want within 3x the election timeout (%s)", newLeader, elected, max)
	}
	run(settle + time.Second)

	// 4. A follower stopped for 3 s, then continued.
	follower := ""
	waitUntil(t, "one placement leader", 5*time.Second, func() bool {
		lead := soleLeader(admin)
		for _, id := range pids {
			if lead != "" && id != lead {
				follower = id
				return true
			}
		}
		return false
	})
	at = time.Now()
	cl.signal(follower, "pause")
	run(3 * time.Second)
	cl.signal(follower, "resume")
	fault(at)
	run(2 * time.Second)

	cancel()
	out := <-done
	t.Logf("new leader %s %s after %s was stopped (election timeout %s)", newLeader, elected.Round(time.Millisecond), old, election)

	okIDs := map[string]drillOutcome{}
	statuses := map[int]int{}
	for _, o := range out {
		statuses[o.status]++
		if o.status == http.StatusOK {
			okIDs[o.requestID] = o
		}
	}
	t.Logf("outcomes by status (0: no HTTP answer): %v", statuses)
	if statuses[http.StatusOK] < 100 || statuses[http.StatusTooManyRequests] == 0 {
		t.Fatalf("the drill did not load the cluster: %v", statuses)
	}
	// Every successful invocation is accounted for by its record, those
	// of the worker cut off just after answering included: a record is
	// made after the reply, and what the cut swallowed is published again
	// once the stream's acknowledgement is overdue and the link is back.
	var missing []drillOutcome
	if err := waitFor(10*time.Second, func() bool {
		have := map[string]bool{}
		for _, r := range rec.all() {
			have[r.RequestID] = true
		}
		missing = missing[:0]
		for id, o := range okIDs {
			if !have[id] {
				missing = append(missing, o)
			}
		}
		return len(missing) == 0
	}); err != nil {
		for i, o := range missing {
			if i == 10 {
				break
			}
			t.Logf("no record: %s, answered by %s at %s (%s cut off %s .. %s)", o.requestID, o.worker, o.answered.Format(time.StampMicro), cut.worker, cut.from.Format(time.StampMicro), cut.to.Format(time.StampMicro))
		}
		t.Errorf("%d successful invocations without a record", len(missing))
	}

	recs := rec.all()
	cl.writeLogs(os.Getenv("CS_DRILL_LOGS"))
	faults.Judge(t, recs, limit)

	// Fencing: the stopped worker's running invocations were fenced, and
	// each fenced record of a worker cut off by a fault ends no later than
	// the leader released that worker: the platform stopped counting it
	// before its capacity could be granted again.
	releases := cl.releases(pids)
	for i, f := range workerFaults {
		var released time.Time
		for _, at := range releases[f.worker] {
			if !at.Before(f.from) {
				released = at
				break
			}
		}
		if released.IsZero() {
			t.Errorf("fault %d: the leader never released %s, cut off from %s for %s", i+1, f.worker, f.from.Format(time.StampMilli), f.to.Sub(f.from))
			continue
		}
		n := 0
		for _, r := range recs {
			// Invocations running at the fault started at most one
			// handler plus a cold start before it, and none after the
			// release ran under the released incarnation.
			if r.Outcome != api.OutcomeFenced || r.Worker != f.worker || r.StartNs < f.from.Add(-2*time.Second).UnixNano() || r.StartNs >= released.UnixNano() {
				continue
			}
			n++
			if end := time.Unix(0, r.EndNs); end.After(released) {
				t.Errorf("fault %d: fenced %s on %s ends at %s, after the leader released %s at %s", i+1, r.RequestID, r.Worker, end.Format(time.StampMicro), f.worker, released.Format(time.StampMilli))
			}
		}
		t.Logf("fault %d: %s released %s after the fault began; %d of its invocations fenced", i+1, f.worker, released.Sub(f.from).Round(time.Millisecond), n)
		if i == 0 && n == 0 {
			t.Errorf("no invocation fenced on %s, stopped for %s under load", f.worker, f.to.Sub(f.from))
		}
	}

	// The replicas agree: same digest at the same applied index, each as
	// its node reports it (coldstart status --json).
	var replicas []api.Replica
	if err := waitFor(10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := api0.Status(ctx)
		if err != nil {
			return false
		}
		replicas = st.Replicas
		if len(replicas) != len(pids) {
			return false
		}
		for _, r := range replicas {
			if r.Error != "" || r.Digest != replicas[0].Digest || r.Applied != replicas[0].Applied {
				return false
			}
		}
		return true
	}); err != nil {
		for _, r := range replicas {
			t.Logf("%s: applied %d digest %s %s", r.ID, r.Applied, r.Digest, r.Error)
		}
		t.Error("placement replicas disagree after the drill")
	} else {
		t.Logf("replicas agree: applied %d digest %s", replicas[0].Applied, replicas[0].Digest)
	}
}

// drillDataDir is where the Raft logs and the NATS store go: tmpfs when the
// machine has one (CS_DRILL_DISK=1: the test's own temp dir). Raft fsyncs
// its log on every append in the leader loop; on a shared disk a single
// fdatasync can take longer than an election timeout, which delays
// commits and elections: a slow-disk fault of its own, not one this drill
// means to inject. (Lease renewals no longer wait on that loop.)
func drillDataDir(t *testing.T, fallback string) string {
	if os.Getenv("CS_DRILL_DISK") != "" {
		return fallback
	}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "coldstart-drill-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return fallback
}

// drillCluster runs the role processes and stops them at the end, a
// stopped one continued first so that it can die.
type drillCluster struct {
	t     *testing.T
	bin   string
	env   []string
	mu    sync.Mutex
	procs map[string]*drillProc
	order []string
}

type drillProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
}

// start runs `coldstart ARGS` as node id and waits until it prints ready.
func (c *drillCluster) start(id string, args ...string) (*drillProc, error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &drillProc{cmd: cmd, stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.procs == nil {
		c.procs = map[string]*drillProc{}
	}
	c.procs[id] = p
	c.order = append(c.order, id)
	c.mu.Unlock()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
		return p, nil
	case <-time.After(20 * time.Second):
		return nil, fmt.Errorf("%s (%v) not ready: %s", id, args, p.stderr.String())
	}
}

// signal stops (pause) or continues (resume) node id's process.
func (c *drillCluster) signal(id, verb string) {
	c.t.Helper()
	c.mu.Lock()
	p := c.procs[id]
	c.mu.Unlock()
	if _, err := signalPID(p.cmd.Process.Pid, verb); err != nil {
		c.t.Fatalf("%s %s: %v", verb, id, err)
	}
}

func (c *drillCluster) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range c.order {
		p := c.procs[id]
		signalPID(p.cmd.Process.Pid, "resume")
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// releases returns, per worker, the instants a placement leader logged
// releasing it, in order. The line is logged just before the release is
// proposed, so the release committed at or after it.
func (c *drillCluster) releases(ids []string) map[string][]time.Time {
	out := map[string][]time.Time{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		for _, line := range strings.Split(c.procs[id].stderr.String(), "\n") {
			if !strings.Contains(line, `msg="worker lease expired: releasing its sandboxes"`) {
				continue
			}
			at, w := "", ""
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "time="); ok {
					at = v
				}
				if v, ok := strings.CutPrefix(f, "worker="); ok {
					w = v
				}
			}
			if ts, err := time.Parse(time.RFC3339Nano, at); err == nil && w != "" {
				out[w] = append(out[w], ts)
			}
		}
	}
	for _, ts := range out {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	}
	return out
}

// writeLogs writes each process's log to DIR/ID.log (dir "" writes none).
func (c *drillCluster) writeLogs(dir string) {
	if dir == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	os.MkdirAll(dir, 0o755)
	for id, p := range c.procs {
		if err := os.WriteFile(filepath.Join(dir, id+".log"), []byte(p.stderr.String()), 0o644); err != nil {
			c.t.Error(err)
		}
	}
}

// natsLink carries one worker's NATS connections to the server through a
// fault layer of the test's own: the worker is a separate process with no
// fault layer, and a partition must drop its bytes, both ways, on
// connections that stay open (Heal then resets them and it reconnects).
type natsLink struct {
	fault *faultnet.Layer
	id    string
	ln    net.Listener
	up    string
}

func newNATSLink(id, natsAddr string) (*natsLink, error) {
	l := &natsLink{fault: faultnet.New(), id: id, up: natsAddr}
	l.fault.Register(faultnet.NATS, natsAddr)
	ln, err := l.fault.Listen(id, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.pipe(c)
		}
	}()
	return l, nil
}

func (l *natsLink) addr() string { return l.ln.Addr().String() }

func (l *natsLink) pipe(down net.Conn) {
	defer down.Close()
	up, err := l.fault.Dial(l.id, "tcp", l.up, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, down); done <- struct{}{} }()
	go func() { io.Copy(down, up); done <- struct{}{} }()
	<-done
}

func (l *natsLink) close() {
	l.fault.Reset()
	l.ln.Close()
}

// drillRecorder collects every record published on cs.records.
type drillRecorder struct {
	nc   *nats.Conn
	seen recordstream.Seen
	mu   sync.Mutex
	recs []api.Record
}

func newDrillRecorder(url string, sec []byte) (*drillRecorder, error) {
	nc, err := natsutil.Connect(url, "tool-drill-recorder", natsutil.NodeConnectOptions(natsutil.RoleTool, "drill-recorder", natsutil.Password(sec, natsutil.UserName(natsutil.RoleTool, "drill-recorder"))))
	if err != nil {
		return nil, err
	}
	r := &drillRecorder{nc: nc}
	sub, err := nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) {
		if !r.seen.First(m) {
			return // a batch published again while its acknowledgement was late
		}
		recs := wire.SplitRecords(m.Data)
		r.mu.Lock()
		r.recs = append(r.recs, recs...)
		r.mu.Unlock()
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	sub.SetPendingLimits(-1, -1)
	return r, nc.Flush()
}

// all returns every record so far, invocations and throttles.
func (r *drillRecorder) all() []api.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.Record(nil), r.recs...)
}

func (r *drillRecorder) close() { r.nc.Close() }

type drillOutcome struct {
	status    int
	requestID string
	worker    string
	answered  time.Time
}

// drillLoad runs closed-loop clients per function, spread over the
// gateways, until ctx ends; each backs off after a 429 (or a request that
// got no HTTP answer) as an SDK would, so throttled clients do not spin.
// An invocation in flight when ctx ends finishes.
func drillLoad(ctx context.Context, urls []string, fns map[string]int, backoff time.Duration) []drillOutcome {
	hc := &http.Client{Transport: client.NewTransport(256, 2*time.Second), Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	var out []drillOutcome
	var wg sync.WaitGroup
	i := 0
	for fn, clients := range fns {
		for c := 0; c < clients; c++ {
			url := urls[i%len(urls)] + "/2015-03-31/functions/" + fn + "/invocations"
			i++
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					o := drillOutcome{}
					resp, err := hc.Post(url, "application/octet-stream", strings.NewReader(`{}`))
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						o = drillOutcome{status: resp.StatusCode, requestID: resp.Header.Get(api.HeaderRequestID), worker: resp.Header.Get(api.HeaderWorker), answered: time.Now()}
					}
					mu.Lock()
					out = append(out, o)
					mu.Unlock()
					if o.status == http.StatusTooManyRequests || o.status == 0 {
						time.Sleep(backoff)
					}
				}
			}()
		}
	}
	wg.Wait()
	return out
}

// raftState is what a placement node's admin endpoint says of its own
// Raft: whether it leads, and how long ago it last heard from a leader (0
// on the leader, -1 when it never did).
type raftState struct {
	leader      bool
	lastContact float64
}

func placementRaft(admin string) (raftState, error) {
	hc := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := hc.Get("http://" + admin + "/metrics")
	if err != nil {
		return raftState{}, err
	}
	defer resp.Body.Close()
	var st raftState
	seen := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), "{")
		_, val, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "coldstart_placement_is_leader":
			st.leader, seen = v == 1, seen+1
		case "coldstart_placement_last_contact_seconds":
			st.lastContact, seen = v, seen+1
		}
	}
	if seen != 2 {
		return st, errors.New("no Raft state in " + admin + "/metrics")
	}
	return st, nil
}

func isLeader(admin string) (bool, error) {
	st, err := placementRaft(admin)
	return st.leader, err
}

// soleLeader is the one placement node that leads, as every node answers
// for itself; "" while that is not exactly one.
func soleLeader(admin map[string]string) string {
	lead := ""
	for id, a := range admin {
		l, err := isLeader(a)
		if err != nil {
			return ""
		}
		if l {
			if lead != "" {
				return ""
			}
			lead = id
		}
	}
	return lead
}

func readSnapshot(nc *nats.Conn) (*wire.Snapshot, error) {
	m, err := nc.Request(wire.SubjectRead, []byte(`{"op":"`+wire.OpSnapshot+`"}`), time.Second)
	if err != nil {
		return nil, err
	}
	var resp wire.Response
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, err
	}
	if resp.Snapshot == nil {
		return nil, errors.New("placement read answered without a snapshot")
	}
	return resp.Snapshot, nil
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
