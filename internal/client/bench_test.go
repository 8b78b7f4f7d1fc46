package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// The client's overhead on top of a bare keep-alive POST, same server, same
// run: compare BenchmarkInvoke with BenchmarkBaselinePOST.

func benchServer(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set(api.HeaderCold, "false")
		h.Set(api.HeaderDurationMs, "0.01")
		h.Set(api.HeaderBilledMs, "1")
		h.Set(api.HeaderRequestID, "rid")
		w.Write([]byte(`{"ok":true}`))
	}))
	b.Cleanup(srv.Close)
	return srv
}

func BenchmarkInvoke(b *testing.B) {
	srv := benchServer(b)
	c, _ := New(srv.URL)
	payload := bytes.Repeat([]byte("x"), 100)
	ctx := context.Background()
	b.SetParallelism(32) // 64 clients on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Invoke(ctx, "fn", payload, InvokeOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkBaselinePOST(b *testing.B) {
	srv := benchServer(b)
	hc := &http.Client{Transport: NewTransport(DefaultMaxIdleConnsPerHost, 0)}
	payload := bytes.Repeat([]byte("x"), 100)
	url := srv.URL + "/2015-03-31/functions/fn/invocations"
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Post(url, "application/octet-stream", bytes.NewReader(payload))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
