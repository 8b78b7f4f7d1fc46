package idempotency

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fakeClock is the Config.Clock of the tests: expiries are crossed by
// advancing it, never by sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	// Whole seconds keep the epoch-second arithmetic easy to assert.
	return &fakeClock{now: time.Now().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// env is one table case's world: a Redis, a store on it, a clock, and a
// handler that counts its runs and answers with its run number.
type env struct {
	t     *testing.T
	rdb   redis.UniversalClient
	store *RedisStore
	clock *fakeClock
	calls atomic.Int64
	stop  func() // stops the Redis, for the outage case
	// body, when set, runs inside the handler before it answers.
	body func(ctx context.Context, n int64) error
}

func (e *env) config(mods ...func(*Config)) Config {
	c := Config{
		EventKeyPath: "id",
		FunctionName: "fn",
		HandlerName:  "app.handler",
		Clock:        e.clock.Now,
	}
	for _, m := range mods {
		m(&c)
	}
	return c
}

func (e *env) handler(ctx context.Context, payload []byte) ([]byte, error) {
	n := e.calls.Add(1)
	if e.body != nil {
		if err := e.body(ctx, n); err != nil {
			return nil, err
		}
	}
	return []byte(fmt.Sprintf(`{"run":%d}`, n)), nil
}

func (e *env) wrap(cfg Config) BytesHandler { return WrapBytes(e.handler, e.store, cfg) }

// keyOf is the key cfg gives event.
func (e *env) keyOf(cfg Config, event string) string {
	e.t.Helper()
	c := mustCore(e.store, cfg, e.handler)
	v, err := decodeJSON([]byte(event))
	if err != nil {
		e.t.Fatal(err)
	}
	k, err := c.key(v)
	if err != nil || k == "" {
		e.t.Fatalf("key(%s) = %q, %v", event, k, err)
	}
	return k
}

func (e *env) record(key string) (Record, bool) {
	e.t.Helper()
	r, err := e.store.Get(context.Background(), key)
	if errors.Is(err, ErrNotFound) {
		return Record{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return r, true
}

func (e *env) keys() []string {
	e.t.Helper()
	ks, err := e.rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return ks
}

func call(t *testing.T, h BytesHandler, ctx context.Context, event string) (string, error) {
	t.Helper()
	b, err := h(ctx, []byte(event))
	return string(b), err
}

func mustCall(t *testing.T, h BytesHandler, event, want string) {
	t.Helper()
	got, err := call(t, h, context.Background(), event)
	if err != nil || got != want {
		t.Fatalf("call(%s) = %q, %v; want %q", event, got, err, want)
	}
}

// dieInProgress runs one attempt whose goroutine vanishes inside the
// handler (runtime.Goexit, a crashed process from the record's point of
// view) under a deadline `left` from now, and returns once it is gone.
func (e *env) dieInProgress(h BytesHandler, event string, left time.Duration) {
	body := e.body
	e.body = func(context.Context, int64) error { runtime.Goexit(); return nil }
	defer func() { e.body = body }()
	ctx, cancel := context.WithTimeout(context.Background(), left)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h(ctx, []byte(event))
	}()
	<-done
}

var cases = []struct {
	name string
	run  func(t *testing.T, e *env)
}{
	{"first call runs and stores the response", func(t *testing.T, e *env) {
		cfg := e.config()
		mustCall(t, e.wrap(cfg), `{"id":"a","amount":1}`, `{"run":1}`)
		key := e.keyOf(cfg, `{"id":"a"}`)
		r, ok := e.record(key)
		if !ok || r.Status != StatusCompleted || r.Data != `{"run":1}` {
			t.Fatalf("record = %+v, %v", r, ok)
		}
		if want := e.clock.Now().Add(time.Hour).Unix(); r.Expiration != want {
			t.Fatalf("expiration %d, want %d", r.Expiration, want)
		}
		if ttl := e.rdb.TTL(context.Background(), key).Val(); ttl < 59*time.Minute || ttl > time.Hour {
			t.Fatalf("redis TTL %s, want about 1h", ttl)
		}
	}},
	{"duplicate returns the stored response without running", func(t *testing.T, e *env) {
		h := e.wrap(e.config())
		mustCall(t, h, `{"id":"a","amount":1}`, `{"run":1}`)
		mustCall(t, h, `{"id":"a","amount":1}`, `{"run":1}`)
		// Without validation only the key counts.
		mustCall(t, h, `{"id":"a","amount":2}`, `{"run":1}`)
		mustCall(t, h, `{"id":"b","amount":1}`, `{"run":2}`)
		if n := e.calls.Load(); n != 2 {
			t.Fatalf("handler ran %d times, want 2", n)
		}
	}},
	{"changed payload under the same key fails validation", func(t *testing.T, e *env) {
		h := e.wrap(e.config(func(c *Config) { c.PayloadValidationPath = "[amount, currency]" }))
		mustCall(t, h, `{"id":"a","amount":1,"currency":"EUR"}`, `{"run":1}`)
		mustCall(t, h, `{"id":"a","amount":1,"currency":"EUR","note":"x"}`, `{"run":1}`)
		_, err := call(t, h, context.Background(), `{"id":"a","amount":2,"currency":"EUR"}`)
		if !errors.Is(err, ErrValidation) || err.Error() != "Payload does not match stored record for this event key" {
			t.Fatalf("err = %v, want ErrValidation", err)
		}
		if n := e.calls.Load(); n != 1 {
			t.Fatalf("handler ran %d times, want 1", n)
		}
	}},
	{"changed payload while the first attempt runs fails validation", func(t *testing.T, e *env) {
		started, release := make(chan struct{}), make(chan struct{})
		e.body = func(context.Context, int64) error { close(started); <-release; return nil }
		h := e.wrap(e.config(func(c *Config) { c.PayloadValidationPath = "amount" }))
		done := make(chan error, 1)
		go func() { _, err := call(t, h, context.Background(), `{"id":"a","amount":1}`); done <- err }()
		<-started
		_, err := call(t, h, context.Background(), `{"id":"a","amount":2}`)
		close(release)
		if !errors.Is(err, ErrValidation) {
			t.Fatalf("err = %v, want ErrValidation", err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}},
	{"retry while the first attempt still runs is already in progress", func(t *testing.T, e *env) {
		started, release := make(chan struct{}), make(chan struct{})
		e.body = func(_ context.Context, n int64) error {
			if n == 1 {
				close(started)
				<-release
			}
			return nil
		}
		h := e.wrap(e.config())
		done := make(chan error, 1)
		go func() { _, err := call(t, h, context.Background(), `{"id":"a"}`); done <- err }()
		<-started
		_, err := call(t, h, context.Background(), `{"id":"a"}`)
		if !errors.Is(err, ErrAlreadyInProgress) {
			t.Fatalf("err = %v, want ErrAlreadyInProgress", err)
		}
		if !strings.Contains(err.Error(), "with idempotency key: id=fn.app.handler#") {
			t.Fatalf("message %q lacks the key", err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		mustCall(t, h, `{"id":"a"}`, `{"run":1}`)
		if n := e.calls.Load(); n != 1 {
			t.Fatalf("handler ran %d times, want 1", n)
		}
	}},
	{"timeout: handler returns the context error, retry runs", func(t *testing.T, e *env) {
		e.body = func(ctx context.Context, n int64) error {
			if n == 1 {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}
		cfg := e.config()
		h := e.wrap(cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := call(t, h, ctx, `{"id":"a"}`); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the handler's DeadlineExceeded", err)
		}
		if _, ok := e.record(e.keyOf(cfg, `{"id":"a"}`)); ok {
			t.Fatal("record survived the failed attempt")
		}
		mustCall(t, h, `{"id":"a"}`, `{"run":2}`)
		mustCall(t, h, `{"id":"a"}`, `{"run":2}`)
	}},
	{"timeout: attempt dies INPROGRESS, retry after the in-progress expiry runs once", func(t *testing.T, e *env) {
		cfg := e.config()
		h := e.wrap(cfg)
		key := e.keyOf(cfg, `{"id":"a"}`)
		e.dieInProgress(h, `{"id":"a"}`, 30*time.Second)
		r, ok := e.record(key)
		if !ok || r.Status != StatusInProgress {
			t.Fatalf("record after the crash = %+v, %v; want INPROGRESS", r, ok)
		}
		// The in-progress expiry is the attempt's deadline.
		if d := r.InProgressExpiration - e.clock.Now().Add(30*time.Second).UnixMilli(); d < -2000 || d > 0 {
			t.Fatalf("in_progress_expiration off the deadline by %d ms", d)
		}
		if _, err := call(t, h, context.Background(), `{"id":"a"}`); !errors.Is(err, ErrAlreadyInProgress) {
			t.Fatalf("retry before the in-progress expiry: %v, want ErrAlreadyInProgress", err)
		}
		e.clock.Advance(31 * time.Second)
		mustCall(t, h, `{"id":"a"}`, `{"run":2}`)
		mustCall(t, h, `{"id":"a"}`, `{"run":2}`)
		if n := e.calls.Load(); n != 2 {
			t.Fatalf("handler ran %d times, want 2 (the crashed one and one retry)", n)
		}
		if ks := e.keys(); len(ks) != 2 || !contains(ks, key) || !contains(ks, key+":lock") {
			t.Fatalf("keys %v, want the record and its takeover lock", ks)
		}
		if r, _ := e.record(key); r.Status != StatusCompleted {
			t.Fatalf("status %s, want COMPLETED", r.Status)
		}
		if ttl := e.rdb.TTL(context.Background(), key+":lock").Val(); ttl <= 0 || ttl > 10*time.Second {
			t.Fatalf("lock TTL %s, want (0, 10s]", ttl)
		}
	}},
	{"orphan taken over by concurrent retries: exactly one runs", func(t *testing.T, e *env) {
		h := e.wrap(e.config())
		e.dieInProgress(h, `{"id":"a"}`, time.Second)
		e.clock.Advance(2 * time.Second)
		release := make(chan struct{})
		e.body = func(context.Context, int64) error { <-release; return nil }
		const n = 8
		results := make(chan error, n)
		var start sync.WaitGroup
		start.Add(1)
		for range n {
			go func() {
				start.Wait()
				_, err := call(t, h, context.Background(), `{"id":"a"}`)
				results <- err
			}()
		}
		start.Done()
		// The winner blocks in the handler; everyone else must give up.
		for i := 0; i < n-1; i++ {
			select {
			case err := <-results:
				if !errors.Is(err, ErrAlreadyInProgress) {
					t.Fatalf("loser %d: %v, want ErrAlreadyInProgress", i, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("only %d of %d losers answered: more than one attempt is running", i, n-1)
			}
		}
		close(release)
		if err := <-results; err != nil {
			t.Fatal(err)
		}
		if c := e.calls.Load(); c != 2 {
			t.Fatalf("handler ran %d times, want 2 (the crashed one and one takeover)", c)
		}
	}},
	{"expired COMPLETED record runs again", func(t *testing.T, e *env) {
		cfg := e.config(func(c *Config) { c.ExpiresAfter = 10 * time.Minute })
		h := e.wrap(cfg)
		mustCall(t, h, `{"id":"a"}`, `{"run":1}`)
		e.clock.Advance(10*time.Minute + time.Second)
		// Still in Redis (its TTL runs on the server's clock), but EXPIRED.
		mustCall(t, h, `{"id":"a"}`, `{"run":2}`)
		mustCall(t, h, `{"id":"a"}`, `{"run":2}`)
		r, _ := e.record(e.keyOf(cfg, `{"id":"a"}`))
		if want := e.clock.Now().Add(10 * time.Minute).Unix(); r.Status != StatusCompleted || r.Expiration != want {
			t.Fatalf("record %+v, want COMPLETED expiring at %d", r, want)
		}
	}},
	{"handler error deletes the record so a retry runs", func(t *testing.T, e *env) {
		boom := errors.New("boom")
		e.body = func(_ context.Context, n int64) error {
			if n == 1 {
				return boom
			}
			return nil
		}
		cfg := e.config()
		h := e.wrap(cfg)
		if _, err := call(t, h, context.Background(), `{"id":"a"}`); err != boom {
			t.Fatalf("err = %v, want the handler's error unchanged", err)
		}
		if len(e.keys()) != 0 {
			t.Fatalf("keys %v left after a failed attempt", e.keys())
		}
		mustCall(t, h, `{"id":"a"}`, `{"run":2}`)
		mustCall(t, h, `{"id":"a"}`, `{"run":2}`)
	}},
	{"handler panic deletes the record and still panics", func(t *testing.T, e *env) {
		e.body = func(_ context.Context, n int64) error {
			if n == 1 {
				panic("kaboom")
			}
			return nil
		}
		h := e.wrap(e.config())
		func() {
			defer func() {
				if p := recover(); p != "kaboom" {
					t.Fatalf("recovered %v, want the handler's panic", p)
				}
			}()
			h(context.Background(), []byte(`{"id":"a"}`))
		}()
		if len(e.keys()) != 0 {
			t.Fatalf("keys %v left after a panic", e.keys())
		}
		mustCall(t, h, `{"id":"a"}`, `{"run":2}`)
	}},
	{"no key at the path runs without idempotency", func(t *testing.T, e *env) {
		for _, ev := range []string{`{"other":1}`, `{"id":null}`, `{"id":""}`, `{"id":{}}`} {
			mustCall(t, e.wrap(e.config()), ev, fmt.Sprintf(`{"run":%d}`, e.calls.Load()+1))
		}
		if ks := e.keys(); len(ks) != 0 {
			t.Fatalf("keys %v written without an idempotency key", ks)
		}
		// A list of nulls is missing too; false and 0 are keys.
		mustCall(t, e.wrap(e.config(func(c *Config) { c.EventKeyPath = "[a, b]" })), `{"c":1}`, `{"run":5}`)
		mustCall(t, e.wrap(e.config()), `{"id":0}`, `{"run":6}`)
		mustCall(t, e.wrap(e.config()), `{"id":0}`, `{"run":6}`)
	}},
	{"no key with RaiseOnNoKey fails with ErrNoKey", func(t *testing.T, e *env) {
		h := e.wrap(e.config(func(c *Config) { c.RaiseOnNoKey = true }))
		if _, err := call(t, h, context.Background(), `{"other":1}`); !errors.Is(err, ErrNoKey) {
			t.Fatalf("err = %v, want ErrNoKey", err)
		}
		if _, err := call(t, h, context.Background(), `not json`); !errors.Is(err, ErrNoKey) {
			t.Fatalf("err = %v, want ErrNoKey", err)
		}
		if n := e.calls.Load(); n != 0 {
			t.Fatalf("handler ran %d times", n)
		}
	}},
	{"key format is Powertools'", func(t *testing.T, e *env) {
		event := `{"user":"Zoë","id":10,"items":[1.0,2.5e-7,null,true,1E2],"nested":{"b":"x/y","a":"\t"}}`
		// What Python's json.dumps(event, sort_keys=True) prints.
		canonical := `{"id": 10, "items": [1.0, 2.5e-07, null, true, 100.0], "nested": {"a": "\t", "b": "x/y"}, "user": "Zo\u00eb"}`
		sum := md5.Sum([]byte(canonical))
		want := "orders.app.lambda_handler#" + hex.EncodeToString(sum[:])
		// hashlib.md5(json.dumps(json.loads(event), sort_keys=True).encode()).hexdigest() in CPython.
		if want != "orders.app.lambda_handler#94b22e04ae2b9bd0720bce87a70fc56c" {
			t.Fatalf("test canonical form is not Python's: %s", want)
		}
		cfg := e.config(func(c *Config) { c.EventKeyPath = ""; c.FunctionName = "orders"; c.HandlerName = "app.lambda_handler" })
		if got := e.keyOf(cfg, event); got != want {
			t.Fatalf("key %s, want %s", got, want)
		}
		mustCall(t, e.wrap(cfg), event, `{"run":1}`)
		if ks := e.keys(); len(ks) != 1 || ks[0] != want {
			t.Fatalf("keys %v, want [%s]", ks, want)
		}
		sum = md5.Sum([]byte(`[10, "Zo\u00eb"]`))
		cfg.EventKeyPath = "[id, user]"
		if got, want := e.keyOf(cfg, event), "orders.app.lambda_handler#"+hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("multi-select key %s, want %s", got, want)
		}
	}},
	{"Redis down fails closed", func(t *testing.T, e *env) {
		h := e.wrap(e.config())
		mustCall(t, h, `{"id":"a"}`, `{"run":1}`)
		e.down()
		_, err := call(t, h, context.Background(), `{"id":"b"}`)
		if !errors.Is(err, ErrPersistence) {
			t.Fatalf("err = %v, want ErrPersistence", err)
		}
		if n := e.calls.Load(); n != 1 {
			t.Fatalf("handler ran %d times with Redis down", n-1)
		}
	}},
	{"local cache answers warm duplicates without the store", func(t *testing.T, e *env) {
		h := e.wrap(e.config(func(c *Config) { c.UseLocalCache = true; c.PayloadValidationPath = "amount" }))
		mustCall(t, h, `{"id":"a","amount":1}`, `{"run":1}`)
		e.rdb.FlushAll(context.Background())
		mustCall(t, h, `{"id":"a","amount":1}`, `{"run":1}`)
		if _, err := call(t, h, context.Background(), `{"id":"a","amount":2}`); !errors.Is(err, ErrValidation) {
			t.Fatalf("cached record not validated: %v", err)
		}
		e.clock.Advance(time.Hour + time.Second)
		mustCall(t, h, `{"id":"a","amount":1}`, `{"run":2}`)
	}},
}

func (e *env) down() { e.stop() }

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestWrapTable(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					e := &env{t: t, clock: newFakeClock()}
					if strings.HasPrefix(tc.name, "Redis down") {
						e.rdb, e.stop = b.doomed(t)
					} else {
						e.rdb = b.open(t)
						e.stop = func() { t.Fatal("no doomed server") }
					}
					e.store = NewRedisStore(e.rdb)
					tc.run(t, e)
				})
			}
		})
	}
}

type order struct {
	ID     string  `json:"id"`
	Amount float64 `json:"amount"`
}

type receipt struct {
	OrderID string `json:"order_id"`
	Run     int64  `json:"run"`
}

func TestWrapTyped(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			var calls atomic.Int64
			handle := func(_ context.Context, o order) (receipt, error) {
				return receipt{OrderID: o.ID, Run: calls.Add(1)}, nil
			}
			rdb := b.open(t)
			h := Wrap(handle, NewRedisStore(rdb), Config{EventKeyPath: "id", FunctionName: "fn"})
			for i := 0; i < 3; i++ {
				got, err := h(context.Background(), order{ID: "o-1", Amount: 9.5})
				if err != nil || got != (receipt{"o-1", 1}) {
					t.Fatalf("call %d = %+v, %v", i, got, err)
				}
			}
			ks := rdb.Keys(context.Background(), "*").Val()
			sum := md5.Sum([]byte(`"o-1"`))
			// The default handler name is the Go function's, without its
			// import path.
			if len(ks) != 1 || !strings.HasPrefix(ks[0], "fn.idempotency.TestWrapTyped.") || !strings.HasSuffix(ks[0], "#"+hex.EncodeToString(sum[:])) {
				t.Fatalf("keys %v", ks)
			}
		})
	}
}

