package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// MaxLine is the longest input line the decoders accept; a longer line is
// reported as malformed rather than read into memory.
const MaxLine = 1 << 20

// maxTime bounds the instants a record may carry (Unix ns, the year 2116),
// so that a window around any of them stays within int64.
const maxTime = 1 << 62

// DecodeError is one input line that is not a usable record (or limit
// change). The line is skipped; the rest of the input is still read.
type DecodeError struct {
	Line int    `json:"line"`  // 1-based
	Err  string `json:"error"` // why it was rejected
	Text string `json:"text"`  // the start of the line
}

func (e DecodeError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Err) }

// DecodeRecords reads api.Record JSON lines. Blank lines are skipped. A line
// that does not parse, or parses to a record that cannot be checked (see
// Validate), is reported with its line number and skipped. The error is set
// only when r itself fails; the records read before are still returned.
func DecodeRecords(r io.Reader) ([]api.Record, []DecodeError, error) {
	var recs []api.Record
	var bad []DecodeError
	err := eachLine(r, func(n int, line []byte, tooLong bool) {
		if tooLong {
			bad = append(bad, lineError(n, line, fmt.Errorf("line longer than %d bytes", MaxLine)))
			return
		}
		rec, err := ParseRecord(line)
		if err != nil {
			bad = append(bad, lineError(n, line, err))
			return
		}
		recs = append(recs, rec)
	})
	return recs, bad, err
}

// ParseRecord decodes one JSON line into a record and validates it.
func ParseRecord(line []byte) (api.Record, error) {
	var rec api.Record
	if err := json.Unmarshal(line, &rec); err != nil {
		return api.Record{}, err
	}
	if err := Validate(rec); err != nil {
		return api.Record{}, err
	}
	return rec, nil
}

// Validate says whether a record carries what the checks need: an account,
// and the instants that bound the capacity it held. A fenced record may end
// before it started (it started after its lease expired): that is a
// finding of the checks, not a malformed record.
func Validate(r api.Record) error {
	if r.Account == "" {
		return errors.New("record without an account")
	}
	if r.ReceivedNs <= 0 {
		return errors.New("record without received_ns")
	}
	if r.ReceivedNs > maxTime || r.GrantedNs > maxTime || r.StartNs > maxTime || r.EndNs > maxTime || r.ReleasedNs > maxTime {
		return errors.New("an instant past the year 2116")
	}
	if r.Outcome == api.OutcomeThrottled {
		return nil
	}
	switch {
	case r.StartNs <= 0 || r.EndNs <= 0:
		return errors.New("record without start_ns or end_ns")
	case r.GrantedNs < 0 || r.ReleasedNs < 0:
		return errors.New("negative granted_ns or released_ns")
	case r.Outcome != api.OutcomeFenced && r.StartNs > r.EndNs:
		return fmt.Errorf("start_ns %d after end_ns %d", r.StartNs, r.EndNs)
	case r.Outcome != api.OutcomeFenced && HeldFrom(r) > r.EndNs:
		return fmt.Errorf("received_ns %d after end_ns %d", r.ReceivedNs, r.EndNs)
	}
	return nil
}

// eachLine calls fn for every non-blank line of r, without its line ending.
// A line longer than MaxLine is passed (truncated) with tooLong set.
func eachLine(r io.Reader, fn func(n int, line []byte, tooLong bool)) error {
	br := bufio.NewReaderSize(r, 64*1024)
	var buf []byte
	n := 0
	for {
		buf = buf[:0]
		tooLong := false
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			if !tooLong {
				if len(buf)+len(chunk) > MaxLine {
					tooLong = true
					buf = append(buf, chunk[:min(len(chunk), 200)]...)
				} else {
					buf = append(buf, chunk...)
				}
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if len(buf) > 0 || err == nil {
			n++
		}
		if line := bytes.TrimRight(buf, "\r\n"); len(bytes.TrimSpace(line)) > 0 {
			fn(n, line, tooLong)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read line %d: %w", n, err)
		}
	}
}

func lineError(n int, line []byte, err error) DecodeError {
	return DecodeError{Line: n, Err: err.Error(), Text: snippet(line, 80)}
}

// snippet is the start of a line, cut on a rune boundary.
func snippet(b []byte, max int) string {
	if len(b) <= max {
		return string(b)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut]) + "..."
}
