package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/internal/faultnet"
	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/ports"
	"github.com/coldstart-dev/coldstart/internal/roles"
	"github.com/coldstart-dev/coldstart/internal/secret"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/worker/process"
)

// natsURLFile, in the data directory, holds the NATS URL of the running
// `coldstart up`.
const natsURLFile = "nats-url"

// limitsNote explains a limits mode on the banner.
func limitsNote(mode string) string {
	if mode == "rlimit" {
		return "   (not root: sandboxes share this user's uid; rlimits, memory by RSS polling)"
	}
	return "   (a uid per sandbox; rlimits, memory by RSS polling)"
}

// layout is the port plan of an embedded cluster, kept in the data
// directory: Raft peers are addressed by host:port, so a restart must reuse
// the same ports to rejoin its own cluster.
type layout struct {
	NATS      int   `json:"nats"`
	Redis     int   `json:"redis"`
	Raft      []int `json:"raft"`
	Gossip    []int `json:"gossip"`
	Placement int   `json:"placement"`
	Workers   int   `json:"workers"`
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", envOr("COLDSTART_DATA", "./.coldstart"), "data directory (Raft logs, JetStream, port plan); a restart on it keeps functions and limits")
	listen := fs.String("listen", envOr("COLDSTART_LISTEN", "127.0.0.1:9000"), "address of the first gateway; the second takes the next port")
	redisURL := fs.String("redis", envOr("COLDSTART_REDIS", ""), "Redis URL (redis://host:port); default: an embedded Redis-protocol server")
	gateways := fs.Int("gateways", 2, "number of gateways")
	workers := fs.Int("workers", 3, "number of workers")
	capacity := fs.Int("worker-capacity", 5000, "sandbox slots per worker")
	keepAlive := fs.Duration("keep-alive", 10*time.Minute, "keep-alive TTL of idle sandboxes (functions may override)")
	rate := fs.String("scale-rate", "1000/10s", "per-function scaling rate: N/WINDOW new sandboxes, or 'off'")
	timeScale := fs.Float64("time-scale", 1, "divide every modelled and platform delay by this factor (drills): cold starts, handler durations, keep-alive, asynchronous retry waits, backoff and maximum event age")
	logInv := fs.Bool("log-invocations", false, "print START/END/REPORT lines for every invocation")
	verbose := fs.Bool("verbose", false, "platform logs at debug level")
	codeCache := fs.String("code-cache", "", "directory the workers unpack code bundles in, one subdirectory each; sandboxes run as other uids, so every parent needs o+x (default $TMPDIR/coldstart-code-<worker>)")
	bootDelay := fs.Duration("boot-delay", 0, "emulated microVM boot added to every process sandbox's creation, e.g. 125ms")
	var af authFlags
	af.register(fs)
	var rf recordsFlags
	rf.register(fs)
	admin := fs.String("admin", envOr("COLDSTART_ADMIN", "127.0.0.1:9100"), "loopback address of the admin (chaos) endpoint; requests need the token printed at start")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coldstart up [flags]\n\nRuns 3 placement nodes, gateways, workers, NATS (JetStream on disk) and Redis in one\nprocess over real loopback sockets, prints the gateway URLs and 'ready'. Ctrl-C stops it.\n\nExample:\n  coldstart up --data ./.coldstart --listen 127.0.0.1:9000\n\nFlags:")
		fs.PrintDefaults()
	}
	if code := parseExit(fs.Parse(args)); code >= 0 {
		return code
	}
	scale, err := parseRate(*rate)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart up:", err)
		return 2
	}
	host, gwPort, err := splitHostPort(*listen)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart up: --listen:", err)
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := os.MkdirAll(*data, 0o755); err != nil {
		fmt.Fprintln(stderr, "coldstart up:", err)
		return 1
	}
	lay, err := loadLayout(*data, host, 3, *workers+*gateways+3)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart up:", err)
		return 1
	}
	// The cluster secret stays in the data directory (mode 0600) so that a
	// restart on it comes back as the same cluster; it is never printed.
	secretPath := filepath.Join(*data, "cluster-secret")
	clusterSecret, _, err := secret.LoadOrCreate(secretPath)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart up: cluster secret:", err)
		return 1
	}

	c := &embedded{log: logger, fault: faultnet.New()}
	defer c.stop()
	ns, err := natsutil.StartServer(natsutil.ServerConfig{Host: host, Port: lay.NATS, JetStream: true, StoreDir: filepath.Join(*data, "nats"), Secret: clusterSecret})
	if err != nil {
		fmt.Fprintln(stderr, "coldstart up: nats:", err)
		return 1
	}
	c.stopNATS = ns.Shutdown
	natsURL := natsutil.URL(ns)
	// Tools that read NATS themselves (coldstart logs) find it here.
	if err := os.WriteFile(filepath.Join(*data, natsURLFile), []byte(natsURL+"\n"), 0o644); err != nil {
		fmt.Fprintln(stderr, "coldstart up:", err)
		return 1
	}

	redisAddr, redisKind, err := c.startRedis(*redisURL, host, lay.Redis, filepath.Join(*data, "redis"))
	if err != nil {
		fmt.Fprintln(stderr, "coldstart up: redis:", err)
		return 1
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var seeds []string
	for i := 0; i < 3; i++ {
		seeds = append(seeds, net.JoinHostPort(host, strconv.Itoa(lay.Gossip[i])))
	}
	common := func(id string, gossip int) roles.Common {
		return roles.Common{ID: id, NATSURL: natsURL, GossipAddr: net.JoinHostPort(host, strconv.Itoa(gossip)), Seeds: seeds, Timing: membership.Fast, Registry: reg, Logger: logger, Secret: clusterSecret, Fault: c.fault}
	}
	var peers []placement.Peer
	for i := 0; i < 3; i++ {
		peers = append(peers, placement.Peer{ID: fmt.Sprintf("placement-%d", i+1), Addr: net.JoinHostPort(host, strconv.Itoa(lay.Raft[i]))})
	}
	for i, p := range peers {
		o := roles.PlacementOptions{Common: common(p.ID, lay.Gossip[i]), RaftAddr: p.Addr, DataDir: filepath.Join(*data, "placement"), Peers: peers, Raft: placement.Tuned, Rate: scale}
		c.define(p.ID, func() (*roles.Node, error) { return roles.StartPlacement(o) })
	}
	for i := 0; i < *workers; i++ {
		id := fmt.Sprintf("worker-%d", i+1)
		o := roles.WorkerOptions{Common: common(id, lay.Gossip[3+i]), Capacity: *capacity, KeepAlive: *keepAlive, TimeScale: *timeScale, LogInvocations: *logInv, BootDelay: *bootDelay, RedisURL: "redis://" + redisAddr}
		if *codeCache != "" {
			o.CodeCacheDir = filepath.Join(*codeCache, id)
		}
		c.define(id, func() (*roles.Node, error) { return roles.StartWorker(o) })
	}
	var urls []string
	for i := 0; i < *gateways; i++ {
		id := fmt.Sprintf("gateway-%d", i+1)
		addr := net.JoinHostPort(host, strconv.Itoa(gwPort+i))
		o := roles.GatewayOptions{Common: common(id, lay.Gossip[3+*workers+i]), Listen: addr, Gatherer: reg, Records: rf.config(), StrictAuth: af.strict, NoDefaultKey: af.noDefaultKey, TimeScale: *timeScale}
		c.define(id, func() (*roles.Node, error) { return roles.StartGateway(o) })
		urls = append(urls, "http://"+addr)
	}
	// Placement nodes start together: each waits for the others' Raft.
	var wg sync.WaitGroup
	errs := make(chan error, len(peers))
	for _, p := range peers {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			if err := c.start(id); err != nil {
				errs <- err
			}
		}(p.ID)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fmt.Fprintln(stderr, "coldstart up:", err)
		return 1
	}
	for _, id := range c.order[len(peers):] {
		if err := c.start(id); err != nil {
			fmt.Fprintln(stderr, "coldstart up:", err)
			return 1
		}
	}
	token, err := c.serveAdmin(*admin, *data)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart up: admin:", err)
		return 1
	}
	if err := c.waitReady(ctx, *workers, 20*time.Second); err != nil {
		fmt.Fprintln(stderr, "coldstart up:", err)
		return 1
	}
	for i, u := range urls {
		fmt.Fprintf(stdout, "gateway-%d  %s   (Lambda API; dashboard %s/ ; metrics %s/metrics)\n", i+1, u, u, u)
	}
	fmt.Fprintf(stdout, "nats       %s\n", natsURL)
	fmt.Fprintf(stdout, "redis      redis://%s   (%s)\n", redisAddr, redisKind)
	fmt.Fprintf(stdout, "data       %s\n", *data)
	fmt.Fprintf(stdout, "secret     %s   (cluster secret: NATS logins, gossip encryption; keep it private)\n", secretPath)
	fmt.Fprintf(stdout, "admin      http://%s   (chaos: coldstart chaos kill|pause|partition NODE; token in %s)\n", *admin, filepath.Join(*data, "admin-token"))
	_ = token
	fmt.Fprintf(stdout, "mode       %s\n", af.mode())
	fmt.Fprintf(stdout, "sandboxes  limits %s%s\n", process.LimitsMode(), limitsNote(process.LimitsMode()))
	fmt.Fprintln(stdout, "ready")
	<-ctx.Done()
	fmt.Fprintln(stderr, "coldstart up: shutting down")
	return 0
}

