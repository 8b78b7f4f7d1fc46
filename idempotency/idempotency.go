package idempotency

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Config is Powertools' IdempotencyConfig plus the key prefix inputs.
type Config struct {
	// EventKeyPath selects the part of the event that identifies a request
	// (see Path for the supported JMESPath subset). Empty: the whole event.
	EventKeyPath string
	// PayloadValidationPath, when set, selects the part of the event whose
	// hash is stored with the record; a later event with the same key but a
	// different hash gets ErrValidation instead of the stored response.
	PayloadValidationPath string
	// RaiseOnNoKey makes an event whose key selection is missing fail with
	// ErrNoKey. Otherwise such an event runs the handler with no
	// idempotency at all (and a warning to Logger), as Powertools does.
	RaiseOnNoKey bool
	// ExpiresAfter is how long a COMPLETED record deduplicates. Default 1 h;
	// records hold epoch seconds, so at least 1 s.
	ExpiresAfter time.Duration

	// FunctionName and HandlerName form the key prefix
	// "{FunctionName}.{HandlerName}#". FunctionName defaults to
	// AWS_LAMBDA_FUNCTION_NAME (read by lambdacontext), or "test-func" as in
	// Powertools. HandlerName defaults to the wrapped function's Go name
	// without its import path ("main.handler", "orders.Handle"), the
	// counterpart of Python's "{module}.{qualname}".
	FunctionName string
	HandlerName  string
	// KeyPrefix, when set, replaces "{FunctionName}.{HandlerName}" (the
	// key becomes "{KeyPrefix}#{hash}"), like Powertools' key_prefix.
	KeyPrefix string
	// HashFunction hashes the canonical JSON of the selections; default MD5
	// (Powertools' default, kept so keys match across languages).
	HashFunction func() hash.Hash

	// UseLocalCache keeps COMPLETED records in an in-process LRU of
	// LocalCacheMaxItems entries (default 256) so warm duplicates skip the
	// store.
	UseLocalCache      bool
	LocalCacheMaxItems int

	// Clock replaces time.Now (tests). The in-progress expiry still uses the
	// real time left before the context deadline, added to Clock's now.
	Clock func() time.Time
	// Logger receives the missing-key warning; nil: no logging.
	Logger *slog.Logger
}

const (
	defaultExpiresAfter = time.Hour
	defaultCacheItems   = 256
	// maxRetries is Powertools' MAX_RETRIES for inconsistent-state races.
	maxRetries = 2
)

// Validate reports a configuration Wrap would refuse.
func (c Config) Validate() error {
	if _, err := CompilePath(c.EventKeyPath); err != nil {
		return err
	}
	if _, err := CompilePath(c.PayloadValidationPath); err != nil {
		return err
	}
	if c.ExpiresAfter < 0 || (c.ExpiresAfter > 0 && c.ExpiresAfter < time.Second) {
		return fmt.Errorf("idempotency: ExpiresAfter %s: must be 0 (1 h) or at least 1s", c.ExpiresAfter)
	}
	if c.LocalCacheMaxItems < 0 {
		return fmt.Errorf("idempotency: LocalCacheMaxItems %d < 0", c.LocalCacheMaxItems)
	}
	return nil
}

// BytesHandler is a raw-payload handler. Its Invoke method makes it a
// lambda.Handler, so lambda.Start passes it the event bytes untouched
// (a plain func([]byte) would get them JSON-decoded into a []byte).
type BytesHandler func(ctx context.Context, payload []byte) ([]byte, error)

// Invoke implements lambda.Handler.
func (h BytesHandler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return h(ctx, payload)
}

