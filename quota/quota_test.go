package quota_test

import (
	"errors"
	"fmt"
	mrand "math/rand"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
)

// ---------------------------------------------------------------------------
// Admit

func TestAdmit(t *testing.T) {
	unres := quota.Function{}
	res := func(reserved, sandboxes int) quota.Function {
		return quota.Function{Reserved: reserved, HasReserved: true, Sandboxes: sandboxes}
	}
	admit := quota.Decision{Admit: true}
	accountFull := quota.Decision{Reclaim: quota.ScopeUnreserved, Reason: quota.ReasonAccountConcurrency}
	reservedFull := quota.Decision{Reclaim: quota.ScopeFunction, Reason: quota.ReasonReservedConcurrency}
	reservedZero := quota.Decision{Reclaim: quota.ScopeNone, Reason: quota.ReasonReservedConcurrency}

	tests := []struct {
		name string
		acct quota.Account
		fn   quota.Function
		want quota.Decision
	}{
		// Account limit, no reservations.
		{"empty account admits", quota.Account{Limit: 1000}, unres, admit},
		{"one below limit admits", quota.Account{Limit: 1000, Sandboxes: 999, Unreserved: 999}, unres, admit},
		{"at limit throttles with reclaim", quota.Account{Limit: 1000, Sandboxes: 1000, Unreserved: 1000}, unres, accountFull},
		{"above limit throttles", quota.Account{Limit: 1000, Sandboxes: 1200, Unreserved: 1200}, unres, accountFull},
		{"small account limit 10 admits 10th", quota.Account{Limit: 10, Sandboxes: 9, Unreserved: 9}, unres, admit},
		{"small account limit 10 throttles 11th", quota.Account{Limit: 10, Sandboxes: 10, Unreserved: 10}, unres, accountFull},
		{"limit 1", quota.Account{Limit: 1}, unres, admit},
		{"limit 1 full", quota.Account{Limit: 1, Sandboxes: 1, Unreserved: 1}, unres, accountFull},

		// Reservations carve capacity out of the shared pool.
		{"carve-out: unreserved pool full although account has room",
			quota.Account{Limit: 1000, ReservedTotal: 300, Sandboxes: 700, Unreserved: 700}, unres, accountFull},
		{"carve-out: unreserved pool one short admits",
			quota.Account{Limit: 1000, ReservedTotal: 300, Sandboxes: 699, Unreserved: 699}, unres, admit},
		{"carve-out: reserved sandboxes do not use the unreserved pool",
			quota.Account{Limit: 1000, ReservedTotal: 300, Sandboxes: 950, Unreserved: 650}, unres, admit},

		// Reserved concurrency is a guarantee...
		{"guarantee: reserved fn admitted while unreserved pool is full",
			quota.Account{Limit: 1000, ReservedTotal: 300, Sandboxes: 999, Unreserved: 700}, res(300, 299), admit},
		{"guarantee: reserved fn admitted in an empty account", quota.Account{Limit: 1000, ReservedTotal: 300}, res(300, 0), admit},
		// ... and a cap.
		{"cap: reserved fn at its reservation", quota.Account{Limit: 1000, ReservedTotal: 300, Sandboxes: 300}, res(300, 300), reservedFull},
		{"cap: reserved fn above its reservation (lowered)", quota.Account{Limit: 1000, ReservedTotal: 10, Sandboxes: 50}, res(10, 50), reservedFull},
		{"cap beats account: fn at reservation and account at limit",
			quota.Account{Limit: 1000, ReservedTotal: 300, Sandboxes: 1000, Unreserved: 700}, res(300, 300), reservedFull},
		{"reserved 1", quota.Account{Limit: 1000, ReservedTotal: 1}, res(1, 0), admit},
		{"reserved 1 full", quota.Account{Limit: 1000, ReservedTotal: 1, Sandboxes: 1}, res(1, 1), reservedFull},

		// Reserved 0 throttles everything and nothing can be reclaimed for it.
		{"reserved 0 in empty account", quota.Account{Limit: 1000}, res(0, 0), reservedZero},
		{"reserved 0 with idle capacity everywhere", quota.Account{Limit: 100000}, res(0, 0), reservedZero},
		{"reserved 0 with leftover sandboxes", quota.Account{Limit: 1000, Sandboxes: 5}, res(0, 5), reservedZero},

		// A lowered limit must hold for the account as a whole.
		{"lowered limit: reserved fn below its reservation, account over limit",
			quota.Account{Limit: 500, ReservedTotal: 300, Sandboxes: 600, Unreserved: 400}, res(300, 200), accountFull},
		{"lowered limit: reserved fn below its reservation, account at limit",
			quota.Account{Limit: 500, ReservedTotal: 300, Sandboxes: 500, Unreserved: 300}, res(300, 200), accountFull},
		{"lowered limit: reserved fn admitted once the account is below limit",
			quota.Account{Limit: 500, ReservedTotal: 300, Sandboxes: 499, Unreserved: 299}, res(300, 200), admit},
		{"lowered limit: unreserved fn over its pool",
			quota.Account{Limit: 500, ReservedTotal: 300, Sandboxes: 300, Unreserved: 250}, unres, accountFull},
		{"lowered limit below reservations leaves no unreserved pool",
			quota.Account{Limit: 200, ReservedTotal: 300}, unres, accountFull},
		{"lowered limit below reservations still admits reserved fn while account has room",
			quota.Account{Limit: 200, ReservedTotal: 300, Sandboxes: 199}, res(300, 199), admit},
		{"lowered limit below reservations caps reserved fn at the account limit",
			quota.Account{Limit: 200, ReservedTotal: 300, Sandboxes: 200}, res(300, 200), accountFull},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := quota.Admit(tc.acct, tc.fn)
			if got != tc.want {
				t.Fatalf("Admit(%+v, %+v) = %+v, want %+v", tc.acct, tc.fn, got, tc.want)
			}
			if got.Admit && (got.Reason != quota.ReasonNone || got.Reclaim != quota.ScopeNone) {
				t.Fatalf("an admitting decision must carry no reason or scope: %+v", got)
			}
			if !got.Admit && got.Reason == quota.ReasonNone {
				t.Fatalf("a refusal must carry a reason: %+v", got)
			}
		})
	}
}

