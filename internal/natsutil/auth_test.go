package natsutil_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/codestore"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/logstream"
	"github.com/coldstart-dev/coldstart/internal/recordstream"

	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/secret"
	"github.com/coldstart-dev/coldstart/wire"
)

const wait = 5 * time.Second

var warmSubject = wire.WarmSubject("123456789012", "f", "$LATEST")

type authServer struct {
	url    string
	secret []byte
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	return startServer(t, natsutil.ServerConfig{})
}

// startJSAuthServer is an authenticating server with JetStream.
func startJSAuthServer(t *testing.T) *authServer {
	t.Helper()
	return startServer(t, natsutil.ServerConfig{JetStream: true, StoreDir: t.TempDir()})
}

func startServer(t *testing.T, cfg natsutil.ServerConfig) *authServer {
	t.Helper()
	sec, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Secret = sec
	s, err := natsutil.StartServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return &authServer{url: natsutil.URL(s), secret: sec}
}

// client is a node's connection that records permission violations.
type client struct {
	nc         *nats.Conn
	violations chan error
}

func (s *authServer) connect(t *testing.T, role, id string) *client {
	t.Helper()
	c := &client{violations: make(chan error, 64)}
	o := natsutil.NodeConnectOptions(role, id, natsutil.Password(s.secret, natsutil.UserName(role, id)))
	o.Extra = []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			c.violations <- err
		}
	})}
	nc, err := natsutil.Connect(s.url, role+"-"+id, o)
	if err != nil {
		t.Fatalf("connect as %s.%s: %v", role, id, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	return c
}

// violation waits for the server to report a permissions violation that
// names subject.
func (c *client) violation(t *testing.T, subject string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case err := <-c.violations:
			if strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation reported for %q", subject)
		}
	}
}

// spy sees every message on cs.> (as placement may).
type spy struct {
	ch chan *nats.Msg
}

func (s *authServer) spy(t *testing.T) *spy {
	t.Helper()
	p := s.connect(t, natsutil.RolePlacement, "spy")
	sp := &spy{ch: make(chan *nats.Msg, 1024)}
	if _, err := p.nc.ChanSubscribe("cs.>", sp.ch); err != nil {
		t.Fatal(err)
	}
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sp
}

var probes atomic.Int64

// published publishes on subject from c, then on marker (a subject c may
// publish on), and says whether the spy received the first. One
// connection's messages reach a subscriber in order, so the probe, if the
// server let it through, arrives before the marker.
func (sp *spy) published(t *testing.T, c *client, subject, marker string) bool {
	t.Helper()
	n := probes.Add(1)
	probe, mark := fmt.Sprintf("probe-%d", n), fmt.Sprintf("marker-%d", n)
	if err := c.nc.Publish(subject, []byte(probe)); err != nil {
		t.Fatal(err)
	}
	if err := c.nc.Publish(marker, []byte(mark)); err != nil {
		t.Fatal(err)
	}
	got := false
	deadline := time.After(wait)
	for {
		select {
		case m := <-sp.ch:
			switch string(m.Data) {
			case probe:
				got = m.Subject == subject
			case mark:
				return got
			}
		case <-deadline:
			t.Fatalf("marker on %q never arrived: is it allowed for this client?", marker)
		}
	}
}

// subscribed subscribes c on filter, has placement publish on subject
// (which filter matches) and then on marker (which c subscribes to
// already, into the same channel), and says whether c got the first.
func (s *authServer) subscribed(t *testing.T, pub, c *client, filter, subject, marker string) bool {
	t.Helper()
	ch := make(chan *nats.Msg, 16)
	ms, err := c.nc.ChanSubscribe(marker, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Unsubscribe()
	sub, err := c.nc.ChanSubscribe(filter, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	n := probes.Add(1)
	probe, mark := fmt.Sprintf("probe-%d", n), fmt.Sprintf("marker-%d", n)
	pub.nc.Publish(subject, []byte(probe))
	pub.nc.Publish(marker, []byte(mark))
	got := false
	deadline := time.After(wait)
	for {
		select {
		case m := <-ch:
			switch string(m.Data) {
			case probe:
				got = true
			case mark:
				return got
			}
		case <-deadline:
			t.Fatalf("marker on %q never arrived", marker)
		}
	}
}

func TestUnauthenticatedClientIsRefused(t *testing.T) {
	s := startAuthServer(t)
	if nc, err := nats.Connect(s.url); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("no credentials: %v, want an authorization error", err)
	}
	// natsutil.Connect fails at once instead of retrying forever.
	if _, err := natsutil.Connect(s.url, "anon"); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("natsutil.Connect without credentials: %v, want an authorization error", err)
	}
}

