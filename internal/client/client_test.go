package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

func newTestClient(t *testing.T, h http.Handler) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDefaultGateway(t *testing.T) {
	t.Setenv(EnvGateway, "")
	if got := DefaultGateway(""); got != DefaultGatewayURL {
		t.Fatalf("no flag, no env: %q", got)
	}
	t.Setenv(EnvGateway, "http://gw:9001")
	if got := DefaultGateway(""); got != "http://gw:9001" {
		t.Fatalf("env: %q", got)
	}
	if got := DefaultGateway("http://flag:1"); got != "http://flag:1" {
		t.Fatalf("flag wins: %q", got)
	}
}

func TestNewNormalizesBaseURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:9000", "http://127.0.0.1:9000"},
		{"http://127.0.0.1:9000/", "http://127.0.0.1:9000"},
		{"127.0.0.1:9000", "http://127.0.0.1:9000"},
		{"https://gw.example/prefix/", "https://gw.example/prefix"},
	} {
		c, err := New(tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if c.BaseURL() != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, c.BaseURL(), tc.want)
		}
	}
	for _, bad := range []string{"", "ftp://x", "http://"} {
		if _, err := New(bad); err == nil {
			t.Errorf("%q: want error", bad)
		}
	}
}

func TestTransportKeepsEnoughIdleConns(t *testing.T) {
	c, err := New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	tr := c.hc.Transport.(*http.Transport)
	if tr.MaxIdleConnsPerHost < 256 || tr.MaxIdleConns != 0 && tr.MaxIdleConns < 256 {
		t.Fatalf("idle conns per host %d, total %d: want >= 256", tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
	}
	if tr.DisableKeepAlives {
		t.Fatal("keep-alive disabled")
	}
	c2, _ := New("http://127.0.0.1:1", WithMaxIdleConnsPerHost(2000))
	if got := c2.hc.Transport.(*http.Transport).MaxIdleConnsPerHost; got != 2000 {
		t.Fatalf("WithMaxIdleConnsPerHost: %d", got)
	}
}

// writeErr answers like the gateway: status, X-Amzn-ErrorType, JSON body.
func writeErr(w http.ResponseWriter, status int, typ, body string) {
	if typ != "" {
		w.Header().Set(api.HeaderErrorType, typ)
	}
	w.Header().Set(api.HeaderRequestID, "req-1")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func TestErrorDecoding(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		header    string
		body      string
		want      APIError
		throttle  bool
		notFound  bool
		errSubstr string
	}{
		{
			name: "429 account limit", status: 429, header: "TooManyRequestsException",
			body:     `{"Type":"User","message":"Rate Exceeded.","Reason":"ConcurrentInvocationLimitExceeded"}`,
			want:     APIError{Status: 429, Type: "TooManyRequestsException", Message: "Rate Exceeded.", Reason: "ConcurrentInvocationLimitExceeded", RequestID: "req-1"},
			throttle: true, errSubstr: "TooManyRequestsException (ConcurrentInvocationLimitExceeded): Rate Exceeded.",
		},
		{
			name: "429 reserved", status: 429, header: "TooManyRequestsException",
			body:     `{"Type":"User","message":"Rate Exceeded.","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}`,
			want:     APIError{Status: 429, Type: "TooManyRequestsException", Message: "Rate Exceeded.", Reason: "ReservedFunctionConcurrentInvocationLimitExceeded", RequestID: "req-1"},
			throttle: true,
		},
		{
			name: "429 rate", status: 429, header: "TooManyRequestsException",
			body:     `{"Type":"User","message":"Rate Exceeded.","Reason":"FunctionInvocationRateLimitExceeded"}`,
			want:     APIError{Status: 429, Type: "TooManyRequestsException", Message: "Rate Exceeded.", Reason: "FunctionInvocationRateLimitExceeded", RequestID: "req-1"},
			throttle: true,
		},
		{
			name: "404 uses Message", status: 404, header: "ResourceNotFoundException",
			body:     `{"Type":"User","Message":"Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"}`,
			want:     APIError{Status: 404, Type: "ResourceNotFoundException", Message: "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope", RequestID: "req-1"},
			notFound: true,
		},
		{
			name: "500 no quorum uses Message", status: 500, header: "ServiceException",
			body: `{"Type":"Service","Message":"placement has no quorum"}`,
			want: APIError{Status: 500, Type: "ServiceException", Message: "placement has no quorum", RequestID: "req-1"},
		},
		{
			name: "502 no workers", status: 502, header: "ServiceException",
			body: `{"Type":"Service","Message":"no workers available"}`,
			want: APIError{Status: 502, Type: "ServiceException", Message: "no workers available", RequestID: "req-1"},
		},
		{
			name: "503 no workers", status: 503, header: "ServiceException",
			body: `{"Type":"Service","message":"no responders"}`,
			want: APIError{Status: 503, Type: "ServiceException", Message: "no responders", RequestID: "req-1"},
		},
		{
			name: "409 conflict", status: 409, header: "ResourceConflictException",
			body: `{"Type":"User","message":"Function already exist: hello"}`,
			want: APIError{Status: 409, Type: "ResourceConflictException", Message: "Function already exist: hello", RequestID: "req-1"},
		},
		{
			name: "400 invalid parameter", status: 400, header: "InvalidParameterValueException",
			body: `{"Type":"User","message":"Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."}`,
			want: APIError{Status: 400, Type: "InvalidParameterValueException", Message: "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100].", RequestID: "req-1"},
		},
		{
			name: "413 too large", status: 413, header: "RequestTooLargeException",
			body: `{"Type":"User","message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}`,
			want: APIError{Status: 413, Type: "RequestTooLargeException", Message: "Request must be smaller than 6291456 bytes for the InvokeFunction operation", RequestID: "req-1"},
		},
		{
			name: "header with namespace and suffix", status: 429, header: "aws.lambda#TooManyRequestsException:http://internal",
			body:     `{"message":"slow down"}`,
			want:     APIError{Status: 429, Type: "TooManyRequestsException", Message: "slow down", RequestID: "req-1"},
			throttle: true,
		},
		{
			name: "no header: body __type", status: 400, header: "",
			body: `{"__type":"InvalidRequestContentException","message":"Could not parse request body into json"}`,
			want: APIError{Status: 400, Type: "InvalidRequestContentException", Message: "Could not parse request body into json", RequestID: "req-1"},
		},
		{
			name: "no header: body Type is an exception name", status: 500, header: "",
			body: `{"Type":"ServiceException","Message":"boom"}`,
			want: APIError{Status: 500, Type: "ServiceException", Message: "boom", RequestID: "req-1"},
		},
		{
			name: "no header, Type User: from status", status: 429, header: "",
			body:     `{"Type":"User","message":"Rate Exceeded.","Reason":"ConcurrentInvocationLimitExceeded"}`,
			want:     APIError{Status: 429, Type: "TooManyRequestsException", Message: "Rate Exceeded.", Reason: "ConcurrentInvocationLimitExceeded", RequestID: "req-1"},
			throttle: true,
		},
		{
			name: "plain text from a proxy", status: 502, header: "",
			body: "<html>Bad Gateway</html>",
			want: APIError{Status: 502, Type: "ServiceException", Message: "<html>Bad Gateway</html>", RequestID: "req-1"},
		},
		{
			name: "empty body", status: 404, header: "",
			body:     "",
			want:     APIError{Status: 404, Type: "ResourceNotFoundException", Message: "Not Found", RequestID: "req-1"},
			notFound: true,
		},
		{
			name: "unknown 4xx", status: 418, header: "",
			body: `{}`,
			want: APIError{Status: 418, Type: "UnknownError", Message: "I'm a teapot", RequestID: "req-1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeErr(w, tc.status, tc.header, tc.body)
			}))
			_, err := c.Invoke(ctxT(t), "fn", []byte(`{}`), InvokeOptions{})
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("want *APIError, got %T %v", err, err)
			}
			if *ae != tc.want {
				t.Fatalf("got  %+v\nwant %+v", *ae, tc.want)
			}
			if ae.IsThrottle() != tc.throttle || IsThrottle(err) != tc.throttle {
				t.Errorf("IsThrottle = %v, want %v", ae.IsThrottle(), tc.throttle)
			}
			if ae.IsNotFound() != tc.notFound || IsNotFound(err) != tc.notFound {
				t.Errorf("IsNotFound = %v, want %v", ae.IsNotFound(), tc.notFound)
			}
			if tc.errSubstr != "" && !strings.Contains(err.Error(), tc.errSubstr) {
				t.Errorf("Error() = %q, want it to contain %q", err.Error(), tc.errSubstr)
			}
			// Control-plane calls decode errors the same way.
			_, err = c.GetFunction(ctxT(t), "fn")
			var ae2 *APIError
			if !errors.As(err, &ae2) || *ae2 != tc.want {
				t.Fatalf("GetFunction error: got %v, want %+v", err, tc.want)
			}
		})
	}
}

