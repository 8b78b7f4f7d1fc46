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
	u := c.base + api.PathRecords
	if function != "" {
		u += "?function=" + url.QueryEscape(function)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("client: records: %w", err)
	}
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("client: records: %w", err)
	}
	// No drain here: the stream never ends, closing the body is what tells
	// the gateway we are gone.
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	br := bufio.NewReaderSize(resp.Body, 64*1024)
	var line []byte
	for {
		line = line[:0]
		line, err = readLine(br, line)
		if len(bytes.TrimSpace(line)) > 0 {
			var rec api.Record
			if uerr := json.Unmarshal(line, &rec); uerr != nil {
				return fmt.Errorf("client: records: bad line %q: %w", truncate(string(line), 120), uerr)
			}
			if ferr := fn(rec); ferr != nil {
				if errors.Is(ferr, ErrStop) {
					return nil
				}
				return ferr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("client: records: %w", err)
		}
	}
}

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
