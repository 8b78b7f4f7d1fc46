package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// SigV4 for the client: a gateway started with --strict-auth refuses
// unsigned requests, and a signed request acts as the account owning its
// access key, so the CLI signs everything it sends as the AWS SDKs would.

// Region and Service are what requests are signed for: the gateway
// answers as us-east-1 and verifies any region the client names.
const (
	Region  = "us-east-1"
	Service = "lambda"
)

// DefaultAccessKey and DefaultSecretKey are the gateway's built-in
// development key, used when the environment names none.
const (
	DefaultAccessKey = "test"
	DefaultSecretKey = "test"
)

// EnvCredentials reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN, falling back to the development key test/test (which
// local emulators' users expect) when no access key is set.
func EnvCredentials() aws.Credentials {
	id := strings.TrimSpace(os.Getenv("AWS_ACCESS_KEY_ID"))
	if id == "" {
		return aws.Credentials{AccessKeyID: DefaultAccessKey, SecretAccessKey: DefaultSecretKey, Source: "coldstart default"}
	}
	return aws.Credentials{AccessKeyID: id, SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY"), SessionToken: os.Getenv("AWS_SESSION_TOKEN"), Source: "environment"}
}

// WithCredentials signs every request with creds (SigV4, service lambda,
// region us-east-1).
func WithCredentials(creds aws.Credentials) Option {
	return func(c *config) { c.creds = &creds }
}

// signingTransport signs each request just before it is sent.
type signingTransport struct {
	next   http.RoundTripper
	creds  aws.Credentials
	signer *v4.Signer
}

func newSigningTransport(next http.RoundTripper, creds aws.Credentials) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &signingTransport{next: next, creds: creds, signer: v4.NewSigner()}
}

func (t *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A RoundTripper must not change the caller's request: sign a clone.
	r := req.Clone(req.Context())
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		if req.GetBody != nil {
			rc, gerr := req.GetBody()
			if gerr != nil {
				return nil, gerr
			}
			body, err = io.ReadAll(rc)
			rc.Close()
			req.Body.Close()
		} else {
			body, err = io.ReadAll(req.Body)
			req.Body.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("sign request: read body: %w", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	if err := t.signer.SignHTTP(req.Context(), t.creds, r, hash, Service, Region, time.Now().UTC()); err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	return t.next.RoundTrip(r)
}
