package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/coldstart-dev/coldstart/internal/api"
)

const (
	testAccount = "123456789012"
	testKey     = "AKIDEXAMPLE"
	testSecret  = "secret"
	testArn     = "arn:aws:lambda:us-east-1:000000000000:function:fn:alias"
)

type mapKeys map[string][2]string // access key -> account, secret

func (m mapKeys) LookupKey(id string) (string, string, bool) {
	v, ok := m[id]
	return v[0], v[1], ok
}

func testKeys() mapKeys {
	return mapKeys{
		testKey:      {testAccount, testSecret},
		"AKIDSECOND": {"210987654321", "other-secret"},
	}
}

// seen is one request as the verifying server saw it.
type seen struct {
	method, uri string
	res         AuthResult
	err         *lambdaError
}

// sigServer answers every request that verifies with 200 "{}", which each
// operation used here decodes, and every other with the gateway's error.
type sigServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newSigServer(t testing.TB, keys KeyStore) *sigServer {
	s := &sigServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeError(w, errService(err.Error()))
			return
		}
		res, lerr := verifySigV4(r, body, keys, time.Now())
		s.mu.Lock()
		s.reqs = append(s.reqs, seen{r.Method, r.RequestURI, res, lerr})
		s.mu.Unlock()
		if lerr != nil {
			writeError(w, lerr)
			return
		}
		if !res.Signed {
			writeError(w, errIncompleteSignature("unsigned"))
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sigServer) last(t *testing.T) seen {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("server saw no request")
	}
	return s.reqs[len(s.reqs)-1]
}

func (s *sigServer) all() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

func newClient(url, region, key, secret, token string) *lambda.Client {
	return lambda.NewFromConfig(aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, token),
	}, func(o *lambda.Options) {
		o.BaseEndpoint = aws.String(url)
		o.Retryer = aws.NopRetryer{}
	})
}

func TestSigV4OfficialClient(t *testing.T) {
	srv := newSigServer(t, testKeys())
	c := newClient(srv.URL, "eu-west-3", testKey, testSecret, "")
	ctx := context.Background()
	zip := []byte("PK\x03\x04 not really a zip, but bytes the signer hashes")

	cases := []struct {
		name    string
		call    func() error
		method  string
		uriPart string
	}{
		{"InvokeName", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), Payload: []byte(`{"a":1}`)})
			return err
		}, "POST", "/2015-03-31/functions/fn/invocations"},
		{"InvokeARN", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(testArn), Payload: []byte(`{}`)})
			return err
		}, "POST", "/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afn%3Aalias/invocations"},
		{"InvokeQualifier", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), Qualifier: aws.String("live"),
				InvocationType: "Event", LogType: "Tail", Payload: []byte(`{"k":"v w"}`)})
			return err
		}, "POST", "/functions/fn/invocations?Qualifier=live"},
		{"InvokeEmptyPayload", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
			return err
		}, "POST", "/functions/fn/invocations"},
		{"GetFunction", func() error {
			_, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("fn")})
			return err
		}, "GET", "/2015-03-31/functions/fn"},
		{"GetFunctionARN", func() error {
			_, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(testArn), Qualifier: aws.String("$LATEST")})
			return err
		}, "GET", "arn%3Aaws%3Alambda"},
		{"CreateFunction", func() error {
			_, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
				FunctionName: aws.String("fn"), Role: aws.String("arn:aws:iam::000000000000:role/r"),
				Runtime: "provided.al2023", Handler: aws.String("bootstrap"),
				Code: &lambdatypes.FunctionCode{ZipFile: zip},
			})
			return err
		}, "POST", "/2015-03-31/functions"},
		{"ListFunctions", func() error {
			_, err := c.ListFunctions(ctx, &lambda.ListFunctionsInput{MaxItems: aws.Int32(7), Marker: aws.String("next/page+token==")})
			return err
		}, "GET", "MaxItems=7"},
		{"PutFunctionConcurrency", func() error {
			_, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("fn"), ReservedConcurrentExecutions: aws.Int32(5)})
			return err
		}, "PUT", "/2017-10-31/functions/fn/concurrency"},
		{"DeleteFunctionConcurrency", func() error {
			_, err := c.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String(testArn)})
			return err
		}, "DELETE", "/concurrency"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err != nil {
				t.Fatalf("call: %v (server: %+v)", err, srv.last(t).err)
			}
			got := srv.last(t)
			if got.err != nil {
				t.Fatalf("verify: %v", got.err)
			}
			want := AuthResult{Account: testAccount, AccessKey: testKey, Region: "eu-west-3", Signed: true}
			if got.res != want {
				t.Fatalf("result %+v, want %+v", got.res, want)
			}
			if got.method != tc.method || !strings.Contains(got.uri, tc.uriPart) {
				t.Fatalf("request %s %s, want %s containing %q", got.method, got.uri, tc.method, tc.uriPart)
			}
		})
	}

	t.Run("OtherKeyAndRegion", func(t *testing.T) {
		c := newClient(srv.URL, "ap-southeast-2", "AKIDSECOND", "other-secret", "")
		if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("fn")}); err != nil {
			t.Fatal(err)
		}
		want := AuthResult{Account: "210987654321", AccessKey: "AKIDSECOND", Region: "ap-southeast-2", Signed: true}
		if got := srv.last(t).res; got != want {
			t.Fatalf("result %+v, want %+v", got, want)
		}
	})

	t.Run("SessionToken", func(t *testing.T) {
		c := newClient(srv.URL, "eu-west-3", testKey, testSecret, "FQoGZXIvYXdzEXAMPLE/token+==")
		if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(testArn), Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if got := srv.last(t).res; !got.Signed || got.Account != testAccount {
			t.Fatalf("result %+v", got)
		}
	})
}

