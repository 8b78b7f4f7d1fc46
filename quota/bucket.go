package quota

import (
	"math"
	"time"
)

// Bucket is a token bucket for the per-function scaling rate: Burst new
// sandboxes, refilled continuously at Burst per Window. Time is passed in so
// that the Raft FSM (leader-stamped time) and the simulator (virtual time)
// get identical answers.
type Bucket struct {
	Tokens float64       `json:"tokens"`
	Last   time.Duration `json:"last"` // time of the last refill, any fixed epoch
}

// Rate is the configuration of a Bucket.
type Rate struct {
	Burst  int
	Window time.Duration
}

// DefaultRate is Lambda's 1000 sandboxes per 10 s.
var DefaultRate = Rate{Burst: DefaultScaleBurst, Window: DefaultScaleWindow}

// Unlimited reports whether the rate disables the check.
func (r Rate) Unlimited() bool { return r.Burst <= 0 || r.Window <= 0 }

// NewBucket returns a full bucket at time now.
func NewBucket(r Rate, now time.Duration) Bucket {
	return Bucket{Tokens: float64(r.Burst), Last: now}
}

func (b *Bucket) refill(r Rate, now time.Duration) {
	if now > b.Last {
		b.Tokens += float64(now-b.Last) * float64(r.Burst) / float64(r.Window)
		b.Last = now
		// Many small float additions fall just short of a whole token;
		// snapping keeps the answer independent of how often the bucket is
		// polled, so the FSM and the simulator agree.
		if t := math.Round(b.Tokens); math.Abs(b.Tokens-t) < 1e-9 {
			b.Tokens = t
		}
	}
	// A lowered burst caps the bucket at once.
	if b.Tokens > float64(r.Burst) {
		b.Tokens = float64(r.Burst)
	}
}

// Available reports whether a token could be taken at now, without taking it.
func (b *Bucket) Available(r Rate, now time.Duration) bool {
	if r.Unlimited() {
		return true
	}
	b.refill(r, now)
	return b.Tokens >= 1
}

// Take removes one token if there is one.
func (b *Bucket) Take(r Rate, now time.Duration) bool {
	if !b.Available(r, now) {
		return false
	}
	if !r.Unlimited() {
		b.Tokens--
	}
	return true
}
