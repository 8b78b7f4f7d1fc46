package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/recordstream"
	"github.com/coldstart-dev/coldstart/wire"
)

// recordsCluster is a NATS server with JetStream and the records stream,
// and a publisher standing in for the workers.
type recordsCluster struct {
	t   *testing.T
	url string
	pub *nats.Conn
}

func startRecordsCluster(t *testing.T) *recordsCluster {
	t.Helper()
	ns, err := natsutil.StartServer(natsutil.ServerConfig{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	c := &recordsCluster{t: t, url: natsutil.URL(ns)}
	c.pub = c.connect("worker")
	return c
}

func (c *recordsCluster) connect(name string) *nats.Conn {
	c.t.Helper()
	nc, err := natsutil.Connect(c.url, name)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// gateway starts a gateway that, as roles.StartGateway does, ensures the
// records stream first.
func (c *recordsCluster) gateway() *Gateway {
	c.t.Helper()
	nc := c.connect("gateway")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := recordstream.Ensure(ctx, nc, recordstream.Config{MaxAge: time.Hour}); err != nil {
		c.t.Fatal(err)
	}
	g, err := Start(Config{ID: "g", Listen: "127.0.0.1:0", NATS: nc, Placement: fakePlacer{&wire.Snapshot{Index: 1}}})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(g.Stop)
	return g
}

// publish sends records as workers do and waits until the stream holds
// them.
func (c *recordsCluster) publish(recs ...api.Record) {
	c.t.Helper()
	js, _ := jetstream.New(c.pub)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, recordstream.Stream)
	if err != nil {
		c.t.Fatal(err)
	}
	want := st.CachedInfo().State.Msgs + 1
	b := recordstream.NewPublisher(c.pub)
	for _, r := range recs {
		b.Add(r)
	}
	b.Stop()
	for {
		info, err := st.Info(ctx)
		if err != nil {
			c.t.Fatal(err)
		}
		if info.State.Msgs >= want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testRec(account, fn, id string, end time.Time) api.Record {
	return api.Record{RequestID: id, Account: account, Function: fn, Version: "$LATEST", Worker: "w1",
		ReceivedNs: end.UnixNano(), StartNs: end.UnixNano(), EndNs: end.UnixNano(), Outcome: api.OutcomeOK, Attempt: 1, Trigger: api.TriggerSync}
}

// asAccount serves g's records endpoint to callers acting as the account
// in their X-Test-Account header (default: the operator's), as the
// authentication middleware would have decided.
func asAccount(t *testing.T, g *Gateway) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("X-Test-Account"); a != "" {
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, &reqInfo{account: a}))
		}
		g.handleRecords(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// recordsReader is an open records response.
type recordsReader struct {
	t    *testing.T
	resp *http.Response
	ids  chan string
	end  chan error
}

func openRecords(t *testing.T, base, account string, q url.Values) *recordsReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+api.PathRecords+"?"+q.Encode(), nil)
	if account != "" {
		req.Header.Set("X-Test-Account", account)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("records %v: status %d", q, resp.StatusCode)
	}
	rr := &recordsReader{t: t, resp: resp, ids: make(chan string, 64), end: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var r api.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				rr.end <- fmt.Errorf("bad line %q: %w", sc.Text(), err)
				return
			}
			rr.ids <- r.RequestID
		}
		rr.end <- sc.Err()
	}()
	return rr
}

// next returns the next n request ids.
func (rr *recordsReader) next(n int) []string {
	rr.t.Helper()
	var got []string
	for len(got) < n {
		select {
		case id := <-rr.ids:
			got = append(got, id)
		case err := <-rr.end:
			rr.t.Fatalf("the stream ended after %q: %v", got, err)
		case <-time.After(10 * time.Second):
			rr.t.Fatalf("%q, want %d records", got, n)
		}
	}
	return got
}

// all reads a stream that ends (history without follow) to its end.
func (rr *recordsReader) all() []string {
	rr.t.Helper()
	var got []string
	for {
		select {
		case id := <-rr.ids:
			got = append(got, id)
		case err := <-rr.end:
			if err != nil {
				rr.t.Fatalf("after %q: %v", got, err)
			}
			for len(rr.ids) > 0 {
				got = append(got, <-rr.ids)
			}
			return got
		case <-time.After(10 * time.Second):
			rr.t.Fatalf("the stream did not end after %q", got)
		}
	}
}

func TestRecordsHistoryThenFollow(t *testing.T) {
	c := startRecordsCluster(t)
	g := c.gateway()
	now := time.Now()
	c.publish(testRec(DefaultAccount, "f", "r0", now), testRec(DefaultAccount, "f", "r1", now))
	c.publish(testRec(DefaultAccount, "f", "r2", now))

	rr := openRecords(t, g.URL(), "", url.Values{"since": {"all"}, "follow": {"true"}})
	if ct := rr.resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("Content-Type %q", ct)
	}
	// Without since, only what finishes from now on.
	live := openRecords(t, g.URL(), "", url.Values{})
	if got := rr.next(3); !slices.Equal(got, []string{"r0", "r1", "r2"}) {
		t.Fatalf("history %q", got)
	}
	c.publish(testRec(DefaultAccount, "f", "r3", time.Now()))
	c.publish(testRec(DefaultAccount, "f", "r4", time.Now()), testRec(DefaultAccount, "f", "r5", time.Now()))
	if got := rr.next(3); !slices.Equal(got, []string{"r3", "r4", "r5"}) {
		t.Fatalf("followed %q", got)
	}
	if got := live.next(3); !slices.Equal(got, []string{"r3", "r4", "r5"}) {
		t.Fatalf("live %q", got)
	}
	// Without follow the history ends.
	if got := openRecords(t, g.URL(), "", url.Values{"since": {"10m"}}).all(); len(got) != 6 {
		t.Fatalf("since 10m: %q", got)
	}
}

