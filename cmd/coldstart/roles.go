package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/recordstream"
	"github.com/coldstart-dev/coldstart/internal/roles"
	"github.com/coldstart-dev/coldstart/internal/secret"
	"github.com/coldstart-dev/coldstart/placement"
)

// nodeFlags are the flags every role shares.
type nodeFlags struct {
	id, nats, gossip, join, http, advertise string
	secretFile, passwordFile, gossipKeyFile string
	verbose                                 bool
}

func (f *nodeFlags) register(fs *flag.FlagSet, role string) {
	host, _ := os.Hostname()
	fs.StringVar(&f.id, "id", envOr("COLDSTART_ID", role+"-"+host), "node id (fixed: placement peers are addressed by it)")
	fs.StringVar(&f.nats, "nats", envOr("COLDSTART_NATS", "nats://127.0.0.1:4222"), "NATS server URL")
	fs.StringVar(&f.gossip, "gossip", envOr("COLDSTART_GOSSIP", "127.0.0.1:7946"), "memberlist bind address host:port")
	fs.StringVar(&f.join, "join", envOr("COLDSTART_JOIN", ""), "comma-separated memberlist seeds host:port")
	fs.StringVar(&f.advertise, "advertise", envOr("COLDSTART_ADVERTISE", ""), "memberlist address others reach this node at, host[:port] (hostnames resolved; default: the --gossip host, or a private IP when it is 0.0.0.0)")
	fs.StringVar(&f.http, "http", envOr("COLDSTART_HTTP", ""), "address for /metrics and /healthz (empty: none)")
	fs.BoolVar(&f.verbose, "verbose", false, "debug logs")
	registerSecretFlag(fs, &f.secretFile)
	fs.StringVar(&f.passwordFile, "nats-password-file", "", "file holding only this node's NATS password, instead of --cluster-secret-file (see deployments/README.md)")
	fs.StringVar(&f.gossipKeyFile, "gossip-key-file", "", "file holding only the memberlist key (hex), with --nats-password-file")
}

func registerSecretFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "cluster-secret-file", "", "file holding the cluster secret (hex); empty: no NATS authentication, plaintext gossip")
}

// readSecret reads --cluster-secret-file (nil when not given).
func readSecret(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	s, err := secret.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--cluster-secret-file: %w", err)
	}
	return s, nil
}

func (f *nodeFlags) common(reg *prometheus.Registry, stderr io.Writer) (roles.Common, error) {
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	c := roles.Common{ID: f.id, NATSURL: f.nats, GossipAddr: f.gossip, Advertise: f.advertise, Seeds: splitList(f.join), Timing: membership.Fast, Registry: reg, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))}
	var err error
	if c.Secret, err = readSecret(f.secretFile); err != nil {
		return c, err
	}
	if c.Secret != nil && (f.passwordFile != "" || f.gossipKeyFile != "") {
		return c, errors.New("--cluster-secret-file derives every key: give it alone, or --nats-password-file and --gossip-key-file")
	}
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return c, fmt.Errorf("--nats-password-file: %w", err)
		}
		if c.NATSPassword = strings.TrimSpace(string(b)); c.NATSPassword == "" {
			return c, fmt.Errorf("--nats-password-file: %s is empty", f.passwordFile)
		}
	}
	if f.gossipKeyFile != "" {
		if c.GossipKey, err = secret.ReadFile(f.gossipKeyFile); err != nil {
			return c, fmt.Errorf("--gossip-key-file: %w", err)
		}
	}
	return c, nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveAdmin serves /metrics and /healthz for a node that has no HTTP API.
func serveAdmin(addr string, reg *prometheus.Registry, healthy func() bool) {
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !healthy() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	go http.ListenAndServe(addr, mux)
}

