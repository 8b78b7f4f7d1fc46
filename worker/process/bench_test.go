package process

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkColdReady: Start until the runtime's first GET /next, a tiny
// aws-lambda-go function, then Close. BenchmarkBareForkExec is its baseline.
func BenchmarkColdReady(b *testing.B) {
	code := goCode(b)
	for b.Loop() {
		b.StopTimer()
		cfg := baseConfig(b, code, "provided.al2023")
		b.StartTimer()
		s, _, err := Start(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close("SPINDOWN")
		b.StartTimer()
	}
}

// BenchmarkBareForkExec: exec /bin/true and wait.
func BenchmarkBareForkExec(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWarmInvoke: one invocation round trip through the Runtime API.
// BenchmarkBareHTTPRoundTrip is its baseline.
func BenchmarkWarmInvoke(b *testing.B) {
	s, _ := start(b, baseConfig(b, goCode(b), "provided.al2023"))
	payload := []byte(`{"op":"echo"}`)
	for b.Loop() {
		r, err := s.Invoke(context.Background(), Invocation{Payload: payload, Deadline: time.Now().Add(5 * time.Second)})
		if err != nil || r.ErrorType != "" {
			b.Fatal(err, r.ErrorType)
		}
	}
}

// BenchmarkBareHTTPRoundTrip: a loopback HTTP POST to a trivial server.
func BenchmarkBareHTTPRoundTrip(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		w.Write(body)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/"
	payload := []byte(`{"op":"echo"}`)
	for b.Loop() {
		resp, err := http.Post(url, "application/json", bytes.NewReader(payload))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
