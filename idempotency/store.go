package idempotency

import (
	"context"
	"time"
)

// Store is the persistence layer (Powertools' BasePersistenceLayer minus the
// key and hash logic, which stays in this package so every store computes
// the same keys). RedisStore is the implementation shipped here; tests and
// other backends can provide their own.
type Store interface {
	// PutInProgress claims rec.Key for a new attempt. It returns nil when
	// the attempt may run the handler: the key was free, or held by an
	// orphan (an INPROGRESS record past its in-progress expiry, an EXPIRED
	// record not yet evicted, an undecodable value) that this call took
	// over. It returns an *ExistsError when a live record holds the key,
	// an error wrapping ErrAlreadyInProgress when another attempt is taking
	// the orphan over, ErrInconsistentState when the record vanished
	// between the write and the read, and any other error when the store
	// failed.
	PutInProgress(ctx context.Context, rec Record, now time.Time) error
	// Get returns the record stored under key, or ErrNotFound.
	Get(ctx context.Context, key string) (Record, error)
	// PutCompleted overwrites the record unconditionally with rec (status
	// COMPLETED, the response, a fresh expiration).
	PutCompleted(ctx context.Context, rec Record, now time.Time) error
	// Delete removes the record so a retry runs the handler again.
	Delete(ctx context.Context, key string) error
}

// ExistsError is PutInProgress's answer when a live record (COMPLETED and
// unexpired, or INPROGRESS before its in-progress expiry) holds the key.
// Record is the record the store read, when it read one; without it the
// caller reads the record itself.
type ExistsError struct {
	Record *Record
}

func (e *ExistsError) Error() string { return "idempotency: record already exists" }