// parseFlags parses a node command's flags. Every flag may also come from
// the environment as COLDSTART_<NAME> (dashes as underscores); a flag given
// on the command line wins. This is the one place configuration is read.
// It returns -1 to go on, or the exit code: 0 after --help, 2 on bad flags.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, usage string) int {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage+"\n\nFlags (each also read from COLDSTART_<FLAG>, e.g. --keep-alive as COLDSTART_KEEP_ALIVE):")
		fs.PrintDefaults()
	}
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && bad == nil {
			if err := f.Value.Set(v); err != nil {
				bad = fmt.Errorf("$%s=%q: %v", envName(f.Name), v, err)
			}
		}
	})
	if bad != nil {
		fmt.Fprintln(stderr, bad)
		return 2
	}
	return parseExit(fs.Parse(args))
}

// parseExit maps a flag.Parse error to parseFlags' result.
func parseExit(err error) int {
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	return 2
}

func envName(flagName string) string {
	return "COLDSTART_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func runPlacement(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("placement", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs, "placement")
	raftAddr := fs.String("raft", envOr("COLDSTART_RAFT", "127.0.0.1:7300"), "Raft bind/advertise address host:port")
	peers := fs.String("peers", envOr("COLDSTART_PEERS", ""), "all placement nodes as id=host:port,... (this one included)")
	data := fs.String("data", envOr("COLDSTART_DATA", "./.coldstart/placement"), "data directory (Raft log, snapshots)")
	rate := fs.String("scale-rate", envOr("COLDSTART_SCALE_RATE", "1000/10s"), "per-function scaling rate N/WINDOW or off")
	if code := parseFlags(fs, args, stderr, "Usage: coldstart placement [flags]\n\nRuns one placement node. Restarting with the same --data rejoins; it never bootstraps twice.\n\nExample:\n  coldstart placement --id p1 --raft 10.0.0.1:7300 --peers p1=10.0.0.1:7300,p2=10.0.0.2:7300,p3=10.0.0.3:7300 \\\n    --nats nats://10.0.0.9:4222 --gossip 10.0.0.1:7946 --join 10.0.0.2:7946"); code >= 0 {
		return code
	}
	ps, err := parsePeers(*peers)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart placement:", err)
		return 2
	}
	sr, err := parseRate(*rate)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart placement:", err)
		return 2
	}
	reg := newRegistry()
	common, err := nf.common(reg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart placement:", err)
		return 2
	}
	n, err := roles.StartPlacement(roles.PlacementOptions{Common: common, RaftAddr: *raftAddr, DataDir: *data, Peers: ps, Raft: placement.Tuned, Rate: sr})
	if err != nil {
		fmt.Fprintln(stderr, "coldstart placement:", err)
		return 1
	}
	defer n.Stop()
	serveAdmin(nf.http, reg, func() bool { return n.Placement.LeaderID() != "" })
	fmt.Fprintf(stdout, "placement %s raft %s ready\n", nf.id, *raftAddr)
	<-ctx.Done()
	return 0
}

