// Package membership wraps hashicorp/memberlist: every gateway, worker and
// placement node is a member whose metadata says its role; observers get
// join, leave and update callbacks.
package membership

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Roles.
const (
	RolePlacement = "placement"
	RoleGateway   = "gateway"
	RoleWorker    = "worker"
)

// Meta is what a member gossips about itself.
type Meta struct {
	ID       string `json:"id"`
	Role     string `json:"role"`
	Addr     string `json:"addr,omitempty"` // HTTP or Raft address, role-specific
	Capacity int    `json:"cap,omitempty"`  // worker: sandbox slots
	MemoryMB int    `json:"mem,omitempty"`  // worker: memory for sandboxes
}

// Member is a live or dead member as an observer sees it.
type Member struct {
	Meta
	Gossip string // memberlist address
	Alive  bool
}

// Observer receives membership changes. Calls come from memberlist's
// goroutine one at a time; they must not block.
type Observer interface {
	MemberJoin(Member)
	MemberLeave(Member)
}

// Timing is memberlist's failure-detection timing.
type Timing struct {
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int
}

// LAN is memberlist's default LAN timing (dead detection ~5 s).
var LAN = Timing{ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond, GossipInterval: 200 * time.Millisecond, SuspicionMult: 4}

// Fast detects a dead member in under a second on loopback; it is the
// default for coldstart, whose users kill nodes on purpose and want to see
// the platform react.
var Fast = Timing{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond, GossipInterval: 50 * time.Millisecond, SuspicionMult: 2}

// Config configures a member.
type Config struct {
	Meta     Meta
	BindAddr string // host:port; port 0 picks one
	// Advertise is the address others reach this member at (host or
	// host:port; a hostname is resolved once at start). Empty: the bind
	// address, or, when binding 0.0.0.0, the host's private IP.
	Advertise string
	Seeds     []string
	Timing    Timing
	Observer  Observer
	Logger    io.Writer // nil discards
	// SecretKey encrypts and authenticates all gossip (AES-GCM; 16, 24 or
	// 32 bytes). Members with another key, or none, are not admitted. Nil:
	// plaintext gossip, open to anyone who can reach the port.
	SecretKey []byte
	// Transport, when set, carries gossip instead of memberlist's own UDP
	// and TCP listeners on BindAddr (internal/faultnet injects network
	// faults through it). Shutting the member down shuts it down.
	Transport memberlist.Transport
}

// List is a running member.
type List struct {
	ml    *memberlist.Memberlist
	meta  []byte
	obs   Observer
	mu    sync.Mutex
	dead  map[string]Member
	alive map[string]Member // copied in the event callbacks, under mu
	stop  chan struct{}
	once  sync.Once
}

// Join starts a member and joins the seeds (if any answer).
func Join(cfg Config) (*List, error) {
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("membership bind %q: %w", cfg.BindAddr, err)
	}
	port, _ := strconv.Atoi(portStr)
	meta, err := json.Marshal(cfg.Meta)
	if err != nil {
		return nil, err
	}
	l := &List{meta: meta, obs: cfg.Observer, dead: map[string]Member{}, alive: map[string]Member{}, stop: make(chan struct{})}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.ID
	mc.BindAddr = host
	mc.BindPort = port
	advHost, advPort, err := advertise(cfg.Advertise, host, port)
	if err != nil {
		return nil, err
	}
	mc.AdvertiseAddr = advHost
	mc.AdvertisePort = advPort
	t := cfg.Timing
	if t.ProbeInterval == 0 {
		t = Fast
	}
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.GossipInterval = t.GossipInterval
	mc.SuspicionMult = t.SuspicionMult
	mc.PushPullInterval = 2 * time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.DeadNodeReclaimTime = time.Second // a restarted node may rejoin under its name at once
	mc.Delegate = l
	mc.Events = l
	mc.Transport = cfg.Transport
	if cfg.SecretKey != nil {
		// memberlist then verifies incoming and encrypts outgoing gossip.
		mc.SecretKey = append([]byte(nil), cfg.SecretKey...)
	}
	w := cfg.Logger
	if w == nil {
		w = io.Discard
	}
	mc.Logger = log.New(w, "memberlist ", log.LstdFlags)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	l.ml = ml
	if len(cfg.Seeds) > 0 {
		if _, err := ml.Join(cfg.Seeds); err != nil {
			// Not fatal: the seeds may start later; keep retrying.
			go l.retryJoin(cfg.Seeds)
		}
	}
	return l, nil
}

