package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/check"
	"github.com/coldstart-dev/coldstart/internal/client"
	"github.com/coldstart-dev/coldstart/internal/drill"
	"github.com/coldstart-dev/coldstart/placement"
)

// Load classes.
const (
	classWarm  = "warm"
	classCold  = "cold"
	classSurge = "surge"
	classIdem  = "idempotent"
	classPlain = "plain"
)

// Throttle reasons the drills look for (the gateway's ThrottleReason).
const (
	reasonAccount  = "ConcurrentInvocationLimitExceeded"
	reasonReserved = "ReservedFunctionConcurrentInvocationLimitExceeded"
)

// leaseExpiry is when placement may give a silent worker's capacity away.
var leaseExpiry = placement.DefaultLease.Expiry()

// scenarios make each drill's script. A script keeps the state of one run
// (the node it killed, the limit it replaced) in its closures, so every
// run gets a new one.
var scenarios = map[string]func() scenario{
	"quorum-loss":  quorumLoss,
	"leader-loss":  leaderLoss,
	"worker-crash": workerCrash,
	"zombie-worker": func() scenario {
		return workerCut("pause", "resume", "worker-zombie", 3*time.Second)
	},
	"partitioned-worker": func() scenario {
		return workerCut("partition", "heal", "worker-partition", 1200*time.Millisecond)
	},
	"deploy-at-peak":       deployAtPeak,
	"throttle-storm":       throttleStorm,
	"reserved-provisioned": reservedProvisioned,
	"redis-down":           redisDown,
	"nats-down":            natsDown,
}

func evidence(what string, present bool, format string, a ...any) drill.Evidence {
	return drill.Evidence{What: what, Present: present, Detail: fmt.Sprintf(format, a...)}
}

// coldPool creates n functions that were never invoked: each call to the
// next one is a cold start, so it needs placement.
type coldPool struct {
	names []string
	next  atomic.Int64
}

func (e *drillEnv) newColdPool(ctx context.Context, n int) (*coldPool, error) {
	p := &coldPool{}
	for i := 0; i < n; i++ {
		name := e.fn("cold-" + strconv.Itoa(i))
		if err := e.createSynthetic(ctx, name, "1ms", "1ms", 3); err != nil {
			return nil, err
		}
		p.names = append(p.names, name)
	}
	return p, nil
}

func (p *coldPool) pick(int64) (string, []byte, bool) {
	i := p.next.Add(1) - 1
	if int(i) >= len(p.names) {
		return "", nil, false
	}
	return p.names[i], []byte(`{}`), true
}

// warmAndCold is the load of the placement drills: a warm function under
// closed-loop load and a cold start every 250 ms.
func warmAndCold(ctx context.Context, e *drillEnv, warmN, coldN int) error {
	w := e.fn("warm")
	if err := e.createSynthetic(ctx, w, "20ms", "5ms", 3); err != nil {
		return err
	}
	pool, err := e.newColdPool(ctx, coldN)
	if err != nil {
		return err
	}
	if err := e.warm(ctx, w, warmN); err != nil {
		return err
	}
	start := time.Now()
	e.stream(ctx, classWarm, warmN, 0, simple(w))
	e.stream(ctx, classCold, 1, 250*time.Millisecond, pool.pick)
	if !drillWait(ctx, 10*time.Second, func() bool {
		return e.since(classWarm, start).OK >= 20 && e.since(classCold, start).OK >= 2
	}) {
		return fmt.Errorf("load did not start: warm %+v, cold %+v", e.since(classWarm, start), e.since(classCold, start))
	}
	return nil
}