// wantAPIError checks err is the API error code with status 403, as the
// official client decodes it.
func wantAPIError(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an API error", err)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("code %q (%s), want %q", ae.ErrorCode(), ae.ErrorMessage(), code)
	}
	if ae.ErrorMessage() == "" {
		t.Fatalf("%s decoded without a message", code)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
		t.Fatalf("error %v: want HTTP 403", err)
	}
}

func TestSigV4OfficialClientRefused(t *testing.T) {
	srv := newSigServer(t, testKeys())
	ctx := context.Background()

	t.Run("WrongSecret", func(t *testing.T) {
		c := newClient(srv.URL, "eu-west-3", testKey, "not-the-secret", "")
		_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), Payload: []byte(`{}`)})
		wantAPIError(t, err, "InvalidSignatureException")
		var ae smithy.APIError
		errors.As(err, &ae)
		if ae.ErrorMessage() != msgBadSignature {
			t.Fatalf("message %q", ae.ErrorMessage())
		}
	})
	t.Run("UnknownKey", func(t *testing.T) {
		c := newClient(srv.URL, "eu-west-3", "AKIDNOBODY", testSecret, "")
		_, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("fn")})
		wantAPIError(t, err, "UnrecognizedClientException")
		var ae smithy.APIError
		errors.As(err, &ae)
		if ae.ErrorMessage() != msgUnknownKey {
			t.Fatalf("message %q", ae.ErrorMessage())
		}
	})
}

// The helpers below sign with the SDK's signer directly, then send the
// request through http.ReadRequest so verifySigV4 sees a server-side
// request (RequestURI set, Host moved out of the header map).

var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func clientRequest(t testing.TB, method, rawURL string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
	return req
}

func bodyHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sign(t testing.TB, req *http.Request, body []byte, key, secret, service, region string, at time.Time) {
	t.Helper()
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: key, SecretAccessKey: secret},
		req, bodyHash(body), service, region, at)
	if err != nil {
		t.Fatal(err)
	}
}

// onServer is req as a server reads it off the wire.
func onServer(t testing.TB, req *http.Request) (*http.Request, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		t.Fatal(err)
	}
	sr, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(sr.Body)
	if err != nil {
		t.Fatal(err)
	}
	return sr, body
}

const invokeARNURL = "http://gw.example:9001/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afn%3Aalias/invocations?Qualifier=live"

func signedInvoke(t testing.TB, secret string, at time.Time) (*http.Request, []byte) {
	body := []byte(`{"hello":"world"}`)
	req := clientRequest(t, "POST", invokeARNURL, body)
	sign(t, req, body, testKey, secret, "lambda", "us-east-1", at)
	return onServer(t, req)
}

func wantErr(t *testing.T, lerr *lambdaError, typ, msgPart string) {
	t.Helper()
	if lerr == nil {
		t.Fatalf("verified; want %s", typ)
	}
	if lerr.Type != typ || lerr.Status != http.StatusForbidden {
		t.Fatalf("got %d %s: %s; want 403 %s", lerr.Status, lerr.Type, lerr.Message, typ)
	}
	if !strings.Contains(lerr.Message, msgPart) {
		t.Fatalf("message %q does not contain %q", lerr.Message, msgPart)
	}
}

