package drill

import (
	"errors"
	"fmt"
	"time"
)

// Evidence is one signal a drill looked for, and whether it was there.
// A drill's decisive signal is the conjunction of its evidence: every item
// must be Present for the run to be graded.
type Evidence struct {
	What    string `json:"what"`
	Present bool   `json:"present"`
	Detail  string `json:"detail"` // the numbers it was judged on
}

// Outcome is what really happened in one run: the fault injected, the
// evidence observed, the checker's verdict and the operator's answer.
type Outcome struct {
	Drill string `json:"drill"`
	// Injected is the cause the drill actually injected (its Spec.Right,
	// confirmed by the fault target's answer) and Fault what the target
	// said it did ("kill placement-2 (leader)").
	Injected string     `json:"injected"`
	Fault    []string   `json:"fault"`
	Recovery []string   `json:"recovery"` // what undid it
	Evidence []Evidence `json:"evidence"`
	// CheckOK is coldstart check's verdict over the run's records;
	// CheckSummary its one-line summary.
	CheckOK      bool   `json:"check_ok"`
	CheckSummary string `json:"check_summary"`
	Records      int    `json:"records"`
	// Answer is what the operator chose (raw), FaultAt and AnsweredAt when
	// the fault began and the answer came.
	Answer     string    `json:"answer"`
	FaultAt    time.Time `json:"fault_at"`
	AnsweredAt time.Time `json:"answered_at"`
}

// Result is a graded run (the --json output).
type Result struct {
	Drill            string     `json:"drill"`
	Valid            bool       `json:"valid"`
	Correct          bool       `json:"correct"`
	Answer           string     `json:"answer"` // the cause id chosen
	AnswerText       string     `json:"answer_text"`
	Right            string     `json:"right"`
	RightText        string     `json:"right_text"`
	TimeToDiagnosis  int64      `json:"time_to_diagnosis_ms"`
	Signal           string     `json:"signal"`
	Evidence         []Evidence `json:"evidence"`
	Fault            []string   `json:"fault"`
	Recovery         []string   `json:"recovery,omitempty"`
	Check            bool       `json:"check"`
	CheckSummary     string     `json:"check_summary"`
	Records          int        `json:"records"`
	Runbook          string     `json:"runbook"`
	Invalid          string     `json:"invalid,omitempty"` // why the run could not be graded
	Passed           bool       `json:"passed"`            // valid, correct and the check passed
	ExitCode         int        `json:"exit_code"`
	DurationMs       int64      `json:"duration_ms,omitempty"`
	RecordsFile      string     `json:"records_file,omitempty"`
	ReproduceCommand string     `json:"check_command,omitempty"`
}

// Exit codes of coldstart drill run.
const (
	ExitPassed  = 0 // the answer was right and the check passed
	ExitWrong   = 1 // the answer was wrong
	ExitUsage   = 2
	ExitInvalid = 3 // the decisive signal did not appear, or the drill could not inject its fault: not graded
	ExitCheck   = 4 // coldstart check found a violation in the run's records
)

// ErrInvalidRun says a run cannot be graded.
var ErrInvalidRun = errors.New("run not graded")

// Grade grades an outcome against its spec. The right answer is the cause
// the drill really injected; the run is graded only when that is the
// spec's cause and every piece of evidence was present (otherwise the
// operator was shown something other than the drill's incident). A failed
// check fails the run whatever the answer.
func Grade(s Spec, o Outcome) (Result, error) {
	r := Result{Drill: s.Name, Right: o.Injected, Signal: s.Signal, Evidence: o.Evidence, Fault: o.Fault, Recovery: o.Recovery,
		Check: o.CheckOK, CheckSummary: o.CheckSummary, Records: o.Records, Runbook: s.Link()}
	if c, ok := CauseByID(o.Injected); ok {
		r.RightText = c.Text
	}
	id, err := s.Resolve(o.Answer)
	if err != nil {
		return r, err
	}
	r.Answer = id
	if c, ok := CauseByID(id); ok {
		r.AnswerText = c.Text
	}
	if !o.AnsweredAt.IsZero() && !o.FaultAt.IsZero() {
		r.TimeToDiagnosis = max(0, o.AnsweredAt.Sub(o.FaultAt).Milliseconds())
	}
	r.Correct = id == o.Injected
	r.Valid = true
	switch {
	case o.Injected != s.Right:
		r.Valid, r.Invalid = false, fmt.Sprintf("the drill injected %q, not its own fault %q", o.Injected, s.Right)
	case len(o.Evidence) == 0:
		r.Valid, r.Invalid = false, "no signal was looked for"
	}
	for _, e := range o.Evidence {
		if r.Valid && !e.Present {
			r.Valid, r.Invalid = false, fmt.Sprintf("the decisive signal did not appear: %s (%s)", e.What, e.Detail)
		}
	}
	switch {
	case !r.Valid:
		r.Correct = false
		r.ExitCode = ExitInvalid
	case !o.CheckOK:
		r.ExitCode = ExitCheck
	case !r.Correct:
		r.ExitCode = ExitWrong
	default:
		r.Passed = true
		r.ExitCode = ExitPassed
	}
	if !r.Valid {
		return r, fmt.Errorf("drill %s: %w: %s", s.Name, ErrInvalidRun, r.Invalid)
	}
	return r, nil
}
