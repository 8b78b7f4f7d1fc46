// Package logstream keeps functions' log lines in the cluster: a
// JetStream stream with bounded retention, CS_LOGS, on subjects
// cs.logs.<account>.<function>. Workers publish batches with plain
// core-NATS publishes (the stream captures them); gateways create the
// stream and read it with ordered consumers.
//
// The package never logs entry contents: they are the function's output
// and may hold secrets.
package logstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/internal/jsutil"
)

// Stream is the JetStream stream of log lines.
const Stream = "CS_LOGS"

// SubjectPrefix starts every log subject.
const SubjectPrefix = "cs.logs."

// The stream's defaults.
const (
	DefaultMaxAge   = 24 * time.Hour
	DefaultMaxBytes = 256 << 20
)

var tokenReplacer = strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_", "\t", "_", "\r", "_", "\n", "_")

// token makes s one subject token, as wire.WarmSubject does: a name
// cannot widen its subject into others'.
func token(s string) string {
	if s == "" {
		return "_"
	}
	if !strings.ContainsAny(s, ".*> \t\r\n") {
		return s
	}
	return tokenReplacer.Replace(s)
}

// SubjectFor is the subject of one function's log lines:
// "cs.logs.<account>.<function>", each escaped to one token ('.', '*',
// '>' and white space become '_'). Names that escape alike share a
// subject; Read tells them apart by the entries' own fields.
func SubjectFor(account, function string) string {
	return SubjectPrefix + token(account) + "." + token(function)
}

// Config is the stream's retention.
type Config struct {
	MaxAge   time.Duration // default 24h
	MaxBytes int64         // default 256 MiB
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
		Description: "coldstart function logs",
		Subjects:    []string{SubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		// Old lines make room for new ones: a full stream must never
		// refuse a worker's batch.
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		AllowDirect: true,
	}
}

// Ensure creates the stream, or updates its retention to cfg. Gateways
// call it on start, several at once: an update is idempotent and the
// server accepts creating an identical stream.
func Ensure(ctx context.Context, nc *nats.Conn, cfg Config) error {
	return jsutil.EnsureStream(ctx, nc, cfg.streamConfig(), "logs")
}

// Entry is one log line.
type Entry struct {
	Time      time.Time `json:"time"`
	Account   string    `json:"account"`
	Function  string    `json:"function"`
	Version   string    `json:"version,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	Sandbox   string    `json:"sandbox,omitempty"`
	Stream    string    `json:"stream"` // "stdout", "stderr" or "platform" (START/END/REPORT)
	Line      string    `json:"line"`
}

// The values of Entry.Stream.
const (
	Stdout   = "stdout"
	Stderr   = "stderr"
	Platform = "platform"
)

// DecodeMessage returns the entries of one message: newline-separated
// JSON, one entry a line. Lines that do not decode are skipped.
func DecodeMessage(data []byte) []Entry {
	var out []Entry
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e Entry
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		out = append(out, e)
	}
	return out
}

// Read calls fn with the entries of one function kept since since (zero:
// all the stream holds), in order; with follow it then goes on with new
// entries until ctx ends (returning nil), otherwise it returns once it
// has caught up. An error from fn stops it and is returned. It reads
// through an ordered consumer, ephemeral and deleted when done: no
// durable state is left behind.
func Read(ctx context.Context, nc *nats.Conn, account, function string, since time.Time, follow bool, fn func(Entry) error) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// The stream's absence, or a lack of permission, is an error now
	// rather than an ordered consumer retrying forever.
	if _, err := js.Stream(ctx, Stream); err != nil {
		return fmt.Errorf("logs stream %s: %w", Stream, err)
	}
	cc := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{SubjectFor(account, function)},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
	}
	if !since.IsZero() {
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cc.OptStartTime = &since
	}
	cons, err := js.OrderedConsumer(ctx, Stream, cc)
	if err != nil {
		return fmt.Errorf("logs stream %s: %w", Stream, err)
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
	if !follow {
		if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
			return nil
		}
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("logs stream %s: %w", Stream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	sinceOK := func(e Entry) bool { return since.IsZero() || !e.Time.Before(since) }
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				if follow {
					return nil // following ends with ctx
				}
				return ctx.Err()
			}
			return fmt.Errorf("logs stream %s: %w", Stream, err)
		}
		for _, e := range DecodeMessage(m.Data()) {
			// Escaped names may share a subject; a batch's entries are
			// filtered by their own names. A batch may also start a
			// little before since.
			if e.Account != account || e.Function != function || !sinceOK(e) {
				continue
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if !follow {
			md, err := m.Metadata()
			if err != nil || md.NumPending == 0 {
				return nil
			}
		}
	}
}