func TestSigV4Direct(t *testing.T) {
	keys := testKeys()

	t.Run("Verifies", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		res, lerr := verifySigV4(r, body, keys, testNow.Add(4*time.Minute))
		if lerr != nil {
			t.Fatal(lerr)
		}
		if want := (AuthResult{testAccount, testKey, "us-east-1", true}); res != want {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("Unsigned", func(t *testing.T) {
		r, body := onServer(t, clientRequest(t, "POST", invokeARNURL, []byte(`{}`)))
		res, lerr := verifySigV4(r, body, keys, testNow)
		if lerr != nil || res != (AuthResult{}) {
			t.Fatalf("%+v %v", res, lerr)
		}
	})
	t.Run("WrongSecret", func(t *testing.T) {
		r, body := signedInvoke(t, "nope", testNow)
		_, lerr := verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)
	})
	t.Run("UnknownKey", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		_, lerr := verifySigV4(r, body, mapKeys{}, testNow)
		wantErr(t, lerr, "UnrecognizedClientException", msgUnknownKey)
		_, lerr = verifySigV4(r, body, nil, testNow)
		wantErr(t, lerr, "UnrecognizedClientException", msgUnknownKey)
	})
	t.Run("RotatedSecret", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		if _, lerr := verifySigV4(r, body, keys, testNow); lerr != nil {
			t.Fatal(lerr)
		}
		rotated := mapKeys{testKey: {testAccount, "rotated"}}
		_, lerr := verifySigV4(r, body, rotated, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)
	})
	t.Run("Expired", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow.Add(-6*time.Minute))
		_, lerr := verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException",
			"Signature expired: 20260314T150326Z is now earlier than 20260314T150426Z (20260314T150926Z - 5 min.)")
	})
	t.Run("NotYetCurrent", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow.Add(6*time.Minute))
		_, lerr := verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException",
			"Signature not yet current: 20260314T151526Z is still later than 20260314T151426Z (20260314T150926Z + 5 min.)")
	})
	t.Run("TamperedBody", func(t *testing.T) {
		r, _ := signedInvoke(t, testSecret, testNow)
		_, lerr := verifySigV4(r, []byte(`{"hello":"w0rld"}`), keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)
	})
	t.Run("TamperedPath", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		r.RequestURI = strings.Replace(r.RequestURI, "fn%3Aalias", "fn%3Aother", 1)
		_, lerr := verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)
	})
	t.Run("PathEscapingMatters", func(t *testing.T) {
		// The same function name unescaped is a different canonical path.
		r, body := signedInvoke(t, testSecret, testNow)
		r.RequestURI = strings.ReplaceAll(r.RequestURI, "%3A", ":")
		_, lerr := verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)
	})
	t.Run("TamperedQuery", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		r.URL.RawQuery = "Qualifier=prod"
		_, lerr := verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)
	})
	t.Run("TamperedSignedHeader", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		r.Header.Set("X-Amz-Invocation-Type", "Event")
		_, lerr := verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)
	})
	t.Run("TamperedHost", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		r.Host = "evil.example:9001"
		_, lerr := verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)
	})
	t.Run("UnsignedHeaderMayChange", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		r.Header.Set("User-Agent", "changed by a proxy")
		r.Header.Set("X-Forwarded-For", "10.0.0.1")
		if _, lerr := verifySigV4(r, body, keys, testNow); lerr != nil {
			t.Fatal(lerr)
		}
	})
	t.Run("WrongService", func(t *testing.T) {
		body := []byte(`{}`)
		req := clientRequest(t, "POST", invokeARNURL, body)
		sign(t, req, body, testKey, testSecret, "execute-api", "us-east-1", testNow)
		r, b := onServer(t, req)
		_, lerr := verifySigV4(r, b, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", "Credential should be scoped to correct service: 'lambda'.")
	})
	t.Run("ScopeDateMismatch", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		r.Header.Set("X-Amz-Date", "20260315T000100Z")
		_, lerr := verifySigV4(r, body, keys, testNow.Add(9*time.Hour))
		wantErr(t, lerr, "InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20260314' != '20260315'")
	})
	t.Run("HostNotSigned", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "host;", "", 1))
		_, lerr := verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgHostNotSigned)
	})
	t.Run("ContentSHA256", func(t *testing.T) {
		body := []byte(`{"x":1}`)
		req := clientRequest(t, "POST", invokeARNURL, body)
		req.Header.Set("X-Amz-Content-Sha256", bodyHash(body))
		sign(t, req, body, testKey, testSecret, "lambda", "us-east-1", testNow)
		r, b := onServer(t, req)
		if _, lerr := verifySigV4(r, b, keys, testNow); lerr != nil {
			t.Fatal(lerr)
		}
		_, lerr := verifySigV4(r, []byte(`{"x":2}`), keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", "x-amz-content-sha256")
	})
	t.Run("UnsignedPayload", func(t *testing.T) {
		body := []byte(`{"x":1}`)
		req := clientRequest(t, "POST", invokeARNURL, body)
		req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKey, SecretAccessKey: testSecret},
			req, "UNSIGNED-PAYLOAD", "lambda", "us-east-1", testNow); err != nil {
			t.Fatal(err)
		}
		r, _ := onServer(t, req)
		if _, lerr := verifySigV4(r, []byte(`{"x":1}`), keys, testNow); lerr != nil {
			t.Fatal(lerr)
		}
	})
	t.Run("ClientSignsIgnoredHeaders", func(t *testing.T) {
		// Some clients sign User-Agent, which the Go signer never signs of
		// its own accord; the client's list, not the signer's habit, wins.
		body := []byte(`{}`)
		req := clientRequest(t, "POST", invokeARNURL, body)
		req.Header["user-agent"] = []string{"some-sdk/1.0"}
		sign(t, req, body, testKey, testSecret, "lambda", "us-east-1", testNow)
		req.Header["User-Agent"] = req.Header["user-agent"]
		delete(req.Header, "user-agent")
		if !strings.Contains(req.Header.Get("Authorization"), "user-agent") {
			t.Fatal("client did not sign user-agent")
		}
		r, b := onServer(t, req)
		if _, lerr := verifySigV4(r, b, keys, testNow); lerr != nil {
			t.Fatal(lerr)
		}
		r.Header.Set("User-Agent", "other/2.0")
		_, lerr := verifySigV4(r, b, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)
	})
	t.Run("TokenSentNotSigned", func(t *testing.T) {
		r, body := signedInvoke(t, testSecret, testNow)
		r.Header.Set("X-Amz-Security-Token", "unsigned-token")
		if _, lerr := verifySigV4(r, body, keys, testNow); lerr != nil {
			t.Fatal(lerr)
		}
	})
	t.Run("Presigned", func(t *testing.T) {
		req := clientRequest(t, "GET", "http://gw.example:9001/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afn/configuration?Qualifier=1", nil)
		req.Header = http.Header{}
		q := req.URL.Query()
		q.Set("X-Amz-Expires", "900")
		req.URL.RawQuery = q.Encode()
		uri, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKey, SecretAccessKey: testSecret, SessionToken: "tok"},
			req, bodyHash(nil), "lambda", "sa-east-1", testNow)
		if err != nil {
			t.Fatal(err)
		}
		pre, err := http.NewRequest("GET", uri, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			if k != "Host" {
				pre.Header[k] = v
			}
		}
		r, body := onServer(t, pre)
		res, lerr := verifySigV4(r, body, keys, testNow.Add(10*time.Minute))
		if lerr != nil {
			t.Fatal(lerr)
		}
		if res.Region != "sa-east-1" || res.Account != testAccount {
			t.Fatalf("%+v", res)
		}
		_, lerr = verifySigV4(r, body, keys, testNow.Add(16*time.Minute))
		wantErr(t, lerr, "InvalidSignatureException", "Signature expired")

		r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "Qualifier=1", "Qualifier=2", 1)
		_, lerr = verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "InvalidSignatureException", msgBadSignature)

		r.URL.RawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256"
		_, lerr = verifySigV4(r, body, keys, testNow)
		wantErr(t, lerr, "IncompleteSignatureException", "AWS query-string parameters must include 'X-Amz-Credential'.")
	})
}

