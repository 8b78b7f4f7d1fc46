package roles

import (
	"errors"
	"net"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/ports"
	"github.com/coldstart-dev/coldstart/internal/secret"
)

// TestNodeWithWrongCredentialsDoesNotStart: a node whose secret or
// password the NATS server does not accept fails to start (it does not
// run retrying forever), and one with the right secret or password starts.
func TestNodeWithWrongCredentialsDoesNotStart(t *testing.T) {
	sec, _ := secret.Generate()
	other, _ := secret.Generate()
	s, err := natsutil.StartServer(natsutil.ServerConfig{Secret: sec, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	common := func(c Common) Common {
		p, err := ports.Free("127.0.0.1", 1)
		if err != nil {
			t.Fatal(err)
		}
		c.ID, c.NATSURL, c.GossipAddr = "g1", natsutil.URL(s), net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0]))
		return c
	}
	for name, c := range map[string]Common{
		"no credentials":           {},
		"another cluster's secret": {Secret: other},
		"another node's password":  {NATSPassword: natsutil.Password(sec, natsutil.UserName(natsutil.RoleGateway, "g2"))},
	} {
		if n, err := StartGateway(GatewayOptions{Common: common(c), Listen: "127.0.0.1:0"}); err == nil {
			n.Kill()
			t.Errorf("%s: the gateway started", name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization error", name, err)
		}
	}
	for name, c := range map[string]Common{
		"the cluster secret": {Secret: sec},
		"its own password":   {NATSPassword: natsutil.Password(sec, natsutil.UserName(natsutil.RoleGateway, "g1")), GossipKey: secret.DeriveKey(sec, secret.PurposeMemberlist)},
	} {
		n, err := StartGateway(GatewayOptions{Common: common(c), Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n.Kill()
	}
}
