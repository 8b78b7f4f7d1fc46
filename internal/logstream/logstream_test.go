package logstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/internal/natsutil"
)

const acct = "123456789012"

func jsConn(t *testing.T) *nats.Conn {
	t.Helper()
	s, err := natsutil.StartServer(natsutil.ServerConfig{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := natsutil.Connect(natsutil.URL(s), "logstream-test")
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

// readAll reads one function's history.
func readAll(t *testing.T, nc *nats.Conn, fn string, since time.Time) []Entry {
	t.Helper()
	var got []Entry
	if err := Read(testCtx(t), nc, acct, fn, since, false, func(e Entry) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// waitLines reads history until fn has n entries.
func waitLines(t *testing.T, nc *nats.Conn, fn string, since time.Time, n int) []Entry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := readAll(t, nc, fn, since)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d entries, want %d", fn, len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSubjectFor(t *testing.T) {
	for _, tc := range []struct{ acct, fn, want string }{
		{acct, "my-func", "cs.logs.123456789012.my-func"},
		{acct, "a.b*c>d e", "cs.logs.123456789012.a_b_c_d_e"},
		{"x.y", "", "cs.logs.x_y._"},
	} {
		if got := SubjectFor(tc.acct, tc.fn); got != tc.want {
			t.Errorf("SubjectFor(%q, %q) = %q, want %q", tc.acct, tc.fn, got, tc.want)
		}
	}
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
		c.Storage != jetstream.FileStorage || c.Discard != jetstream.DiscardOld || len(c.Subjects) != 1 || c.Subjects[0] != "cs.logs.>" {
		t.Fatalf("defaults: %+v", c)
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
		go func() { errs <- Ensure(ctx, nc, Config{}) }()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Ensure: %v", err)
		}
	}
}

func TestPublishAndReadHistory(t *testing.T) {
	nc := jsConn(t)
	if err := Ensure(testCtx(t), nc, Config{}); err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(nc)
	defer p.Close()
	t0 := time.Now().Add(-time.Hour)
	for i := 0; i < 5; i++ {
		p.Add(Entry{Time: t0.Add(time.Duration(i) * time.Second), Account: acct, Function: "f", Version: "$LATEST",
			RequestID: fmt.Sprintf("r%d", i), Stream: Stdout, Line: fmt.Sprintf("line %d", i)})
		p.Add(Entry{Account: acct, Function: "other", Stream: Stderr, Line: "not f's"})
	}
	// A name that escapes to f's neighbour's subject is kept apart.
	p.Add(Entry{Account: acct, Function: "g.h", Stream: Stdout, Line: "g.h"})
	p.Add(Entry{Account: acct, Function: "g_h", Stream: Stdout, Line: "g_h"})
	got := waitLines(t, nc, "f", time.Time{}, 5)
	if len(got) != 5 {
		t.Fatalf("%d entries for f, want 5", len(got))
	}
	for i, e := range got {
		if e.Function != "f" || e.Line != fmt.Sprintf("line %d", i) || e.RequestID != fmt.Sprintf("r%d", i) ||
			e.Version != "$LATEST" || e.Stream != Stdout || !e.Time.Equal(t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	if got := waitLines(t, nc, "other", time.Time{}, 5); len(got) != 5 || got[0].Line != "not f's" {
		t.Fatalf("other: %+v", got)
	}
	if got := waitLines(t, nc, "g_h", time.Time{}, 1); len(got) != 1 || got[0].Line != "g_h" {
		t.Fatalf("g_h: %+v", got)
	}
	if p.Dropped() != 0 {
		t.Fatalf("%d dropped", p.Dropped())
	}

	// since: only what was stored from then on.
	mark := time.Now()
	p.Add(Entry{Account: acct, Function: "f", Stream: Platform, Line: "END RequestId: r9"})
	got = waitLines(t, nc, "f", mark, 1)
	if len(got) != 1 || got[0].Line != "END RequestId: r9" {
		t.Fatalf("since %v: %+v", mark, got)
	}
	// A function without lines: nothing, at once.
	if got := readAll(t, nc, "silent", time.Time{}); len(got) != 0 {
		t.Fatalf("silent: %+v", got)
	}
}

func TestReadFollowsNewLines(t *testing.T) {
	nc := jsConn(t)
	if err := Ensure(testCtx(t), nc, Config{}); err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(nc)
	defer p.Close()
	p.Add(Entry{Account: acct, Function: "f", Stream: Stdout, Line: "before"})
	waitLines(t, nc, "f", time.Time{}, 1)

	ctx, cancel := context.WithCancel(testCtx(t))
	lines := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- Read(ctx, nc, acct, "f", time.Time{}, true, func(e Entry) error {
			lines <- e.Line
			return nil
		})
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case err := <-done:
			t.Fatalf("Read ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no line")
		}
		return ""
	}
	if l := next(); l != "before" {
		t.Fatalf("first line %q", l)
	}
	// Read has delivered history: its consumer exists, so this line is
	// published after Read started.
	p.Add(Entry{Account: acct, Function: "other", Stream: Stdout, Line: "not f's"})
	p.Add(Entry{Account: acct, Function: "f", Stream: Stdout, Line: "after"})
	if l := next(); l != "after" {
		t.Fatalf("followed line %q", l)
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
	st, err := js.Stream(testCtx(t), Stream)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := st.Info(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d consumers left", info.State.Consumers)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReadStopsOnCallbackError(t *testing.T) {
	nc := jsConn(t)
	if err := Ensure(testCtx(t), nc, Config{}); err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(nc)
	for i := 0; i < 3; i++ {
		p.Add(Entry{Account: acct, Function: "f", Stream: Stdout, Line: "x"})
	}
	p.Close()
	waitLines(t, nc, "f", time.Time{}, 3)
	stop := errors.New("stop")
	n := 0
	err := Read(testCtx(t), nc, acct, "f", time.Time{}, true, func(Entry) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Read: %v after %d entries", err, n)
	}
}

func TestReadWithoutStream(t *testing.T) {
	nc := jsConn(t)
	err := Read(testCtx(t), nc, acct, "f", time.Time{}, false, func(Entry) error { return nil })
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Read without the stream: %v", err)
	}
}

func TestPublisherBatchesAndDrops(t *testing.T) {
	nc := jsConn(t)
	sub, err := nc.SubscribeSync(SubjectPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	// Not flushing yet, so the buffer fills deterministically.
	p := newPublisher(nc)
	big := strings.Repeat("x", 1000)
	const n = 200 // ~200 KB: several batches of at most flushBytes
	for i := 0; i < n; i++ {
		p.Add(Entry{Account: acct, Function: "f", Stream: Stdout, Line: big})
	}
	// Over the buffer: dropped and counted, not waited for. Lines are
	// cut at MaxLine.
	huge := strings.Repeat("y", MaxLine+10)
	for i := 0; i < 2*maxBuffered/MaxLine; i++ {
		p.Add(Entry{Account: acct, Function: "h", Stream: Stdout, Line: huge})
	}
	if p.Dropped() == 0 {
		t.Fatal("nothing dropped past the buffer")
	}
	go p.run()
	p.Close()
	got := 0
	for got < n {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d lines of f: %v", got, err)
		}
		if len(m.Data) > flushBytes+2<<10 && !strings.Contains(m.Subject, ".h") {
			t.Fatalf("a batch of %d bytes", len(m.Data))
		}
		for _, e := range DecodeMessage(m.Data) {
			if e.Function == "f" {
				got++
			} else if len(e.Line) != MaxLine {
				t.Fatalf("line of %d bytes, want cut at %d", len(e.Line), MaxLine)
			}
		}
	}
	before := p.Dropped()
	p.Add(Entry{Account: acct, Function: "f", Line: "late"})
	if p.Dropped() != before+1 {
		t.Fatal("an Add after Close was not counted as dropped")
	}
}

func TestDecodeMessageSkipsBadLines(t *testing.T) {
	good, _ := json.Marshal(Entry{Account: acct, Function: "f", Line: "ok"})
	data := []byte("garbage\n" + string(good) + "\n{\"line\": 5}\n\n{not json\n" + string(good))
	got := DecodeMessage(data)
	if len(got) != 2 || got[0].Line != "ok" || got[1].Line != "ok" {
		t.Fatalf("DecodeMessage: %+v", got)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	good, _ := json.Marshal(Entry{Time: time.Unix(1700000000, 0).UTC(), Account: acct, Function: "f", Version: "1",
		RequestID: "r", Sandbox: "s", Stream: Stdout, Line: "hello"})
	f.Add(good)
	f.Add([]byte(string(good) + "\n" + string(good) + "\n"))
	f.Add([]byte("garbage\n{\"line\":\"x\"}\n{"))
	f.Add([]byte("{\"time\":\"not a time\"}\n\n\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, e := range DecodeMessage(data) {
			// What decodes encodes again.
			if _, err := json.Marshal(e); err != nil {
				t.Fatalf("%+v: %v", e, err)
			}
		}
	})
}