func TestErrorWrapsThroughFmt(t *testing.T) {
	err := fmt.Errorf("loading: %w", &APIError{Status: 429, Type: TypeTooManyRequests})
	if !IsThrottle(err) {
		t.Fatal("IsThrottle through %w")
	}
}

func TestInvokeSuccess(t *testing.T) {
	var gotPath, gotQuery, gotLogType, gotBody, gotCT string
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery = r.URL.EscapedPath(), r.URL.RawQuery
		gotLogType, gotCT = r.Header.Get(api.HeaderLogType), r.Header.Get("Content-Type")
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		h := w.Header()
		h.Set(api.HeaderRequestID, "rid-42")
		h.Set(api.HeaderExecutedVersion, "3")
		h.Set(api.HeaderLogResult, base64.StdEncoding.EncodeToString([]byte("START RequestId: rid-42\nEND RequestId: rid-42\n")))
		h.Set(api.HeaderCold, "true")
		h.Set(api.HeaderInitMs, "180.5")
		h.Set(api.HeaderDurationMs, "80.25")
		h.Set(api.HeaderBilledMs, "81")
		h.Set(api.HeaderSandbox, "sb-7")
		h.Set(api.HeaderWorker, "worker-2")
		io.WriteString(w, `{"hello":"world"}`)
	}))
	res, err := c.Invoke(ctxT(t), "fn:live", []byte(`{"x":1}`), InvokeOptions{Qualifier: "live", LogTail: true})
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/2015-03-31/functions/fn%3Alive/invocations" {
		t.Errorf("path %q", gotPath)
	}
	if gotQuery != "Qualifier=live" || gotLogType != "Tail" || gotBody != `{"x":1}` || gotCT != "application/octet-stream" {
		t.Errorf("query %q, log type %q, body %q, content type %q", gotQuery, gotLogType, gotBody, gotCT)
	}
	want := InvokeResult{
		StatusCode: 200, Payload: []byte(`{"hello":"world"}`), ExecutedVersion: "3", RequestID: "rid-42",
		LogTail: "START RequestId: rid-42\nEND RequestId: rid-42\n",
		Cold:    true, InitMs: 180.5, DurationMs: 80.25, BilledMs: 81, Sandbox: "sb-7", Worker: "worker-2",
	}
	if string(res.Payload) != string(want.Payload) {
		t.Errorf("payload %q", res.Payload)
	}
	res.Payload, want.Payload = nil, nil
	if !reflect.DeepEqual(*res, want) {
		t.Errorf("got  %+v\nwant %+v", *res, want)
	}
}

