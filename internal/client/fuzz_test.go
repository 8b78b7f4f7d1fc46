package client

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzDecodeError: any status, header and body gives an *APIError with a
// type and a message, and never panics.
func FuzzDecodeError(f *testing.F) {
	f.Add(429, "TooManyRequestsException", `{"Type":"User","message":"Rate Exceeded.","Reason":"ConcurrentInvocationLimitExceeded"}`)
	f.Add(404, "ResourceNotFoundException", `{"Type":"User","Message":"Function not found"}`)
	f.Add(500, "", `{"__type":"aws#ServiceException:x","Message":"no quorum"}`)
	f.Add(502, "", "<html>bad gateway</html>")
	f.Add(418, "a:b#c", `{"message":123}`)
	f.Fuzz(func(t *testing.T, status int, header, body string) {
		if status < 100 || status > 999 {
			return
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}
		resp.Header.Set("X-Amzn-ErrorType", header)
		e := decodeError(resp)
		if e.Status != status || e.Type == "" || e.Message == "" {
			t.Fatalf("%+v", e)
		}
		_ = e.Error()
	})
}

// FuzzRecordStream: any byte stream yields records or an error, never a
// panic or a hang.
func FuzzRecordStream(f *testing.F) {
	f.Add("{\"request_id\":\"a\",\"cold\":true}\n\n{\"request_id\":\"b\"}")
	f.Add("not json\n")
	f.Add("\r\n\r\n")
	f.Fuzz(func(t *testing.T, data string) {
		s := &RecordStream{ctx: context.Background(), body: io.NopCloser(nil), br: bufio.NewReader(strings.NewReader(data))}
		for i := 0; i <= len(data)+1; i++ {
			if _, err := s.Next(); err != nil {
				return
			}
		}
		t.Fatal("more records than lines")
	})
}
