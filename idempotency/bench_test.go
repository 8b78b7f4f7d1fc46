package idempotency

import (
	"context"
	"testing"
	"time"
)

// BenchmarkWrapDuplicate is the duplicate path against the real server: the
// claim (SET NX, refused), the read (GET) and the replay. Compare it with
// BenchmarkBareSetNX from the same run: the floor is one such round trip
// per command.
func BenchmarkWrapDuplicate(b *testing.B) {
	rdb := realRedis(b)
	h := WrapBytes(func(context.Context, []byte) ([]byte, error) {
		b.Fatal("handler ran for a duplicate")
		return nil, nil
	}, NewRedisStore(rdb), Config{EventKeyPath: "requestContext.requestId", FunctionName: "bench", HandlerName: "h"})
	event := []byte(`{"requestContext": {"requestId": "r-1"}, "body": "{\"order\": 7}"}`)
	// Seed the COMPLETED record through a first, real run.
	seed := WrapBytes(func(context.Context, []byte) ([]byte, error) { return []byte(`{"ok":true}`), nil },
		NewRedisStore(rdb), Config{EventKeyPath: "requestContext.requestId", FunctionName: "bench", HandlerName: "h"})
	if _, err := seed(context.Background(), event); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp, err := h(ctx, event); err != nil || string(resp) != `{"ok":true}` {
			b.Fatalf("%s, %v", resp, err)
		}
	}
}

// BenchmarkBareSetNX is one raw SET key value NX PX round trip: the
// baseline for BenchmarkWrapDuplicate.
func BenchmarkBareSetNX(b *testing.B) {
	rdb := realRedis(b)
	ctx := context.Background()
	val := []byte(`{"status": "INPROGRESS", "expiration": 1700003600}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := rdb.SetNX(ctx, "bench-setnx", val, 60500*time.Millisecond).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrapDuplicateLocalCache is the warm duplicate with the local
// cache on: no store round trip at all.
func BenchmarkWrapDuplicateLocalCache(b *testing.B) {
	rdb := realRedis(b)
	cfg := Config{EventKeyPath: "id", FunctionName: "bench", HandlerName: "h", UseLocalCache: true}
	h := WrapBytes(func(context.Context, []byte) ([]byte, error) { return []byte(`{"ok":true}`), nil }, NewRedisStore(rdb), cfg)
	event := []byte(`{"id": "r-1"}`)
	ctx := context.Background()
	h(ctx, event)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h(ctx, event); err != nil {
			b.Fatal(err)
		}
	}
}
