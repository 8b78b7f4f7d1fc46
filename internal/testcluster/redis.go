package testcluster

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/internal/ports"
)

// Redis is a real redis-server child process on a loopback port, for the
// platform's idempotency in drills and integration tests. Stop and Start
// take it away and bring it back on the same port (an outage).
type Redis struct {
	t    testing.TB
	bin  string
	dir  string
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts redis-server (the test is skipped when the machine has
// none: CI installs it) and stops it when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (.ci/run installs it)")
	}
	p, err := ports.Free("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	r := &Redis{t: t, bin: bin, dir: t.TempDir(), Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0]))}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr }

// Start (re)starts the server and waits until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	if r.cmd != nil {
		return
	}
	_, port, _ := net.SplitHostPort(r.Addr)
	r.cmd = exec.Command(r.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", "")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(r.cmd, r.done)
	cl := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer cl.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := cl.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not answer: %v", r.Addr, err)
		}
		time.Sleep(20 * time.Millisecond) // the server is starting: poll until the deadline
	}
}

// Stop kills the server (a crash: what it held is gone).
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}
