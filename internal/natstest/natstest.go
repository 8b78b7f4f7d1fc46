// Package natstest starts what a unit test needs of NATS: an embedded
// server with no authorization, and a connection to it, both closed when
// the test ends.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/natsutil"
)

// Conn starts an embedded NATS server and returns a connection to it named
// "test".
func Conn(t testing.TB) *nats.Conn {
	t.Helper()
	ns, err := natsutil.StartServer(natsutil.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := natsutil.Connect(natsutil.URL(ns), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
