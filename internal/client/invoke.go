package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// Invocation types (X-Amz-Invocation-Type).
const (
	InvocationRequestResponse = "RequestResponse"
	InvocationEvent           = "Event"
	InvocationDryRun          = "DryRun"
)

// InvokeOptions are the optional parts of an Invoke request.
type InvokeOptions struct {
	Qualifier      string // version or alias; empty means $LATEST
	LogTail        bool   // ask for the last 4 KB of the log (X-Amz-Log-Type: Tail)
	InvocationType string // RequestResponse (default), Event or DryRun
}

// InvokeResult is a 2xx Invoke answer. A function error is still a result
// (HTTP 200 with FunctionError set), not a Go error, as in Lambda.
type InvokeResult struct {
	StatusCode      int
	Payload         []byte
	FunctionError   string // "Unhandled" etc.; empty when the function succeeded
	ExecutedVersion string
	RequestID       string
	LogTail         string // decoded X-Amz-Log-Result
	// coldstart's headers. A gateway that does not send them (AWS itself)
	// leaves them zero, so Cold reads as false.
	Cold       bool
	InitMs     float64
	DurationMs float64
	BilledMs   int64
	Sandbox    string
	Worker     string
}

// FunctionErrorBody parses the payload of a function error
// ({"errorMessage","errorType"}). Both are empty when it does not parse.
func (r *InvokeResult) FunctionErrorBody() (errorType, errorMessage string) {
	var b struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(r.Payload, &b) != nil {
		return "", ""
	}
	return b.ErrorType, b.ErrorMessage
}

// Invoke calls a function. Non-2xx answers (throttles, missing functions,
// platform failures) are returned as *APIError.
func (c *Client) Invoke(ctx context.Context, name string, payload []byte, opts InvokeOptions) (*InvokeResult, error) {
	u := c.base + functionPath(name) + "/invocations"
	if opts.Qualifier != "" {
		u += "?Qualifier=" + url.QueryEscape(opts.Qualifier)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("client: invoke %s: %w", name, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("User-Agent", c.userAgent)
	if opts.LogTail {
		req.Header.Set(api.HeaderLogType, "Tail")
	}
	if opts.InvocationType != "" {
		req.Header.Set(api.HeaderInvocationType, opts.InvocationType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: invoke %s: %w", name, err)
	}
	defer drainClose(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, decodeError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPayloadBytes))
	if err != nil {
		return nil, fmt.Errorf("client: invoke %s: read answer: %w", name, err)
	}
	h := resp.Header
	r := &InvokeResult{
		StatusCode:      resp.StatusCode,
		Payload:         body,
		FunctionError:   h.Get(api.HeaderFunctionError),
		ExecutedVersion: h.Get(api.HeaderExecutedVersion),
		RequestID:       requestID(h),
		InitMs:          parseFloatHeader(h, api.HeaderInitMs),
		DurationMs:      parseFloatHeader(h, api.HeaderDurationMs),
		Sandbox:         h.Get(api.HeaderSandbox),
		Worker:          h.Get(api.HeaderWorker),
	}
	r.Cold, _ = strconv.ParseBool(strings.TrimSpace(h.Get(api.HeaderCold)))
	if v := strings.TrimSpace(h.Get(api.HeaderBilledMs)); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			r.BilledMs = n
		} else if f, err := strconv.ParseFloat(v, 64); err == nil {
			r.BilledMs = int64(f + 0.5)
		}
	}
	if v := h.Get(api.HeaderLogResult); v != "" {
		if dec, err := base64.StdEncoding.DecodeString(v); err == nil {
			r.LogTail = string(dec)
		} else {
			r.LogTail = v // not base64: show it as sent rather than lose it
		}
	}
	return r, nil
}
