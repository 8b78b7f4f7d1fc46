// Package natsutil starts an embedded NATS server and opens client
// connections with the options every coldstart node uses. With a cluster
// secret the server admits only nodes that prove their identity, and gives
// each the subject permissions of its role (see Permissions).
package natsutil

import (
	"errors"
	"fmt"
	"log/slog"
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
	// Secret is the cluster secret (internal/secret). Set, every client
	// must log in as "<role>.<id>" with Password(Secret, user) and gets
	// Permissions(role, id); nil, the server admits anyone to everything.
	Secret []byte
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
	if cfg.Secret != nil {
		opts.CustomClientAuthentication = nodeAuth{secret: append([]byte(nil), cfg.Secret...)}
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

// ConnectOptions are a client's credentials on an authenticating server.
type ConnectOptions struct {
	User        string // "<role>.<id>" (UserName); empty: no credentials
	Password    string
	InboxPrefix string // reply inboxes (InboxPrefix); empty: the default
	// Logger, if set, gets asynchronous errors (a permissions violation
	// shows up only there) and the reason the connection was given up.
	Logger *slog.Logger
	// Extra options are applied last.
	Extra []nats.Option
}

// NodeConnectOptions are the options of node id of role holding password.
func NodeConnectOptions(role, id, password string) ConnectOptions {
	return ConnectOptions{User: UserName(role, id), Password: password, InboxPrefix: InboxPrefix(role, id)}
}

// Connect opens a client connection named name, with at most one
// ConnectOptions. It retries forever on disconnect: a node must survive a
// NATS restart. A server that refuses the credentials fails the call
// instead, so a node with a wrong password does not start.
func Connect(url, name string, opts ...ConnectOptions) (*nats.Conn, error) {
	var o ConnectOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	nopts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.NoCallbacksAfterClientClose(),
	}
	if o.User != "" {
		nopts = append(nopts, nats.UserInfo(o.User, o.Password))
	}
	if o.InboxPrefix != "" {
		nopts = append(nopts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if l := o.Logger; l != nil {
		nopts = append(nopts,
			nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
				if sub != nil {
					l.Error("nats", "err", err, "subscription", sub.Subject)
					return
				}
				l.Error("nats", "err", err)
			}),
			nats.ClosedHandler(func(nc *nats.Conn) {
				l.Error("nats connection given up", "err", nc.LastError())
			}))
	}
	nopts = append(nopts, o.Extra...)
	// One attempt first: refused credentials are a configuration error to
	// report now. Any other failure (the server is not up yet) goes on
	// retrying in the background.
	nc, err := nats.Connect(url, nopts...)
	if err == nil {
		return nc, nil
	}
	if errors.Is(err, nats.ErrAuthorization) {
		return nil, fmt.Errorf("nats connect %s as %q: %w", url, o.User, err)
	}
	nc, err = nats.Connect(url, append(nopts, nats.RetryOnFailedConnect(true))...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", url, err)
	}
	return nc, nil
}
