// Command procfn is the tiny aws-lambda-go function the process benchmarks
// deploy: it echoes its event, so its own work is as close to nothing as a
// real handler gets and what is measured is the platform around it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

// durationKey is the synthetic runtime's control field: honouring it lets
// the benchmarks' prewarm helper hold a sandbox of this function as it
// holds a synthetic one.
var durationKey = []byte(`"duration_ms"`)

func handle(ctx context.Context, ev json.RawMessage) (json.RawMessage, error) {
	if bytes.Contains(ev, durationKey) {
		var e struct {
			DurationMs int `json:"duration_ms"`
		}
		if json.Unmarshal(ev, &e) == nil && e.DurationMs > 0 {
			select {
			case <-time.After(time.Duration(e.DurationMs) * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
	return ev, nil
}

func main() { lambda.Start(handle) }