func TestAdmitReasonsAreLambdas(t *testing.T) {
	// These strings go on the wire in the 429 body's Reason field; the AWS
	// SDKs and users' retry code match on them.
	want := map[quota.Reason]string{
		quota.ReasonAccountConcurrency:   "ConcurrentInvocationLimitExceeded",
		quota.ReasonReservedConcurrency:  "ReservedFunctionConcurrentInvocationLimitExceeded",
		quota.ReasonFunctionRate:         "FunctionInvocationRateLimitExceeded",
		quota.ReasonReservedFunctionRate: "ReservedFunctionInvocationRateLimitExceeded",
		quota.ReasonNone:                 "",
	}
	for r, s := range want {
		if string(r) != s {
			t.Errorf("reason %q, want %q", r, s)
		}
	}
}

func TestRateReason(t *testing.T) {
	if got := quota.RateReason(quota.Function{}); got != quota.ReasonFunctionRate {
		t.Errorf("unreserved: %q", got)
	}
	if got := quota.RateReason(quota.Function{HasReserved: true, Reserved: 5}); got != quota.ReasonReservedFunctionRate {
		t.Errorf("reserved: %q", got)
	}
	if got := quota.RateReason(quota.Function{HasReserved: true}); got != quota.ReasonReservedFunctionRate {
		t.Errorf("reserved 0: %q", got)
	}
}

