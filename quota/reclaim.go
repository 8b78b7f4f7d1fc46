package quota

import "time"

// Idle describes an idle sandbox that could be retired to make room.
type Idle struct {
	ID       string
	Account  string
	Function string
	Reserved bool // its function has reserved concurrency
	LastUsed time.Duration
}

// InScope reports whether an idle sandbox may be reclaimed for a request of
// function fn in account under scope s.
func InScope(c Idle, account, fn string, s Scope) bool {
	if c.Account != account {
		return false
	}
	switch s {
	case ScopeFunction:
		return c.Function == fn
	case ScopeUnreserved:
		return !c.Reserved
	}
	return false
}

// ChooseVictim picks the least recently used candidate in scope (ties broken by
// id so every replica and the simulator choose the same one).
func ChooseVictim(cands []Idle, account, fn string, s Scope) (Idle, bool) {
	var best Idle
	found := false
	for _, c := range cands {
		if !InScope(c, account, fn, s) {
			continue
		}
		if !found || c.LastUsed < best.LastUsed || (c.LastUsed == best.LastUsed && c.ID < best.ID) {
			best, found = c, true
		}
	}
	return best, found
}