func TestInvokeFunctionErrorIsAResult(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderFunctionError, "Unhandled")
		w.Header().Set(api.HeaderCold, "false")
		io.WriteString(w, `{"errorMessage":"RequestId: x Error: Task timed out after 1.00 seconds","errorType":"Sandbox.Timedout"}`)
	}))
	res, err := c.Invoke(ctxT(t), "fn", nil, InvokeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.FunctionError != "Unhandled" || res.Cold {
		t.Fatalf("%+v", res)
	}
	typ, msg := res.FunctionErrorBody()
	if typ != "Sandbox.Timedout" || !strings.Contains(msg, "timed out") {
		t.Fatalf("body: %q %q", typ, msg)
	}
}

func TestInvokeNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, _ := New(url)
	_, err := c.Invoke(ctxT(t), "fn", nil, InvokeOptions{})
	var ae *APIError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("want a transport error, got %v", err)
	}
}

// controlPlane is a fake gateway for the control-plane calls: it checks the
// route and answers with contract shapes.
func controlPlane(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	fn := api.FunctionConfiguration{FunctionName: "hello", FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:hello", Runtime: "synthetic", MemorySize: 512, Timeout: 3, Version: "$LATEST", State: "Active"}
	settings := api.AccountSettings{AccountLimit: api.AccountLimit{ConcurrentExecutions: 1000, UnreservedConcurrentExecutions: 1000}}
	reserved := 0
	jsonOut := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("POST /2015-03-31/functions", func(w http.ResponseWriter, r *http.Request) {
		var in api.CreateFunctionInput
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.FunctionName == "" {
			writeErr(w, 400, "InvalidParameterValueException", `{"message":"bad"}`)
			return
		}
		if in.FunctionName == "hello" {
			writeErr(w, 409, "ResourceConflictException", `{"Type":"User","message":"Function already exist: hello"}`)
			return
		}
		out := fn
		out.FunctionName, out.MemorySize, out.Coldstart = in.FunctionName, in.MemorySize, in.Coldstart
		jsonOut(w, 201, out)
	})
	mux.HandleFunc("GET /2015-03-31/functions/", func(w http.ResponseWriter, r *http.Request) {
		jsonOut(w, 200, api.ListFunctionsOutput{Functions: []api.FunctionConfiguration{fn}})
	})
	mux.HandleFunc("GET /2015-03-31/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "hello" {
			writeErr(w, 404, "ResourceNotFoundException", `{"Type":"User","Message":"Function not found"}`)
			return
		}
		jsonOut(w, 200, api.GetFunctionOutput{Configuration: fn, Concurrency: &api.Concurrency{ReservedConcurrentExecutions: &reserved}})
	})
	mux.HandleFunc("DELETE /2015-03-31/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(204)
	})
	mux.HandleFunc("PUT /2017-10-31/functions/{name}/concurrency", func(w http.ResponseWriter, r *http.Request) {
		var in api.Concurrency
		json.NewDecoder(r.Body).Decode(&in)
		if in.ReservedConcurrentExecutions == nil {
			writeErr(w, 400, "InvalidParameterValueException", `{"message":"missing"}`)
			return
		}
		reserved = *in.ReservedConcurrentExecutions
		jsonOut(w, 200, in)
	})
	mux.HandleFunc("DELETE /2017-10-31/functions/{name}/concurrency", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(204)
	})
	mux.HandleFunc("GET /2019-09-30/functions/{name}/concurrency", func(w http.ResponseWriter, r *http.Request) {
		jsonOut(w, 200, api.Concurrency{ReservedConcurrentExecutions: &reserved})
	})
	mux.HandleFunc("GET /2016-08-19/account-settings/", func(w http.ResponseWriter, r *http.Request) {
		jsonOut(w, 200, settings)
	})
	mux.HandleFunc("PUT /coldstart/v1/account/limit", func(w http.ResponseWriter, r *http.Request) {
		var in api.SetLimitInput
		json.NewDecoder(r.Body).Decode(&in)
		settings.AccountLimit.ConcurrentExecutions = in.ConcurrentExecutions
		jsonOut(w, 200, settings)
	})
	mux.HandleFunc("GET /coldstart/v1/status", func(w http.ResponseWriter, r *http.Request) {
		jsonOut(w, 200, api.Status{Leader: "placement-1", Nodes: []api.Node{{ID: "placement-1", Role: "placement", State: "leader"}}})
	})
	return mux
}