func TestScopeString(t *testing.T) {
	for s, want := range map[quota.Scope]string{
		quota.ScopeNone: "none", quota.ScopeFunction: "function", quota.ScopeUnreserved: "unreserved", quota.Scope(42): "none",
	} {
		if got := s.String(); got != want {
			t.Errorf("Scope(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

func TestUnreservedCap(t *testing.T) {
	tests := []struct {
		a    quota.Account
		want int
	}{
		{quota.Account{Limit: 1000}, 1000},
		{quota.Account{Limit: 1000, ReservedTotal: 900}, 100},
		{quota.Account{Limit: 1000, ReservedTotal: 1000}, 0},
		{quota.Account{Limit: 500, ReservedTotal: 900}, 0}, // lowered limit: never negative
		{quota.Account{Limit: 10}, 10},
	}
	for _, tc := range tests {
		if got := quota.UnreservedCap(tc.a); got != tc.want {
			t.Errorf("UnreservedCap(%+v) = %d, want %d", tc.a, got, tc.want)
		}
	}
}

// ---------------------------------------------------------------------------
// CheckReserved / CheckLimit / Minimum

func floorMsg(n int) string {
	return fmt.Sprintf("Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d].", n)
}

func TestMinimum(t *testing.T) {
	for limit, want := range map[int]int{1: 1, 10: 10, 99: 99, 100: 100, 101: 100, 1000: 100, 50000: 100} {
		if got := quota.Minimum(limit); got != want {
			t.Errorf("Minimum(%d) = %d, want %d", limit, got, want)
		}
	}
}

func TestCheckReserved(t *testing.T) {
	tests := []struct {
		name               string
		limit, otherRes, n int
		wantMsg            string // "" = valid
	}{
		{"default account reserves up to limit-100", 1000, 0, 900, ""},
		{"one more breaks the floor", 1000, 0, 901, floorMsg(100)},
		{"whole limit", 1000, 0, 1000, floorMsg(100)},
		{"others count", 1000, 500, 400, ""},
		{"others count, one over", 1000, 500, 401, floorMsg(100)},
		{"zero is always fine in a valid account", 1000, 900, 0, ""},
		{"reserved 0 in empty account", 1000, 0, 0, ""},
		{"limit 150: floor 100", 150, 0, 50, ""},
		{"limit 150: floor 100, over", 150, 0, 51, floorMsg(100)},
		{"limit 100 cannot reserve anything", 100, 0, 1, floorMsg(100)},
		{"limit 101 reserves one", 101, 0, 1, ""},
		// Accounts below 100 report their limit as the minimum, so they can
		// reserve nothing but 0 (Lambda: "... minimum value of [10].").
		{"limit 10 reports [10]", 10, 0, 1, floorMsg(10)},
		{"limit 10 reserving 10 reports [10]", 10, 0, 10, floorMsg(10)},
		{"limit 10 reserve 0 ok", 10, 0, 0, ""},
		{"limit 99 reports [99]", 99, 0, 5, floorMsg(99)},
		{"negative", 1000, 0, -1,
			"1 validation error detected: Value '-1' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := quota.CheckReserved(tc.limit, tc.otherRes, tc.n)
			checkValidation(t, err, tc.wantMsg)
		})
	}
}

func TestCheckLimit(t *testing.T) {
	tests := []struct {
		name                 string
		limit, reservedTotal int
		valid                bool
	}{
		{"zero", 0, 0, false},
		{"negative", -5, 0, false},
		{"one", 1, 0, true},
		{"ten, no reservations", 10, 0, true},
		{"100, no reservations", 100, 0, true},
		{"default with 900 reserved", 1000, 900, true},
		{"lowering to 999 with 900 reserved", 999, 900, false},
		{"lowering to 500 with 300 reserved", 500, 300, true},
		{"lowering to 399 with 300 reserved", 399, 300, false},
		{"small limit with any reservation", 50, 1, false},
		{"raising is fine", 5000, 900, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := quota.CheckLimit(tc.limit, tc.reservedTotal)
			if tc.valid {
				checkValidation(t, err, "")
				return
			}
			if err == nil {
				t.Fatalf("CheckLimit(%d, %d) = nil, want an error", tc.limit, tc.reservedTotal)
			}
			checkValidation(t, err, err.Error())
		})
	}
}

// checkValidation: want "" means err must be nil; otherwise err must be a
// *ValidationError wrapping ErrInvalidParameter with exactly that message.
func checkValidation(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got nil, want error %q", want)
	}
	if !errors.Is(err, quota.ErrInvalidParameter) {
		t.Errorf("error %v does not wrap ErrInvalidParameter", err)
	}
	var ve *quota.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *ValidationError", err)
	}
	if ve.Message != want || err.Error() != want {
		t.Errorf("message\n got %q\nwant %q", err.Error(), want)
	}
}

// CheckReserved and Admit agree: any set of reservations CheckReserved
// accepts leaves at least Minimum(limit) for unreserved functions.
func TestCheckReservedKeepsFloor(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 2000; i++ {
		limit := 1 + r.IntN(3000)
		total := 0
		for j := 0; j < 10; j++ {
			n := r.IntN(limit + 1)
			if quota.CheckReserved(limit, total, n) == nil {
				total += n
			}
		}
		if cap := quota.UnreservedCap(quota.Account{Limit: limit, ReservedTotal: total}); cap < quota.Minimum(limit) {
			t.Fatalf("limit %d reserved %d leaves %d < minimum %d", limit, total, cap, quota.Minimum(limit))
		}
		if err := quota.CheckLimit(limit, total); err != nil {
			t.Fatalf("CheckLimit rejects a state CheckReserved built: %v", err)
		}
	}
}

// ---------------------------------------------------------------------------
// Bucket / Rate

const ms = time.Millisecond

func drain(t *testing.T, b *quota.Bucket, r quota.Rate, now time.Duration) int {
	t.Helper()
	n := 0
	for b.Take(r, now) {
		n++
		if n > 1<<20 {
			t.Fatal("bucket never empties")
		}
	}
	return n
}

func TestDefaultRate(t *testing.T) {
	if quota.DefaultRate != (quota.Rate{Burst: 1000, Window: 10 * time.Second}) {
		t.Fatalf("DefaultRate = %+v, want 1000 per 10s", quota.DefaultRate)
	}
	if quota.DefaultRate.Unlimited() {
		t.Fatal("DefaultRate must not be unlimited")
	}
}