// advertise resolves the address to advertise. Binding the unspecified
// address and advertising it would make every member unreachable.
func advertise(adv, bindHost string, bindPort int) (string, int, error) {
	if adv == "" {
		if ip := net.ParseIP(bindHost); ip != nil && ip.IsUnspecified() {
			return "", bindPort, nil // memberlist picks a private IP
		}
		return bindHost, bindPort, nil
	}
	host, port := adv, bindPort
	if h, p, err := net.SplitHostPort(adv); err == nil {
		host = h
		if port, err = strconv.Atoi(p); err != nil {
			return "", 0, fmt.Errorf("membership advertise %q: bad port", adv)
		}
	}
	if net.ParseIP(host) == nil {
		ips, err := net.LookupHost(host)
		if err != nil || len(ips) == 0 {
			return "", 0, fmt.Errorf("membership advertise %q: %v", adv, err)
		}
		host = ips[0]
	}
	return host, port, nil
}

func (l *List) retryJoin(seeds []string) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if l.ml.NumMembers() > 1 {
			return
		}
		if _, err := l.ml.Join(seeds); err == nil {
			return
		}
	}
}

// Addr is the member's gossip address.
func (l *List) Addr() string { return l.ml.LocalNode().Address() }

// Members returns the alive members. It reads the list kept by the event
// callbacks, not memberlist.Members(): memberlist mutates the nodes that
// returns while we read them.
func (l *List) Members() []Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Member, 0, len(l.alive)+1)
	for _, m := range l.alive {
		out = append(out, m)
	}
	return out
}

// Dead returns members seen leaving and not back since.
func (l *List) Dead() []Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Member, 0, len(l.dead))
	for _, m := range l.dead {
		out = append(out, m)
	}
	return out
}

// Leave announces departure and stops; Kill stops without telling anyone,
// so the others detect a failure.
func (l *List) Leave() error {
	l.once.Do(func() { close(l.stop) })
	_ = l.ml.Leave(time.Second)
	return l.ml.Shutdown()
}

// Kill stops the member silently, as a crash would.
func (l *List) Kill() error {
	l.once.Do(func() { close(l.stop) })
	return l.ml.Shutdown()
}

func decode(n *memberlist.Node) (Member, bool) {
	var m Member
	if err := json.Unmarshal(n.Meta, &m.Meta); err != nil || m.ID == "" {
		return m, false
	}
	m.Gossip = n.Address()
	return m, true
}

// memberlist.Delegate
func (l *List) NodeMeta(limit int) []byte       { return l.meta }
func (l *List) NotifyMsg([]byte)                {}
func (l *List) GetBroadcasts(int, int) [][]byte { return nil }
func (l *List) LocalState(bool) []byte          { return nil }
func (l *List) MergeRemoteState([]byte, bool)   {}

// memberlist.EventDelegate
func (l *List) NotifyJoin(n *memberlist.Node) {
	m, ok := decode(n)
	if !ok {
		return
	}
	m.Alive = true
	l.mu.Lock()
	delete(l.dead, m.ID)
	l.alive[m.ID] = m
	l.mu.Unlock()
	if l.obs != nil {
		l.obs.MemberJoin(m)
	}
}

func (l *List) NotifyLeave(n *memberlist.Node) {
	m, ok := decode(n)
	if !ok {
		return
	}
	l.mu.Lock()
	l.dead[m.ID] = m
	delete(l.alive, m.ID)
	l.mu.Unlock()
	if l.obs != nil {
		l.obs.MemberLeave(m)
	}
}

func (l *List) NotifyUpdate(n *memberlist.Node) {
	m, ok := decode(n)
	if !ok {
		return
	}
	m.Alive = true
	l.mu.Lock()
	l.alive[m.ID] = m
	l.mu.Unlock()
}
