package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/ports"
)

// TestUpRestartKeepsQueuedEvents: events accepted before a full restart
// of `coldstart up` (still queued: every attempt so far failed) are
// delivered after it, from the data directory; none is lost. The records
// of their runs are read back from the records history.
func TestUpRestartKeepsQueuedEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster twice")
	}
	data := t.TempDir()
	p, err := ports.Free("127.0.0.1", 3)
	if err != nil {
		t.Fatal(err)
	}
	gw := "http://127.0.0.1:" + strconv.Itoa(p[0])
	// --time-scale 30: the dispatchers' ack wait (30 s) is 1 s, so events a
	// stopped cluster held are redelivered soon after the restart.
	args := []string{"--data", data, "--listen", "127.0.0.1:" + strconv.Itoa(p[0]), "--admin", "127.0.0.1:" + strconv.Itoa(p[2]), "--time-scale", "30"}
	stop := startUp(t, args...)
	if code, body := httpDo(t, "POST", gw+"/2015-03-31/functions", `{"FunctionName":"q","Runtime":"synthetic","Coldstart":{"Duration":"1ms","ColdStart":"1ms"}}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	// Every attempt fails before the handler: the events stay queued.
	if code, body := httpDo(t, "PUT", gw+api.PathFunctionOptions+"q/fault", `{"Kind":"error-before","Rate":1}`); code != 200 {
		t.Fatalf("inject: %d %s", code, body)
	}
	const n = 10
	ids := map[string]bool{}
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("POST", gw+"/2015-03-31/functions/q/invocations", strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
		req.Header.Set(api.HeaderInvocationType, "Event")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("event %d: %v %v", i, resp, err)
		}
		ids[resp.Header.Get(api.HeaderRequestID)] = true
		resp.Body.Close()
	}
	stop()

	stop = startUp(t, args...)
	defer stop()
	if code, body := httpDo(t, "DELETE", gw+api.PathFunctionOptions+"q/fault", ""); code != 200 {
		t.Fatalf("clear: %d %s", code, body)
	}
	ran := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for len(ran) < n && time.Now().Before(deadline) {
		resp, err := http.Get(gw + api.PathRecords + "?since=all&function=q")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var r api.Record
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Outcome == api.OutcomeOK && ids[r.RequestID] {
				ran[r.RequestID] = true
			}
		}
		resp.Body.Close()
		if len(ran) < n {
			time.Sleep(200 * time.Millisecond) // poll the history until the deadline
		}
	}
	if len(ran) != n {
		t.Fatalf("%d of %d events queued before the restart ran after it", len(ran), n)
	}
}
