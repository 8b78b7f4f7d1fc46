// Package natsutil starts an embedded NATS server and opens client
// connections with the options every coldstart node uses.
package natsutil

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures an embedded server.
type ServerConfig struct {
	Host      string // default 127.0.0.1
	Port      int    // 0 picks a free port
	JetStream bool
	StoreDir  string // JetStream storage directory
}

// StartServer runs an embedded NATS server and waits until it accepts
// connections.
func StartServer(cfg ServerConfig) (*server.Server, error) {
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		Host:                  host,
		Port:                  port,
		NoLog:                 true,
		NoSigs:                true,
		MaxPayload:            8 << 20, // Lambda's 6 MB sync payload plus headers
		MaxPending:            256 << 20,
		JetStream:             cfg.JetStream,
		StoreDir:              cfg.StoreDir,
		DisableShortFirstPing: true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server on %s:%d did not become ready", host, port)
	}
	return s, nil
}

// URL returns the client URL of an embedded server.
func URL(s *server.Server) string {
	addr := s.Addr().(*net.TCPAddr)
	return "nats://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
}

// Connect opens a client connection named name. It retries forever on
// disconnect: a node must survive a NATS restart.
func Connect(url, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(64<<20),
		nats.NoCallbacksAfterClientClose(),
	)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", url, err)
	}
	return nc, nil
}