func TestControlPlane(t *testing.T) {
	c := newTestClient(t, controlPlane(t))
	ctx := ctxT(t)

	cfg, err := c.CreateFunction(ctx, api.CreateFunctionInput{FunctionName: "new", Runtime: "synthetic", MemorySize: 256, Coldstart: &api.SyntheticConfig{Duration: "80ms"}})
	if err != nil || cfg.FunctionName != "new" || cfg.MemorySize != 256 || cfg.Coldstart == nil || cfg.Coldstart.Duration != "80ms" {
		t.Fatalf("create: %+v %v", cfg, err)
	}
	_, err = c.CreateFunction(ctx, api.CreateFunctionInput{FunctionName: "hello", Runtime: "synthetic"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Type != TypeResourceConflict || ae.Status != 409 {
		t.Fatalf("create existing: %v", err)
	}
	got, err := c.GetFunction(ctx, "hello")
	if err != nil || got.Configuration.FunctionName != "hello" || got.Concurrency == nil {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := c.GetFunction(ctx, "nope"); !IsNotFound(err) {
		t.Fatalf("get missing: %v", err)
	}
	list, err := c.ListFunctions(ctx)
	if err != nil || len(list.Functions) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	conc, err := c.PutConcurrency(ctx, "hello", 0) // 0 is a real value: throttle everything
	if err != nil || conc.ReservedConcurrentExecutions == nil || *conc.ReservedConcurrentExecutions != 0 {
		t.Fatalf("put concurrency: %+v %v", conc, err)
	}
	if _, err := c.PutConcurrency(ctx, "hello", 50); err != nil {
		t.Fatal(err)
	}
	conc, err = c.GetConcurrency(ctx, "hello")
	if err != nil || *conc.ReservedConcurrentExecutions != 50 {
		t.Fatalf("get concurrency: %+v %v", conc, err)
	}
	if err := c.DeleteConcurrency(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteFunction(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	st, err := c.GetAccountSettings(ctx)
	if err != nil || st.AccountLimit.ConcurrentExecutions != 1000 {
		t.Fatalf("settings: %+v %v", st, err)
	}
	st, err = c.SetAccountLimit(ctx, 50)
	if err != nil || st.AccountLimit.ConcurrentExecutions != 50 {
		t.Fatalf("set limit: %+v %v", st, err)
	}
	status, err := c.Status(ctx)
	if err != nil || status.Leader != "placement-1" {
		t.Fatalf("status: %+v %v", status, err)
	}
}