func quorumLoss() scenario {
	var killed []string
	return scenario{
		setup: func(ctx context.Context, e *drillEnv) error { return warmAndCold(ctx, e, 3, 80) },
		inject: func(ctx context.Context, e *drillEnv) error {
			killed = nil
			for _, alias := range []string{"leader", "follower"} {
				id, err := e.fault(ctx, "kill", alias)
				if err != nil {
					return err
				}
				killed = append(killed, id)
			}
			return nil
		},
		observe: func(ctx context.Context, e *drillEnv) []drill.Evidence {
			// The first moments after the kills belong to the old leader's
			// lease; judge from when no leader can be left.
			from := e.faultAt.Add(500 * time.Millisecond)
			drillWait(ctx, 8*time.Second, func() bool {
				return e.since(classCold, from).N >= 4 && e.since(classWarm, from).N >= 30
			})
			cold, warm := e.since(classCold, from), e.since(classWarm, from)
			// A hang is a call that nears the caller's timeout; "fast" is
			// left generous for a loaded machine.
			hang := e.callTimeout - 500*time.Millisecond
			hung := drill.Count(e.log.All(), drill.Filter{Class: classCold, From: from, Slow: hang}).Slow
			return []drill.Evidence{
				evidence("cold starts fail with ServiceException, never 429", cold.N >= 3 && cold.OK == 0 && cold.ByType[client.TypeService] == cold.Failed && cold.ByReason[reasonAccount] == 0,
					"%d cold starts: %d ok, failures by type %v", cold.N, cold.OK, cold.ByType),
				evidence("cold starts fail fast, none hangs", cold.N >= 3 && hung == 0, "%d of %d took %s or more, the longest %s", hung, cold.N, hang, cold.Longest.Round(time.Millisecond)),
				evidence("warm invocations keep succeeding", warm.N >= 20 && warm.OKRate() >= 0.95, "%d of %d ok (%.1f%%)", warm.OK, warm.N, 100*warm.OKRate()),
			}
		},
		recover: func(ctx context.Context, e *drillEnv) error {
			for _, id := range killed {
				if _, err := e.fault(ctx, "restart", id); err != nil {
					return err
				}
			}
			return e.waitColdStarts(ctx, 15*time.Second)
		},
	}
}

// waitColdStarts waits until a leader is back and cold starts succeed.
func (e *drillEnv) waitColdStarts(ctx context.Context, within time.Duration) error {
	t := time.Now()
	if !drillWait(ctx, within, func() bool {
		st, err := e.status(ctx)
		return err == nil && st.Leader != "" && e.since(classCold, t).OK >= 1
	}) {
		return fmt.Errorf("no cold start succeeded within %s of restarting placement", within)
	}
	return nil
}

func leaderLoss() scenario {
	var old, killed string
	return scenario{
		setup: func(ctx context.Context, e *drillEnv) error {
			st, err := e.status(ctx)
			if err != nil {
				return err
			}
			old = st.Leader
			return warmAndCold(ctx, e, 2, 60)
		},
		inject: func(ctx context.Context, e *drillEnv) error {
			id, err := e.fault(ctx, "kill", "leader")
			killed = id
			return err
		},
		observe: func(ctx context.Context, e *drillEnv) []drill.Evidence {
			var now string
			var gone bool
			var elected time.Time
			drillWait(ctx, 8*time.Second, func() bool {
				st, err := e.status(ctx)
				if err != nil {
					return false
				}
				now, gone = st.Leader, nodeDown(st, killed)
				if now != "" && now != killed && elected.IsZero() {
					elected = time.Now()
				}
				return !elected.IsZero() && gone && e.since(classCold, elected).OK >= 2
			})
			cold := drill.Tally{}
			if !elected.IsZero() {
				cold = e.since(classCold, elected)
			}
			warm := e.since(classWarm, e.faultAt)
			return []drill.Evidence{
				evidence("a different placement node leads", now != "" && now != killed && killed != "", "leader was %s (killed %s), now %q", old, killed, now),
				evidence("the old leader is gone from the cluster", gone, "%s", killed),
				evidence("cold starts succeed again by themselves", cold.OK >= 2, "%d cold starts ok after the election", cold.OK),
				evidence("warm invocations keep succeeding", warm.N >= 10 && warm.OKRate() >= 0.95, "%d of %d ok", warm.OK, warm.N),
			}
		},
		recover: func(ctx context.Context, e *drillEnv) error {
			if _, err := e.fault(ctx, "restart", killed); err != nil {
				return err
			}
			return e.waitNode(ctx, killed, 10*time.Second)
		},
	}
}

// waitNode waits until status shows node id alive again.
func (e *drillEnv) waitNode(ctx context.Context, id string, within time.Duration) error {
	if e.opts.target == "compose" {
		within *= 3 // a container starts, then its node rejoins
	}
	if !drillWait(ctx, within, func() bool {
		st, err := e.status(ctx)
		return err == nil && !nodeDown(st, id)
	}) {
		return fmt.Errorf("%s not back within %s", id, within)
	}
	return nil
}

