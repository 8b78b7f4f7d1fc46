package worker

import (
	"sync"
	"time"
)

// The worker's lease (see placement/leases.go and placement/DESIGN.md for
// the timing argument). The worker starts an invocation, warm or cold, only
// while the lease is valid: its incarnation is known, its NATS connection is
// up, and its own monotonic clock has not passed the instant it sent its
// last answered renewal plus the TTL. Placement releases the worker's
// sandboxes only after TTL + margin without a renewal, so by then this
// worker has stopped starting anything on them.
//
// A lease that ran out while an invocation was running (the worker was
// paused, partitioned, or starved) fences that invocation: it is killed,
// its result never delivered, and its record ends at the lease's expiry,
// the instant the platform stopped counting it. A lapse is noticed by
// whoever looks first after it: the watchdog, the invocation finishing, or
// a renewal sent after the expiry; each lapse gets a new generation, so an
// invocation started before a lapse is fenced even if the lease was renewed
// again before it finished.
type lease struct {
	mu     sync.Mutex
	inc    uint64    // incarnation placement registered; 0 until the first renewal
	until  time.Time // monotonic: sent-at of the last answered renewal + TTL
	gen    uint64    // lapses so far
	lapsed bool      // the current lease has run out and was counted as a lapse
	lapses map[uint64]time.Time
	seq    uint64
	ttl    time.Duration // of the last answer
}

// lastTTL is the TTL placement last granted.
func (l *lease) lastTTL() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ttl
}

// valid reports whether an invocation may start now, and the generation it
// starts in.
func (l *lease) valid(now time.Time) (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.noteLapseLocked(now)
	return l.inc != 0 && now.Before(l.until), l.gen
}

// noteLapseLocked records a lapse when the lease has run out.
func (l *lease) noteLapseLocked(now time.Time) {
	if l.inc == 0 || l.lapsed || now.Before(l.until) {
		return
	}
	l.lapsed = true
	l.gen++
	if l.lapses == nil {
		l.lapses = map[uint64]time.Time{}
	}
	l.lapses[l.gen] = l.until
	delete(l.lapses, l.gen-64) // only recent lapses can matter
}

// holds reports whether an invocation started in generation gen may finish
// now; if not, it returns when the platform stopped counting it (the first
// lapse after it started).
func (l *lease) holds(gen uint64, now time.Time) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.noteLapseLocked(now)
	if l.gen == gen && now.Before(l.until) {
		return true, time.Time{}
	}
	if at, ok := l.lapses[gen+1]; ok {
		return false, at
	}
	return false, l.until
}

// next numbers a renewal.
func (l *lease) next() (uint64, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return l.seq, l.inc
}

// renewed applies an answer to the renewal sent at sent. It reports whether
// the incarnation changed: every sandbox of the old one is void.
func (l *lease) renewed(seq uint64, sent time.Time, inc uint64, ttl time.Duration) (changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq != l.seq {
		return false // an answer to an older renewal: it extends nothing
	}
	l.noteLapseLocked(sent)
	changed = l.inc != inc
	if changed && l.inc != 0 && !l.lapsed {
		// Placement moved on while this lease still looked valid here (a
		// restart it saw first, or an operator's intervention): whatever
		// runs now belongs to a dead incarnation.
		l.lapsed = true
		l.gen++
		if l.lapses == nil {
			l.lapses = map[uint64]time.Time{}
		}
		l.lapses[l.gen] = sent
	}
	l.inc = inc
	l.ttl = ttl
	if u := sent.Add(ttl); u.After(l.until) || changed {
		l.until = u
		l.lapsed = false
	}
	return changed
}

// extendWithoutLeader applies a renewal that no placement node answered
// because none serves as leader ("no responders"). It extends only a lease
// still valid when the renewal was sent: while no leader serves, nothing
// can release this worker, and a leader that starts serving counts it as
// renewed at that moment. A lease that already ran out proves nothing of
// the kind: a leader may have released the worker during the lapse (it was
// partitioned, paused) and stepped down since, and the sandboxes then
// belong to a dead incarnation. Only an answered renewal, which names the
// incarnation, brings a lapsed lease back.
func (l *lease) extendWithoutLeader(seq uint64, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq != l.seq {
		return
	}
	l.noteLapseLocked(sent)
	if l.inc == 0 || l.lapsed || !sent.Before(l.until) {
		return
	}
	if u := sent.Add(l.ttl); u.After(l.until) {
		l.until = u
	}
}

// incarnation is the current incarnation (0 before registration).
func (l *lease) incarnation() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inc
}

// expiry is when the current lease ends.
func (l *lease) expiry() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}