func TestRecordsHistoryFilters(t *testing.T) {
	c := startRecordsCluster(t)
	g := c.gateway()
	base := asAccount(t, g)
	const other = "210987654321"
	now := time.Now()
	c.publish(
		testRec(DefaultAccount, "f", "a", now),
		testRec(DefaultAccount, "g", "b", now),
		testRec(other, "f", "c", now),
		testRec(other, "g", "d", now),
		testRec(DefaultAccount, "f", "old", now.Add(-time.Hour)),
		testRec(other, "f", "c", now.Add(time.Millisecond)),
	)
	since := now.Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	for _, tc := range []struct {
		name, account string
		q             url.Values
		want          []string
	}{
		{"operator, all", "", url.Values{"since": {"all"}}, []string{"a", "b", "c", "d", "old", "c"}},
		{"operator, since", "", url.Values{"since": {since}}, []string{"a", "b", "c", "d", "c"}},
		{"operator, 30m ago", "", url.Values{"since": {"30m"}}, []string{"a", "b", "c", "d", "c"}},
		{"operator, function", "", url.Values{"since": {"all"}, "function": {"f"}}, []string{"a", "c", "old", "c"}},
		{"operator, request", "", url.Values{"since": {"all"}, "request_id": {"c"}}, []string{"c", "c"}},
		{"account, all", other, url.Values{"since": {"all"}}, []string{"c", "d", "c"}},
		{"account, function", other, url.Values{"since": {"all"}, "function": {"g"}}, []string{"d"}},
		{"account, another's request", other, url.Values{"since": {"all"}, "request_id": {"a"}}, nil},
		{"operator as itself", DefaultAccount, url.Values{"since": {"all"}, "function": {"g"}}, []string{"b", "d"}},
	} {
		if got := openRecords(t, base, tc.account, tc.q).all(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}

	// The live stream filters alike.
	live := openRecords(t, base, other, url.Values{"function": {"f"}})
	liveReq := openRecords(t, base, "", url.Values{"request_id": {"e2"}})
	c.publish(testRec(DefaultAccount, "f", "e1", time.Now()), testRec(other, "g", "e2", time.Now()), testRec(other, "f", "e3", time.Now()))
	if got := live.next(1); got[0] != "e3" {
		t.Fatalf("live, account %s, function f: %q", other, got)
	}
	if got := liveReq.next(1); got[0] != "e2" {
		t.Fatalf("live, request e2: %q", got)
	}
}

// A gateway that stops loses nothing: records published while no gateway
// runs are in the stream for the next one.
func TestRecordsSurviveGatewayRestart(t *testing.T) {
	c := startRecordsCluster(t)
	g1 := c.gateway()
	c.publish(testRec(DefaultAccount, "f", "before", time.Now()))
	if got := openRecords(t, g1.URL(), "", url.Values{"since": {"all"}}).all(); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("first gateway: %q", got)
	}
	g1.Stop()
	c.publish(testRec(DefaultAccount, "f", "between", time.Now()))
	g2 := c.gateway()
	c.publish(testRec(DefaultAccount, "f", "after", time.Now()))
	if got := openRecords(t, g2.URL(), "", url.Values{"since": {"all"}}).all(); !slices.Equal(got, []string{"before", "between", "after"}) {
		t.Fatalf("second gateway: %q", got)
	}
}

func TestRecordsBadQueries(t *testing.T) {
	c := startRecordsCluster(t)
	g := c.gateway()
	for _, q := range []string{"since=yesterday", "since=-5m", "since=all&follow=maybe"} {
		resp, eb := call(t, http.MethodGet, g.URL()+api.PathRecords+"?"+q, nil, nil)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(api.HeaderErrorType) != "InvalidParameterValueException" || eb.Text() == "" {
			t.Errorf("%s: %d %+v", q, resp.StatusCode, eb)
		}
	}
}

// Without the stream (a NATS server without JetStream), history is an
// error answer, and the live stream still works.
func TestRecordsHistoryWithoutStream(t *testing.T) {
	g := startTestGateway(t)
	resp, eb := call(t, http.MethodGet, g.URL()+api.PathRecords+"?since=all", nil, nil)
	if resp.StatusCode/100 != 5 || resp.Header.Get(api.HeaderErrorType) != "ServiceException" || !strings.Contains(eb.Text(), recordstream.Stream) {
		t.Fatalf("history without the stream: %d %+v", resp.StatusCode, eb)
	}
	req, _ := http.NewRequest(http.MethodGet, g.URL()+api.PathRecords, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("live without the stream: %d", resp.StatusCode)
	}
}