func TestWrongPasswordIsRefused(t *testing.T) {
	s := startAuthServer(t)
	other, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		role, id, pass string
	}{
		{"garbage", "worker", "w1", "not-the-password"},
		{"another cluster's secret", "worker", "w1", natsutil.Password(other, "worker.w1")},
		{"another node's password", "worker", "w1", natsutil.Password(s.secret, "worker.w2")},
		{"a worker's password for a gateway", "gateway", "w1", natsutil.Password(s.secret, "worker.w1")},
		{"unknown role", "admin", "a1", natsutil.Password(s.secret, "admin.a1")},
		{"id of two tokens", "worker", "w1.x", natsutil.Password(s.secret, "worker.w1.x")},
		{"id with a wildcard", "worker", "*", natsutil.Password(s.secret, "worker.*")},
	} {
		o := natsutil.ConnectOptions{User: natsutil.UserName(tc.role, tc.id), Password: tc.pass}
		nc, err := natsutil.Connect(s.url, "t", o)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", tc.name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization error", tc.name, err)
		}
	}
	// The right password connects (the cases above fail for their reason).
	c := s.connect(t, "worker", "w1")
	if !c.nc.IsConnected() {
		t.Fatal("worker w1 with its password is not connected")
	}
}

func TestGatewayCannotPublishToWorkersOrAsWorker(t *testing.T) {
	s := startAuthServer(t)
	sp := s.spy(t)
	g := s.connect(t, natsutil.RoleGateway, "g1")
	for _, subj := range []string{
		wire.WorkerOpSubject("w1", wire.OpRelease),
		wire.WorkerSubject("w1", wire.WorkerRetire),
		wire.WorkerSubject("w1", "idle"),
		wire.WorkerSubject("w1", wire.WorkerDrop),
		wire.GatewayOpSubject("g2", wire.OpCancel),
		wire.SubjectEvents,
	} {
		if sp.published(t, g, subj, wire.SubjectRecords) {
			t.Errorf("gateway g1 published on %s", subj)
		}
		g.violation(t, subj)
	}
	for _, subj := range []string{
		wire.SubjectLeader,
		wire.SubjectRead,
		wire.GatewayOpSubject("g1", wire.OpCancel),
		warmSubject,
		wire.InvokeSubject("w1"),
		wire.WorkerSubject("w1", wire.WorkerStats),
		wire.SubjectRecords,
	} {
		if !sp.published(t, g, subj, wire.SubjectRecords) {
			t.Errorf("gateway g1 could not publish on %s", subj)
		}
	}
}

