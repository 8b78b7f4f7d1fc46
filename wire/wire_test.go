package wire

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestWarmSubjectEscapesTheVersion(t *testing.T) {
	for _, tc := range []struct{ version, want string }{
		{"$LATEST", "cs.warm.000000000000.f.LATEST"},
		{"7", "cs.warm.000000000000.f.7"},
		{"v1.2", "cs.warm.000000000000.f.v1_2"},
		{"a*b>c", "cs.warm.000000000000.f.a_b_c"},
		{"$x.y", "cs.warm.000000000000.f.x_y"},
	} {
		got := WarmSubject("000000000000", "f", tc.version)
		if got != tc.want {
			t.Errorf("WarmSubject(%q) = %q, want %q", tc.version, got, tc.want)
		}
		if p := strings.Split(got, "."); len(p) != 5 || strings.ContainsAny(got, "*>$") {
			t.Errorf("WarmSubject(%q) = %q is not five literal tokens", tc.version, got)
		}
	}
}

func TestOpSubjectsParseBack(t *testing.T) {
	for _, op := range []string{OpRenew, OpRelease, OpReconcile, OpIdle} {
		id, got, ok := ParseWorkerOpSubject(WorkerOpSubject("w-1", op))
		if !ok || id != "w-1" || got != op {
			t.Errorf("worker op %s: parsed (%q, %q, %v)", op, id, got, ok)
		}
		if _, _, ok := ParseGatewayOpSubject(WorkerOpSubject("w-1", op)); ok {
			t.Errorf("a worker's %s subject parsed as a gateway's", op)
		}
		if !matches(SubjectWorkerOps, WorkerOpSubject("w-1", op)) {
			t.Errorf("%s does not match %s", WorkerOpSubject("w-1", op), SubjectWorkerOps)
		}
	}
	for _, op := range []string{OpCreateSandbox, OpCancel, OpSuspect, OpSnapshot} {
		id, got, ok := ParseGatewayOpSubject(GatewayOpSubject("g1", op))
		if !ok || id != "g1" || got != op {
			t.Errorf("gateway op %s: parsed (%q, %q, %v)", op, id, got, ok)
		}
		if !matches(SubjectGatewayOps, GatewayOpSubject("g1", op)) {
			t.Errorf("%s does not match %s", GatewayOpSubject("g1", op), SubjectGatewayOps)
		}
	}
	for _, subj := range []string{
		SubjectLeader,
		"cs.placement.worker.w1",
		"cs.placement.worker..renew",
		"cs.placement.worker.w1.",
		"cs.placement.worker.w1.renew.x",
		"xs.placement.worker.w1.renew",
		WorkerSubject("w1", WorkerRetire),
	} {
		if id, op, ok := ParseWorkerOpSubject(subj); ok {
			t.Errorf("ParseWorkerOpSubject(%q) = (%q, %q, true)", subj, id, op)
		}
	}
}

// matches is NATS subject matching for patterns with "*" tokens.
func matches(pattern, subj string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subj, ".")
	if len(p) != len(s) {
		return false
	}
	for i := range p {
		if p[i] != "*" && p[i] != s[i] {
			return false
		}
	}
	return true
}

func TestWorkerSubjects(t *testing.T) {
	if got := InvokeSubject("w1"); got != "cs.worker.w1.invoke" {
		t.Errorf("InvokeSubject = %q", got)
	}
	if got := NodeReadSubject("p1"); got != "cs.placement.node.p1" {
		t.Errorf("NodeReadSubject = %q", got)
	}
	seen := map[string]bool{}
	for _, s := range []string{SubjectLeader, SubjectRead, SubjectEvents, SubjectRecords, NodeReadSubject("p1"),
		InvokeSubject("w1"), WorkerSubject("w1", WorkerRetire), WorkerSubject("w1", WorkerDrop), WorkerSubject("w1", WorkerStats)} {
		if seen[s] {
			t.Errorf("subject %s used twice", s)
		}
		seen[s] = true
	}
}

// The JSON names are the contract: a renamed tag fails here before it
// splits a cluster of mixed builds.
func TestJSONNames(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{Request{Op: OpRenew, Renew: &Renew{Seq: 3, Incarnation: 9, Capacity: 4, MemoryMB: 512}},
			`{"op":"renew","renew":{"seq":3,"incarnation":9,"capacity":4,"memory_mb":512}}`},
		{Response{Lease: &Lease{Seq: 3, Incarnation: 9, TTLNs: 1500000000}},
			`{"lease":{"seq":3,"incarnation":9,"ttl_ns":1500000000}}`},
		{Event{Kind: EventDelete, Account: "a", Function: "f", Index: 7},
			`{"kind":"delete","account":"a","function":"f","index":7}`},
		{Request{Op: OpCreateSandbox, Sandbox: &CreateSandbox{ID: "sb", Account: "a", Function: "f", Version: "$LATEST"}},
			`{"op":"create_sandbox","sandbox":{"id":"sb","account":"a","function":"f","version":"$LATEST","now":0}}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%T encodes as %s (%v), want %s", tc.v, b, err, tc.want)
		}
	}
}

func TestGrantToken(t *testing.T) {
	key := []byte("k")
	sb := &Sandbox{ID: "sb1", Account: "a", Function: "f", Version: "$LATEST", Worker: "w1", WorkerInc: 7, CreatedNs: 42}
	tok := GrantToken(key, sb)
	// Placement signs and workers verify, possibly of different builds: the
	// token of a given grant never changes.
	const want = "627b4c7af4f480e702ee2280a6daacf9db81f49f92326eb3dec4da5de315799f"
	if tok != want {
		t.Errorf("GrantToken = %s, want %s", tok, want)
	}
	claim := GrantClaim{ID: "sb1", Account: "a", Function: "f", Version: "$LATEST", Worker: "w1", WorkerInc: 7, CreatedNs: 42}
	if !VerifyGrant(key, claim, tok) {
		t.Error("the grant's own claim does not verify")
	}
	for _, c := range []GrantClaim{
		{ID: "sb2", Account: "a", Function: "f", Version: "$LATEST", Worker: "w1", WorkerInc: 7, CreatedNs: 42},
		{ID: "sb1", Account: "a", Function: "f", Version: "$LATEST", Worker: "w2", WorkerInc: 7, CreatedNs: 42},
		{ID: "sb1", Account: "a", Function: "f", Version: "$LATEST", Worker: "w1", WorkerInc: 8, CreatedNs: 42},
		{ID: "sb1", Account: "a", Function: "g", Version: "$LATEST", Worker: "w1", WorkerInc: 7, CreatedNs: 42},
	} {
		if VerifyGrant(key, c, tok) {
			t.Errorf("claim %+v verifies against another grant's token", c)
		}
	}
	if VerifyGrant([]byte("other"), claim, tok) {
		t.Error("the token verifies under another key")
	}
	if GrantToken(nil, sb) != "" {
		t.Error("a token without a key")
	}
}

// FuzzDecodeIdemConfig: the idempotency header of an invocation never
// decodes into a config that does not render back the same.
func FuzzDecodeIdemConfig(f *testing.F) {
	for _, s := range []string{"request-id;3600000", "json:order.id;1000", "header:X;", ";5", "a;b", "k;-1", "k;99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := DecodeIdemConfig(s)
		if c == nil {
			return
		}
		if c.Key == "" || c.TTLMs <= 0 {
			t.Fatalf("%q decoded to %+v", s, *c)
		}
		if back := DecodeIdemConfig(EncodeIdemConfig(c)); back == nil || *back != *c {
			t.Fatalf("%q: %+v does not round-trip", s, *c)
		}
	})
}