// spread is the warm-up of the worker drills: enough sandboxes that every
// worker holds some, and load on all of them.
func spread(ctx context.Context, e *drillEnv, name, duration string, n int) error {
	if err := e.createSynthetic(ctx, name, duration, "5ms", 10); err != nil {
		return err
	}
	if err := e.warm(ctx, name, n); err != nil {
		return err
	}
	start := time.Now()
	e.stream(ctx, classWarm, n, 0, simple(name))
	if !drillWait(ctx, 10*time.Second, func() bool {
		t := e.since(classWarm, start)
		return t.OK >= n && len(t.ByWorker) >= 2
	}) {
		return fmt.Errorf("load did not reach two workers: %+v", e.since(classWarm, start))
	}
	return nil
}

func workerCrash() scenario {
	var victim string
	return scenario{
		setup: func(ctx context.Context, e *drillEnv) error { return spread(ctx, e, e.fn("api"), "300ms", 9) },
		inject: func(ctx context.Context, e *drillEnv) error {
			// The worker to crash is one that serves the load right now.
			t := e.since(classWarm, time.Now().Add(-time.Second))
			for w := range t.ByWorker {
				if w != "" && (victim == "" || w < victim) {
					victim = w
				}
			}
			if victim == "" {
				victim = "worker"
			}
			id, err := e.fault(ctx, "kill", victim)
			victim = id
			return err
		},
		observe: func(ctx context.Context, e *drillEnv) []drill.Evidence {
			var state string
			var died time.Time
			cameBack := false
			moved := e.faultAt.Add(leaseExpiry + 500*time.Millisecond)
			drillWait(ctx, leaseExpiry+8*time.Second, func() bool {
				st, err := e.status(ctx)
				if err == nil {
					state = nodeState(st, victim)
					switch {
					case (state == "dead" || state == "absent") && died.IsZero():
						died = time.Now()
					case !died.IsZero() && !nodeDown(st, victim):
						cameBack = true
					}
				}
				// Watch it stay dead a while beyond the lease, as a frozen
				// worker would not.
				return !died.IsZero() && time.Now().After(moved.Add(time.Second)) && e.since(classWarm, moved).OK >= 20
			})
			after := e.since(classWarm, moved)
			held := -1
			if st, err := e.status(ctx); err == nil {
				held = 0
				for _, w := range st.Workers {
					if w.ID == victim {
						held += w.Idle + w.Busy
					}
				}
			}
			return []drill.Evidence{
				evidence("one worker is dead in coldstart status, and stays dead", !died.IsZero() && !cameBack, "%s is %s (came back by itself: %v)", victim, state, cameBack),
				evidence("traffic runs on the other workers", after.OK >= 20 && after.ByWorker[victim] == 0 && after.OKRate() >= 0.95, "%d of %d ok after its lease expired, on %v", after.OK, after.N, after.ByWorker),
				evidence("placement gave its sandboxes away", held == 0, "status lists %d sandboxes on %s", held, victim),
			}
		},
		recover: func(ctx context.Context, e *drillEnv) error {
			if _, err := e.fault(ctx, "restart", victim); err != nil {
				return err
			}
			return e.waitNode(ctx, victim, 10*time.Second)
		},
	}
}

