// Package quota is the pure limit math of coldstart: account concurrency,
// reserved concurrency (cap and carve-out), the per-function scaling rate, the
// throttle reasons Lambda reports, and the choice of an idle sandbox to reclaim.
//
// Nothing here does I/O or reads a clock: callers pass the time in. The
// placement FSM and the simulator both drive this code, which is what keeps
// the simulator honest about the cluster's behaviour.
package quota

import (
	"errors"
	"fmt"
	"time"
)

// Reason is the ThrottleReason Lambda puts in a 429 body.
type Reason string

const (
	ReasonNone                 Reason = ""
	ReasonAccountConcurrency   Reason = "ConcurrentInvocationLimitExceeded"
	ReasonReservedConcurrency  Reason = "ReservedFunctionConcurrentInvocationLimitExceeded"
	ReasonFunctionRate         Reason = "FunctionInvocationRateLimitExceeded"
	ReasonReservedFunctionRate Reason = "ReservedFunctionInvocationRateLimitExceeded"
)

const (
	// DefaultAccountLimit is Lambda's default regional concurrency quota.
	DefaultAccountLimit = 1000
	// UnreservedMinimum is the unreserved concurrency an account must keep.
	UnreservedMinimum = 100
	// DefaultScaleBurst and DefaultScaleWindow: 1000 new sandboxes per 10 s per
	// function, refilled continuously (Lambda's scaling rate since Nov 2023).
	DefaultScaleBurst  = 1000
	DefaultScaleWindow = 10 * time.Second
)

// Account is what the admission rule needs to know about an account.
type Account struct {
	Limit         int // account concurrency limit
	ReservedTotal int // sum of reserved concurrency over its functions
	Sandboxes     int // live sandboxes of all its functions
	Unreserved    int // live sandboxes of its functions without reserved concurrency
}

// Function is what the admission rule needs to know about one function.
type Function struct {
	Reserved    int // reserved concurrency, meaningful when HasReserved
	HasReserved bool
	Sandboxes   int // live sandboxes of the function (all versions)
}

// Scope says which idle sandboxes may be reclaimed to make room.
type Scope int

const (
	ScopeNone       Scope = iota // nothing may be reclaimed
	ScopeFunction                // idle sandboxes of the same function
	ScopeUnreserved              // idle sandboxes of the account's unreserved functions
)

func (s Scope) String() string {
	switch s {
	case ScopeFunction:
		return "function"
	case ScopeUnreserved:
		return "unreserved"
	}
	return "none"
}

// Decision is the outcome of asking for one more sandbox.
type Decision struct {
	Admit bool
	// Reclaim is set when the limit is reached but an idle sandbox in Scope
	// may be retired to make room; Reason is what to answer if none exists.
	Reclaim Scope
	Reason  Reason
}

// UnreservedCap is the concurrency left to functions without reservations.
func UnreservedCap(a Account) int {
	c := a.Limit - a.ReservedTotal
	if c < 0 {
		return 0
	}
	return c
}

// Admit decides whether a new sandbox of fn may be created. A function with
// reserved concurrency draws only from its reservation (a guarantee and a
// cap); others share what the reservations leave of the account limit. Since a
// sandbox runs one invocation at a time, bounding sandboxes bounds in-flight
// invocations.
func Admit(a Account, fn Function) Decision {
	if fn.HasReserved {
		if fn.Reserved == 0 {
			return Decision{Reason: ReasonReservedConcurrency}
		}
		if fn.Sandboxes >= fn.Reserved {
			return Decision{Reclaim: ScopeFunction, Reason: ReasonReservedConcurrency}
		}
		// Reservations are validated against the limit, but a lowered limit
		// must still hold for the account as a whole.
		if a.Sandboxes >= a.Limit {
			return Decision{Reclaim: ScopeUnreserved, Reason: ReasonAccountConcurrency}
		}
		return Decision{Admit: true}
	}
	if a.Unreserved >= UnreservedCap(a) || a.Sandboxes >= a.Limit {
		return Decision{Reclaim: ScopeUnreserved, Reason: ReasonAccountConcurrency}
	}
	return Decision{Admit: true}
}

// RateReason is the reason to report when the scaling-rate bucket is empty.
func RateReason(fn Function) Reason {
	if fn.HasReserved {
		return ReasonReservedFunctionRate
	}
	return ReasonFunctionRate
}

// Minimum returns the unreserved concurrency floor for an account limit:
// Lambda reports [100], or the limit itself for accounts below 100.
func Minimum(limit int) int {
	if limit < UnreservedMinimum {
		return limit
	}
	return UnreservedMinimum
}

// ErrInvalidParameter marks a rule violation the API reports as
// InvalidParameterValueException.
var ErrInvalidParameter = errors.New("InvalidParameterValueException")

// ValidationError carries Lambda's own message for a rejected setting.
type ValidationError struct{ Message string }

func (e *ValidationError) Error() string { return e.Message }
func (e *ValidationError) Unwrap() error { return ErrInvalidParameter }

// CheckReserved validates setting a function's reserved concurrency to n when
// the account's other functions reserve otherReserved in total.
func CheckReserved(limit, otherReserved, n int) error {
	if n < 0 {
		return &ValidationError{Message: fmt.Sprintf("1 validation error detected: Value '%d' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0", n)}
	}
	if limit-otherReserved-n < Minimum(limit) {
		return &ValidationError{Message: fmt.Sprintf("Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d].", Minimum(limit))}
	}
	return nil
}

// CheckLimit validates a new account limit against existing reservations.
func CheckLimit(limit, reservedTotal int) error {
	if limit < 1 {
		return &ValidationError{Message: fmt.Sprintf("account concurrency limit must be at least 1, got %d", limit)}
	}
	if reservedTotal > 0 && limit-reservedTotal < Minimum(limit) {
		return &ValidationError{Message: fmt.Sprintf("account concurrency limit %d leaves UnreservedConcurrentExecution below its minimum value of [%d] with %d reserved", limit, Minimum(limit), reservedTotal)}
	}
	return nil
}
