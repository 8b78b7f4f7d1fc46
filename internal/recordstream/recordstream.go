// Package recordstream keeps invocation records in the cluster: a
// JetStream stream with bounded retention, CS_RECORDS, capturing the
// core-NATS subjects records are already published on (wire.SubjectRecords
// and below it). Workers and gateways publish batches through Publisher:
// a publish with a reply subject, which the stream acknowledges, so they
// need no JetStream permission, live readers are not slowed by the stream,
// and a batch lost on the way is published again. Gateways create the
// stream and read its history with ordered consumers.
package recordstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/jsutil"
	"github.com/coldstart-dev/coldstart/wire"
)

// Stream is the JetStream stream of invocation records.
const Stream = "CS_RECORDS"

// The stream's defaults.
const (
	DefaultMaxAge   = 24 * time.Hour
	DefaultMaxBytes = 512 << 20
)

// clockSlack is how much earlier than a reader's since its consumer
// starts: a record is stored a batch interval after it is made, by a
// server whose clock may differ a little from the worker's. Records are
// then filtered by their own times.
const clockSlack = 5 * time.Second

// Subjects are the subjects the stream captures.
func Subjects() []string { return []string{wire.SubjectRecords, wire.SubjectRecords + ".>"} }

// Config is the stream's retention.
type Config struct {
	MaxAge   time.Duration // default 24h
	MaxBytes int64         // default 512 MiB
	Replicas int           // default 1
}

func (c Config) streamConfig() jetstream.StreamConfig {
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Replicas < 1 {
		c.Replicas = 1
	}
	return jetstream.StreamConfig{
		Name:        Stream,
		Description: "coldstart invocation records",
		Subjects:    Subjects(),
		Retention:   jetstream.LimitsPolicy,
		// Old records make room for new ones: a full stream must never
		// refuse a worker's batch.
		Discard:  jetstream.DiscardOld,
		MaxAge:   c.MaxAge,
		MaxBytes: c.MaxBytes,
		Storage:  jetstream.FileStorage,
		Replicas: c.Replicas,
	}
}

// Ensure creates the stream, or updates its retention to cfg. Gateways
// call it on start, several at once: an update is idempotent and the
// server accepts creating an identical stream.
func Ensure(ctx context.Context, nc *nats.Conn, cfg Config) error {
	return jsutil.EnsureStream(ctx, nc, cfg.streamConfig(), "records")
}

// Filter selects records. Its zero value selects every record.
type Filter struct {
	Account   string    // only this account's ("": every account's)
	Function  string    // only this function's
	RequestID string    // only this request's
	Since     time.Time // only those made from then on (zero: no bound)
}

// keys are the fields a Filter reads: decoding only them keeps a
// reader's cost per record low.
type keys struct {
	RequestID  string `json:"request_id"`
	Account    string `json:"account"`
	Function   string `json:"function"`
	ReceivedNs int64  `json:"received_ns"`
	EndNs      int64  `json:"end_ns"`
	ReleasedNs int64  `json:"released_ns"`
}

func (k keys) time() int64 { return max(k.ReceivedNs, k.EndNs, k.ReleasedNs) }

// Time is when a record was made, in Unix nanoseconds: when its sandbox
// was released, else when its handler ended, else (a throttle) when its
// request was answered.
func Time(r api.Record) int64 { return max(r.ReceivedNs, r.EndNs, r.ReleasedNs) }

// Match says whether the record on line passes f. With the zero Filter
// every line passes undecoded, as a live stream always passed them; with
// any other a line that does not decode fails.
func (f Filter) Match(line []byte) bool {
	if f == (Filter{}) {
		return true
	}
	var k keys
	if json.Unmarshal(line, &k) != nil {
		return false
	}
	return (f.Account == "" || k.Account == f.Account) &&
		(f.Function == "" || k.Function == f.Function) &&
		(f.RequestID == "" || k.RequestID == f.RequestID) &&
		(f.Since.IsZero() || k.time() >= f.Since.UnixNano())
}

// ParseSince reads a reader's since: "all" (everything kept: the zero
// time), a positive duration before now ("10m", "1h30m"), or an RFC 3339
// time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "all" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("since %q: a duration must be positive", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.IsZero() || t.Before(time.Unix(0, 0)) {
			return time.Time{}, fmt.Errorf("since %q: before 1970", s)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("since %q: want all, a duration (10m) or an RFC 3339 time", s)
}

// Sink receives what Read delivers.
type Sink struct {
	// Ready is called once the consumer exists, before any record: every
	// record stored from then on will be delivered (with follow).
	Ready func()
	// Record is called with each record line the filter matches, in
	// stream order. An error stops Read and is returned.
	Record func(line []byte) error
	// CaughtUp is called each time what the stream held has been
	// delivered: a reader flushes its output then, not per record.
	CaughtUp func()
}

// Read delivers the records the stream keeps that f matches (from
// f.Since, or all it holds), then with follow the new ones as they are
// stored until ctx ends (returning nil); without follow it returns once
// it has caught up. It reads through an ordered consumer, ephemeral and
// deleted when done: no durable state is left behind, and a slow reader
// only slows its own pulls, never loses records the stream still holds.
func Read(ctx context.Context, nc *nats.Conn, f Filter, follow bool, sink Sink) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// The stream's absence, or a lack of permission, is an error now
	// rather than an ordered consumer retrying forever.
	if _, err := js.Stream(ctx, Stream); err != nil {
		return fmt.Errorf("records stream %s: %w", Stream, err)
	}
	cc := jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
	}
	if !f.Since.IsZero() {
		start := f.Since.Add(-clockSlack)
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cc.OptStartTime = &start
	}
	cons, err := js.OrderedConsumer(ctx, Stream, cc)
	if err != nil {
		return fmt.Errorf("records stream %s: %w", Stream, err)
	}
	defer func() {
		// The consumer would expire on its own (InactiveThreshold);
		// deleting it now keeps the server's list short.
		if ci := cons.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = js.DeleteConsumer(dctx, Stream, ci.Name)
			cancel()
		}
	}()
	if sink.Ready != nil {
		sink.Ready()
	}
	caughtUp := func() {
		if sink.CaughtUp != nil {
			sink.CaughtUp()
		}
	}
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		caughtUp()
		if !follow {
			return nil
		}
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("records stream %s: %w", Stream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				if follow {
					return nil // following ends with ctx
				}
				return ctx.Err()
			}
			return fmt.Errorf("records stream %s: %w", Stream, err)
		}
		for data := m.Data(); len(data) > 0; {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			if len(line) == 0 || !f.Match(line) {
				continue
			}
			if err := sink.Record(line); err != nil {
				return err
			}
		}
		if md, err := m.Metadata(); err != nil || md.NumPending == 0 {
			caughtUp()
			if !follow {
				return nil
			}
		}
	}
}