func parsePeers(s string) ([]placement.Peer, error) {
	var out []placement.Peer
	for _, p := range splitList(s) {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers: %q is not id=host:port", p)
		}
		out = append(out, placement.Peer{ID: id, Addr: addr})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--peers is required (id=host:port for every placement node)")
	}
	return out, nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs, "worker")
	capacity := fs.Int("capacity", 5000, "sandbox slots")
	memory := fs.Int("memory", 0, "memory MB for sandboxes (0: unlimited)")
	keep := fs.Duration("keep-alive", 10*time.Minute, "default keep-alive TTL of idle sandboxes")
	scale := fs.Float64("time-scale", 1, "divide modelled delays and the keep-alive by this factor")
	redisURL := fs.String("redis", envOr("COLDSTART_REDIS", ""), "Redis `URL` of the platform's idempotency records (redis://host:port); without it, functions with idempotency on are refused")
	logInv := fs.Bool("log-invocations", false, "print START/END/REPORT lines")
	codeCache := fs.String("code-cache", "", "directory code bundles are unpacked in; sandboxes run as other uids, so every parent directory needs o+x (default $TMPDIR/coldstart-code-<id>)")
	scratch := fs.String("scratch", "", "directory of the sandboxes' scratch (/tmp) directories (default $TMPDIR/coldstart-scratch-<id>)")
	bootDelay := fs.Duration("boot-delay", 0, "emulated microVM boot added to every process sandbox's creation, e.g. 125ms")
	if code := parseFlags(fs, args, stderr, "Usage: coldstart worker [flags]\n\nRuns one worker: sandbox pools, synthetic runtime, keep-alive eviction.\n\nExample:\n  coldstart worker --id w1 --nats nats://127.0.0.1:4222 --gossip 127.0.0.1:7950 --join 127.0.0.1:7946"); code >= 0 {
		return code
	}
	reg := newRegistry()
	common, err := nf.common(reg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart worker:", err)
		return 2
	}
	n, err := roles.StartWorker(roles.WorkerOptions{Common: common, Capacity: *capacity, MemoryMB: *memory, KeepAlive: *keep, TimeScale: *scale, LogInvocations: *logInv, CodeCacheDir: *codeCache, ScratchDir: *scratch, BootDelay: *bootDelay, RedisURL: *redisURL})
	if err != nil {
		fmt.Fprintln(stderr, "coldstart worker:", err)
		return 1
	}
	defer n.Stop()
	serveAdmin(nf.http, reg, func() bool { return n.NC.IsConnected() })
	fmt.Fprintf(stdout, "worker %s ready\n", nf.id)
	<-ctx.Done()
	return 0
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs, "gateway")
	listen := fs.String("listen", envOr("COLDSTART_LISTEN", "127.0.0.1:9000"), "Lambda API address (also serves /metrics and /healthz)")
	var af authFlags
	af.register(fs)
	codeReplicas := fs.Int("code-replicas", 1, "copies of the code bucket when this gateway creates it (the NATS cluster's JetStream servers, at most)")
	gwScale := fs.Float64("time-scale", 1, "divide the platform's asynchronous delays (retry waits, backoff, maximum event age) by this factor")
	var rf recordsFlags
	rf.register(fs)
	if code := parseFlags(fs, args, stderr, "Usage: coldstart gateway [flags]\n\nRuns one gateway: the AWS Lambda HTTP API, routing over NATS.\n\nExample:\n  coldstart gateway --id g1 --listen 0.0.0.0:9000 --nats nats://127.0.0.1:4222 --gossip 127.0.0.1:7960 --join 127.0.0.1:7946"); code >= 0 {
		return code
	}
	reg := newRegistry()
	common, err := nf.common(reg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart gateway:", err)
		return 2
	}
	n, err := roles.StartGateway(roles.GatewayOptions{Common: common, Listen: *listen, CodeReplicas: *codeReplicas, Records: rf.config(), StrictAuth: af.strict, NoDefaultKey: af.noDefaultKey, TimeScale: *gwScale})
	if err != nil {
		fmt.Fprintln(stderr, "coldstart gateway:", err)
		return 1
	}
	defer n.Stop()
	fmt.Fprintf(stdout, "gateway %s http://%s ready (%s)\n", nf.id, n.Gateway.Addr(), af.mode())
	<-ctx.Done()
	return 0
}

func runNATS(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	listen := fs.String("listen", envOr("COLDSTART_LISTEN", "127.0.0.1:4222"), "client address host:port")
	store := fs.String("store", envOr("COLDSTART_DATA", "./.coldstart/nats"), "JetStream storage directory")
	var secretFile string
	registerSecretFlag(fs, &secretFile)
	if code := parseFlags(fs, args, stderr, "Usage: coldstart nats [flags]\n\nRuns an embedded NATS server with JetStream on disk. With --cluster-secret-file it\nadmits only nodes logging in with a password derived from that secret, each limited\nto its role's subjects; give every node the same file.\n\nExample:\n  coldstart nats --listen 0.0.0.0:4222 --store /data/nats --cluster-secret-file /run/secrets/cluster-secret"); code >= 0 {
		return code
	}
	host, port, err := splitHostPort(*listen)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart nats:", err)
		return 2
	}
	sec, err := readSecret(secretFile)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart nats:", err)
		return 2
	}
	s, err := natsutil.StartServer(natsutil.ServerConfig{Host: host, Port: port, JetStream: true, StoreDir: *store, Secret: sec})
	if err != nil {
		fmt.Fprintln(stderr, "coldstart nats:", err)
		return 1
	}
	defer s.Shutdown()
	fmt.Fprintf(stdout, "nats %s ready\n", natsutil.URL(s))
	<-ctx.Done()
	return 0
}