func TestWorkerIsConfinedToItsOwnSubjects(t *testing.T) {
	s := startAuthServer(t)
	sp := s.spy(t)
	p := s.connect(t, natsutil.RolePlacement, "p1")
	w := s.connect(t, natsutil.RoleWorker, "w1")
	for _, subj := range []string{
		wire.WorkerOpSubject("w2", wire.OpReconcile),
		wire.WorkerOpSubject("w2", wire.OpRelease),
		wire.GatewayOpSubject("g1", wire.OpCancel),
		wire.SubjectRead,
		wire.SubjectEvents,
		wire.InvokeSubject("w2"),
		wire.WorkerSubject("w2", wire.WorkerRetire),
		warmSubject,
	} {
		if sp.published(t, w, subj, wire.SubjectRecords) {
			t.Errorf("worker w1 published on %s", subj)
		}
		w.violation(t, subj)
	}
	for _, subj := range []string{
		wire.WorkerOpSubject("w1", wire.OpRelease),
		wire.WorkerOpSubject("w1", wire.OpReconcile),
		wire.WorkerOpSubject("w1", wire.OpRenew),
		wire.SubjectRecords,
	} {
		if !sp.published(t, w, subj, wire.SubjectRecords) {
			t.Errorf("worker w1 could not publish on %s", subj)
		}
	}
	if sp.published(t, w, wire.SubjectLeader, wire.SubjectRecords) {
		t.Error("worker w1 published on the leader subject")
	}

	// Subscriptions: its own subjects, not another worker's, not replies
	// meant for others.
	marker := wire.SubjectEvents
	for _, tc := range []struct{ filter, subject string }{
		{"cs.worker.w2.>", wire.WorkerSubject("w2", wire.WorkerRetire)},
		{wire.InvokeSubject("w2"), wire.InvokeSubject("w2")},
		{wire.SubjectWorkerOps, wire.WorkerOpSubject("w2", wire.OpRelease)},
		{wire.SubjectLeader, wire.SubjectLeader},
		{wire.SubjectRecords, wire.SubjectRecords},
	} {
		if s.subscribed(t, p, w, tc.filter, tc.subject, marker) {
			t.Errorf("worker w1 received %s through a subscription on %s", tc.subject, tc.filter)
		}
		w.violation(t, tc.filter)
	}
	for _, tc := range []struct{ filter, subject string }{
		{"cs.worker.w1.>", wire.WorkerSubject("w1", wire.WorkerRetire)},
		{wire.InvokeSubject("w1"), wire.InvokeSubject("w1")},
		{warmSubject, warmSubject},
	} {
		if !s.subscribed(t, p, w, tc.filter, tc.subject, marker) {
			t.Errorf("worker w1 did not receive %s on %s", tc.subject, tc.filter)
		}
	}
}

// TestRepliesCannotBeSnooped: gateway g2 cannot subscribe to the replies
// placement sends gateway g1.
func TestRepliesCannotBeSnooped(t *testing.T) {
	s := startAuthServer(t)
	p := s.connect(t, natsutil.RolePlacement, "p1")
	g1 := s.connect(t, natsutil.RoleGateway, "g1")
	g2 := s.connect(t, natsutil.RoleGateway, "g2")
	// Placement answers, then announces an event: g2 receives the event,
	// so the answer, had g2 been allowed to see it, arrived before it.
	if _, err := p.nc.Subscribe(wire.SubjectRead, func(m *nats.Msg) {
		m.Respond([]byte("answer"))
		p.nc.Publish(wire.SubjectEvents, []byte("event"))
	}); err != nil {
		t.Fatal(err)
	}
	p.nc.Flush()
	for _, filter := range []string{">", "_INBOX.>", natsutil.InboxPrefix(natsutil.RoleGateway, "g1") + ".>"} {
		ch := make(chan *nats.Msg, 16)
		snoop, err := g2.nc.ChanSubscribe(filter, ch)
		if err != nil {
			t.Fatal(err)
		}
		events, err := g2.nc.ChanSubscribe(wire.SubjectEvents, ch)
		if err != nil {
			t.Fatal(err)
		}
		g2.nc.Flush()
		if m, err := g1.nc.Request(wire.SubjectRead, nil, wait); err != nil || string(m.Data) != "answer" {
			t.Fatalf("g1's request: %v %v", m, err)
		}
		select {
		case m := <-ch:
			if string(m.Data) != "event" {
				t.Errorf("gateway g2 received %q on %s through %s", m.Data, m.Subject, filter)
			}
		case <-time.After(wait):
			t.Fatal("event never arrived")
		}
		g2.violation(t, filter)
		snoop.Unsubscribe()
		events.Unsubscribe()
	}
}

