package idempotency

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Status is a record's state. INPROGRESS and COMPLETED are stored; EXPIRED is
// derived on read when the record's expiration has passed but the store has
// not evicted it yet (Powertools' DataRecord.status does the same).
type Status string

const (
	StatusInProgress Status = "INPROGRESS"
	StatusCompleted  Status = "COMPLETED"
	StatusExpired    Status = "EXPIRED"
)

// Record is one idempotency record. The JSON field names are Powertools'
// Redis attribute defaults, so records written by a Python or TypeScript
// function sharing the Redis are read here and the other way round.
type Record struct {
	// Key is the idempotency key; it is the Redis key, not part of the value.
	Key    string `json:"-"`
	Status Status `json:"status"`
	// Expiration is when the record stops deduplicating, in epoch seconds.
	Expiration int64 `json:"expiration"`
	// InProgressExpiration is when an INPROGRESS record is considered
	// abandoned (the attempt's deadline), in epoch milliseconds. 0 = absent.
	InProgressExpiration int64 `json:"in_progress_expiration,omitempty"`
	// Data is the handler's response (JSON text for Wrap) on a COMPLETED
	// record. Powertools stores it as a JSON string holding JSON.
	Data string `json:"data,omitempty"`
	// DataEncoding is "base64" when Data had to be base64 encoded because
	// the response was not valid UTF-8 (a JSON string cannot carry it).
	// Powertools never writes it: its responses are always JSON text.
	DataEncoding string `json:"data_encoding,omitempty"`
	// Validation is the hash of the PayloadValidationPath selection.
	Validation string `json:"validation,omitempty"`
}

// StatusAt is the record's status as seen at now: EXPIRED once now is past
// Expiration (whole seconds, as Powertools compares them).
func (r Record) StatusAt(now time.Time) Status {
	if r.Expiration != 0 && now.Unix() > r.Expiration {
		return StatusExpired
	}
	return r.Status
}

// InProgressLive reports whether r is an INPROGRESS record whose attempt may
// still be running at now.
func (r Record) InProgressLive(now time.Time) bool {
	return r.StatusAt(now) == StatusInProgress &&
		r.InProgressExpiration != 0 && r.InProgressExpiration > now.UnixMilli()
}

// Response returns the stored response bytes.
func (r Record) Response() ([]byte, error) {
	if r.DataEncoding == "base64" {
		return base64.StdEncoding.DecodeString(r.Data)
	}
	return []byte(r.Data), nil
}

// setResponse stores b, base64 encoding it only when a JSON string could
// not hold it unchanged.
func (r *Record) setResponse(b []byte) {
	if utf8.Valid(b) {
		r.Data, r.DataEncoding = string(b), ""
		return
	}
	r.Data, r.DataEncoding = base64.StdEncoding.EncodeToString(b), "base64"
}

var errBadRecord = errors.New("idempotency: undecodable record")

// EncodeRecord is the value stored under the record's key.
func EncodeRecord(r Record) ([]byte, error) {
	return json.Marshal(r)
}

// DecodeRecord parses a stored value. It rejects values that are not a
// record this package understands (bad JSON, unknown status), which the
// Redis store then treats as an orphan, as Powertools treats a JSON decode
// failure.
func DecodeRecord(key string, b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", errBadRecord, err)
	}
	switch r.Status {
	case StatusInProgress, StatusCompleted:
	default:
		return Record{}, fmt.Errorf("%w: status %q", errBadRecord, r.Status)
	}
	if r.DataEncoding != "" && r.DataEncoding != "base64" {
		return Record{}, fmt.Errorf("%w: data_encoding %q", errBadRecord, r.DataEncoding)
	}
	r.Key = key
	return r, nil
}
