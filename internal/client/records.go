package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// Records follows the gateway's record stream (one api.Record per finished
// invocation, NDJSON) and calls fn for each record, in stream order, until:
//   - ctx is done: Records returns ctx.Err();
//   - fn returns an error: Records returns it (return ErrStop to end quietly,
//     Records then returns nil);
//   - the gateway ends the stream: Records returns nil;
//   - the connection breaks or a line is not a record: Records returns that error.
//
// function filters the stream to one function when non-empty. Blank lines
// (keep-alives) are skipped.
func (c *Client) Records(ctx context.Context, function string, fn func(api.Record) error) error {
	return c.QueryRecords(ctx, RecordsQuery{Function: function}, fn)
}

// RecordsQuery selects records. The zero query is the live stream of every
// record the caller may see.
type RecordsQuery struct {
	Function  string // only this function's
	RequestID string // only this request's
	// Since, when set, reads the records the cluster kept from then on
	// first: "all", a duration before now ("10m") or an RFC 3339 time (see
	// ParseSince). Empty: only records finishing from now on.
	Since string
	// Follow, with Since, goes on with new records after the kept ones;
	// without it the stream ends once they are read. Without Since the
	// stream always follows.
	Follow bool
}

func (q RecordsQuery) values() url.Values {
	v := url.Values{}
	if q.Function != "" {
		v.Set("function", q.Function)
	}
	if q.RequestID != "" {
		v.Set("request_id", q.RequestID)
	}
	if q.Since != "" {
		v.Set("since", q.Since)
		if q.Follow {
			v.Set("follow", "true")
		}
	}
	return v
}

// ParseSince checks a RecordsQuery.Since: "all", a positive duration or an
// RFC 3339 time. The gateway resolves a duration against its own clock,
// the one records are stamped with.
func ParseSince(s string) error {
	if s == "all" {
		return nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return fmt.Errorf("--since %q: a duration must be positive", s)
		}
		return nil
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return nil
	}
	return fmt.Errorf("--since %q: want all, a duration (10m, 2h) or an RFC 3339 time (2006-01-02T15:04:05Z)", s)
}

// QueryRecords is Records for the records q selects: it returns nil when
// the gateway ends the stream, as it does after the kept records of a
// query with Since and without Follow.
func (c *Client) QueryRecords(ctx context.Context, q RecordsQuery, fn func(api.Record) error) error {
	st, err := c.OpenRecordsQuery(ctx, q)
	if err != nil {
		return err
	}
	defer st.Close()
	for {
		rec, err := st.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if ferr := fn(rec); ferr != nil {
			if errors.Is(ferr, ErrStop) {
				return nil
			}
			return ferr
		}
	}
}

// RecordStream is an open records stream. Not safe for concurrent use.
type RecordStream struct {
	ctx  context.Context
	body io.ReadCloser
	br   *bufio.Reader
	line []byte
}

// OpenRecords opens the records stream and returns once the gateway has
// answered (so invocations made after it returns are in the stream, provided
// the gateway subscribes before it sends its headers). Close it when done.
func (c *Client) OpenRecords(ctx context.Context, function string) (*RecordStream, error) {
	return c.OpenRecordsQuery(ctx, RecordsQuery{Function: function})
}

// OpenRecordsQuery is OpenRecords for the records q selects. With Since,
// once it returns every record stored afterwards is in the stream too.
func (c *Client) OpenRecordsQuery(ctx context.Context, q RecordsQuery) (*RecordStream, error) {
	u := c.base + api.PathRecords
	if v := q.values(); len(v) > 0 {
		u += "?" + v.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("client: records: %w", err)
	}
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("client: records: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer drainClose(resp.Body)
		return nil, decodeError(resp)
	}
	return &RecordStream{ctx: ctx, body: resp.Body, br: bufio.NewReaderSize(resp.Body, 64*1024)}, nil
}

// Next returns the next record. It returns io.EOF when the gateway ended the
// stream, ctx.Err() when the context is done, or the read or decode error.
func (s *RecordStream) Next() (api.Record, error) {
	for {
		var err error
		s.line, err = readLine(s.br, s.line[:0])
		if err != nil && !errors.Is(err, io.EOF) {
			if s.ctx.Err() != nil {
				return api.Record{}, s.ctx.Err()
			}
			return api.Record{}, fmt.Errorf("client: records: %w", err)
		}
		if len(bytes.TrimSpace(s.line)) > 0 {
			var rec api.Record
			if uerr := json.Unmarshal(s.line, &rec); uerr != nil {
				return api.Record{}, fmt.Errorf("client: records: bad line %q: %w", truncate(string(s.line), 120), uerr)
			}
			return rec, nil
		}
		if err != nil { // io.EOF
			if s.ctx.Err() != nil {
				return api.Record{}, s.ctx.Err()
			}
			return api.Record{}, io.EOF
		}
	}
}

// Close ends the stream; closing the connection is what tells the gateway
// the client is gone (the stream never ends by itself).
func (s *RecordStream) Close() error { return s.body.Close() }

// ErrStop, returned by a Records callback, ends the stream without error.
var ErrStop = errors.New("client: stop")

// readLine appends one line (without its newline) to buf. A line longer than
// maxRecordLine is an error rather than unbounded memory.
func readLine(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxRecordLine {
			return nil, fmt.Errorf("record line longer than %d bytes", maxRecordLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), err
	}
}
