// Package client is the Go client of the coldstart gateway's HTTP API: the
// Lambda subset it speaks (Invoke, functions, concurrency, account settings)
// and coldstart's own endpoints (status, the records stream). The CLI, the
// load generator and the benchmarks all use it.
//
// Every non-2xx answer becomes a *APIError carrying Lambda's exception name,
// so callers branch with errors.As instead of matching strings.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// DefaultGatewayURL is where the CLI looks for a gateway when neither
// --gateway nor COLDSTART_GATEWAY says otherwise: the first gateway of
// `coldstart up`.
const DefaultGatewayURL = "http://127.0.0.1:9000"

// EnvGateway names the environment variable that overrides DefaultGatewayURL.
const EnvGateway = "COLDSTART_GATEWAY"

// DefaultMaxIdleConnsPerHost keeps enough idle keep-alive connections for a
// few hundred concurrent callers, so a load run does not churn sockets.
const DefaultMaxIdleConnsPerHost = 1024

// Limits on what the client buffers from a response.
const (
	maxPayloadBytes = 6*1024*1024 + 1024 // Lambda's 6 MB sync response limit, with slack
	maxErrorBytes   = 64 * 1024
	maxRecordLine   = 1024 * 1024
)

// DefaultGateway resolves the gateway URL the way every CLI command does: the
// flag value if set, else $COLDSTART_GATEWAY, else DefaultGatewayURL.
func DefaultGateway(flagValue string) string {
	if v := strings.TrimSpace(flagValue); v != "" {
		return v
	}
	if v := strings.TrimSpace(os.Getenv(EnvGateway)); v != "" {
		return v
	}
	return DefaultGatewayURL
}

// Client talks to one gateway. It is safe for concurrent use; share one per
// process so that keep-alive connections are reused.
type Client struct {
	base      string // scheme://host[:port][/prefix], no trailing slash
	hc        *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*config)

type config struct {
	hc          *http.Client
	maxIdle     int
	dialTimeout time.Duration
	userAgent   string
	creds       *aws.Credentials
}

// WithHTTPClient uses hc instead of the client's own tuned transport.
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.hc = hc } }

// WithMaxIdleConnsPerHost sets how many idle keep-alive connections are kept
// to the gateway. Set it at least as high as the number of concurrent callers.
func WithMaxIdleConnsPerHost(n int) Option { return func(c *config) { c.maxIdle = n } }

// WithDialTimeout bounds connection set-up (default 5 s).
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *config) { c.userAgent = ua } }

// New returns a client for the gateway at baseURL ("http://host:port"; a bare
// "host:port" is taken as http).
func New(baseURL string, opts ...Option) (*Client, error) {
	base, err := normalizeBase(baseURL)
	if err != nil {
		return nil, err
	}
	cfg := config{maxIdle: DefaultMaxIdleConnsPerHost, dialTimeout: 5 * time.Second, userAgent: "coldstart-client"}
	for _, o := range opts {
		o(&cfg)
	}
	hc := cfg.hc
	if hc == nil {
		// No http.Client timeout: invocations may run for the function's
		// timeout (up to 15 min) and the records stream never ends. Callers
		// bound requests with their context.
		hc = &http.Client{Transport: NewTransport(cfg.maxIdle, cfg.dialTimeout)}
	}
	if cfg.creds != nil {
		shc := *hc
		shc.Transport = newSigningTransport(hc.Transport, *cfg.creds)
		hc = &shc
	}
	return &Client{base: base, hc: hc, userAgent: cfg.userAgent}, nil
}

// NewTransport returns the transport New uses: keep-alive on, maxIdle idle
// connections per host, no connection cap, no compression (payloads are small
// and loopback is fast; gzip would only cost CPU).
func NewTransport(maxIdle int, dialTimeout time.Duration) *http.Transport {
	if maxIdle <= 0 {
		maxIdle = DefaultMaxIdleConnsPerHost
	}
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		MaxIdleConns:          maxIdle,
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
	}
}

func normalizeBase(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("client: empty gateway URL")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("client: gateway URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("client: gateway URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("client: gateway URL %q has no host", raw)
	}
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimRight(u.String(), "/"), nil
}

// BaseURL returns the normalized gateway URL.
func (c *Client) BaseURL() string { return c.base }

// CloseIdleConnections closes idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// functionPath is /2015-03-31/functions/{name} with the name path-escaped
// (a qualified name "fn:alias" travels as "fn%3Aalias", as the SDKs send it).
func functionPath(name string) string {
	return api.PathFunctions + "/" + escapeName(name)
}

func concurrencyPath(version, name string) string {
	return "/" + version + "/functions/" + escapeName(name) + "/concurrency"
}