// workerCut is the zombie (pause ... resume) and partition (partition ...
// heal) drills: the worker is cut off for twice its lease, then let back.
// The zombie's handlers outlast a lease, so that the frozen worker holds
// invocations it must fence.
func workerCut(verb, undo, cause string, handler time.Duration) scenario {
	var victim string
	var downSeen bool
	var returned bool
	hold := 2*leaseExpiry + 500*time.Millisecond
	return scenario{
		setup: func(ctx context.Context, e *drillEnv) error {
			e.callTimeout = handler + 2*time.Second
			return spread(ctx, e, e.fn("api"), handler.String(), 9)
		},
		inject: func(ctx context.Context, e *drillEnv) error {
			t := e.inFlight(classWarm, time.Now().Add(-time.Second), time.Now())
			for w := range t.ByWorker {
				if w != "" && (victim == "" || w < victim) {
					victim = w
				}
			}
			if victim == "" {
				victim = "worker"
			}
			id, err := e.fault(ctx, verb, victim)
			victim = id
			return err
		},
		observe: func(ctx context.Context, e *drillEnv) []drill.Evidence {
			until := e.faultAt.Add(hold)
			drillWait(ctx, hold+time.Second, func() bool {
				if st, err := e.status(ctx); err == nil && nodeDown(st, victim) {
					downSeen = true
				}
				return time.Now().After(until)
			})
			// Part of the incident: the worker comes back by itself.
			if _, err := e.fault(ctx, undo, victim); err != nil {
				return []drill.Evidence{evidence("the worker is let back", false, "%v", err)}
			}
			back := time.Now()
			fenced := 0
			drillWait(ctx, 10*time.Second, func() bool {
				st, err := e.status(ctx)
				returned = err == nil && !nodeDown(st, victim)
				fenced = e.countRecords(func(r api.Record) bool { return r.Outcome == api.OutcomeFenced && r.Worker == victim })
				return returned && (cause != "worker-zombie" || fenced > 0)
			})
			// Requests the worker held have timed out at the caller by now.
			drillWait(ctx, time.Until(e.faultAt.Add(e.callTimeout+200*time.Millisecond)), func() bool { return false })
			during := e.inFlight(classWarm, e.faultAt, until)
			ev := []drill.Evidence{
				evidence("requests routed to one worker hang instead of failing fast", during.Slow >= 1, "%d requests took %s or more, the longest %s (calls give up after %s); failures by type %v", during.Slow, e.slow(), during.Longest.Round(time.Millisecond), e.callTimeout, during.ByType),
				evidence("membership declared the worker dead", downSeen, "%s", victim),
				evidence("the worker came back by itself, without a restart", returned, "%s alive %s after it was let back", victim, time.Since(back).Round(100*time.Millisecond)),
			}
			if cause == "worker-zombie" {
				ev = append(ev, evidence("it reported the invocations it held past its lease as fenced", fenced >= 1, "%d fenced records from %s", fenced, victim))
			}
			return ev
		},
		recover: func(ctx context.Context, e *drillEnv) error {
			if !returned {
				_, _ = e.target.Apply(ctx, undo, victim)
			}
			return e.waitNode(ctx, victim, 10*time.Second)
		},
	}
}

func deployAtPeak() scenario {
	var name string
	var rev uint64
	return scenario{
		setup: func(ctx context.Context, e *drillEnv) error {
			name = e.fn("checkout")
			if err := e.createSynthetic(ctx, name, "60ms", "200ms", 5); err != nil {
				return err
			}
			if err := e.warm(ctx, name, 6); err != nil {
				return err
			}
			start := time.Now()
			e.stream(ctx, classWarm, 6, 0, simple(name))
			if !drillWait(ctx, 10*time.Second, func() bool { return e.since(classWarm, start).OK >= 40 }) {
				return fmt.Errorf("load did not start: %+v", e.since(classWarm, start))
			}
			for _, r := range e.records() {
				if r.Function == name && r.Revision > rev {
					rev = r.Revision
				}
			}
			return nil
		},
		inject: func(ctx context.Context, e *drillEnv) error {
			s := newSDK(e.urls[0])
			_, err := s.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(name), Description: aws.String("release " + time.Now().Format(time.RFC3339Nano))})
			if err != nil {
				return errors.New(s.describe(err))
			}
			e.note("UpdateFunctionConfiguration %s (a new revision) under load", name)
			return nil
		},
		observe: func(ctx context.Context, e *drillEnv) []drill.Evidence {
			window := 3 * time.Second
			newCold := func() int {
				return e.countRecords(func(r api.Record) bool {
					return r.Function == name && r.Cold && r.Revision > rev && r.StartNs >= e.faultAt.UnixNano()
				})
			}
			drillWait(ctx, window, func() bool { return newCold() >= 6 })
			before := e.between(classWarm, e.faultAt.Add(-time.Second), e.faultAt)
			after := e.between(classWarm, e.faultAt, e.faultAt.Add(window))
			oldAfter := e.countRecords(func(r api.Record) bool {
				return r.Function == name && r.Revision <= rev && r.StartNs > e.faultAt.Add(500*time.Millisecond).UnixNano()
			})
			n := newCold()
			return []drill.Evidence{
				evidence("a burst of cold starts on a warm function", after.Cold >= 4 && before.Cold <= 1, "%d cold starts in the 3 s after, %d in the second before", after.Cold, before.Cold),
				evidence("the cold starts run the new revision", n >= 4 && oldAfter == 0, "%d cold starts of a revision after %d; %d runs of the old one later than 500 ms after", n, rev, oldAfter),
				evidence("nothing failed", after.N > 0 && after.Failed == 0, "%d of %d failed", after.Failed, after.N),
			}
		},
		recover: func(ctx context.Context, e *drillEnv) error { return nil },
	}
}

