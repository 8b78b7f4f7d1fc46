package idempotency

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// commandLog records the data commands a client sends, values elided, so
// the test can hold the store to Powertools' exact sequence.
type commandLog struct {
	mu   sync.Mutex
	cmds []string
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		name := strings.ToUpper(fmt.Sprint(args[0]))
		if name == "SET" || name == "GET" || name == "DEL" {
			parts := []string{name}
			for i, a := range args[1:] {
				s := fmt.Sprint(a)
				if b, ok := a.([]byte); ok {
					s = string(b)
				}
				if name == "SET" && i == 1 && strings.HasPrefix(s, "{") {
					s = "<" + recordStatus(s) + ">"
				}
				parts = append(parts, strings.ToUpper(s))
			}
			l.mu.Lock()
			l.cmds = append(l.cmds, strings.Join(parts, " "))
			l.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func recordStatus(v string) string {
	r, err := DecodeRecord("", []byte(v))
	if err != nil {
		return "bad"
	}
	return string(r.Status)
}

func (l *commandLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.cmds
	l.cmds = nil
	return c
}

func TestRedisCommandSequence(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			rdb := b.open(t)
			log := &commandLog{}
			rdb.AddHook(log)
			clock := newFakeClock()
			fail := false
			handler := func(ctx context.Context, _ []byte) ([]byte, error) {
				if fail {
					return nil, errors.New("fail")
				}
				if dl, ok := ctx.Deadline(); ok && time.Until(dl) < time.Second {
					runtime.Goexit()
				}
				return []byte(`{}`), nil
			}
			h := WrapBytes(handler, NewRedisStore(rdb), Config{EventKeyPath: "id", FunctionName: "f", HandlerName: "h", Clock: clock.Now})
			rawKey := "f.h#" + md5hex(`"a"`)
			key := strings.ToUpper(rawKey) // the log is upper-cased
			step := func(name string, ctx context.Context, want ...string) {
				t.Helper()
				done := make(chan struct{})
				go func() { defer close(done); h(ctx, []byte(`{"id":"a"}`)) }()
				<-done
				got := log.take()
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("%s:\n got %q\nwant %q", name, got, want)
				}
			}
			bg := context.Background()
			step("first call", bg,
				"SET "+key+" <INPROGRESS> EX 3600 NX",
				"SET "+key+" <COMPLETED> EX 3600")
			step("duplicate", bg,
				"SET "+key+" <INPROGRESS> EX 3600 NX",
				"GET "+key)
			rdb.Del(bg, rawKey)
			log.take()
			fail = true
			step("handler failure", bg,
				"SET "+key+" <INPROGRESS> EX 3600 NX",
				"DEL "+key)
			fail = false
			short, cancel := context.WithTimeout(bg, 500*time.Millisecond)
			defer cancel()
			step("crash", short,
				"SET "+key+" <INPROGRESS> EX 3600 NX")
			clock.Advance(time.Second)
			step("orphan takeover", bg,
				"SET "+key+" <INPROGRESS> EX 3600 NX",
				"GET "+key,
				"SET "+key+":LOCK TRUE EX 10 NX",
				"SET "+key+" <INPROGRESS> EX 3600",
				"SET "+key+" <COMPLETED> EX 3600")
		})
	}
}

func TestOrphanLockTimeoutFollowsExpiry(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testOrphanLock(t, b.open(t)) })
	}
}

func testOrphanLock(t *testing.T, rdb redis.UniversalClient) {
	s := NewRedisStore(rdb)
	now := time.Now()
	ctx := context.Background()
	orphan := Record{Key: "k", Status: StatusInProgress, Expiration: now.Add(5 * time.Second).Unix(), InProgressExpiration: now.Add(-time.Second).UnixMilli()}
	if err := s.PutInProgress(ctx, orphan, now); err != nil {
		t.Fatal(err)
	}
	if err := s.PutInProgress(ctx, orphan, now); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	if ttl := rdb.TTL(ctx, "k:lock").Val(); ttl <= 0 || ttl > 5*time.Second {
		t.Fatalf("lock TTL %s, want min(10s, expiry) = 5s", ttl)
	}
	// The lock is kept: a second takeover of the (still orphaned) record
	// while it lives is refused.
	if err := s.PutInProgress(ctx, orphan, now); !errors.Is(err, ErrAlreadyInProgress) {
		t.Fatalf("second takeover: %v", err)
	}
	// An undecodable value is an orphan too.
	rdb.Set(ctx, "j", "not json", time.Minute)
	if err := s.PutInProgress(ctx, Record{Key: "j", Status: StatusInProgress, Expiration: now.Add(time.Hour).Unix()}, now); err != nil {
		t.Fatalf("takeover of garbage: %v", err)
	}
	if r, err := s.Get(ctx, "j"); err != nil || r.Status != StatusInProgress {
		t.Fatalf("after takeover %+v, %v", r, err)
	}
	if _, err := s.Get(ctx, "absent"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(absent) = %v", err)
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
