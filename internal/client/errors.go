package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// Exception names the client itself refers to.
const (
	TypeTooManyRequests  = "TooManyRequestsException"
	TypeResourceNotFound = "ResourceNotFoundException"
	TypeResourceConflict = "ResourceConflictException"
	TypeService          = "ServiceException"
	TypeUnknown          = "UnknownError"
)

// APIError is a non-2xx answer from the gateway.
type APIError struct {
	Status    int    // HTTP status
	Type      string // Lambda exception name, e.g. TooManyRequestsException
	Message   string
	Reason    string // throttle reason on 429, e.g. ConcurrentInvocationLimitExceeded
	RequestID string
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Type)
	if e.Reason != "" {
		b.WriteString(" (" + e.Reason + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	fmt.Fprintf(&b, " [HTTP %d", e.Status)
	if e.RequestID != "" {
		b.WriteString(", request id " + e.RequestID)
	}
	b.WriteString("]")
	return b.String()
}

// IsThrottle reports whether the gateway refused for a concurrency or rate
// limit (429 TooManyRequestsException).
func (e *APIError) IsThrottle() bool {
	return e.Status == http.StatusTooManyRequests || e.Type == TypeTooManyRequests
}

// IsNotFound reports a ResourceNotFoundException (404).
func (e *APIError) IsNotFound() bool {
	return e.Status == http.StatusNotFound || e.Type == TypeResourceNotFound
}

// IsThrottle reports whether err is (or wraps) a throttling *APIError.
func IsThrottle(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.IsThrottle()
}

// IsNotFound reports whether err is (or wraps) a not-found *APIError.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.IsNotFound()
}

// errorBody accepts every member spelling seen on Lambda error bodies:
// "message" and "Message" (api.ErrorBody), the SDKs' "__type"/"code", and a
// runtime-style "errorMessage".
type errorBody struct {
	api.ErrorBody
	JSONType     string `json:"__type,omitempty"`
	Code         string `json:"code,omitempty"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// decodeError builds an *APIError from a non-2xx response. The exception
// name comes from X-Amzn-ErrorType (as the AWS SDKs read it), then the
// body's __type/code, then the body's Type when it is an exception name
// (Lambda's Type is usually just "User"), then the status.
func decodeError(resp *http.Response) *APIError {
	e := &APIError{Status: resp.StatusCode, RequestID: requestID(resp.Header)}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	var body errorBody
	parsed := json.Unmarshal(raw, &body) == nil

	e.Type = sanitizeErrorCode(resp.Header.Get(api.HeaderErrorType))
	if parsed {
		if e.Type == "" {
			e.Type = sanitizeErrorCode(body.JSONType)
		}
		if e.Type == "" {
			e.Type = sanitizeErrorCode(body.Code)
		}
		if e.Type == "" && strings.HasSuffix(body.Type, "Exception") {
			e.Type = body.Type
		}
		e.Message = body.Text()
		if e.Message == "" {
			e.Message = body.ErrorMessage
		}
		e.Reason = body.Reason
	} else if txt := strings.TrimSpace(string(raw)); txt != "" {
		// A proxy or a crashed handler answering in plain text or HTML.
		e.Message = truncate(txt, 512)
	}
	if e.Type == "" {
		e.Type = typeForStatus(resp.StatusCode)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return e
}

// sanitizeErrorCode mirrors the AWS SDKs: keep the text before the first
// ':' and after the last '#' ("aws.protocol#Name:http://..." -> "Name").
func sanitizeErrorCode(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func typeForStatus(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return TypeTooManyRequests
	case status == http.StatusNotFound:
		return TypeResourceNotFound
	case status == http.StatusConflict:
		return TypeResourceConflict
	case status >= 500:
		return TypeService
	}
	return TypeUnknown
}

func requestID(h http.Header) string {
	if v := h.Get(api.HeaderRequestID); v != "" {
		return v
	}
	return h.Get("X-Amz-RequestId")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
