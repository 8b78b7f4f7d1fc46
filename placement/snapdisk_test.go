package placement

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/natsutil"
)

// startSingle starts a one-node placement cluster on its own NATS server.
func startSingle(t *testing.T, dir string) (*Node, error) {
	t.Helper()
	return startSingleWith(t, dir, nil)
}

func startSingleWith(t *testing.T, dir string, opt func(*Config)) (*Node, error) {
	t.Helper()
	ns, err := natsutil.StartServer(natsutil.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := natsutil.Connect(natsutil.URL(ns), "placement-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := Config{ID: "p1", RaftAddr: addr, DataDir: dir, Peers: []Peer{{ID: "p1", Addr: addr}}, NATS: nc}
	if opt != nil {
		opt(&cfg)
	}
	return Start(cfg)
}

// TestCorruptSnapshotOnDiskRefusesToStart: a node whose only snapshot is
// damaged does not start with a state its peers do not have; it refuses,
// naming the file.
func TestCorruptSnapshotOnDiskRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	n, err := startSingle(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WaitForLeader(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !n.isServing() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := n.apply(CmdSetAccountLimit, SetAccountLimit{Account: "a", Limit: 7}); err != nil {
		t.Fatal(err)
	}
	if err := n.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	n.Shutdown()
	states, _ := filepath.Glob(filepath.Join(dir, "p1", "snapshots", "*", "state.bin"))
	if len(states) != 1 {
		t.Fatalf("snapshots on disk: %v", states)
	}
	// Damage it: a null sandbox, the shape that once crashed Raft's restore.
	if err := os.WriteFile(states[0], []byte(`{"sandboxes":{"x":null}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = startSingle(t, dir)
	if err == nil || !errors.Is(err, ErrCorruptSnapshot) || !strings.Contains(err.Error(), states[0]) {
		t.Fatalf("start over a corrupt snapshot: %v (want ErrCorruptSnapshot naming %s)", err, states[0])
	}
}