func TestSigV4Malformed(t *testing.T) {
	keys := testKeys()
	r0, body := signedInvoke(t, testSecret, testNow)
	good := r0.Header.Get("Authorization")
	cases := []struct {
		name, auth, date, msg string
	}{
		{"Empty", "", "20260314T150926Z", "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter."},
		{"Bearer", "Bearer abc", "20260314T150926Z", "Authorization header requires 'Credential' parameter."},
		{"NoSignature", strings.Split(good, ", Signature=")[0], "20260314T150926Z", "Authorization header requires 'Signature' parameter. Authorization="},
		{"NoDate", good, "", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."},
		{"BadDate", good, "2026-03-14T15:09:26Z", "Date must be in ISO-8601 'basic format'. Got '2026-03-14T15:09:26Z'."},
		{"OneDigitHour", good, "20260314T90926Z", "Date must be in ISO-8601 'basic format'. Got '20260314T90926Z'."},
		{"Algorithm", strings.Replace(good, "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", 1), "20260314T150926Z", "Unsupported AWS 'algorithm': 'AWS4-ECDSA-P256-SHA256'"},
		{"ShortCredential", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260314/us-east-1, SignedHeaders=host, Signature=00", "20260314T150926Z",
			"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got 'AKIDEXAMPLE/20260314/us-east-1'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := r0.Clone(context.Background())
			r.Header.Set("Authorization", tc.auth)
			if tc.date == "" {
				r.Header.Del("X-Amz-Date")
			} else {
				r.Header.Set("X-Amz-Date", tc.date)
			}
			_, lerr := verifySigV4(r, body, keys, testNow)
			wantErr(t, lerr, "IncompleteSignatureException", tc.msg)
		})
	}
}