// WrapBytes makes a raw-payload handler idempotent:
//
//	lambda.Start(idempotency.WrapBytes(handle, store, cfg))
//
// The key is computed from the event bytes as received, so it equals
// Powertools' key for the same event. A duplicate gets the stored response
// bytes. It panics if cfg is invalid (see Config.Validate), like
// regexp.MustCompile, since paths are constants of the program.
func WrapBytes(handler func(context.Context, []byte) ([]byte, error), store Store, cfg Config) BytesHandler {
	c := mustCore(store, cfg, handler)
	return func(ctx context.Context, payload []byte) ([]byte, error) {
		event, err := decodeJSON(payload)
		if err != nil {
			return nil, fmt.Errorf("%w: event is not JSON: %v", ErrNoKey, err)
		}
		resp, _, err := c.do(ctx, event, func(ctx context.Context) ([]byte, error) {
			return handler(ctx, payload)
		})
		return resp, err
	}
}

// Wrap makes a typed aws-lambda-go handler idempotent:
//
//	lambda.Start(idempotency.Wrap(handle, store, cfg))
//
// The key is computed from the JSON encoding of the decoded event, which is
// Powertools' key when TIn keeps what the paths select as received
// (json.RawMessage and map[string]any do; a struct hashes only its own
// fields, and float64 fields re-encode 1.0 as 1). Use WrapBytes where the
// key must match other languages exactly. The response is stored as its
// JSON encoding and decoded into TOut for duplicates. It panics if cfg is
// invalid (see Config.Validate).
func Wrap[TIn, TOut any](handler func(context.Context, TIn) (TOut, error), store Store, cfg Config) func(context.Context, TIn) (TOut, error) {
	c := mustCore(store, cfg, handler)
	return func(ctx context.Context, in TIn) (TOut, error) {
		var zero, out TOut
		raw, err := json.Marshal(in)
		if err != nil {
			return zero, fmt.Errorf("%w: encode event: %v", ErrNoKey, err)
		}
		event, err := decodeJSON(raw)
		if err != nil {
			return zero, fmt.Errorf("%w: encode event: %v", ErrNoKey, err)
		}
		resp, replayed, err := c.do(ctx, event, func(ctx context.Context) ([]byte, error) {
			o, err := handler(ctx, in)
			if err != nil {
				return nil, err
			}
			out = o
			b, err := json.Marshal(o)
			if err != nil {
				return nil, encodeError{err}
			}
			return b, nil
		})
		if err != nil {
			return zero, err
		}
		if !replayed {
			return out, nil
		}
		if len(resp) == 0 || string(resp) == "null" {
			return zero, nil
		}
		if err := json.Unmarshal(resp, &out); err != nil {
			return zero, fmt.Errorf("%w: decode stored response: %v", ErrPersistence, err)
		}
		return out, nil
	}
}

// encodeError marks a response that could not be encoded after the handler
// succeeded: its side effects happened, so the record is kept (as
// Powertools keeps it when saving the result fails) instead of deleted.
type encodeError struct{ err error }

func (e encodeError) Error() string { return "encode response: " + e.err.Error() }

type core struct {
	store        Store
	keyPath      *Path
	valPath      *Path // nil: no payload validation
	raiseNoKey   bool
	expiresAfter time.Duration
	prefix       string
	newHash      func() hash.Hash
	cache        *lruCache // nil: no local cache
	now          func() time.Time
	log          *slog.Logger // nil: silent
}

func mustCore(store Store, cfg Config, handler any) *core {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if store == nil {
		panic("idempotency: nil Store")
	}
	c := &core{
		store:        store,
		raiseNoKey:   cfg.RaiseOnNoKey,
		expiresAfter: cfg.ExpiresAfter,
		newHash:      cfg.HashFunction,
		now:          cfg.Clock,
		log:          cfg.Logger,
	}
	c.keyPath, _ = CompilePath(cfg.EventKeyPath)
	if strings.TrimSpace(cfg.PayloadValidationPath) != "" {
		c.valPath, _ = CompilePath(cfg.PayloadValidationPath)
	}
	if c.expiresAfter == 0 {
		c.expiresAfter = defaultExpiresAfter
	}
	if c.newHash == nil {
		c.newHash = md5.New
	}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.UseLocalCache {
		n := cfg.LocalCacheMaxItems
		if n == 0 {
			n = defaultCacheItems
		}
		c.cache = newLRUCache(n)
	}
	c.prefix = cfg.KeyPrefix
	if c.prefix == "" {
		fn, hn := cfg.FunctionName, cfg.HandlerName
		if fn == "" {
			fn = lambdacontext.FunctionName
		}
		if fn == "" {
			fn = "test-func"
		}
		if hn == "" {
			hn = funcName(handler)
		}
		c.prefix = fn + "." + hn
	}
	return c
}

