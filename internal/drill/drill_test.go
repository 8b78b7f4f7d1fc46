package drill

import (
	"errors"
	"testing"
	"time"
)

func TestSpecsAreFair(t *testing.T) {
	names := map[string]bool{}
	anchors := map[string]bool{}
	for _, s := range Specs {
		if err := s.Validate(); err != nil {
			t.Error(err)
		}
		if names[s.Name] || anchors[s.Anchor] {
			t.Errorf("drill %s: name or anchor %q used twice", s.Name, s.Anchor)
		}
		names[s.Name], anchors[s.Anchor] = true, true
	}
	if len(Specs) < 10 {
		t.Errorf("%d drills, want at least 10", len(Specs))
	}
}

func TestValidateRejects(t *testing.T) {
	ok := Spec{Name: "x", Choices: []string{"deploy", "redis-down", "nats-down", "worker-crash"}, Right: "deploy", Anchor: "x", Signal: "s"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a fair spec: %v", err)
	}
	for name, mut := range map[string]func(*Spec){
		"three choices":   func(s *Spec) { s.Choices = s.Choices[:3] },
		"six choices":     func(s *Spec) { s.Choices = append(s.Choices, "handler-bug", "account-limit") },
		"unknown cause":   func(s *Spec) { s.Choices = []string{"deploy", "redis-down", "nats-down", "gremlins"} },
		"right not shown": func(s *Spec) { s.Right = "handler-bug" },
		"offered twice":   func(s *Spec) { s.Choices = []string{"deploy", "deploy", "nats-down", "worker-crash"} },
		"no anchor":       func(s *Spec) { s.Anchor = "" },
	} {
		s := ok
		s.Choices = append([]string(nil), ok.Choices...)
		mut(&s)
		if s.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestResolve(t *testing.T) {
	s, _ := SpecByName("quorum-loss")
	for in, want := range map[string]string{"c": "placement-quorum", "C": "placement-quorum", " 3 ": "placement-quorum", "placement-quorum": "placement-quorum", "a": "placement-leader", "e": "worker-crash"} {
		got, err := s.Resolve(in)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "f", "6", "0", "redis-down", "quorum"} {
		if _, err := s.Resolve(in); !errors.Is(err, ErrUnknownChoice) {
			t.Errorf("Resolve(%q): %v, want ErrUnknownChoice", in, err)
		}
	}
}

func TestGrade(t *testing.T) {
	s, _ := SpecByName("quorum-loss")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := []Evidence{{What: "cold fail", Present: true}, {What: "warm ok", Present: true}}
	base := Outcome{Drill: s.Name, Injected: "placement-quorum", Evidence: seen, CheckOK: true, Answer: "c", FaultAt: t0, AnsweredAt: t0.Add(4200 * time.Millisecond)}
	cases := []struct {
		name                  string
		mut                   func(*Outcome)
		valid, correct, pass  bool
		exit                  int
		errIs                 error
		answer, right, reason string
		ttd                   int64
	}{
		{name: "right letter", valid: true, correct: true, pass: true, exit: ExitPassed, answer: "placement-quorum", right: "placement-quorum", ttd: 4200},
		{name: "right id", mut: func(o *Outcome) { o.Answer = "placement-quorum" }, valid: true, correct: true, pass: true, exit: ExitPassed, answer: "placement-quorum", right: "placement-quorum", ttd: 4200},
		{name: "wrong: the leader", mut: func(o *Outcome) { o.Answer = "a" }, valid: true, exit: ExitWrong, answer: "placement-leader", right: "placement-quorum", ttd: 4200},
		{name: "wrong: NATS", mut: func(o *Outcome) { o.Answer = "nats-down" }, valid: true, exit: ExitWrong, answer: "nats-down", right: "placement-quorum", ttd: 4200},
		{name: "right answer, check failed", mut: func(o *Outcome) { o.CheckOK = false }, valid: true, correct: true, exit: ExitCheck, answer: "placement-quorum", right: "placement-quorum", ttd: 4200},
		{name: "wrong answer, check failed", mut: func(o *Outcome) { o.CheckOK = false; o.Answer = "d" }, valid: true, exit: ExitCheck, answer: "account-limit", right: "placement-quorum", ttd: 4200},
		{name: "signal absent", mut: func(o *Outcome) {
			o.Evidence = []Evidence{{What: "cold fail", Present: false, Detail: "0 cold starts"}, seen[1]}
		},
			exit: ExitInvalid, errIs: ErrInvalidRun, answer: "placement-quorum", right: "placement-quorum", reason: "the decisive signal did not appear: cold fail (0 cold starts)", ttd: 4200},
		{name: "signal absent, wrong answer is not graded either", mut: func(o *Outcome) { o.Answer = "a"; o.Evidence = []Evidence{{What: "warm ok", Present: false}} },
			exit: ExitInvalid, errIs: ErrInvalidRun, answer: "placement-leader", right: "placement-quorum", reason: "the decisive signal did not appear: warm ok ()", ttd: 4200},
		{name: "no evidence looked for", mut: func(o *Outcome) { o.Evidence = nil }, exit: ExitInvalid, errIs: ErrInvalidRun, answer: "placement-quorum", right: "placement-quorum", reason: "no signal was looked for", ttd: 4200},
		{name: "another fault was injected", mut: func(o *Outcome) { o.Injected = "placement-leader"; o.Answer = "a" }, exit: ExitInvalid, errIs: ErrInvalidRun, answer: "placement-leader", right: "placement-leader",
			reason: `the drill injected "placement-leader", not its own fault "placement-quorum"`, ttd: 4200},
		{name: "answer before the fault counts as zero", mut: func(o *Outcome) { o.AnsweredAt = t0.Add(-time.Second) }, valid: true, correct: true, pass: true, exit: ExitPassed, answer: "placement-quorum", right: "placement-quorum"},
		{name: "not a choice", mut: func(o *Outcome) { o.Answer = "z" }, errIs: ErrUnknownChoice, right: "placement-quorum"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := base
			if c.mut != nil {
				c.mut(&o)
			}
			r, err := Grade(s, o)
			if c.errIs != nil {
				if !errors.Is(err, c.errIs) {
					t.Fatalf("err = %v, want %v", err, c.errIs)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if c.errIs == ErrUnknownChoice {
				return
			}
			if r.Valid != c.valid || r.Correct != c.correct || r.Passed != c.pass || r.ExitCode != c.exit {
				t.Errorf("valid %v correct %v passed %v exit %d; want %v %v %v %d", r.Valid, r.Correct, r.Passed, r.ExitCode, c.valid, c.correct, c.pass, c.exit)
			}
			if r.Answer != c.answer || r.Right != c.right || r.Invalid != c.reason || r.TimeToDiagnosis != c.ttd {
				t.Errorf("answer %q right %q invalid %q ttd %d; want %q %q %q %d", r.Answer, r.Right, r.Invalid, r.TimeToDiagnosis, c.answer, c.right, c.reason, c.ttd)
			}
			if r.Runbook != "docs/triage.md#placement-quorum-loss" {
				t.Errorf("runbook %q", r.Runbook)
			}
		})
	}
}

func TestCount(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	obs := []Observation{
		{At: at(0), Latency: 20 * time.Millisecond, Class: "warm", OK: true, Worker: "worker-1"},
		{At: at(100), Latency: 300 * time.Millisecond, Class: "cold", OK: true, Cold: true, Worker: "worker-2"},
		{At: at(200), Latency: 5 * time.Millisecond, Class: "cold", Status: 500, ErrType: "ServiceException"},
		{At: at(300), Latency: 2 * time.Second, Class: "warm", ErrType: "ClientTimeout"},
		{At: at(400), Latency: 3 * time.Millisecond, Class: "surge", Status: 429, ErrType: "TooManyRequestsException", Reason: "ConcurrentInvocationLimitExceeded"},
	}
	all := Count(obs, Filter{Slow: time.Second})
	if all.N != 5 || all.OK != 2 || all.Failed != 3 || all.Cold != 1 || all.Slow != 1 || all.Longest != 2*time.Second {
		t.Errorf("all: %+v", all)
	}
	if all.ByType["ServiceException"] != 1 || all.ByType["ClientTimeout"] != 1 || all.ByReason["ConcurrentInvocationLimitExceeded"] != 1 || all.ByWorker["worker-2"] != 1 {
		t.Errorf("all by type/reason/worker: %+v", all)
	}
	if r := all.OKRate(); r != 0.4 {
		t.Errorf("ok rate %v", r)
	}
	cold := Count(obs, Filter{Class: "cold"})
	if cold.N != 2 || cold.OK != 1 || cold.Slow != 0 {
		t.Errorf("cold: %+v", cold)
	}
	// Sent in [150ms, 400ms): the failed cold start and the timeout.
	win := Count(obs, Filter{From: at(150), To: at(400)})
	if win.N != 2 || win.OK != 0 {
		t.Errorf("window: %+v", win)
	}
	// In flight at some moment of [350ms, 360ms): the timeout sent at
	// 300ms and the cold start sent at 100ms that ran until 400ms.
	fl := Count(obs, Filter{From: at(350), To: at(360), InFlight: true})
	if fl.N != 2 || fl.OK != 1 || fl.ByType["ClientTimeout"] != 1 {
		t.Errorf("in flight: %+v", fl)
	}
	if (Tally{}).OKRate() != 0 {
		t.Error("empty tally has a rate")
	}
}

func TestLogOrdersBySendTime(t *testing.T) {
	var l Log
	t0 := time.Now()
	l.Add(Observation{At: t0.Add(time.Second), Class: "b"})
	l.Add(Observation{At: t0, Class: "a"})
	got := l.All()
	if len(got) != 2 || got[0].Class != "a" || got[1].Class != "b" {
		t.Fatalf("%+v", got)
	}
}
