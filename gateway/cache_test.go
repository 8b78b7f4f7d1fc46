package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/wire"
)

func snap(cluster string, index uint64, fns ...string) *wire.Snapshot {
	sn := &wire.Snapshot{ClusterID: cluster, Term: 1, Index: index}
	for i, f := range fns {
		sn.Functions = append(sn.Functions, testFunction(f, uint64(i+1)))
	}
	return sn
}

func publishEvent(t *testing.T, g *Gateway, ev wire.Event) {
	t.Helper()
	b, _ := json.Marshal(ev)
	if err := g.nc.Publish(wire.SubjectEvents, b); err != nil {
		t.Fatal(err)
	}
}

func TestBogusEventDoesNotFreezeCache(t *testing.T) {
	pl := &livePlacer{leader: snap("", 5, "f")}
	g, _ := startGateway(t, Config{Placement: pl})
	reads := pl.readCount()
	publishEvent(t, g, wire.Event{Kind: "function", Account: DefaultAccount, Function: "f", Index: 1 << 60})
	// The hint is chased with a few leader reads, then given up.
	waitFor(t, "the bogus event's refresh", 10*time.Second, func() bool { return pl.readCount() > reads })
	if _, _, idx := g.cache.position(); idx != 5 {
		t.Fatalf("cache index %d after a bogus event, want 5", idx)
	}
	// A function created elsewhere afterwards becomes visible, through its
	// event and through a lookup.
	pl.set(snap("", 6, "f", "later"), nil)
	publishEvent(t, g, wire.Event{Kind: "function", Account: DefaultAccount, Function: "later", Index: 6})
	waitFor(t, "the later function in the cache", 10*time.Second, func() bool { return g.cache.get(DefaultAccount, "later") != nil })
	pl.set(snap("", 7, "f", "later", "latest"), nil)
	if resp, eb := call(t, http.MethodGet, g.URL()+"/2015-03-31/functions/latest", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("GetFunction of a function created after the bogus event: %d %+v", resp.StatusCode, eb)
	}
}