// escapeName escapes a function name or ARN for a path segment, ':' included,
// as the AWS SDKs do.
func escapeName(name string) string {
	return strings.ReplaceAll(url.PathEscape(name), ":", "%3A")
}

// do sends a JSON request and decodes a JSON answer into out (if non-nil).
// Any non-2xx answer is an *APIError.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer drainClose(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	// An empty 2xx body leaves out as it is (some answers carry nothing).
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPayloadBytes)).Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("client: decode %s %s answer: %w", method, path, err)
	}
	return nil
}

// drainClose reads what is left of a body (a little) so the connection can
// be reused, then closes it.
func drainClose(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 64*1024))
	_ = rc.Close()
}

// CreateFunction creates a function (201). An existing name is a
// ResourceConflictException.
func (c *Client) CreateFunction(ctx context.Context, in api.CreateFunctionInput) (*api.FunctionConfiguration, error) {
	var out api.FunctionConfiguration
	if err := c.do(ctx, http.MethodPost, api.PathFunctions, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteFunction deletes a function and its sandboxes.
func (c *Client) DeleteFunction(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, functionPath(name), nil, nil)
}

// GetFunction returns a function's configuration and reserved concurrency.
func (c *Client) GetFunction(ctx context.Context, name string) (*api.GetFunctionOutput, error) {
	var out api.GetFunctionOutput
	if err := c.do(ctx, http.MethodGet, functionPath(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListFunctions lists the account's functions.
func (c *Client) ListFunctions(ctx context.Context) (*api.ListFunctionsOutput, error) {
	var out api.ListFunctionsOutput
	if err := c.do(ctx, http.MethodGet, api.PathFunctions+"/", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutConcurrency sets a function's reserved concurrency (0 throttles every
// invocation).
func (c *Client) PutConcurrency(ctx context.Context, name string, reserved int) (*api.Concurrency, error) {
	in := api.Concurrency{ReservedConcurrentExecutions: &reserved}
	var out api.Concurrency
	if err := c.do(ctx, http.MethodPut, concurrencyPath("2017-10-31", name), in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteConcurrency removes a function's reserved concurrency.
func (c *Client) DeleteConcurrency(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, concurrencyPath("2017-10-31", name), nil, nil)
}

// GetConcurrency returns a function's reserved concurrency; the member is nil
// when none is set.
func (c *Client) GetConcurrency(ctx context.Context, name string) (*api.Concurrency, error) {
	var out api.Concurrency
	if err := c.do(ctx, http.MethodGet, concurrencyPath("2019-09-30", name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetAccountSettings returns the account's limit and usage.
func (c *Client) GetAccountSettings(ctx context.Context) (*api.AccountSettings, error) {
	var out api.AccountSettings
	if err := c.do(ctx, http.MethodGet, api.PathAccountSettings, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetAccountLimit sets the account's concurrency limit (coldstart extension).
func (c *Client) SetAccountLimit(ctx context.Context, limit int) (*api.AccountSettings, error) {
	var out api.AccountSettings
	if err := c.do(ctx, http.MethodPut, api.PathAccountLimit, api.SetLimitInput{ConcurrentExecutions: limit}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status returns the cluster's status: nodes, leader, accounts, functions.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var out api.Status
	if err := c.do(ctx, http.MethodGet, api.PathStatus, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func parseFloatHeader(h http.Header, name string) float64 {
	v := h.Get(name)
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return 0
	}
	return f
}

// CreateAccount creates an account (the operator account only) with one
// access key, whose secret the answer carries: it is never shown again.
// An empty id lets the gateway pick 12 digits; limit 0 is the default.
func (c *Client) CreateAccount(ctx context.Context, id string, limit int) (*api.AccountInfo, error) {
	in := struct {
		Account string `json:"Account,omitempty"`
		Limit   int    `json:"Limit,omitempty"`
	}{id, limit}
	var out api.AccountInfo
	if err := c.do(ctx, http.MethodPost, api.PathAccounts, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetAccount returns an account's limit and access key ids.
func (c *Client) GetAccount(ctx context.Context, id string) (*api.AccountInfo, error) {
	var out api.AccountInfo
	if err := c.do(ctx, http.MethodGet, api.PathAccounts+"/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateAccessKey adds an access key to an account; the answer carries its
// secret, shown this once.
func (c *Client) CreateAccessKey(ctx context.Context, id string) (*api.AccountInfo, error) {
	var out api.AccountInfo
	if err := c.do(ctx, http.MethodPost, api.PathAccounts+"/"+url.PathEscape(id)+"/keys", struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
