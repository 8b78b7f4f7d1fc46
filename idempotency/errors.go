package idempotency

import "errors"

// The errors a wrapped handler can return instead of running (or after
// running) the handler. Callers branch on them with errors.Is; the messages
// follow Powertools' so logs read the same in every language.
var (
	// ErrAlreadyInProgress: another attempt with the same key is running
	// (its in-progress expiry is in the future) or is taking over an orphaned
	// record right now. Safe to retry later.
	ErrAlreadyInProgress = errors.New("Execution already in progress")

	// ErrValidation: a record exists for the key but was stored for a
	// different payload (PayloadValidationPath hashes differ).
	ErrValidation = errors.New("Payload does not match stored record for this event key")

	// ErrNoKey: EventKeyPath selected nothing and RaiseOnNoKey is set.
	ErrNoKey = errors.New("No data found to create a hashed idempotency_key")

	// ErrInconsistentState: the record changed between the conditional put
	// and the read (deleted or expired in between). Retried internally up to
	// maxRetries times before it reaches the caller.
	ErrInconsistentState = errors.New("idempotency: save in progress and get record returned inconsistent results")

	// ErrPersistence: the store failed (for Redis: unreachable, timeout,
	// protocol error). Before the handler runs this fails closed: the handler
	// does not run without a record.
	ErrPersistence = errors.New("idempotency: persistence layer error")

	// ErrNotFound is returned by Store.Get when no record exists for a key.
	ErrNotFound = errors.New("idempotency: record not found")
)
