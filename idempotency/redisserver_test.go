package idempotency

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/internal/ports"
)

// redisServer is a real redis-server child process on a loopback port,
// without persistence, so the tests exercise the server Powertools users
// run rather than an emulation of it.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedisServer starts redis-server with its working directory in dir.
// ok is false when redis-server is not installed.
func startRedisServer(dir string) (_ *redisServer, ok bool, _ error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, false, nil
	}
	var lastErr error
	for try := 0; try < 3; try++ { // a picked port can be taken before the server binds it
		p, err := ports.Free("127.0.0.1", 1)
		if err != nil {
			return nil, true, err
		}
		s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0])), done: make(chan struct{})}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(p[0]), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", "")
		s.cmd.Dir = dir
		if err := s.cmd.Start(); err != nil {
			return nil, true, err
		}
		go func() { s.cmd.Wait(); close(s.done) }()
		if lastErr = s.waitReady(5 * time.Second); lastErr == nil {
			return s, true, nil
		}
		s.stop()
	}
	return nil, true, fmt.Errorf("redis-server did not start: %w", lastErr)
}

func (s *redisServer) waitReady(timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: s.addr, DisableIdentity: true, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("redis-server exited")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop kills the server and waits for it to be gone.
func (s *redisServer) stop() {
	s.cmd.Process.Kill()
	<-s.done
}

func (s *redisServer) client(tb testing.TB) redis.UniversalClient {
	c := redis.NewClient(&redis.Options{
		Addr:            s.addr,
		DisableIdentity: true,
		// A server that is down must fail the call at once: the tests
		// assert fail-closed behaviour, not the client's retry policy.
		MaxRetries:  -1,
		DialTimeout: 500 * time.Millisecond,
	})
	tb.Cleanup(func() { c.Close() })
	return c
}

// The package's shared server, started on first use and stopped by TestMain.
var shared struct {
	once sync.Once
	srv  *redisServer
	dir  string
	ok   bool
	err  error
}

// quietLogger drops go-redis's own logging: the outage tests make it
// report every refused dial.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...interface{}) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	code := m.Run()
	if shared.srv != nil {
		shared.srv.stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// realRedis returns a client to the shared real server with an empty
// database; it skips the test only when redis-server is not installed.
func realRedis(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "idempotency-redis-")
		if shared.err == nil {
			shared.srv, shared.ok, shared.err = startRedisServer(shared.dir)
		}
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	if !shared.ok {
		tb.Skip("redis-server not installed")
	}
	c := shared.srv.client(tb)
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		tb.Fatal(err)
	}
	return c
}

// backend is a Redis to run the table against, and a way to make one fail.
type backend struct {
	name string
	// open returns a client to an empty database.
	open func(t *testing.T) redis.UniversalClient
	// doomed returns a client to a private server and a func that stops
	// that server.
	doomed func(t *testing.T) (redis.UniversalClient, func())
}

var backends = []backend{
	{
		name: "redis-server",
		open: func(t *testing.T) redis.UniversalClient { return realRedis(t) },
		doomed: func(t *testing.T) (redis.UniversalClient, func()) {
			s, ok, err := startRedisServer(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Skip("redis-server not installed")
			}
			t.Cleanup(s.stop)
			return s.client(t), s.stop
		},
	},
	{
		name: "miniredis",
		open: func(t *testing.T) redis.UniversalClient {
			m := miniredis.RunT(t)
			c := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true, MaxRetries: -1})
			t.Cleanup(func() { c.Close() })
			return c
		},
		doomed: func(t *testing.T) (redis.UniversalClient, func()) {
			m := miniredis.RunT(t)
			c := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true, MaxRetries: -1, DialTimeout: 500 * time.Millisecond})
			t.Cleanup(func() { c.Close() })
			return c, m.Close
		},
	},
}