func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:9000/healthz", "health URL to probe")
	tcp := fs.String("tcp", "", "probe a TCP address instead (host:port), e.g. a NATS server")
	if code := parseFlags(fs, args, stderr, "Usage: coldstart healthcheck [--url URL | --tcp HOST:PORT]\n\nExits 0 when URL answers 200 (or HOST:PORT accepts a connection) within 2 s:\nfor container health probes.\n\nExample:\n  coldstart healthcheck --url http://127.0.0.1:9000/healthz\n  coldstart healthcheck --tcp nats:4222"); code >= 0 {
		return code
	}
	if *tcp != "" {
		c, err := net.DialTimeout("tcp", *tcp, 2*time.Second)
		if err != nil {
			fmt.Fprintln(stderr, "unhealthy:", err)
			return 1
		}
		c.Close()
		fmt.Fprintln(stdout, "healthy")
		return 0
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(*url)
	if err != nil {
		fmt.Fprintln(stderr, "unhealthy:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		fmt.Fprintln(stderr, "unhealthy:", resp.Status)
		return 1
	}
	fmt.Fprintln(stdout, "healthy")
	return 0
}

// authFlags are the gateway's authentication flags (coldstart gateway, up).
type authFlags struct{ strict, noDefaultKey bool }

func (a *authFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&a.strict, "strict-auth", false, "refuse unsigned requests (default: they act as account "+gateway.DefaultAccount+")")
	fs.BoolVar(&a.noDefaultKey, "no-default-key", false, "remove the built-in access key "+gateway.DefaultKeyID+" (secret "+gateway.DefaultKeySecret+") of account "+gateway.DefaultAccount)
}

// recordsFlags are the records stream's retention (coldstart gateway, up):
// a gateway applies them when it starts, so the last gateway started sets
// them for the cluster.
type recordsFlags struct {
	maxAge   time.Duration
	maxBytes byteSize
}

func (r *recordsFlags) register(fs *flag.FlagSet) {
	r.maxAge, r.maxBytes = recordstream.DefaultMaxAge, recordstream.DefaultMaxBytes
	fs.DurationVar(&r.maxAge, "records-max-age", r.maxAge, "how long the records stream keeps invocation records (coldstart records --since)")
	fs.Var(&r.maxBytes, "records-max-bytes", "the records stream's size bound, e.g. 512MiB or 2GiB; the oldest records go first")
}

func (r recordsFlags) config() recordstream.Config {
	return recordstream.Config{MaxAge: r.maxAge, MaxBytes: int64(r.maxBytes)}
}

// byteSize is a flag of bytes: a count, or one with a binary unit (KiB,
// MiB, GiB, TiB; K, M, G, T alike).
type byteSize int64

var byteUnits = []struct {
	suffix string
	n      int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}}

func (b *byteSize) Set(s string) error {
	num, unit := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if v, ok := strings.CutSuffix(num, u.suffix); ok {
			num, unit = strings.TrimSpace(v), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/unit {
		return fmt.Errorf("%q is not a positive size (e.g. 536870912, 512MiB, 2GiB)", s)
	}
	*b = byteSize(n * unit)
	return nil
}

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	// The largest binary unit that divides it: 512MiB, not 524288KiB.
	for i := 3; i >= 0 && *b > 0; i-- {
		if u := byteUnits[i]; int64(*b)%u.n == 0 {
			return strconv.FormatInt(int64(*b)/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(*b), 10)
}

// mode says in one line who may call the API.
func (a authFlags) mode() string {
	m := "development: unsigned requests act as account " + gateway.DefaultAccount
	key := "; access key " + gateway.DefaultKeyID + " / secret " + gateway.DefaultKeySecret
	if a.strict {
		m = "strict: unsigned requests are refused"
		key += " (account " + gateway.DefaultAccount + ")"
	}
	if a.noDefaultKey {
		key = "; no built-in access key (sign with keys from `coldstart account keys`)"
	}
	return m + key
}
