package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// lambdaError is an invocation or control-plane error in Lambda's wire
// format: status, X-Amzn-ErrorType, and a JSON body whose message member is
// spelled the way each exception's shape spells it.
type lambdaError struct {
	Status  int
	Type    string
	Message string
	Reason  string
}

func (e *lambdaError) Error() string { return e.Type + ": " + e.Message }

func errNotFound(msg string) *lambdaError {
	return &lambdaError{http.StatusNotFound, "ResourceNotFoundException", msg, ""}
}
func errInvalidParam(msg string) *lambdaError {
	return &lambdaError{http.StatusBadRequest, "InvalidParameterValueException", msg, ""}
}
func errInvalidContent(msg string) *lambdaError {
	return &lambdaError{http.StatusBadRequest, "InvalidRequestContentException", msg, ""}
}
func errService(msg string) *lambdaError {
	return &lambdaError{http.StatusInternalServerError, "ServiceException", msg, ""}
}
func errTooLarge(msg string) *lambdaError {
	return &lambdaError{http.StatusRequestEntityTooLarge, "RequestTooLargeException", msg, ""}
}
func errThrottle(reason string) *lambdaError {
	return &lambdaError{http.StatusTooManyRequests, "TooManyRequestsException", "Rate Exceeded.", reason}
}

// errOverloaded answers a request past the gateway's in-flight cap.
func errOverloaded() *lambdaError {
	return &lambdaError{http.StatusServiceUnavailable, "ServiceException", "gateway overloaded, retry", ""}
}

// errBodyTimeout answers a request whose body did not arrive in time.
// RequestTimeoutException is the AWS-wide name the SDKs treat as transient.
func errBodyTimeout(msg string) *lambdaError {
	return &lambdaError{http.StatusRequestTimeout, "RequestTimeoutException", msg, ""}
}

// statusOf maps a Lambda exception name to its HTTP status.
func statusOf(t string) int {
	switch t {
	case "ResourceNotFoundException":
		return http.StatusNotFound
	case "ResourceConflictException":
		return http.StatusConflict
	case "InvalidParameterValueException", "InvalidRequestContentException",
		// The platform's idempotency: another payload under a completed
		// key, or no key in the invocation. Not worth retrying.
		"IdempotencyValidationException", "IdempotencyKeyException":
		return http.StatusBadRequest
	case "TooManyRequestsException":
		return http.StatusTooManyRequests
	case "RequestTooLargeException":
		return http.StatusRequestEntityTooLarge
	case "RequestTimeoutException":
		return http.StatusRequestTimeout
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, e *lambdaError) {
	body := api.ErrorBody{Type: "User", Reason: e.Reason}
	switch e.Type {
	case "ResourceNotFoundException", "ServiceException":
		body.Msg = e.Message
	default:
		body.Message = e.Message
	}
	if e.Status >= 500 {
		body.Type = "Service"
	}
	h := w.Header()
	h.Set(api.HeaderErrorType, e.Type)
	h.Set("Content-Type", "application/json")
	if e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(e.Status)
	b, _ := json.Marshal(body)
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(v)
	w.Write(b)
}