// funcName is f's Go name without its import path: "main.handler".
func funcName(f any) string {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Func || v.IsNil() {
		return ""
	}
	rf := runtime.FuncForPC(v.Pointer())
	if rf == nil {
		return ""
	}
	name := rf.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// key returns the idempotency key for event, or "" when the event has no
// key and idempotency is to be skipped.
func (c *core) key(event any) (string, error) {
	data, err := c.keyPath.Search(event)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNoKey, c.keyPath, err)
	}
	if missingKey(data) {
		if c.raiseNoKey {
			return "", ErrNoKey
		}
		return "", nil
	}
	h, err := c.hash(data)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoKey, err)
	}
	return c.prefix + "#" + h, nil
}

func (c *core) hash(data any) (string, error) {
	b, err := canonicalJSON(nil, data)
	if err != nil {
		return "", err
	}
	h := c.newHash()
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// validationHash is the hash of the PayloadValidationPath selection (a
// selection of nothing hashes "null", as in Powertools).
func (c *core) validationHash(event any) (string, error) {
	if c.valPath == nil {
		return "", nil
	}
	data, err := c.valPath.Search(event)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrValidation, c.valPath, err)
	}
	return c.hash(data)
}

// do runs Powertools' IdempotencyHandler.handle: claim, or replay, or
// refuse; inconsistent-state races are retried before the handler runs.
func (c *core) do(ctx context.Context, event any, run func(context.Context) ([]byte, error)) ([]byte, bool, error) {
	key, err := c.key(event)
	if err != nil {
		return nil, false, err
	}
	if key == "" {
		if c.log != nil {
			c.log.WarnContext(ctx, "No idempotency key value found. Skipping persistence layer and validation operations.",
				"path", c.keyPath.String())
		}
		resp, err := run(ctx)
		var ee encodeError
		if errors.As(err, &ee) {
			err = ee.err
		}
		return resp, false, err
	}
	validation, err := c.validationHash(event)
	if err != nil {
		return nil, false, err
	}
	for attempt := 0; ; attempt++ {
		resp, replayed, retry, err := c.process(ctx, key, validation, run)
		if !retry {
			return resp, replayed, err
		}
		if attempt == maxRetries {
			return nil, false, fmt.Errorf("%w (key %s, %d attempts)", ErrInconsistentState, key, attempt+1)
		}
	}
}