func throttleStorm() scenario {
	const limit = 12
	var old int
	var surgeStop context.CancelFunc
	return scenario{
		setup: func(ctx context.Context, e *drillEnv) error {
			acct, err := e.gws[0].GetAccountSettings(ctx)
			if err != nil {
				return err
			}
			old = acct.AccountLimit.ConcurrentExecutions
			if _, err := e.gws[0].SetAccountLimit(ctx, limit); err != nil {
				return fmt.Errorf("set the account limit to %d for the drill: %w", limit, err)
			}
			e.limits = append(e.limits, check.LimitChange{AtNs: time.Now().UnixNano(), Account: e.account, Limit: limit})
			fmt.Fprintf(e.opts.out, "this drill runs with the account limit at %d (it was %d; it is put back at the end)\n", limit, old)
			name := e.fn("orders")
			if err := e.createSynthetic(ctx, name, "400ms", "5ms", 5); err != nil {
				return err
			}
			start := time.Now()
			e.stream(ctx, classWarm, 4, 0, simple(name))
			if !drillWait(ctx, 10*time.Second, func() bool { return e.since(classWarm, start).OK >= 8 }) {
				return fmt.Errorf("load did not start: %+v", e.since(classWarm, start))
			}
			return nil
		},
		inject: func(ctx context.Context, e *drillEnv) error {
			var sctx context.Context
			sctx, surgeStop = context.WithCancel(ctx)
			// Each surge caller paces its retries, as clients back off:
			// a tight loop of 429s would trip the invocation rate limit
			// instead of showing the concurrency limit.
			e.stream(sctx, classSurge, 3*limit, 100*time.Millisecond, simple(e.fn("orders")))
			e.note("a surge of %d more callers on %s", 3*limit, e.fn("orders"))
			return nil
		},
		observe: func(ctx context.Context, e *drillEnv) []drill.Evidence {
			atLimit := 0
			drillWait(ctx, 8*time.Second, func() bool {
				if st, err := e.status(ctx); err == nil {
					for _, a := range st.Accounts {
						if a.Account == e.account && a.InFlight > atLimit {
							atLimit = a.InFlight
						}
					}
				}
				return e.since("", e.faultAt).ByReason[reasonAccount] >= 20 && atLimit >= limit-1
			})
			t := e.since("", e.faultAt)
			return []drill.Evidence{
				evidence("429 TooManyRequestsException for the account's limit", t.ByReason[reasonAccount] >= 10 && t.ByType[client.TypeTooManyRequests] == t.Failed, "throttles by reason %v, failures by type %v", t.ByReason, t.ByType),
				evidence("no function's reservation involved", t.ByReason[reasonReserved] == 0, "%d reserved-concurrency throttles", t.ByReason[reasonReserved]),
				evidence("in-flight stood at the account limit", atLimit >= limit-1, "highest in-flight seen in status %d of %d", atLimit, limit),
			}
		},
		recover: func(ctx context.Context, e *drillEnv) error {
			if surgeStop != nil {
				surgeStop()
			}
			return nil
		},
		cleanup: func(ctx context.Context, e *drillEnv) {
			if old <= 0 {
				return
			}
			if _, err := e.gws[0].SetAccountLimit(ctx, old); err != nil {
				fmt.Fprintf(e.opts.out, "cleanup: put the account limit back to %d: %s\n", old, client.Describe(err, e.urls[0]))
			}
		},
	}
}