// TestRequestReply: each hop of the protocol works with the permissions:
// a worker's own placement op, placement's questions to a worker, a
// gateway's warm and cold invokes and stats request, a gateway's read.
func TestRequestReply(t *testing.T) {
	s := startAuthServer(t)
	p := s.connect(t, natsutil.RolePlacement, "p1")
	w := s.connect(t, natsutil.RoleWorker, "w1")
	g := s.connect(t, natsutil.RoleGateway, "g1")
	echo := func(c *client, subject, queue string) {
		t.Helper()
		if _, err := c.nc.QueueSubscribe(subject, queue, func(m *nats.Msg) { m.Respond(append([]byte("re:"), m.Data...)) }); err != nil {
			t.Fatal(err)
		}
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	echo(p, wire.SubjectWorkerOps, "")
	echo(p, wire.SubjectLeader, "")
	echo(p, wire.SubjectRead, wire.QueueRead)
	echo(w, "cs.worker.w1.>", "")
	echo(w, warmSubject, wire.QueueWarm)
	for _, tc := range []struct {
		from    *client
		who     string
		subject string
	}{
		{w, "worker", wire.WorkerOpSubject("w1", wire.OpRelease)},
		{w, "worker", wire.WorkerOpSubject("w1", wire.OpRenew)},
		{p, "placement", wire.WorkerSubject("w1", "idle")},
		{p, "placement", wire.WorkerSubject("w1", wire.WorkerRetire)},
		{g, "gateway", warmSubject},
		{g, "gateway", wire.InvokeSubject("w1")},
		{g, "gateway", wire.WorkerSubject("w1", wire.WorkerStats)},
		{g, "gateway", wire.SubjectLeader},
		{g, "gateway", wire.SubjectRead},
	} {
		m, err := tc.from.nc.Request(tc.subject, []byte("q"), wait)
		if err != nil {
			t.Errorf("%s request on %s: %v", tc.who, tc.subject, err)
			continue
		}
		if string(m.Data) != "re:q" {
			t.Errorf("%s request on %s: answer %q", tc.who, tc.subject, m.Data)
		}
		if !strings.HasPrefix(m.Subject, "_INBOX."+tc.who+"_") {
			t.Errorf("%s request on %s: reply came on %s, not the node's own inbox", tc.who, tc.subject, m.Subject)
		}
	}
}

// TestResponsesOncePerRequest: a node may answer a request it received,
// once; it may not publish on the reply subject again, nor below it.
func TestResponsesOncePerRequest(t *testing.T) {
	s := startAuthServer(t)
	p := s.connect(t, natsutil.RolePlacement, "p1")
	w := s.connect(t, natsutil.RoleWorker, "w1")
	inbox := p.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 16)
	for _, subj := range []string{inbox, inbox + ".x", wire.SubjectRecords} {
		if _, err := p.nc.ChanSubscribe(subj, ch); err != nil {
			t.Fatal(err)
		}
	}
	p.nc.Flush()
	if _, err := w.nc.Subscribe(wire.InvokeSubject("w1"), func(m *nats.Msg) {
		m.Respond([]byte("first"))
		m.Respond([]byte("second"))
		w.nc.Publish(m.Reply+".x", []byte("third"))
		w.nc.Publish(wire.SubjectRecords, []byte("marker"))
	}); err != nil {
		t.Fatal(err)
	}
	w.nc.Flush()
	if err := p.nc.PublishRequest(wire.InvokeSubject("w1"), inbox, []byte("q")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) == 0 || got[len(got)-1] != "marker" {
		select {
		case m := <-ch:
			got = append(got, string(m.Data))
		case <-time.After(wait):
			t.Fatalf("marker never arrived; got %q", got)
		}
	}
	if !slices.Equal(got, []string{"first", "marker"}) {
		t.Fatalf("received %q, want the first answer only", got)
	}
	w.violation(t, inbox)
	w.violation(t, inbox+".x")
}