// The error bodies must decode in the official client as the named code.
func TestSigV4ErrorWire(t *testing.T) {
	for _, e := range []*lambdaError{errUnrecognizedClient(), errInvalidSignature(msgBadSignature), errIncompleteSignature("Authorization header requires 'Credential' parameter.")} {
		w := httptest.NewRecorder()
		writeError(w, e)
		if w.Code != http.StatusForbidden || w.Header().Get(api.HeaderErrorType) != e.Type {
			t.Fatalf("%s: status %d, error type %q", e.Type, w.Code, w.Header().Get(api.HeaderErrorType))
		}
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m["message"] != e.Message {
			t.Fatalf("%s: body %s", e.Type, w.Body.String())
		}
	}
}

// TestSigV4AWSCLI proves botocore's canonical request (path escaping,
// header set) is the one the Go signer reproduces.
func TestSigV4AWSCLI(t *testing.T) {
	awsPath, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("aws CLI not installed")
	}
	if testing.Short() {
		t.Skip("runs the aws CLI")
	}
	srv := newSigServer(t, testKeys())
	home := t.TempDir()
	run := func(secret string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, awsPath, append([]string{"--endpoint-url", srv.URL}, args...)...)
		cmd.Dir = home
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "HOME=") {
				env = append(env, kv)
			}
		}
		cmd.Env = append(env, "HOME="+home,
			"AWS_ACCESS_KEY_ID="+testKey, "AWS_SECRET_ACCESS_KEY="+secret, "AWS_DEFAULT_REGION=eu-west-3",
			"AWS_CONFIG_FILE="+filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "credentials"),
			"AWS_EC2_METADATA_DISABLED=true", "AWS_MAX_ATTEMPTS=1", "AWS_PAGER=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	if out, err := run(testSecret, "lambda", "get-function", "--function-name", "fn"); err != nil {
		t.Fatalf("get-function: %v\n%s\nserver: %+v", err, out, srv.all())
	}
	invoke := []string{"lambda", "invoke", "--function-name", "arn:aws:lambda:us-east-1:000000000000:function:fn:live", "--payload", "{}"}
	// Version 1 sends a blob argument raw and has no --cli-binary-format;
	// version 2 wants it told to.
	if v, _ := run(testSecret, "--version"); !strings.HasPrefix(v, "aws-cli/1.") {
		invoke = append(invoke, "--cli-binary-format", "raw-in-base64-out")
	}
	if out, err := run(testSecret, append(invoke, "out.json")...); err != nil {
		t.Fatalf("invoke: %v\n%s\nserver: %+v", err, out, srv.all())
	}
	if out, err := run(testSecret, "lambda", "list-functions", "--max-items", "3", "--no-paginate"); err != nil {
		t.Fatalf("list-functions: %v\n%s\nserver: %+v", err, out, srv.all())
	}
	reqs := srv.all()
	if len(reqs) != 3 {
		t.Fatalf("server saw %d requests, want 3: %+v", len(reqs), reqs)
	}
	for _, s := range reqs {
		want := AuthResult{Account: testAccount, AccessKey: testKey, Region: "eu-west-3", Signed: true}
		if s.err != nil || s.res != want {
			t.Fatalf("%s %s: %+v %v", s.method, s.uri, s.res, s.err)
		}
	}
	if !strings.Contains(reqs[1].uri, "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afn%3Alive") {
		t.Fatalf("invoke path %s is not escaped as expected", reqs[1].uri)
	}

	out, err := run("wrong", "lambda", "get-function", "--function-name", "fn")
	if err == nil || !strings.Contains(out, "InvalidSignatureException") {
		t.Fatalf("wrong secret: %v\n%s", err, out)
	}
}