func TestBucketBurst(t *testing.T) {
	r := quota.DefaultRate
	b := quota.NewBucket(r, 5*time.Second)
	if got := drain(t, &b, r, 5*time.Second); got != 1000 {
		t.Fatalf("a new bucket holds %d tokens, want 1000", got)
	}
	if b.Available(r, 5*time.Second) {
		t.Fatal("empty bucket reports a token")
	}
}

func TestBucketRefillsContinuously(t *testing.T) {
	r := quota.DefaultRate // one token per 10 ms
	b := quota.NewBucket(r, 0)
	drain(t, &b, r, 0)

	if b.Available(r, 10*ms-1) {
		t.Fatal("token available 1ns before 10ms")
	}
	if !b.Available(r, 10*ms) {
		t.Fatal("no token at exactly 10ms")
	}
	// Available does not take.
	if !b.Take(r, 10*ms) || b.Take(r, 10*ms) {
		t.Fatal("exactly one token after 10ms")
	}

	// Half a window refills half the burst.
	b = quota.NewBucket(r, 0)
	drain(t, &b, r, 0)
	if got := drain(t, &b, r, 5*time.Second); got != 500 {
		t.Fatalf("after 5s: %d tokens, want 500", got)
	}
	// A full window refills it all.
	if got := drain(t, &b, r, 15*time.Second); got != 1000 {
		t.Fatalf("after a full window: %d tokens, want 1000", got)
	}
}

func TestBucketNotBankedAboveBurst(t *testing.T) {
	r := quota.DefaultRate
	b := quota.NewBucket(r, 0)
	b.Available(r, time.Hour)
	if b.Tokens != 1000 {
		t.Fatalf("after an hour idle: %v tokens, want 1000", b.Tokens)
	}
	if got := drain(t, &b, r, 2*time.Hour); got != 1000 {
		t.Fatalf("after two hours idle: took %d, want 1000", got)
	}
	// Partially used then idle for long: still capped.
	b = quota.NewBucket(r, 0)
	for i := 0; i < 10; i++ {
		b.Take(r, 0)
	}
	if got := drain(t, &b, r, time.Minute); got != 1000 {
		t.Fatalf("took %d, want 1000", got)
	}
}

// Polling an empty bucket more or less often must not change when its tokens
// come back: the FSM (leader time) and the simulator (virtual time) see
// different polling instants and the bucket says their answers are identical.
func TestBucketRefillIndependentOfPolling(t *testing.T) {
	r := quota.DefaultRate
	for _, step := range []time.Duration{time.Microsecond, 100 * time.Microsecond, ms, 2 * ms, 5 * ms, 10 * ms} {
		b := quota.NewBucket(r, 0)
		drain(t, &b, r, 0)
		first := time.Duration(-1)
		n := 0
		for now := step; now <= 10*time.Second; now += step {
			if b.Take(r, now) {
				if first < 0 {
					first = now
				}
				n++
			}
		}
		if first != 10*ms || n != 1000 {
			t.Errorf("polled every %v: first token at %v (want 10ms), %d tokens in 10s (want 1000)", step, first, n)
		}
	}
}

func TestBucketConfigurableRate(t *testing.T) {
	r := quota.Rate{Burst: 5, Window: time.Second} // one per 200ms
	b := quota.NewBucket(r, 0)
	if got := drain(t, &b, r, 0); got != 5 {
		t.Fatalf("burst %d, want 5", got)
	}
	for i := 1; i <= 20; i++ {
		now := time.Duration(i) * 200 * ms
		if b.Available(r, now-1) {
			t.Fatalf("token %d early", i)
		}
		if !b.Take(r, now) {
			t.Fatalf("token %d missing at %v", i, now)
		}
	}
}

// Lowering the burst of a function (a config change) must cap a bucket that
// holds more than the new burst, even when the change is applied at the
// instant of the last refill (several Raft commands can carry the same
// leader timestamp).
func TestBucketLoweredBurstCapsAtOnce(t *testing.T) {
	b := quota.NewBucket(quota.DefaultRate, time.Second)
	small := quota.Rate{Burst: 5, Window: time.Second}
	if got := drain(t, &b, small, time.Second); got != 5 {
		t.Errorf("same instant: took %d tokens after lowering the burst to 5", got)
	}
	b = quota.NewBucket(quota.DefaultRate, time.Second)
	if got := drain(t, &b, small, time.Second+1); got != 5 {
		t.Errorf("1ns later: took %d tokens after lowering the burst to 5", got)
	}
}

