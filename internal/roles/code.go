package roles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/codestore"
	"github.com/coldstart-dev/coldstart/internal/logstream"
	"github.com/coldstart-dev/coldstart/internal/recordstream"
	"github.com/coldstart-dev/coldstart/worker"
)

// DefaultCodeCacheBytes bounds a worker's unpacked bundles beyond those in
// use (a few hundred functions of typical size).
const DefaultCodeCacheBytes = 4 << 30

// jetStreamWait bounds how long a gateway waits for JetStream at start: a
// NATS server that has just started (or a NATS cluster electing its
// JetStream leader) answers "unavailable" for a moment.
const jetStreamWait = 15 * time.Second

// openCodeStore opens (creating if need be) the code bucket for a gateway.
// A server without JetStream fails at once: waiting would not help.
func openCodeStore(nc *nats.Conn, replicas int, log *slog.Logger) (*codestore.Store, error) {
	deadline := time.Now().Add(jetStreamWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := codestore.Open(ctx, nc, replicas)
		cancel()
		if err == nil {
			return st, nil
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("code store: the NATS server has no JetStream (start it with JetStream and a store directory, as `coldstart nats` does): %w", err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("code store: %w", err)
		}
		log.Warn("code store not available yet; retrying", "err", err)
		time.Sleep(500 * time.Millisecond)
	}
}

// ensureLogs creates the logs stream. Its failure does not stop the
// gateway: invocations do not depend on logs, and a later gateway start
// (or restart) creates the stream.
func ensureLogs(nc *nats.Conn, cfg logstream.Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := logstream.Ensure(ctx, nc, cfg); err != nil {
		log.Error("function logs will not be kept", "err", err)
	}
}

// ensureRecords creates the records stream. Its failure does not stop the
// gateway either: records still reach live readers over core NATS, only
// their history is missing until a gateway start creates the stream.
func ensureRecords(nc *nats.Conn, cfg recordstream.Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := recordstream.Ensure(ctx, nc, cfg); err != nil {
		log.Error("invocation records will not be kept", "err", err)
	}
}

// lazyReader is a worker's read-only view of the code bucket, bound on the
// first Get rather than at start: a worker may come up before any gateway
// has created the bucket, and its start must not wait for one.
type lazyReader struct {
	nc *nats.Conn

	mu sync.Mutex
	st *codestore.Store
}

func (l *lazyReader) store(ctx context.Context) (*codestore.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st != nil {
		return l.st, nil
	}
	// Not cached on failure: the bucket may exist by the next cold start.
	st, err := codestore.OpenReader(ctx, l.nc)
	if err != nil {
		return nil, err
	}
	l.st = st
	return st, nil
}

// Get implements codestore.Getter.
func (l *lazyReader) Get(ctx context.Context, digest string) ([]byte, error) {
	st, err := l.store(ctx)
	if err != nil {
		return nil, err
	}
	return st.Get(ctx, digest)
}

// codeCacheDir makes the worker's unpack directory. Sandboxes run as other
// uids and must traverse every directory down to their bundle, so it is
// 0755 (MkdirAll alone is subject to the umask, and an existing directory
// keeps its mode).
func codeCacheDir(dir, id string) (string, error) {
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "coldstart-code-"+id)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("code cache: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("code cache: %w", err)
	}
	return dir, nil
}

// publishLog hands a worker's log lines to the logs stream.
func publishLog(p *logstream.Publisher) func(worker.LogLine) {
	return func(l worker.LogLine) {
		p.Add(logstream.Entry{Time: l.Time, Account: l.Account, Function: l.Function, Version: l.Version, RequestID: l.RequestID, Sandbox: l.Sandbox, Stream: l.Stream, Line: l.Line})
	}
}
