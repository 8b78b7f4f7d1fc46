package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/drill"
)

// redisProcess is the cluster's Redis server as a process the drill can
// freeze (SIGSTOP) and continue (SIGCONT). `coldstart up` does not list
// Redis among its nodes, so the drill needs the process itself: the
// redis-server `up` spawned (it reports its pid in INFO), or one given with
// --redis-pid. The embedded Redis-protocol server runs inside `up` and
// cannot be stopped alone.
type redisProcess struct {
	addr string
	pid  int
}

// findRedis locates the cluster's Redis: --redis, else the port in
// DATA/cluster.json on the gateway's host; and its pid: --redis-pid, else
// INFO server.
func findRedis(ctx context.Context, e *drillEnv) (*redisProcess, error) {
	addr := ""
	if e.opts.redisURL != "" {
		opt, err := redis.ParseURL(e.opts.redisURL)
		if err != nil {
			return nil, setupErrorf("--redis: %v", err)
		}
		addr = opt.Addr
	} else {
		b, err := os.ReadFile(filepath.Join(e.opts.data, "cluster.json"))
		if err != nil {
			return nil, setupErrorf("where is Redis? %v (give --redis URL, or --data DIR of `coldstart up`)", err)
		}
		var l layout
		if err := json.Unmarshal(b, &l); err != nil || l.Redis == 0 {
			return nil, setupErrorf("where is Redis? %s names no Redis port (give --redis URL)", filepath.Join(e.opts.data, "cluster.json"))
		}
		host := "127.0.0.1"
		if u, err := url.Parse(e.urls[0]); err == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
		addr = net.JoinHostPort(host, strconv.Itoa(l.Redis))
	}
	p := &redisProcess{addr: addr, pid: e.opts.redisPID}
	if p.pid != 0 {
		return p, nil
	}
	cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer cl.Close()
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := cl.Info(ictx, "server").Result()
	if err == nil {
		if pid := infoField(info, "process_id"); pid != "" {
			p.pid, _ = strconv.Atoi(pid)
		}
	}
	if p.pid <= 0 || p.pid == os.Getpid() {
		return nil, setupErrorf("the Redis at %s cannot be stopped on its own: it is the embedded Redis-protocol server inside `coldstart up` "+
			"(no redis-server on its PATH), or it does not say its pid. Run `coldstart up` with redis-server on the PATH, "+
			"or --redis URL with a Redis you run and give its --redis-pid", addr)
	}
	return p, nil
}

// infoField reads one field of a Redis INFO answer.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == name {
			return v
		}
	}
	return ""
}

// freezer stops a dependency and lets it go on: the Redis process with
// signals under `coldstart up`, the redis container through the fault
// target under compose.
type freezer interface {
	freeze(ctx context.Context) (string, error)
	thaw(ctx context.Context) (string, error)
}

func (p *redisProcess) freeze(context.Context) (string, error) { return p.signal("pause") }
func (p *redisProcess) thaw(context.Context) (string, error)   { return p.signal("resume") }

func (p *redisProcess) signal(verb string) (string, error) {
	sig, err := signalPID(p.pid, verb)
	if err != nil {
		return "", fmt.Errorf("%s redis pid %d: %w", verb, p.pid, err)
	}
	return fmt.Sprintf("%s Redis at %s (pid %d, %s)", verb, p.addr, p.pid, sig), nil
}

// targetNode freezes a node of the fault target (docker pause).
type targetNode struct {
	t    faultTarget
	node string
}

func (n targetNode) freeze(ctx context.Context) (string, error) {
	return n.t.Apply(ctx, "pause", n.node)
}
func (n targetNode) thaw(ctx context.Context) (string, error) {
	return n.t.Apply(ctx, "resume", n.node)
}

func redisDown() scenario {
	var rp freezer
	var stopped bool
	return scenario{
		setup: func(ctx context.Context, e *drillEnv) error {
			if e.opts.target == "compose" {
				rp = targetNode{e.target, "redis"}
			} else {
				p, err := findRedis(ctx, e)
				if err != nil {
					return err
				}
				rp = p
			}
			idem, plain := e.fn("payments"), e.fn("catalog")
			for _, n := range []string{idem, plain} {
				if err := e.createSynthetic(ctx, n, "5ms", "5ms", 5); err != nil {
					return err
				}
			}
			if _, err := e.gws[0].SetIdempotency(ctx, idem, api.IdempotencyInput{Key: "json:order_id", TTLSeconds: 60}); err != nil {
				return fmt.Errorf("idempotency on %s: %w", idem, err)
			}
			start := time.Now()
			e.stream(ctx, classIdem, 2, 20*time.Millisecond, func(seq int64) (string, []byte, bool) {
				return idem, []byte(fmt.Sprintf(`{"order_id":"%s-%d"}`, e.prefix, seq)), true
			})
			e.stream(ctx, classPlain, 2, 20*time.Millisecond, simple(plain))
			if !drillWait(ctx, 10*time.Second, func() bool {
				return e.since(classIdem, start).OK >= 5 && e.since(classPlain, start).OK >= 5
			}) {
				return fmt.Errorf("load did not start: idempotent %+v, plain %+v", e.since(classIdem, start), e.since(classPlain, start))
			}
			return nil
		},
		inject: func(ctx context.Context, e *drillEnv) error {
			msg, err := rp.freeze(ctx)
			if err != nil {
				return err
			}
			stopped = true
			e.note("%s", msg)
			return nil
		},
		observe: func(ctx context.Context, e *drillEnv) []drill.Evidence {
			// Calls in flight when Redis froze end at the workers' Redis
			// timeouts; judge from a moment later.
			from := e.faultAt.Add(500 * time.Millisecond)
			drillWait(ctx, 8*time.Second, func() bool {
				return e.since(classIdem, from).ByType[idemUnavailable] >= 4 && e.since(classPlain, from).N >= 10
			})
			idem, plain := e.since(classIdem, from), e.since(classPlain, from)
			return []drill.Evidence{
				evidence("the idempotent function fails with "+idemUnavailable, idem.ByType[idemUnavailable] >= 3 && idem.OKRate() <= 0.2, "%d of %d ok; failures by type %v", idem.OK, idem.N, idem.ByType),
				evidence("functions without idempotency keep succeeding", plain.N >= 10 && plain.OKRate() >= 0.95, "%d of %d ok", plain.OK, plain.N),
			}
		},
		recover: func(ctx context.Context, e *drillEnv) error {
			if !stopped {
				return nil
			}
			msg, err := rp.thaw(ctx)
			if err != nil {
				return err
			}
			e.note("%s", msg)
			t := time.Now()
			if !drillWait(ctx, 15*time.Second, func() bool { return e.since(classIdem, t).OK >= 2 }) {
				return errors.New("the idempotent function did not recover within 15 s of Redis returning")
			}
			return nil
		},
	}
}

// idemUnavailable is the error type of an invocation refused because the
// idempotency store did not answer (worker/idem.go).
const idemUnavailable = "IdempotencyStoreUnavailableException"