// process is one attempt. retry is set only before the handler ran.
func (c *core) process(ctx context.Context, key, validation string, run func(context.Context) ([]byte, error)) (resp []byte, replayed, retry bool, err error) {
	now := c.now()
	rec := Record{
		Key:        key,
		Status:     StatusInProgress,
		Expiration: now.Add(c.expiresAfter).Unix(),
		Validation: validation,
	}
	// The attempt is abandoned when its invocation's deadline passes; a
	// retry after that may take the key over. Without a deadline nothing
	// tells a slow attempt from a dead one, so it holds the key for the
	// whole expiry (Powertools would leave the field out, and its Redis
	// layer then treats the record as an orphan at once).
	if dl, ok := ctx.Deadline(); ok {
		rec.InProgressExpiration = now.Add(time.Until(dl)).UnixMilli()
	} else {
		rec.InProgressExpiration = rec.Expiration * 1000
	}

	var existing *Record
	if c.cache != nil {
		if r, ok := c.cache.get(key, now); ok {
			existing = &r
		}
	}
	if existing == nil {
		perr := c.store.PutInProgress(ctx, rec, now)
		var exists *ExistsError
		switch {
		case perr == nil:
			resp, err := c.run(ctx, rec, run)
			return resp, false, false, err
		case errors.As(perr, &exists):
			existing = exists.Record
		case errors.Is(perr, ErrAlreadyInProgress):
			return nil, false, false, c.inProgress(key)
		case errors.Is(perr, ErrInconsistentState):
			return nil, false, true, nil
		default:
			return nil, false, false, fmt.Errorf("%w: save in-progress record %s: %w", ErrPersistence, key, perr)
		}
		if existing == nil {
			r, gerr := c.store.Get(ctx, key)
			if errors.Is(gerr, ErrNotFound) {
				return nil, false, true, nil
			}
			if gerr != nil {
				return nil, false, false, fmt.Errorf("%w: get record %s: %w", ErrPersistence, key, gerr)
			}
			existing = &r
		}
	}

	if c.valPath != nil && existing.Validation != validation {
		return nil, false, false, ErrValidation
	}
	switch existing.StatusAt(now) {
	case StatusExpired:
		return nil, false, true, nil
	case StatusInProgress:
		if existing.InProgressExpiration != 0 && existing.InProgressExpiration < now.UnixMilli() {
			return nil, false, true, nil
		}
		return nil, false, false, c.inProgress(key)
	}
	if c.cache != nil {
		c.cache.put(*existing)
	}
	resp, err = existing.Response()
	if err != nil {
		return nil, false, false, fmt.Errorf("%w: stored response of %s: %w", ErrPersistence, key, err)
	}
	return resp, true, false, nil
}

func (c *core) inProgress(key string) error {
	return fmt.Errorf("%w with idempotency key: %s=%s", ErrAlreadyInProgress, c.keyPath, key)
}

// run executes the handler under a claimed record and settles the record.
func (c *core) run(ctx context.Context, rec Record, run func(context.Context) ([]byte, error)) ([]byte, error) {
	// The record is settled with a context that outlives the invocation's:
	// a handler that failed because its deadline passed must still free
	// the key for the retry. The client's own timeouts bound these calls.
	settle := context.WithoutCancel(ctx)
	returned := false
	defer func() {
		if returned {
			return
		}
		if p := recover(); p != nil {
			// A panic is a handler failure: free the key as for an error,
			// then let the panic go on to the runtime.
			c.forget(settle, rec.Key)
			panic(p)
		}
		// runtime.Goexit: the attempt vanished without an outcome, as a
		// crashed process does; the record stays INPROGRESS until its
		// in-progress expiry, which is exactly that case's contract.
	}()
	resp, herr := run(ctx)
	returned = true

	var ee encodeError
	if errors.As(herr, &ee) {
		return nil, fmt.Errorf("%w: record %s left in progress: %w", ErrPersistence, rec.Key, ee.err)
	}
	if herr != nil {
		if derr := c.forget(settle, rec.Key); derr != nil {
			return nil, fmt.Errorf("%w: delete record %s: %w (handler error: %w)", ErrPersistence, rec.Key, derr, herr)
		}
		return nil, herr
	}
	done := Record{
		Key:        rec.Key,
		Status:     StatusCompleted,
		Expiration: c.now().Add(c.expiresAfter).Unix(),
		Validation: rec.Validation,
	}
	done.setResponse(resp)
	if err := c.store.PutCompleted(settle, done, c.now()); err != nil {
		return nil, fmt.Errorf("%w: save completed record %s: %w", ErrPersistence, rec.Key, err)
	}
	if c.cache != nil {
		c.cache.put(done)
	}
	return resp, nil
}

func (c *core) forget(ctx context.Context, key string) error {
	if c.cache != nil {
		c.cache.remove(key)
	}
	return c.store.Delete(ctx, key)
}