func reservedProvisioned() scenario {
	const reserved, provisioned = 4, 8
	var name string
	var refused error
	var refusal string
	return scenario{
		setup: func(ctx context.Context, e *drillEnv) error {
			name = e.fn("pricing")
			if err := e.createSynthetic(ctx, name, "400ms", "5ms", 5); err != nil {
				return err
			}
			// Traffic starts below the reservation the fault puts in, so
			// the reservation never lands under the function's in-flight.
			start := time.Now()
			e.stream(ctx, classWarm, reserved/2, 0, simple(name))
			if !drillWait(ctx, 10*time.Second, func() bool { return e.since(classWarm, start).OK >= reserved }) {
				return fmt.Errorf("load did not start: %+v", e.since(classWarm, start))
			}
			return nil
		},
		inject: func(ctx context.Context, e *drillEnv) error {
			if _, err := e.gws[0].PutConcurrency(ctx, name, reserved); err != nil {
				return err
			}
			n := reserved
			e.limits = append(e.limits, check.LimitChange{AtNs: time.Now().UnixNano(), Account: e.account, Function: name, Reserved: &n})
			e.note("PutFunctionConcurrency %s ReservedConcurrentExecutions=%d", name, reserved)
			defer func() {
				// The traffic the provisioned concurrency was wanted for.
				e.stream(ctx, classWarm, 2*reserved-reserved/2, 50*time.Millisecond, simple(name))
				e.note("traffic on %s rises to %d concurrent callers", name, 2*reserved)
			}()
			s := newSDK(e.urls[0])
			v, err := s.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name)})
			if err != nil {
				return errors.New(s.describe(err))
			}
			_, refused = s.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String(name), Qualifier: v.Version, ProvisionedConcurrentExecutions: aws.Int32(provisioned)})
			if refused != nil {
				refusal = s.describe(refused)
				e.note("PutProvisionedConcurrencyConfig %s:%s %d: refused: %s", name, aws.ToString(v.Version), provisioned, s.describe(refused))
			} else {
				e.note("PutProvisionedConcurrencyConfig %s:%s %d: accepted", name, aws.ToString(v.Version), provisioned)
			}
			return nil
		},
		observe: func(ctx context.Context, e *drillEnv) []drill.Evidence {
			from := e.faultAt.Add(check.DefaultWindow)
			acctMax, acctLimit := 0, 0
			drillWait(ctx, 8*time.Second, func() bool {
				if st, err := e.status(ctx); err == nil {
					for _, a := range st.Accounts {
						if a.Account == e.account {
							acctMax, acctLimit = max(acctMax, a.InFlight), a.Limit
						}
					}
				}
				return e.since(classWarm, from).ByReason[reasonReserved] >= 10
			})
			t := e.since(classWarm, from)
			return []drill.Evidence{
				evidence("429s name the function's reservation", t.ByReason[reasonReserved] >= 5 && t.ByReason[reasonAccount] == 0, "throttles by reason %v", t.ByReason),
				evidence("the account had room", acctLimit == 0 || acctMax < acctLimit-reserved, "account in-flight at most %d of %d", acctMax, acctLimit),
				evidence("provisioned concurrency above the reservation is refused", refused != nil, "%s", refusal),
			}
		},
		// The reservation stays until the load has stopped and goes with
		// the function at cleanup: lifting it under load would only make
		// the checker judge the instants around the change.
		recover: func(ctx context.Context, e *drillEnv) error { return nil },
	}
}

func natsDown() scenario {
	return scenario{
		setup: func(ctx context.Context, e *drillEnv) error {
			e.callTimeout = 2 * time.Second
			return warmAndCold(ctx, e, 3, 60)
		},
		inject: func(ctx context.Context, e *drillEnv) error {
			_, err := e.fault(ctx, "partition", "nats")
			return err
		},
		observe: func(ctx context.Context, e *drillEnv) []drill.Evidence {
			from := e.faultAt.Add(300 * time.Millisecond)
			answered := 0
			drillWait(ctx, 10*time.Second, func() bool {
				if gatewayAnswers(ctx, e.urls[0]) {
					answered++
				}
				return e.since(classWarm, from).N >= 6 && e.since(classCold, from).N >= 2 && answered >= 1
			})
			warm, cold := e.since(classWarm, from), e.since(classCold, from)
			return []drill.Evidence{
				evidence("warm invocations fail", warm.N >= 3 && warm.OKRate() <= 0.1, "%d of %d ok; failures by type %v", warm.OK, warm.N, warm.ByType),
				evidence("cold starts fail too", cold.N >= 1 && cold.OK == 0, "%d of %d ok", cold.OK, cold.N),
				evidence("the gateway itself answers HTTP (its /metrics)", answered >= 1, "%d answers", answered),
			}
		},
		recover: func(ctx context.Context, e *drillEnv) error {
			if _, err := e.fault(ctx, "heal", "nats"); err != nil {
				return err
			}
			t := time.Now()
			if !drillWait(ctx, 20*time.Second, func() bool { return e.since(classWarm, t).OK >= 3 }) {
				return errors.New("warm invocations did not recover within 20 s of NATS returning")
			}
			return nil
		},
	}
}

// gatewayAnswers reports whether the gateway's own HTTP server answers
// (its /metrics need nothing beyond the process).
func gatewayAnswers(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