func TestBucketUnlimited(t *testing.T) {
	for _, r := range []quota.Rate{{}, {Burst: 0, Window: time.Second}, {Burst: -1, Window: time.Second}, {Burst: 10, Window: 0}, {Burst: 10, Window: -time.Second}} {
		if !r.Unlimited() {
			t.Errorf("%+v not unlimited", r)
		}
		b := quota.Bucket{}
		for i := 0; i < 10000; i++ {
			if !b.Take(r, 0) {
				t.Fatalf("%+v: take %d refused", r, i)
			}
		}
		if b.Tokens != 0 || b.Last != 0 {
			t.Errorf("%+v: unlimited take touched the bucket: %+v", r, b)
		}
	}
	if (quota.Rate{Burst: 1, Window: 1}).Unlimited() {
		t.Error("smallest real rate reported unlimited")
	}
}

func TestBucketClockGoingBackwards(t *testing.T) {
	r := quota.DefaultRate
	b := quota.NewBucket(r, 10*time.Second)
	drain(t, &b, r, 10*time.Second)
	if b.Available(r, 5*time.Second) {
		t.Fatal("going back in time must not refill")
	}
	if b.Last != 10*time.Second {
		t.Fatalf("Last moved backwards to %v", b.Last)
	}
	if !b.Available(r, 10*time.Second+10*ms) {
		t.Fatal("refill resumes from the last refill time")
	}
}