func TestToolOnlyReadsRecords(t *testing.T) {
	s := startAuthServer(t)
	p := s.connect(t, natsutil.RolePlacement, "p1")
	tool := s.connect(t, natsutil.RoleTool, "t1")
	if !s.subscribed(t, p, tool, wire.SubjectRecords, wire.SubjectRecords, wire.SubjectRecords+".marker") {
		t.Error("tool did not receive records")
	}
	if s.subscribed(t, p, tool, wire.SubjectEvents, wire.SubjectEvents, wire.SubjectRecords) {
		t.Error("tool received placement events")
	}
	tool.violation(t, wire.SubjectEvents)
	tool.nc.Publish(wire.SubjectLeader, []byte("x"))
	tool.violation(t, wire.SubjectLeader)
}

func TestPermissionsTable(t *testing.T) {
	if natsutil.Permissions("admin", "a") != nil || natsutil.Permissions("worker", "a.b") != nil || natsutil.Permissions("worker", "") != nil {
		t.Fatal("permissions for an unknown role or an invalid id")
	}
	for _, role := range []string{natsutil.RolePlacement, natsutil.RoleGateway, natsutil.RoleWorker, natsutil.RoleTool} {
		p := natsutil.Permissions(role, "n1")
		if p == nil || p.Publish == nil || p.Subscribe == nil || len(p.Subscribe.Allow) == 0 {
			t.Fatalf("%s: publish and subscribe must both be restricted: %+v", role, p)
		}
		for _, subj := range append(append([]string(nil), p.Publish.Allow...), p.Subscribe.Allow...) {
			if !server.IsValidSubject(subj) {
				t.Errorf("%s: invalid subject %q", role, subj)
			}
		}
		if !slices.Contains(p.Subscribe.Allow, natsutil.InboxPrefix(role, "n1")+".>") {
			t.Errorf("%s may not subscribe to its own inbox", role)
		}
	}
	// A worker's requests go on its own subjects only: the leader subject
	// takes control-plane writes.
	if slices.Contains(natsutil.Permissions(natsutil.RoleWorker, "w1").Publish.Allow, wire.SubjectLeader) {
		t.Error("a worker may publish on the leader subject")
	}
}

// violationPrefix waits for a permissions violation on a subject that
// starts with prefix.
func (c *client) violationPrefix(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case err := <-c.violations:
			if strings.Contains(err.Error(), `"`+prefix) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation reported for %s...", prefix)
		}
	}
}

// noViolations checks that c was refused nothing so far.
func (c *client) noViolations(t *testing.T, who string) {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.violations:
		t.Errorf("%s: %v", who, err)
	default:
	}
}

func jsCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCodeBucketGatewayWritesWorkerReads: a gateway creates the bucket
// and puts bundles, a worker reads them (large enough for the consumer's
// flow control), and may not put, delete or purge.
func TestCodeBucketGatewayWritesWorkerReads(t *testing.T) {
	s := startJSAuthServer(t)
	g := s.connect(t, natsutil.RoleGateway, "g1")
	w := s.connect(t, natsutil.RoleWorker, "w1")
	ctx := jsCtx(t, time.Minute)

	// Before any gateway created it, a worker cannot.
	if _, err := codestore.Open(jsCtx(t, 2*time.Second), w.nc, 1); err == nil {
		t.Fatal("a worker created the code bucket")
	}
	w.violation(t, "$JS.API.STREAM.CREATE."+codestore.StreamName)
	if _, err := codestore.OpenReader(jsCtx(t, 2*time.Second), w.nc); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("worker OpenReader before the bucket exists: %v", err)
	}

	gs, err := codestore.Open(ctx, g.nc, 1)
	if err != nil {
		t.Fatalf("gateway Open: %v", err)
	}
	ws, err := codestore.OpenReader(ctx, w.nc)
	if err != nil {
		t.Fatalf("worker OpenReader: %v", err)
	}
	for _, n := range []int{1 << 10, 12 << 20} {
		data := randomBytes(t, n)
		d, err := gs.Put(ctx, data)
		if err != nil {
			t.Fatalf("gateway Put of %d bytes: %v", n, err)
		}
		if _, err := gs.Put(ctx, data); err != nil {
			t.Fatalf("gateway Put again: %v", err)
		}
		for who, st := range map[string]*codestore.Store{"worker": ws, "gateway": gs} {
			got, err := st.Get(ctx, d)
			if err != nil {
				t.Fatalf("%s Get of %d bytes: %v", who, n, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s Get of %d bytes: other bytes", who, n)
			}
		}
	}
	if _, err := ws.Get(ctx, codestore.Digest([]byte("never put"))); !errors.Is(err, codestore.ErrNotFound) {
		t.Fatalf("worker Get of a missing bundle: %v", err)
	}
	g.noViolations(t, "gateway")
	w.noViolations(t, "worker")

	// A worker's writes are refused; the bucket is unchanged.
	kept := randomBytes(t, 2048)
	dKept, err := gs.Put(ctx, kept)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Put(jsCtx(t, 2*time.Second), randomBytes(t, 1000)); err == nil {
		t.Fatal("a worker put a bundle")
	}
	w.violationPrefix(t, "$O."+codestore.Bucket+".")
	wjs, _ := jetstream.New(w.nc)
	wobs, err := wjs.ObjectStore(ctx, codestore.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := codestore.ObjectName(dKept)
	if err := wobs.Delete(jsCtx(t, 2*time.Second), name); err == nil {
		t.Fatal("a worker deleted a bundle")
	}
	w.violationPrefix(t, "$O."+codestore.Bucket+".M.")
	wstream, err := wjs.Stream(ctx, codestore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := wstream.Purge(jsCtx(t, 2*time.Second)); err == nil {
		t.Fatal("a worker purged the bucket")
	}
	w.violation(t, "$JS.API.STREAM.PURGE."+codestore.StreamName)
	if err := wjs.DeleteStream(jsCtx(t, 2*time.Second), codestore.StreamName); err == nil {
		t.Fatal("a worker deleted the bucket")
	}
	w.violation(t, "$JS.API.STREAM.DELETE."+codestore.StreamName)
	if got, err := ws.Get(ctx, dKept); err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("the bundle after the worker's attempts: %v", err)
	}
	gjs, _ := jetstream.New(g.nc)
	gobs, err := gjs.ObjectStore(ctx, codestore.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gobs.GetInfo(ctx, name); err != nil {
		t.Fatalf("the object after the worker's delete: %v", err)
	}
}

// TestLogsWorkerPublishesGatewayReads: the gateway creates the logs
// stream, a worker's core-NATS log lines land in it, the gateway and a
// tool read them; a worker cannot read or configure the stream.
func TestLogsWorkerPublishesGatewayReads(t *testing.T) {
	s := startJSAuthServer(t)
	g := s.connect(t, natsutil.RoleGateway, "g1")
	w := s.connect(t, natsutil.RoleWorker, "w1")
	tool := s.connect(t, natsutil.RoleTool, "t1")
	ctx := jsCtx(t, time.Minute)
	if err := logstream.Ensure(ctx, g.nc, logstream.Config{MaxAge: time.Hour}); err != nil {
		t.Fatalf("gateway Ensure: %v", err)
	}
	p := logstream.NewPublisher(w.nc)
	for i := 0; i < 3; i++ {
		p.Add(logstream.Entry{Account: "123456789012", Function: "f", Stream: logstream.Stdout, Line: fmt.Sprintf("line %d", i)})
	}
	p.Close()
	if p.Dropped() != 0 {
		t.Fatalf("%d lines dropped", p.Dropped())
	}
	for who, c := range map[string]*client{"gateway": g, "tool": tool} {
		var got []string
		deadline := time.Now().Add(wait)
		for len(got) < 3 {
			got = nil
			err := logstream.Read(ctx, c.nc, "123456789012", "f", time.Time{}, false, func(e logstream.Entry) error {
				got = append(got, e.Line)
				return nil
			})
			if err != nil {
				t.Fatalf("%s Read: %v", who, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s read %q", who, got)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !slices.Equal(got, []string{"line 0", "line 1", "line 2"}) {
			t.Fatalf("%s read %q", who, got)
		}
		c.noViolations(t, who)
	}
	w.noViolations(t, "worker")

	// Following: the gateway receives a line published after it started.
	fctx, cancel := context.WithCancel(ctx)
	lines := make(chan string, 8)
	done := make(chan error, 1)
	go func() {
		done <- logstream.Read(fctx, g.nc, "123456789012", "f", time.Time{}, true, func(e logstream.Entry) error {
			lines <- e.Line
			return nil
		})
	}()
	for i := 0; i < 3; i++ {
		<-lines
	}
	p = logstream.NewPublisher(w.nc)
	p.Add(logstream.Entry{Account: "123456789012", Function: "f", Stream: logstream.Platform, Line: "END"})
	p.Close()
	select {
	case l := <-lines:
		if l != "END" {
			t.Fatalf("followed %q", l)
		}
	case <-time.After(wait):
		t.Fatal("the followed line never arrived")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if err := logstream.Read(jsCtx(t, 2*time.Second), w.nc, "123456789012", "f", time.Time{}, false, func(logstream.Entry) error { return nil }); err == nil {
		t.Fatal("a worker read the logs stream")
	}
	w.violation(t, "$JS.API.STREAM.INFO."+logstream.Stream)
	if err := logstream.Ensure(jsCtx(t, 2*time.Second), w.nc, logstream.Config{}); err == nil {
		t.Fatal("a worker updated the logs stream")
	}
	w.violation(t, "$JS.API.STREAM.UPDATE."+logstream.Stream)
	if err := logstream.Ensure(jsCtx(t, 2*time.Second), tool.nc, logstream.Config{}); err == nil {
		t.Fatal("a tool updated the logs stream")
	}
	tool.violation(t, "$JS.API.STREAM.UPDATE."+logstream.Stream)
}

// TestJetStreamSetupByConcurrentGateways: two gateways starting at once
// both get the bucket and the stream.
func TestJetStreamSetupByConcurrentGateways(t *testing.T) {
	s := startJSAuthServer(t)
	ctx := jsCtx(t, time.Minute)
	var gws []*client
	for _, id := range []string{"g1", "g2"} {
		gws = append(gws, s.connect(t, natsutil.RoleGateway, id))
	}
	errs := make(chan error, 3*len(gws))
	for _, g := range gws {
		go func() {
			_, err := codestore.Open(ctx, g.nc, 1)
			errs <- err
		}()
		go func() { errs <- logstream.Ensure(ctx, g.nc, logstream.Config{}) }()
		go func() { errs <- recordstream.Ensure(ctx, g.nc, recordstream.Config{}) }()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent setup: %v", err)
		}
	}
	js, _ := jetstream.New(gws[0].nc)
	for _, name := range []string{codestore.StreamName, logstream.Stream, recordstream.Stream} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
	}
	for i, g := range gws {
		g.noViolations(t, fmt.Sprintf("gateway %d", i))
	}
}

// TestRecordsStreamWorkerPublishesGatewayReads: the gateway creates the
// records stream; a worker's and a gateway's plain publishes on
// cs.records land in it (they need no JetStream grant); the gateway and a
// tool read its history and follow it; a worker can neither read nor
// configure it, a tool not configure it.
func TestRecordsStreamWorkerPublishesGatewayReads(t *testing.T) {
	s := startJSAuthServer(t)
	g := s.connect(t, natsutil.RoleGateway, "g1")
	w := s.connect(t, natsutil.RoleWorker, "w1")
	tool := s.connect(t, natsutil.RoleTool, "t1")
	ctx := jsCtx(t, time.Minute)
	if err := recordstream.Ensure(ctx, g.nc, recordstream.Config{MaxAge: time.Hour, MaxBytes: 64 << 20}); err != nil {
		t.Fatalf("gateway Ensure: %v", err)
	}
	publish := func(c *client, ids ...string) {
		b := recordstream.NewPublisher(c.nc)
		for _, id := range ids {
			b.Add(api.Record{RequestID: id, Account: "123456789012", Function: "f", EndNs: time.Now().UnixNano(), Outcome: api.OutcomeOK})
		}
		b.Flush()
		// The stream's acknowledgement reaches the publisher's inbox:
		// its role may subscribe there, so nothing is published twice.
		deadline := time.Now().Add(wait)
		for st := b.Stats(); !st.Stored || st.Pending > 0; st = b.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("%s's batch was never acknowledged: %+v", c.nc.Opts.Name, st)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.Stop()
	}
	publish(w, "r0", "r1")
	publish(g, "t0") // a throttle
	read := func(ctx context.Context, c *client, f recordstream.Filter) ([]string, error) {
		var got []string
		err := recordstream.Read(ctx, c.nc, f, false, recordstream.Sink{Record: func(line []byte) error {
			got = append(got, wire.SplitRecords(line)[0].RequestID)
			return nil
		}})
		return got, err
	}
	for who, c := range map[string]*client{"gateway": g, "tool": tool} {
		deadline := time.Now().Add(wait)
		for {
			got, err := read(ctx, c, recordstream.Filter{Since: time.Now().Add(-time.Minute)})
			if err != nil {
				t.Fatalf("%s Read: %v", who, err)
			}
			// Two connections published: the stream orders each one's
			// messages, not the two against each other.
			slices.Sort(got)
			if slices.Equal(got, []string{"r0", "r1", "t0"}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s read %q", who, got)
			}
			time.Sleep(10 * time.Millisecond)
		}
		c.noViolations(t, who)
	}
	w.noViolations(t, "worker")

	// Following: a record published after the reader started.
	fctx, cancel := context.WithCancel(ctx)
	ids := make(chan string, 8)
	done := make(chan error, 1)
	go func() {
		done <- recordstream.Read(fctx, tool.nc, recordstream.Filter{}, true, recordstream.Sink{Record: func(line []byte) error {
			ids <- wire.SplitRecords(line)[0].RequestID
			return nil
		}})
	}()
	for i := 0; i < 3; i++ {
		<-ids
	}
	publish(w, "r2")
	select {
	case id := <-ids:
		if id != "r2" {
			t.Fatalf("followed %q", id)
		}
	case <-time.After(wait):
		t.Fatal("the followed record never arrived")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	tool.noViolations(t, "tool")

	if _, err := read(jsCtx(t, 2*time.Second), w, recordstream.Filter{}); err == nil {
		t.Fatal("a worker read the records stream")
	}
	w.violation(t, "$JS.API.STREAM.INFO."+recordstream.Stream)
	if err := recordstream.Ensure(jsCtx(t, 2*time.Second), w.nc, recordstream.Config{}); err == nil {
		t.Fatal("a worker updated the records stream")
	}
	w.violation(t, "$JS.API.STREAM.UPDATE."+recordstream.Stream)
	if err := recordstream.Ensure(jsCtx(t, 2*time.Second), tool.nc, recordstream.Config{}); err == nil {
		t.Fatal("a tool updated the records stream")
	}
	tool.violation(t, "$JS.API.STREAM.UPDATE."+recordstream.Stream)
	// The retention the gateway set is untouched.
	js, _ := jetstream.New(g.nc)
	st, err := js.Stream(ctx, recordstream.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; c.MaxAge != time.Hour || c.MaxBytes != 64<<20 {
		t.Fatalf("retention %v / %d", c.MaxAge, c.MaxBytes)
	}
	// A tool's grant is for the records stream's consumers only.
	if _, err := tool.nc.Request("$JS.API.CONSUMER.CREATE."+codestore.StreamName+".x", []byte("{}"), time.Second); err == nil {
		t.Fatal("a tool created a consumer on the code bucket")
	}
	tool.violation(t, "$JS.API.CONSUMER.CREATE."+codestore.StreamName+".x")
}