type embedded struct {
	log       *slog.Logger
	mu        sync.Mutex
	order     []string
	starters  map[string]func() (*roles.Node, error)
	nodes     map[string]*roles.Node
	stopNATS  func()
	stopRedis func()
	stopAdmin func()
	// fault carries every node's sockets, for chaos pause and partition.
	fault *faultnet.Layer
	// picked remembers which node an alias named when a fault began, so
	// that "resume leader" resumes the node "pause leader" paused.
	picked map[string]string
}

// define registers how to start a node, so chaos can restart it later with
// the same id, addresses and data.
func (c *embedded) define(id string, start func() (*roles.Node, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.starters == nil {
		c.starters, c.nodes = map[string]func() (*roles.Node, error){}, map[string]*roles.Node{}
	}
	c.order = append(c.order, id)
	c.starters[id] = start
}

func (c *embedded) start(id string) error {
	c.mu.Lock()
	start, ok := c.starters[id]
	running := c.nodes[id] != nil
	c.mu.Unlock()
	switch {
	case !ok:
		return fmt.Errorf("no node %q", id)
	case running:
		return fmt.Errorf("%s is already running", id)
	}
	n, err := start()
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return nil
}

// kill crashes a node: no membership goodbye, its connections dropped.
func (c *embedded) kill(id string) error {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n == nil {
		return fmt.Errorf("%s is not running", id)
	}
	n.Kill()
	return nil
}

// stop shuts nodes down in reverse start order: gateways first, so that no
// new work arrives while workers and placement go away.
func (c *embedded) stop() {
	if c.stopAdmin != nil {
		c.stopAdmin()
	}
	c.fault.Reset() // a paused node would stall its goodbye
	c.mu.Lock()
	var nodes []*roles.Node
	for i := len(c.order) - 1; i >= 0; i-- {
		if n := c.nodes[c.order[i]]; n != nil {
			nodes = append(nodes, n)
		}
	}
	c.nodes = map[string]*roles.Node{}
	c.mu.Unlock()
	for _, n := range nodes {
		n.Stop()
	}
	if c.stopRedis != nil {
		c.stopRedis()
	}
	if c.stopNATS != nil {
		c.stopNATS()
	}
}

func (c *embedded) waitReady(ctx context.Context, workers int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.mu.Lock()
		nodes := make([]*roles.Node, 0, len(c.nodes))
		for _, n := range c.nodes {
			nodes = append(nodes, n)
		}
		c.mu.Unlock()
		for _, n := range nodes {
			if n.Placement == nil || !n.Placement.IsLeader() {
				continue
			}
			alive := n.Placement.LeasedWorkers()
			if alive >= workers {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("cluster not ready within %s (no placement leader or workers not registered)", timeout)
}

// startRedis gives the cluster its Redis: the one at url; else the
// machine's redis-server, spawned with its data in dir; else, and said so,
// the embedded Redis-protocol server (no persistence). It returns the
// address and which of the three it is.
func (c *embedded) startRedis(url, host string, port int, dir string) (string, string, error) {
	if url != "" {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return "", "", err
		}
		if err := pingRedis(opt.Addr, 2*time.Second); err != nil {
			return "", "", fmt.Errorf("%s: %w", url, err)
		}
		return opt.Addr, "yours, --redis", nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if bin, err := exec.LookPath("redis-server"); err == nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", "", err
		}
		cmd := exec.Command(bin, "--bind", host, "--port", strconv.Itoa(port), "--dir", dir, "--appendonly", "yes", "--save", "", "--protected-mode", "no", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			return "", "", fmt.Errorf("redis-server: %w", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		c.stopRedis = func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		if err := pingRedis(addr, 5*time.Second); err != nil {
			c.stopRedis()
			c.stopRedis = nil
			return "", "", fmt.Errorf("redis-server did not answer on %s (log: %s): %w", addr, filepath.Join(dir, "redis.log"), err)
		}
		return addr, "redis-server " + bin + ", data in " + dir, nil
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(addr); err != nil {
		return "", "", err
	}
	c.stopRedis = m.Close
	return m.Addr(), "embedded Redis-protocol server: no redis-server on the PATH, nothing persists", nil
}

// pingRedis waits until the Redis at addr answers PING.
func pingRedis(addr string, within time.Duration) error {
	cl := redis.NewClient(&redis.Options{Addr: addr})
	defer cl.Close()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := cl.Ping(ctx).Err()
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // redis-server starting: poll until the deadline
	}
}

func loadLayout(dir, host string, placements, others int) (*layout, error) {
	path := filepath.Join(dir, "cluster.json")
	if b, err := os.ReadFile(path); err == nil {
		var l layout
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(l.Raft) == placements && len(l.Gossip) >= placements+others {
			return &l, nil
		}
		if len(l.Raft) != placements {
			return nil, fmt.Errorf("%s was made for %d placement nodes", path, len(l.Raft))
		}
		// More nodes than last time: keep the Raft ports, add gossip ports.
		for len(l.Gossip) < placements+others {
			p, err := freePort(host)
			if err != nil {
				return nil, err
			}
			l.Gossip = append(l.Gossip, p)
		}
		return &l, saveLayout(path, &l)
	}
	l := &layout{Placement: placements}
	ports, err := freePorts(host, 2+placements+placements+others)
	if err != nil {
		return nil, err
	}
	l.NATS, l.Redis = ports[0], ports[1]
	l.Raft = ports[2 : 2+placements]
	l.Gossip = ports[2+placements:]
	return l, saveLayout(path, l)
}

func saveLayout(path string, l *layout) error {
	b, _ := json.MarshalIndent(l, "", "  ")
	return os.WriteFile(path, b, 0o644)
}

func freePort(host string) (int, error) {
	p, err := freePorts(host, 1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// freePorts picks n distinct free ports outside the ephemeral range, so a
// restart can bind them again.
func freePorts(host string, n int) ([]int, error) { return ports.Free(host, n) }

func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	return h, port, nil
}

// parseRate reads "1000/10s" or "off".
func parseRate(s string) (quota.Rate, error) {
	if s == "off" || s == "0" {
		return quota.Rate{}, nil
	}
	var n int
	var w string
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			v, err := strconv.Atoi(s[:i])
			if err != nil {
				break
			}
			n, w = v, s[i+1:]
		}
	}
	d, err := time.ParseDuration(w)
	if n <= 0 || err != nil || d <= 0 {
		return quota.Rate{}, fmt.Errorf("--scale-rate %q: want N/WINDOW such as 1000/10s, or off", s)
	}
	return quota.Rate{Burst: n, Window: d}, nil
}