// Over any arrival pattern, a bucket never grants more than Burst plus the
// refill of the elapsed time; a greedy caller gets (close to) that much.
func TestBucketRateBoundProperty(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		r := rand.New(rand.NewPCG(seed, 99))
		rate := quota.Rate{Burst: 1 + r.IntN(50), Window: time.Duration(1+r.IntN(1000)) * ms}
		start := time.Duration(r.IntN(1000)) * ms
		b := quota.NewBucket(rate, start)
		now := start
		granted := 0
		for i := 0; i < 5000; i++ {
			now += time.Duration(r.IntN(int(rate.Window/time.Duration(rate.Burst))*3 + 1))
			if b.Take(rate, now) {
				granted++
			}
			bound := float64(rate.Burst) + float64(now-start)*float64(rate.Burst)/float64(rate.Window)
			if float64(granted) > bound+1e-6 {
				t.Fatalf("seed %d rate %+v: granted %d by %v, bound %.3f", seed, rate, granted, now-start, bound)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// InScope / ChooseVictim

func TestInScope(t *testing.T) {
	unres := quota.Idle{ID: "a", Account: "acct1", Function: "f", LastUsed: 1}
	res := quota.Idle{ID: "b", Account: "acct1", Function: "g", Reserved: true, LastUsed: 1}
	other := quota.Idle{ID: "c", Account: "acct2", Function: "f", LastUsed: 1}
	tests := []struct {
		c     quota.Idle
		fn    string
		scope quota.Scope
		want  bool
	}{
		{unres, "f", quota.ScopeNone, false},
		{unres, "f", quota.ScopeFunction, true},
		{unres, "h", quota.ScopeFunction, false},
		{unres, "h", quota.ScopeUnreserved, true},
		{unres, "f", quota.ScopeUnreserved, true},
		{res, "g", quota.ScopeFunction, true},    // its own function: yes
		{res, "f", quota.ScopeUnreserved, false}, // another function's reservation is its guarantee
		{res, "g", quota.ScopeUnreserved, false},
		{res, "h", quota.ScopeFunction, false},
		{other, "f", quota.ScopeFunction, false}, // never across accounts
		{other, "f", quota.ScopeUnreserved, false},
		{other, "f", quota.ScopeNone, false},
		{unres, "f", quota.Scope(99), false},
	}
	for _, tc := range tests {
		if got := quota.InScope(tc.c, "acct1", tc.fn, tc.scope); got != tc.want {
			t.Errorf("InScope(%+v, acct1, %s, %v) = %v, want %v", tc.c, tc.fn, tc.scope, got, tc.want)
		}
	}
}

func TestChooseVictim(t *testing.T) {
	cands := []quota.Idle{
		{ID: "x-old-other-account", Account: "acct2", Function: "f", LastUsed: 1},
		{ID: "r-old-reserved", Account: "acct1", Function: "g", Reserved: true, LastUsed: 2},
		{ID: "f-3", Account: "acct1", Function: "f", LastUsed: 30},
		{ID: "h-2b", Account: "acct1", Function: "h", LastUsed: 20},
		{ID: "h-2a", Account: "acct1", Function: "h", LastUsed: 20},
		{ID: "f-5", Account: "acct1", Function: "f", LastUsed: 50},
		{ID: "g-4", Account: "acct1", Function: "g", Reserved: true, LastUsed: 40},
	}
	tests := []struct {
		name   string
		acct   string
		fn     string
		scope  quota.Scope
		wantID string // "" = none
	}{
		{"unreserved: LRU of the account's unreserved, tie by id", "acct1", "f", quota.ScopeUnreserved, "h-2a"},
		{"function: LRU of that function only", "acct1", "f", quota.ScopeFunction, "f-3"},
		{"function: reserved function's own idle", "acct1", "g", quota.ScopeFunction, "r-old-reserved"},
		{"none: never", "acct1", "f", quota.ScopeNone, ""},
		{"other account only sees its own", "acct2", "f", quota.ScopeUnreserved, "x-old-other-account"},
		{"unknown account", "acct3", "f", quota.ScopeUnreserved, ""},
		{"function without idle sandboxes", "acct1", "zzz", quota.ScopeFunction, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The answer must not depend on the candidates' order: every
			// replica and the simulator list them differently.
			r := rand.New(rand.NewPCG(1, 2))
			for i := 0; i < 20; i++ {
				c := slices.Clone(cands)
				r.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
				got, ok := quota.ChooseVictim(c, tc.acct, tc.fn, tc.scope)
				if tc.wantID == "" {
					if ok {
						t.Fatalf("got %+v, want none", got)
					}
					if got != (quota.Idle{}) {
						t.Fatalf("no victim but non-zero Idle %+v", got)
					}
					continue
				}
				if !ok || got.ID != tc.wantID {
					t.Fatalf("got %+v (ok=%v), want %s", got, ok, tc.wantID)
				}
			}
		})
	}
	if _, ok := quota.ChooseVictim(nil, "acct1", "f", quota.ScopeUnreserved); ok {
		t.Error("victim from no candidates")
	}
}

// ---------------------------------------------------------------------------
// Property: drive a random workload through the admission rule exactly as
// placement would (warm reuse first, then Admit, then reclaim via
// ChooseVictim) and check the limits and the "429 only at a limit" rule.

type modelSandbox struct {
	id       string
	acct     int
	fn       int
	version  int
	busy     bool
	lastUsed time.Duration
}

type modelFn struct {
	hasRes   bool
	reserved int
}

type model struct {
	limits []int       // per account
	fns    [][]modelFn // per account, per function
	boxes  []*modelSandbox
	nextID int
	stats  *modelStats
}

type modelStats struct{ warm, admitted, reclaimed, throttled int }

func (m *model) account(a int) quota.Account {
	acc := quota.Account{Limit: m.limits[a]}
	for _, f := range m.fns[a] {
		if f.hasRes {
			acc.ReservedTotal += f.reserved
		}
	}
	for _, s := range m.boxes {
		if s.acct != a {
			continue
		}
		acc.Sandboxes++
		if !m.fns[a][s.fn].hasRes {
			acc.Unreserved++
		}
	}
	return acc
}

func (m *model) function(a, f int) quota.Function {
	fn := quota.Function{HasReserved: m.fns[a][f].hasRes, Reserved: m.fns[a][f].reserved}
	for _, s := range m.boxes {
		if s.acct == a && s.fn == f {
			fn.Sandboxes++
		}
	}
	return fn
}

// names are the ids of accounts and functions in the model, by index.
var names = []string{"0", "1", "2", "3", "4", "5", "6", "7"}

func (m *model) idle() []quota.Idle {
	var out []quota.Idle
	for _, s := range m.boxes {
		if !s.busy {
			out = append(out, quota.Idle{ID: s.id, Account: names[s.acct], Function: names[s.fn],
				Reserved: m.fns[s.acct][s.fn].hasRes, LastUsed: s.lastUsed})
		}
	}
	return out
}

func (m *model) remove(id string) *modelSandbox {
	for i, s := range m.boxes {
		if s.id == id {
			m.boxes = slices.Delete(m.boxes, i, i+1)
			return s
		}
	}
	return nil
}

func (m *model) reservedTotalExcept(a, f int) int {
	n := 0
	for j, fn := range m.fns[a] {
		if j != f && fn.hasRes {
			n += fn.reserved
		}
	}
	return n
}

// check fails when any count is above its cap.
func (m *model) check(t *testing.T, ctx string) {
	t.Helper()
	// One pass over the sandboxes, independent of account() and function().
	perAcct := make([]int, len(m.limits))
	unres := make([]int, len(m.limits))
	perFn := make([][]int, len(m.limits))
	for a := range perFn {
		perFn[a] = make([]int, len(m.fns[a]))
	}
	for _, s := range m.boxes {
		perAcct[s.acct]++
		perFn[s.acct][s.fn]++
		if !m.fns[s.acct][s.fn].hasRes {
			unres[s.acct]++
		}
	}
	for a, limit := range m.limits {
		reserved := 0
		for f, fn := range m.fns[a] {
			if !fn.hasRes {
				continue
			}
			reserved += fn.reserved
			if perFn[a][f] > fn.reserved {
				t.Fatalf("%s: account %d function %d has %d sandboxes, reserved %d", ctx, a, f, perFn[a][f], fn.reserved)
			}
		}
		if perAcct[a] > limit {
			t.Fatalf("%s: account %d has %d sandboxes, limit %d", ctx, a, perAcct[a], limit)
		}
		if unres[a] > max(0, limit-reserved) {
			t.Fatalf("%s: account %d has %d unreserved sandboxes, cap %d", ctx, a, unres[a], limit-reserved)
		}
	}
}

func TestAdmitPropertyLimitsHold(t *testing.T) {
	var st modelStats
	for seed := uint64(0); seed < 200; seed++ {
		runAdmitModel(t, seed, seed%2 == 1, &st)
	}
	// The workload must exercise every branch, or the property proves little.
	if st.warm == 0 || st.admitted == 0 || st.reclaimed == 0 || st.throttled == 0 {
		t.Fatalf("workload too tame: %+v", st)
	}
	t.Logf("%+v", st)
}

func runAdmitModel(t *testing.T, seed uint64, reconfigure bool, st *modelStats) {
	r := rand.New(rand.NewPCG(seed, 0xC01D))
	m := &model{stats: st}
	for a := 0; a < 2; a++ {
		limit := []int{5, 10, 50, 101, 110, 120, 150}[r.IntN(7)]
		m.limits = append(m.limits, limit)
		fns := make([]modelFn, 2+r.IntN(4))
		reserved := 0
		for f := range fns {
			if r.IntN(2) == 0 {
				n := r.IntN(limit/3 + 2)
				if r.IntN(8) == 0 {
					n = 0 // throttle-everything functions
				}
				if quota.CheckReserved(limit, reserved, n) == nil {
					fns[f] = modelFn{hasRes: true, reserved: n}
					reserved += n
				}
			}
		}
		m.fns = append(m.fns, fns)
	}
	var now time.Duration
	for step := 0; step < 1500; step++ {
		now += time.Duration(1+r.IntN(100)) * ms
		ctx := fmt.Sprintf("seed %d step %d", seed, step)
		// Alternate ramps (mostly new invocations) and drains, so that the
		// pools fill up to their caps and empty again.
		invokeShare, finishShare := 16, 18
		if step/200%2 == 1 {
			invokeShare, finishShare = 5, 17
		}
		switch op := r.IntN(20); {
		case op < invokeShare: // invoke
			a := r.IntN(len(m.limits))
			f := r.IntN(len(m.fns[a]))
			v := r.IntN(2)
			invokeModel(t, m, a, f, v, reconfigure, ctx)
		case op < finishShare: // an invocation finishes
			var busy []*modelSandbox
			for _, s := range m.boxes {
				if s.busy {
					busy = append(busy, s)
				}
			}
			if len(busy) > 0 {
				s := busy[r.IntN(len(busy))]
				s.busy, s.lastUsed = false, now
			}
		case op < 19: // keep-alive expiry / node death returns capacity
			if len(m.boxes) > 0 {
				s := m.boxes[r.IntN(len(m.boxes))]
				if !s.busy || r.IntN(4) == 0 {
					m.remove(s.id)
				}
			}
		default: // control plane change, validated like the API would
			if !reconfigure {
				continue
			}
			a := r.IntN(len(m.limits))
			if r.IntN(2) == 0 {
				limit := 1 + r.IntN(400)
				if r.IntN(2) == 0 {
					// Lower it to just under what is running now.
					limit = max(1, m.account(a).Sandboxes-r.IntN(5))
				}
				if quota.CheckLimit(limit, m.account(a).ReservedTotal) == nil {
					m.limits[a] = limit
				}
			} else {
				f := r.IntN(len(m.fns[a]))
				if r.IntN(4) == 0 {
					m.fns[a][f] = modelFn{}
				} else {
					n := r.IntN(m.limits[a]/2 + 1)
					if quota.CheckReserved(m.limits[a], m.reservedTotalExcept(a, f), n) == nil {
						m.fns[a][f] = modelFn{hasRes: true, reserved: n}
					}
				}
			}
		}
		if !reconfigure {
			// With fixed limits every count stays within its cap at all times.
			m.check(t, ctx)
		}
	}
}

func invokeModel(t *testing.T, m *model, a, f, v int, reconfigure bool, ctx string) {
	t.Helper()
	// Warm path: an idle sandbox of the same version, no admission needed.
	for _, s := range m.boxes {
		if s.acct == a && s.fn == f && s.version == v && !s.busy {
			s.busy = true
			m.stats.warm++
			return
		}
	}
	acc, fn := m.account(a), m.function(a, f)
	d := quota.Admit(acc, fn)
	an, fname := names[a], names[f]
	for reclaimed := 0; !d.Admit && d.Reclaim != quota.ScopeNone; reclaimed++ {
		idle := m.idle()
		victim, ok := quota.ChooseVictim(idle, an, fname, d.Reclaim)
		if !ok {
			break
		}
		if reclaimed == 1 && !reconfigure {
			// With limits that never moved, one reclaim always makes room.
			t.Fatalf("%s: still refused (%+v) after reclaiming in scope, acct %+v fn %+v", ctx, d, acc, fn)
		}
		if victim.Account != an || !quota.InScope(victim, an, fname, d.Reclaim) {
			t.Fatalf("%s: victim %+v out of scope %v", ctx, victim, d.Reclaim)
		}
		for _, c := range idle {
			if quota.InScope(c, an, fname, d.Reclaim) &&
				(c.LastUsed < victim.LastUsed || c.LastUsed == victim.LastUsed && c.ID < victim.ID) {
				t.Fatalf("%s: victim %+v is not the LRU (%+v is older)", ctx, victim, c)
			}
		}
		// Retiring a sandbox lowers the count that blocked admission.
		before := acc
		m.remove(victim.ID)
		m.stats.reclaimed++
		acc, fn = m.account(a), m.function(a, f)
		if acc.Sandboxes != before.Sandboxes-1 {
			t.Fatalf("%s: reclaim did not free account capacity", ctx)
		}
		d = quota.Admit(acc, fn)
	}
	if !d.Admit {
		// A 429 is returned only when a limit is actually reached.
		switch d.Reason {
		case quota.ReasonReservedConcurrency:
			if !fn.HasReserved || fn.Sandboxes < fn.Reserved {
				t.Fatalf("%s: reserved throttle below reservation: %+v %+v", ctx, acc, fn)
			}
		case quota.ReasonAccountConcurrency:
			if fn.HasReserved {
				if acc.Sandboxes < acc.Limit {
					t.Fatalf("%s: account throttle for reserved fn below account limit: %+v %+v", ctx, acc, fn)
				}
			} else if acc.Unreserved < quota.UnreservedCap(acc) && acc.Sandboxes < acc.Limit {
				t.Fatalf("%s: account throttle below limits: %+v", ctx, acc)
			}
		default:
			t.Fatalf("%s: refusal with reason %q", ctx, d.Reason)
		}
		// No reclaimable sandbox was left in scope: everything in it is busy.
		if d.Reclaim != quota.ScopeNone {
			if _, ok := quota.ChooseVictim(m.idle(), an, fname, d.Reclaim); ok {
				t.Fatalf("%s: throttled while an idle sandbox in scope %v exists", ctx, d.Reclaim)
			}
		}
		m.stats.throttled++
		return
	}
	// Admission: every cap that applies is strictly below before creation.
	if acc.Sandboxes >= acc.Limit {
		t.Fatalf("%s: admitted at account limit %+v", ctx, acc)
	}
	if fn.HasReserved && fn.Sandboxes >= fn.Reserved {
		t.Fatalf("%s: admitted at reservation %+v", ctx, fn)
	}
	if !fn.HasReserved && acc.Unreserved >= quota.UnreservedCap(acc) {
		t.Fatalf("%s: admitted at unreserved cap %+v", ctx, acc)
	}
	m.nextID++
	m.stats.admitted++
	m.boxes = append(m.boxes, &modelSandbox{id: fmt.Sprintf("s%06d", m.nextID), acct: a, fn: f, version: v, busy: true})
}

// The same property through testing/quick: any sequence of Admit-gated
// creations and releases on one account stays within the limits.
func TestAdmitQuick(t *testing.T) {
	f := func(limit uint8, resv uint8, ops []uint8) bool {
		L := int(limit)%300 + 1
		R := 0
		if quota.CheckReserved(L, 0, int(resv)%(L+1)) == nil {
			R = int(resv) % (L + 1)
		}
		a := quota.Account{Limit: L, ReservedTotal: R}
		res := quota.Function{HasReserved: true, Reserved: R}
		for _, op := range ops {
			switch op % 4 {
			case 0: // unreserved create
				if quota.Admit(a, quota.Function{}).Admit {
					a.Sandboxes++
					a.Unreserved++
				}
			case 1: // reserved create
				if quota.Admit(a, res).Admit {
					a.Sandboxes++
					res.Sandboxes++
				}
			case 2:
				if a.Unreserved > 0 {
					a.Unreserved--
					a.Sandboxes--
				}
			case 3:
				if res.Sandboxes > 0 {
					res.Sandboxes--
					a.Sandboxes--
				}
			}
			if a.Sandboxes > L || res.Sandboxes > R || a.Unreserved > L-R {
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000, Rand: mrand.New(mrand.NewSource(1))}); err != nil {
		t.Fatal(err)
	}
}
