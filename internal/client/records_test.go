package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

func rec(id string) api.Record {
	return api.Record{RequestID: id, Account: "000000000000", Function: "hello", Version: "$LATEST",
		Sandbox: "sb-1", Worker: "w-1", StartNs: 1, EndNs: 2, Cold: id == "r1", DurationMs: 80, BilledMs: 80, Outcome: api.OutcomeOK}
}

// TestRecordsStreamsChunks proves records arrive as they are flushed: the
// server writes record n+1 only after the client has handed record n to the
// callback, so a client that buffered the stream would never finish.
func TestRecordsStreamsChunks(t *testing.T) {
	got := make(chan api.Record)
	var filter string
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathRecords {
			http.NotFound(w, r)
			return
		}
		filter = r.URL.Query().Get("function")
		w.Header().Set("Content-Type", "application/x-ndjson")
		fl := w.(http.Flusher)
		enc := json.NewEncoder(w)
		for i, id := range []string{"r1", "r2", "r3"} {
			if i == 1 {
				io.WriteString(w, "\n") // a keep-alive blank line
			}
			enc.Encode(rec(id))
			fl.Flush()
			select {
			case r := <-got:
				if r.RequestID != id {
					t.Errorf("got %s, want %s", r.RequestID, id)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("client did not receive %s while the stream stayed open", id)
				return
			case <-r.Context().Done():
				return
			}
		}
		<-r.Context().Done() // never-ending, until the client goes
	}))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	err := c.Records(ctx, "hello", func(r api.Record) error {
		ids = append(ids, r.RequestID)
		got <- r
		if len(ids) == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled after cancel, got %v", err)
	}
	if strings.Join(ids, ",") != "r1,r2,r3" {
		t.Fatalf("records %v", ids)
	}
	if filter != "hello" {
		t.Fatalf("filter %q", filter)
	}
}

func TestRecordsEndings(t *testing.T) {
	stream := func(body string, hold bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, body)
			w.(http.Flusher).Flush()
			if hold {
				<-r.Context().Done()
			}
		})
	}
	line := func(id string) string { b, _ := json.Marshal(rec(id)); return string(b) + "\n" }
	ctx := ctxT(t)

	t.Run("ErrStop ends quietly", func(t *testing.T) {
		c := newTestClient(t, stream(line("r1")+line("r2")+line("r3"), true))
		n := 0
		err := c.Records(ctx, "", func(api.Record) error {
			n++
			if n == 2 {
				return ErrStop
			}
			return nil
		})
		if err != nil || n != 2 {
			t.Fatalf("err %v after %d records", err, n)
		}
	})
	t.Run("callback error is returned", func(t *testing.T) {
		c := newTestClient(t, stream(line("r1"), true))
		boom := errors.New("boom")
		if err := c.Records(ctx, "", func(api.Record) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("server ends the stream", func(t *testing.T) {
		c := newTestClient(t, stream(line("r1")+strings.TrimSuffix(line("r2"), "\n"), false))
		n := 0
		if err := c.Records(ctx, "", func(api.Record) error { n++; return nil }); err != nil || n != 2 {
			t.Fatalf("err %v, %d records (want nil, 2: a last line without newline counts)", err, n)
		}
	})
	t.Run("bad line", func(t *testing.T) {
		c := newTestClient(t, stream(line("r1")+"not json\n", true))
		if err := c.Records(ctx, "", func(api.Record) error { return nil }); err == nil || !strings.Contains(err.Error(), "bad line") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("error status", func(t *testing.T) {
		c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeErr(w, 503, "ServiceException", `{"Message":"records unavailable"}`)
		}))
		err := c.Records(ctx, "", func(api.Record) error { return nil })
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 503 || ae.Message != "records unavailable" {
			t.Fatalf("got %v", err)
		}
	})
}
