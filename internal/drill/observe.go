package drill

import (
	"sort"
	"sync"
	"time"
)

// Observation is one invocation the drill's load made, as its caller saw
// it. Signals are judged from these (what the operator's users saw) and
// from the cluster's status, never from the drill's knowledge of its fault.
type Observation struct {
	At      time.Time     // when it was sent
	Latency time.Duration // until the answer (or the client gave up)
	Class   string        // which load stream sent it (warm, cold, surge, ...)
	OK      bool          // 2xx without a function error
	Cold    bool          // the platform reports a cold start
	Worker  string        // the worker that ran it, when it ran
	// Status is the HTTP status (0: no answer: a transport error or the
	// client's own timeout).
	Status int
	// ErrType is Lambda's error type: the X-Amzn-ErrorType of a non-2xx
	// answer, or the errorType of a function error ("" when OK).
	ErrType string
	// Reason is a throttle's reason (ConcurrentInvocationLimitExceeded, ...).
	Reason string
	// Revision is the function revision the sandbox ran, where known.
	Revision string
}

// Log collects observations from concurrent load goroutines.
type Log struct {
	mu  sync.Mutex
	obs []Observation
}

// Add records one observation.
func (l *Log) Add(o Observation) {
	l.mu.Lock()
	l.obs = append(l.obs, o)
	l.mu.Unlock()
}

// All returns a copy of the observations, ordered by send time.
func (l *Log) All() []Observation {
	l.mu.Lock()
	out := append([]Observation(nil), l.obs...)
	l.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Tally counts a set of observations.
type Tally struct {
	N, OK, Failed, Cold int
	// ByType counts failures by error type ("" for a failure without one,
	// such as a transport error); ByReason counts throttles by reason.
	ByType   map[string]int
	ByReason map[string]int
	ByWorker map[string]int // successes per worker
	// Slow counts the requests that took at least the Slow threshold given
	// to Count; Longest is the longest latency.
	Slow    int
	Longest time.Duration
}

// OKRate is OK/N (0 without observations).
func (t Tally) OKRate() float64 {
	if t.N == 0 {
		return 0
	}
	return float64(t.OK) / float64(t.N)
}

// Filter selects observations.
type Filter struct {
	Class    string    // "" any
	From, To time.Time // sent in [From, To); zero: unbounded
	// InFlight selects instead the observations in flight at some moment
	// of [From, To): sent before To and answered after From. A fault hits
	// the requests it finds running, not only those sent after it.
	InFlight bool
	Slow     time.Duration
}

// Count tallies the observations f selects.
func Count(obs []Observation, f Filter) Tally {
	t := Tally{ByType: map[string]int{}, ByReason: map[string]int{}, ByWorker: map[string]int{}}
	for _, o := range obs {
		if f.Class != "" && o.Class != f.Class {
			continue
		}
		if f.InFlight {
			if !f.From.IsZero() && o.At.Add(o.Latency).Before(f.From) {
				continue
			}
		} else if !f.From.IsZero() && o.At.Before(f.From) {
			continue
		}
		if !f.To.IsZero() && !o.At.Before(f.To) {
			continue
		}
		t.N++
		if f.Slow > 0 && o.Latency >= f.Slow {
			t.Slow++
		}
		t.Longest = max(t.Longest, o.Latency)
		if o.OK {
			t.OK++
			t.ByWorker[o.Worker]++
			if o.Cold {
				t.Cold++
			}
			continue
		}
		t.Failed++
		t.ByType[o.ErrType]++
		if o.Reason != "" {
			t.ByReason[o.Reason]++
		}
	}
	return t
}