// flakyStore reports an inconsistent state on every claim.
type flakyStore struct {
	Store
	puts atomic.Int64
}

func (s *flakyStore) PutInProgress(context.Context, Record, time.Time) error {
	s.puts.Add(1)
	return ErrInconsistentState
}

func TestInconsistentStateRetriedTwice(t *testing.T) {
	s := &flakyStore{}
	ran := false
	h := WrapBytes(func(context.Context, []byte) ([]byte, error) { ran = true; return nil, nil }, s, Config{})
	_, err := h(context.Background(), []byte(`{"a":1}`))
	if !errors.Is(err, ErrInconsistentState) || ran || s.puts.Load() != 3 {
		t.Fatalf("err %v, ran %v, puts %d; want ErrInconsistentState after 3 puts, no run", err, ran, s.puts.Load())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{EventKeyPath: "a[*]"},
		{EventKeyPath: "a |b"},
		{PayloadValidationPath: "length(a)"},
		{ExpiresAfter: 500 * time.Millisecond},
		{LocalCacheMaxItems: -1},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v validated", c)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Wrap accepted an invalid path")
		}
	}()
	WrapBytes(func(context.Context, []byte) ([]byte, error) { return nil, nil }, &flakyStore{}, Config{EventKeyPath: "["})
}

// The stored record must round-trip through JSON as Powertools writes it.
func TestDecodePowertoolsRecord(t *testing.T) {
	raw := `{"data": "{\"statusCode\": 200}", "status": "COMPLETED", "expiration": 1700003600}`
	r, err := DecodeRecord("k", []byte(raw))
	if err != nil || r.Status != StatusCompleted || r.Data != `{"statusCode": 200}` || r.Expiration != 1700003600 {
		t.Fatalf("%+v, %v", r, err)
	}
	var m map[string]any
	b, _ := EncodeRecord(Record{Status: StatusInProgress, Expiration: 1, InProgressExpiration: 2, Validation: "v"})
	json.Unmarshal(b, &m)
	if len(m) != 4 || m["status"] != "INPROGRESS" || m["in_progress_expiration"] != 2.0 || m["validation"] != "v" {
		t.Fatalf("encoded %s", b)
	}
	if _, err := DecodeRecord("k", []byte(`{"status":"DONE"}`)); err == nil {
		t.Fatal("unknown status accepted")
	}
	bin := Record{Status: StatusCompleted}
	bin.setResponse([]byte{0xff, 0x00})
	if got, _ := bin.Response(); string(got) != "\xff\x00" || bin.DataEncoding != "base64" {
		t.Fatalf("binary response %q %q", got, bin.DataEncoding)
	}
}