func TestGarbageEventsAreIgnored(t *testing.T) {
	pl := &livePlacer{leader: snap("", 5, "f")}
	g, _ := startGateway(t, Config{Placement: pl})
	for _, b := range []string{"", "{", "null", "[]", `{"index":99}`, `{"kind":1}`} {
		if err := g.nc.Publish(wire.SubjectEvents, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	g.nc.Flush()
	if resp, _ := call(t, http.MethodGet, g.URL()+"/healthz", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("healthz after garbage: %d", resp.StatusCode)
	}
	if g.cache.get(DefaultAccount, "f") == nil {
		t.Fatal("garbage events emptied the cache")
	}
}

func TestClusterIDChangeResyncs(t *testing.T) {
	pl := &livePlacer{leader: snap("A", 100, "f")}
	g, _ := startGateway(t, Config{Placement: pl})
	if cl, _, _ := g.cache.position(); cl != "A" {
		t.Fatalf("cluster %q", cl)
	}
	// Placement bootstrapped again: new id, lower indexes, other functions.
	pl.set(snap("B", 3, "h"), nil)
	publishEvent(t, g, wire.Event{Kind: "function", Account: DefaultAccount, Function: "h", Index: 3, ClusterID: "B"})
	waitFor(t, "the new cluster's functions", 10*time.Second, func() bool {
		return g.cache.get(DefaultAccount, "h") != nil && g.cache.get(DefaultAccount, "f") == nil
	})
	if cl, _, idx := g.cache.position(); cl != "B" || idx != 3 {
		t.Fatalf("position %q %d, want B 3", cl, idx)
	}
}

func TestClusterIDChangeResyncsFromAnyNode(t *testing.T) {
	c := newCache(&livePlacer{leader: snap("B", 2, "h")}, nil)
	if err := c.install(snap("A", 50, "f"), true); err != nil {
		t.Fatal(err)
	}
	c.put(testFunction("mine", 9), 51)
	if err := c.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.get(DefaultAccount, "f") != nil || c.get(DefaultAccount, "mine") != nil || c.get(DefaultAccount, "h") == nil {
		t.Fatal("another cluster's snapshot did not replace the cache")
	}
	// An unknown (empty) id is not a change.
	if err := c.install(snap("", 3, "h", "k"), false); err != nil {
		t.Fatal(err)
	}
	if cl, _, _ := c.position(); cl != "B" || c.get(DefaultAccount, "k") == nil {
		t.Fatalf("cluster %q after an id-less snapshot", cl)
	}
}

func TestOwnWriteHoldsOffLaggingFollowerForABoundedTime(t *testing.T) {
	clk := newFakeClock()
	pl := &livePlacer{leader: snap("", 12, "f", "mine"), follower: snap("", 11, "f")}
	c := newCache(pl, clk.Now)
	if err := c.install(snap("", 10, "f"), true); err != nil {
		t.Fatal(err)
	}
	c.put(testFunction("mine", 9), 12)
	for i := 0; i < staleRefusals-1; i++ {
		if err := c.refresh(context.Background()); !errors.Is(err, errStale) {
			t.Fatalf("refresh %d: %v, want the follower refused", i, err)
		}
		if c.get(DefaultAccount, "mine") == nil {
			t.Fatal("a lagging follower undid this gateway's write")
		}
	}
	// Refused often enough: the leader's snapshot is read and installed.
	if err := c.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, idx := c.position(); idx != 12 || c.get(DefaultAccount, "mine") == nil {
		t.Fatalf("after the leader read: index %d", idx)
	}

	// The hold ends by itself: past ownWriteHold the follower's snapshot
	// is newer than anything placement confirmed and is installed.
	c = newCache(pl, clk.Now)
	c.install(snap("", 10, "f"), true)
	c.put(testFunction("mine", 9), 12)
	clk.Advance(ownWriteHold)
	if err := c.install(pl.follower, false); err != nil {
		t.Fatalf("follower after the hold: %v", err)
	}
	if _, _, idx := c.position(); idx != 11 {
		t.Fatalf("index %d, want 11", idx)
	}
}

func TestStaleCacheResyncsFromLeader(t *testing.T) {
	// A snapshot with a huge index (or a placement cluster bootstrapped
	// again without an id) leaves every later snapshot "older": the cache
	// still takes the leader's within staleRefusals refreshes.
	pl := &livePlacer{leader: snap("", 7, "new")}
	c := newCache(pl, nil)
	if err := c.install(snap("", 1<<62, "old"), true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < staleRefusals && c.get(DefaultAccount, "new") == nil; i++ {
		c.refresh(context.Background())
	}
	if c.get(DefaultAccount, "new") == nil || c.get(DefaultAccount, "old") != nil {
		t.Fatal("cache frozen by a snapshot with a huge index")
	}

	// Or after staleFor, whichever comes first.
	clk := newFakeClock()
	c = newCache(pl, clk.Now)
	c.install(snap("", 1<<62, "old"), true)
	if err := c.install(pl.leader, true); !errors.Is(err, errStale) {
		t.Fatalf("first refusal: %v", err)
	}
	clk.Advance(staleFor)
	if err := c.install(pl.leader, true); err != nil || c.get(DefaultAccount, "new") == nil {
		t.Fatalf("after staleFor: %v", err)
	}
	// A follower is never installed over a newer cache, however long.
	c.install(snap("", 100, "x"), true)
	for i := 0; i < 2*staleRefusals; i++ {
		clk.Advance(staleFor)
		if err := c.install(snap("", 99, "y"), false); !errors.Is(err, errStale) {
			t.Fatalf("older follower snapshot: %v", err)
		}
	}
}

func TestAccountLimitsComeFromTheSnapshot(t *testing.T) {
	c := newCache(&livePlacer{}, nil)
	sn := snap("", 1)
	sn.Accounts = []wire.Account{{ID: "111111111111", Limit: 7}}
	c.install(sn, true)
	if c.limit("111111111111") != 7 || c.limit("222222222222") != 1000 {
		t.Fatalf("limits %d %d", c.limit("111111111111"), c.limit("222222222222"))
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"kind":"function","account":"000000000000","function":"f","index":7}`,
		`{"kind":"limit","index":18446744073709551615,"term":3,"cluster_id":"c1"}`,
		`{"kind":""}`, `{"index":-1}`, `null`, `[]`, ``, `{"kind":"x","index":1e30}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, ok := decodeEvent(data)
		if !ok {
			if ev != (wire.Event{}) {
				t.Fatalf("rejected event returned %+v", ev)
			}
			return
		}
		if ev.Kind == "" || len(data) > maxEvent {
			t.Fatalf("accepted %q as %+v", data, ev)
		}
	})
}

// FuzzCacheNeverFreezes: whatever position the cache was driven to (any
// installed index and cluster id, any write of its own, any event), the
// leader's snapshot is installed within staleRefusals refreshes.
func FuzzCacheNeverFreezes(f *testing.F) {
	f.Add(uint64(1<<60), "", uint64(0), []byte(`{"kind":"function","index":1152921504606846976}`), uint64(3), "")
	f.Add(uint64(5), "A", uint64(1<<63), []byte(`{"kind":"function","index":9,"cluster_id":"B"}`), uint64(2), "B")
	f.Add(uint64(0), "A", uint64(0), []byte(`garbage`), uint64(0), "A")
	f.Fuzz(func(t *testing.T, idx uint64, cluster string, own uint64, event []byte, leaderIdx uint64, leaderCluster string) {
		leader := snap(leaderCluster, leaderIdx, "fresh")
		pl := &livePlacer{leader: leader, follower: snap(cluster, idx/2, "stale")}
		c := newCache(pl, nil)
		c.install(snap(cluster, idx, "old"), true)
		c.put(testFunction("mine", 1), own)
		decodeEvent(event) // events never reach the cache's position
		if _, _, got := c.position(); got != idx {
			t.Fatalf("position %d, want %d", got, idx)
		}
		for i := 0; i < staleRefusals && c.get(DefaultAccount, "fresh") == nil; i++ {
			c.refresh(context.Background())
		}
		for i := 0; i < staleRefusals && c.get(DefaultAccount, "fresh") == nil; i++ {
			c.refreshSince(context.Background(), time.Now())
		}
		if c.get(DefaultAccount, "fresh") == nil {
			cl, term, got := c.position()
			t.Fatalf("cache frozen at %q/%d/%d (own %d) against leader %q/%d", cl, term, got, own, leaderCluster, leaderIdx)
		}
	})
}
