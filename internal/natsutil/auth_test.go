package natsutil_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

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
	sec, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	s, err := natsutil.StartServer(natsutil.ServerConfig{Secret: sec})
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
