package recordstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/wire"
)

const acct = "123456789012"

func jsConn(t *testing.T) *nats.Conn {
	t.Helper()
	s, err := natsutil.StartServer(natsutil.ServerConfig{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := natsutil.Connect(natsutil.URL(s), "recordstream-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func rec(account, fn, id string, end time.Time) api.Record {
	return api.Record{RequestID: id, Account: account, Function: fn, Version: "$LATEST", Worker: "w1",
		ReceivedNs: end.Add(-time.Millisecond).UnixNano(), StartNs: end.Add(-time.Millisecond).UnixNano(), EndNs: end.UnixNano(),
		Outcome: api.OutcomeOK, Attempt: 1, Trigger: api.TriggerSync}
}

// publish sends records as workers do: batched plain publishes on
// wire.SubjectRecords, which the stream captures.
func publish(t *testing.T, nc *nats.Conn, recs ...api.Record) {
	t.Helper()
	b := NewPublisher(nc)
	for _, r := range recs {
		b.Add(r)
	}
	b.Stop()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// stored waits until the stream holds n messages.
func stored(t *testing.T, nc *nats.Conn, n uint64) {
	t.Helper()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := js.Stream(testCtx(t), Stream)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().State.Msgs; got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream holds %d messages, want %d", st.CachedInfo().State.Msgs, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readIDs reads the history f selects, without following.
func readIDs(t *testing.T, nc *nats.Conn, f Filter) []string {
	t.Helper()
	var got []string
	err := Read(testCtx(t), nc, f, false, Sink{Record: func(line []byte) error {
		var r api.Record
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		got = append(got, r.RequestID)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestEnsureAppliesRetention(t *testing.T) {
	nc := jsConn(t)
	ctx := testCtx(t)
	if err := Ensure(ctx, nc, Config{}); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	info := func() *jetstream.StreamInfo {
		st, err := js.Stream(ctx, Stream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo()
	}
	if c := info().Config; c.MaxAge != DefaultMaxAge || c.MaxBytes != DefaultMaxBytes || c.Replicas != 1 ||
		c.Storage != jetstream.FileStorage || c.Discard != jetstream.DiscardOld || !slices.Equal(c.Subjects, []string{"cs.records", "cs.records.>"}) {
		t.Fatalf("defaults: %+v", c)
	}
	if DefaultMaxAge != 24*time.Hour || DefaultMaxBytes != 512<<20 {
		t.Fatalf("defaults %v %d", DefaultMaxAge, DefaultMaxBytes)
	}
	if err := Ensure(ctx, nc, Config{MaxAge: time.Hour, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if c := info().Config; c.MaxAge != time.Hour || c.MaxBytes != 1<<20 {
		t.Fatalf("updated: MaxAge %v MaxBytes %d", c.MaxAge, c.MaxBytes)
	}
}

func TestEnsureConcurrently(t *testing.T) {
	nc := jsConn(t)
	ctx := testCtx(t)
	errs := make(chan error, 4)
	for i := 0; i < cap(errs); i++ {
		go func() { errs <- Ensure(ctx, nc, Config{MaxAge: time.Duration(i+1) * time.Hour}) }()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Ensure: %v", err)
		}
	}
}

// Records stored before a reader starts come first, in order, then those
// stored after it, and live subscribers on the subject still get every
// batch.
func TestHistoryThenFollow(t *testing.T) {
	nc := jsConn(t)
	if err := Ensure(testCtx(t), nc, Config{}); err != nil {
		t.Fatal(err)
	}
	live, err := nc.SubscribeSync(wire.SubjectRecords)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var before []api.Record
	for i := 0; i < 5; i++ {
		before = append(before, rec(acct, "f", fmt.Sprintf("r%d", i), now))
	}
	publish(t, nc, before[:3]...)
	publish(t, nc, before[3:]...)
	stored(t, nc, 2)
	for i := 0; i < 2; i++ {
		if _, err := live.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("live subscriber, batch %d: %v", i, err)
		}
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	ids := make(chan string, 16)
	caughtUp := make(chan struct{}, 16)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Read(ctx, nc, Filter{Since: now.Add(-time.Minute)}, true, Sink{
			Ready: func() { close(ready) },
			Record: func(line []byte) error {
				var r api.Record
				if err := json.Unmarshal(line, &r); err != nil {
					return err
				}
				ids <- r.RequestID
				return nil
			},
			CaughtUp: func() { caughtUp <- struct{}{} },
		})
	}()
	next := func() string {
		t.Helper()
		select {
		case id := <-ids:
			return id
		case err := <-done:
			t.Fatalf("Read ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no record")
		}
		return ""
	}
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Read ended before it was ready: %v", err)
	}
	for i := 0; i < 5; i++ {
		if id := next(); id != fmt.Sprintf("r%d", i) {
			t.Fatalf("history record %d: %s", i, id)
		}
	}
	select {
	case <-caughtUp:
	case <-time.After(10 * time.Second):
		t.Fatal("not caught up after the history")
	}
	publish(t, nc, rec(acct, "f", "r5", time.Now()), rec(acct, "f", "r6", time.Now()))
	publish(t, nc, rec(acct, "f", "r7", time.Now()))
	for i := 5; i < 8; i++ {
		if id := next(); id != fmt.Sprintf("r%d", i) {
			t.Fatalf("followed record %d: %s", i, id)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Read after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not end with its context")
	}
	// No consumer is left behind.
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := js.Stream(testCtx(t), Stream)
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().State.Consumers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d consumers left", st.CachedInfo().State.Consumers)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFilters(t *testing.T) {
	nc := jsConn(t)
	if err := Ensure(testCtx(t), nc, Config{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old := now.Add(-time.Hour) // made an hour ago, stored now: a since filters it by its own time
	th := api.Record{RequestID: "t1", Account: acct, Function: "f", ReceivedNs: now.UnixNano(), Outcome: api.OutcomeThrottled}
	publish(t, nc,
		rec(acct, "f", "a", now), rec(acct, "g", "b", now), rec("210987654321", "f", "c", now),
		rec(acct, "f", "old", old), th, rec(acct, "f", "a", now.Add(time.Millisecond)))
	// Garbage on the subject is stored too; readers skip it when they filter.
	nc.Publish(wire.SubjectRecords, []byte("not json\n{\"request_id\":"))
	stored(t, nc, 2)

	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"all", Filter{Since: now.Add(-2 * time.Hour)}, []string{"a", "b", "c", "old", "t1", "a"}},
		{"since", Filter{Since: now.Add(-time.Minute)}, []string{"a", "b", "c", "t1", "a"}},
		{"function", Filter{Since: now.Add(-time.Minute), Function: "f"}, []string{"a", "c", "t1", "a"}},
		{"request", Filter{Since: now.Add(-2 * time.Hour), RequestID: "a"}, []string{"a", "a"}},
		{"account", Filter{Since: now.Add(-time.Minute), Account: "210987654321"}, []string{"c"}},
		{"account and function", Filter{Account: acct, Function: "g"}, []string{"b"}},
		{"nothing", Filter{Function: "h"}, nil},
		{"future", Filter{Since: now.Add(time.Hour)}, nil},
	} {
		if got := readIDs(t, nc, tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// The zero filter reads everything, garbage lines included: it
	// decodes nothing.
	n := 0
	if err := Read(testCtx(t), nc, Filter{}, false, Sink{Record: func([]byte) error { n++; return nil }}); err != nil || n != 8 {
		t.Fatalf("zero filter: %d lines, %v", n, err)
	}
}

func TestReadEmptyAndWithoutStream(t *testing.T) {
	nc := jsConn(t)
	noop := Sink{Record: func([]byte) error { return nil }}
	if err := Read(testCtx(t), nc, Filter{}, false, noop); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Read without the stream: %v", err)
	}
	if err := Ensure(testCtx(t), nc, Config{}); err != nil {
		t.Fatal(err)
	}
	caught := false
	if err := Read(testCtx(t), nc, Filter{}, false, Sink{Record: noop.Record, CaughtUp: func() { caught = true }}); err != nil || !caught {
		t.Fatalf("an empty stream: %v, caught up %v", err, caught)
	}
}

func TestReadStopsOnSinkError(t *testing.T) {
	nc := jsConn(t)
	if err := Ensure(testCtx(t), nc, Config{}); err != nil {
		t.Fatal(err)
	}
	publish(t, nc, rec(acct, "f", "a", time.Now()), rec(acct, "f", "b", time.Now()))
	stored(t, nc, 1)
	stop := errors.New("stop")
	n := 0
	if err := Read(testCtx(t), nc, Filter{}, true, Sink{Record: func([]byte) error { n++; return stop }}); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Read: %v after %d records", err, n)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"all", time.Time{}},
		{"10m", now.Add(-10 * time.Minute)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"2026-12-01T11:00:00Z", now.Add(-time.Hour)},
		{"2026-12-01T12:30:00.5+01:00", now.Add(-30*time.Minute + 500*time.Millisecond)},
	} {
		got, err := ParseSince(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-10m", "0s", "10", "2026-12-01", "0001-01-01T00:00:00Z"} {
		if _, err := ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

func TestTime(t *testing.T) {
	r := api.Record{ReceivedNs: 1, EndNs: 3, ReleasedNs: 5}
	if Time(r) != 5 {
		t.Fatal(Time(r))
	}
	if r.ReleasedNs = 0; Time(r) != 3 {
		t.Fatal(Time(r))
	}
	if th := (api.Record{ReceivedNs: 7, Outcome: api.OutcomeThrottled}); Time(th) != 7 {
		t.Fatal(Time(th))
	}
}
