package process

import (
	"encoding/json"
	"unicode/utf8"
)

// maxErrorTypeLen bounds an errorType taken from a function: it ends up in headers
// and metrics labels downstream.
const maxErrorTypeLen = 256

// functionError turns what a runtime POSTed to /invocation/{id}/error or
// /init/error into the errorType and the error body the caller returns. Lambda
// passes a JSON body through unchanged and takes its errorType, falling back to
// the Lambda-Runtime-Function-Error-Type header; anything else (not JSON, not an
// object, no type) is wrapped so the caller always gets
// {"errorMessage","errorType"} JSON and a non-empty type.
func functionError(body []byte, headerType string) (errType string, payload []byte) {
	var doc struct {
		Type    *string `json:"errorType"`
		Message *string `json:"errorMessage"`
	}
	isObj := len(body) > 0 && json.Valid(body) && firstNonSpace(body) == '{'
	if isObj {
		_ = json.Unmarshal(body, &doc)
	}
	switch {
	case isObj && doc.Type != nil && *doc.Type != "":
		errType = *doc.Type
	case headerType != "":
		errType = headerType
	default:
		errType = "Unhandled"
	}
	errType = cleanType(errType)
	if isObj && doc.Type != nil && *doc.Type != "" {
		return errType, body
	}
	msg := ""
	if isObj && doc.Message != nil {
		msg = *doc.Message
	} else if !isObj {
		msg = string(body)
	}
	return errType, errorBody(errType, msg)
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// cleanType keeps an errorType printable and bounded: invalid UTF-8 and control
// characters are dropped.
func cleanType(t string) string {
	out := make([]rune, 0, len(t))
	n := 0
	for _, r := range t {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			continue
		}
		n += utf8.RuneLen(r)
		if n > maxErrorTypeLen {
			break
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return "Unhandled"
	}
	return string(out)
}

// errorBody is Lambda's error document.
func errorBody(errType, msg string) []byte {
	b, _ := json.Marshal(struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}{msg, errType})
	return b
}