// fuzzRequest is a server-side request with the fuzzed parts put where a
// client would send them.
func fuzzRequest(auth, date, path string, body []byte) *http.Request {
	u := &url.URL{Path: path, RawQuery: "Qualifier=live"}
	if p, err := url.PathUnescape(path); err == nil {
		u.Path, u.RawPath = p, path
	}
	r := &http.Request{
		Method:     "POST",
		URL:        u,
		RequestURI: path + "?Qualifier=live",
		Host:       "gw.example:9001",
		Header: http.Header{
			"Authorization":         {auth},
			"X-Amz-Date":            {date},
			"Content-Type":          {"application/octet-stream"},
			"X-Amz-Invocation-Type": {"RequestResponse"},
		},
		ContentLength: int64(len(body)),
	}
	return r
}

func FuzzVerifySigV4(f *testing.F) {
	keys := testKeys()
	// Inputs that are real signed requests must verify through fuzzRequest
	// too, so that a mutation's refusal is the mutation's doing.
	genuine := map[[4]string]bool{}
	for _, at := range []time.Time{testNow, testNow.Add(-4 * time.Minute)} {
		for _, path := range []string{
			"/2015-03-31/functions/fn/invocations",
			"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afn%3Aalias/invocations",
		} {
			body := []byte(`{"k":"v"}`)
			req := clientRequest(f, "POST", "http://gw.example:9001"+path+"?Qualifier=live", body)
			sign(f, req, body, testKey, testSecret, "lambda", "us-east-1", at)
			f.Add(req.Header.Get("Authorization"), req.Header.Get("X-Amz-Date"), path, body)
			genuine[[4]string{req.Header.Get("Authorization"), req.Header.Get("X-Amz-Date"), path, string(body)}] = true
			// The seed must verify, or the corpus exercises only refusals.
			r, b := onServer(f, req)
			if _, lerr := verifySigV4(r, b, keys, testNow); lerr != nil {
				f.Fatalf("seed does not verify: %v", lerr)
			}
		}
	}
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260314/us-east-1/lambda/aws4_request, SignedHeaders=, Signature=", "20260314T150926Z", "/", []byte(nil))
	f.Add("AWS4-HMAC-SHA256 Credential=////, SignedHeaders=host;;host, Signature=zz", "99999999T999999Z", "//..%2F%zz", []byte{0xff})
	f.Fuzz(func(t *testing.T, auth, date, path string, body []byte) {
		res, lerr := verifySigV4(fuzzRequest(auth, date, path, body), body, keys, testNow)
		if genuine[[4]string{auth, date, path, string(body)}] && lerr != nil {
			t.Fatalf("genuine request refused: %v", lerr)
		}
		if lerr == nil {
			// A request with an Authorization header is never unsigned.
			if !res.Signed || res.Account != testAccount {
				t.Fatalf("accepted as %+v", res)
			}
			return
		}
		if lerr.Status != http.StatusForbidden {
			t.Fatalf("status %d for %v", lerr.Status, lerr)
		}
		switch lerr.Type {
		case "InvalidSignatureException", "IncompleteSignatureException", "UnrecognizedClientException":
		default:
			t.Fatalf("type %s", lerr.Type)
		}
	})
}

func BenchmarkSignOnly(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: testKey, SecretAccessKey: testSecret}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		req := clientRequest(b, "POST", invokeARNURL, body)
		if err := signer.SignHTTP(context.Background(), creds, req, bodyHash(body), "lambda", "us-east-1", testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySigV4(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	req := clientRequest(b, "POST", invokeARNURL, body)
	sign(b, req, body, testKey, testSecret, "lambda", "us-east-1", testNow)
	r, rb := onServer(b, req)
	keys := testKeys()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, lerr := verifySigV4(r, rb, keys, testNow); lerr != nil {
			b.Fatal(lerr)
		}
	}
}
