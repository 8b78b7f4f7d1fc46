// Package drill holds the pure parts of coldstart's graded incident drills:
// the catalogue of causes an operator chooses from, each drill's question,
// the observations a drill's load makes, the signals that must be seen for
// a run to count, and the grader. The command (coldstart drill) injects the
// faults and drives the load; everything here is deterministic and
// table-tested.
package drill

import (
	"errors"
	"fmt"
	"strings"
)

// Cause is one possible diagnosis. IDs are stable: --answer accepts them,
// and results name them.
type Cause struct {
	ID   string
	Text string
}

// Causes is the catalogue every drill draws its choices from. A distractor
// is always a cause that a real incident of this kind could be confused
// with, so choosing needs the decisive signal, not elimination.
var Causes = []Cause{
	{"placement-quorum", "placement lost quorum: 2 of 3 placement nodes are down"},
	{"placement-leader", "the placement leader died and the others elected a new one"},
	{"worker-crash", "a worker crashed"},
	{"worker-zombie", "a worker froze (a zombie): alive, holding work, answering nothing"},
	{"worker-partition", "a worker is cut off from the rest of the cluster (network partition)"},
	{"deploy", "a deploy replaced the code under load: the warm pool was invalidated"},
	{"account-limit", "the account's concurrency limit is reached"},
	{"reserved-cap", "the function's reserved concurrency caps it below its traffic (provisioned concurrency above it was refused)"},
	{"redis-down", "Redis, the platform's idempotency store, is down"},
	{"nats-down", "NATS, the message bus between gateways and workers, is unreachable"},
	{"handler-bug", "the function's own code is failing (function errors)"},
}

// CauseByID returns the cause with that id.
func CauseByID(id string) (Cause, bool) {
	for _, c := range Causes {
		if c.ID == id {
			return c, true
		}
	}
	return Cause{}, false
}

// Spec describes one drill to the operator and the grader. It names the
// fault only through Right, which is never printed before the answer.
type Spec struct {
	Name     string
	Title    string   // what the drill practises, without naming its fault
	Choices  []string // cause ids, in the order shown (a, b, c, ...)
	Right    string   // the cause the drill injects
	Anchor   string   // section of docs/triage.md
	Signal   string   // the decisive signal, explained after the answer
	Duration string   // rough length of a run, for the list
}

// TriageDoc is where every drill's explanation lives.
const TriageDoc = "docs/triage.md"

// Link is the drill's section of the runbook.
func (s Spec) Link() string { return TriageDoc + "#" + s.Anchor }

// Letter is the letter of choice i (a, b, ...).
func Letter(i int) string { return string(rune('a' + i)) }

// ErrUnknownChoice is returned for an answer that is neither a choice's
// letter nor its cause id.
var ErrUnknownChoice = errors.New("not one of the choices")

// Resolve turns an answer (a letter, a 1-based number or a cause id) into
// the cause id it picks.
func (s Spec) Resolve(answer string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(answer))
	for i, id := range s.Choices {
		if a == Letter(i) || a == fmt.Sprint(i+1) || a == id {
			return id, nil
		}
	}
	return "", fmt.Errorf("answer %q: %w (want %s or a cause id)", answer, ErrUnknownChoice, s.letters())
}

func (s Spec) letters() string {
	var l []string
	for i := range s.Choices {
		l = append(l, Letter(i))
	}
	return strings.Join(l, ", ")
}

// Validate reports a spec the grader could not be fair with: unknown
// causes, a right answer that is not offered, too few or too many choices,
// or a choice offered twice.
func (s Spec) Validate() error {
	if len(s.Choices) < 4 || len(s.Choices) > 5 {
		return fmt.Errorf("drill %s: %d choices, want 4 or 5", s.Name, len(s.Choices))
	}
	seen := map[string]bool{}
	right := false
	for _, id := range s.Choices {
		if _, ok := CauseByID(id); !ok {
			return fmt.Errorf("drill %s: unknown cause %q", s.Name, id)
		}
		if seen[id] {
			return fmt.Errorf("drill %s: cause %q offered twice", s.Name, id)
		}
		seen[id] = true
		right = right || id == s.Right
	}
	if !right {
		return fmt.Errorf("drill %s: the right cause %q is not among the choices", s.Name, s.Right)
	}
	if s.Anchor == "" || s.Signal == "" {
		return fmt.Errorf("drill %s: no runbook anchor or signal", s.Name)
	}
	return nil
}
