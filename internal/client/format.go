package client

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// roleOrder lists roles the way a reader traces a request: the deciders, the
// front door, the executors.
var roleOrder = map[string]int{"placement": 0, "gateway": 1, "worker": 2}

// FormatReplicas renders each placement node's term, applied index and
// ledger digest, and whether they agree: replicas at the same index must
// have the same digest; a lagging one shows a lower index.
func FormatReplicas(w io.Writer, rs []api.Replica) {
	t := Table{Header: []string{"REPLICA", "LEADER", "TERM", "APPLIED", "DIGEST"}, Right: []bool{false, false, true, true, false}}
	byIndex := map[uint64]map[string]bool{}
	for _, r := range rs {
		if r.Error != "" {
			t.Rows = append(t.Rows, []string{r.ID, "-", "-", "-", r.Error})
			continue
		}
		t.Rows = append(t.Rows, []string{r.ID, dash(r.Leader), strconv.FormatUint(r.Term, 10), strconv.FormatUint(r.Applied, 10), r.Digest})
		if byIndex[r.Applied] == nil {
			byIndex[r.Applied] = map[string]bool{}
		}
		byIndex[r.Applied][r.Digest] = true
	}
	t.Write(w)
	verdict := "replicas agree"
	if len(byIndex) > 1 {
		verdict = "replicas agree where they have applied the same entries (some lag behind)"
	}
	idxs := make([]uint64, 0, len(byIndex))
	for idx := range byIndex {
		idxs = append(idxs, idx)
	}
	sort.Slice(idxs, func(i, j int) bool { return idxs[i] < idxs[j] })
	for _, idx := range idxs {
		if len(byIndex[idx]) > 1 {
			verdict = fmt.Sprintf("REPLICAS DISAGREE: different digests at applied index %d", idx)
			break
		}
	}
	fmt.Fprintln(w, verdict)
}

// FormatStatus renders a cluster status as the tables `coldstart status`
// prints: nodes (role, state, address), the placement leader, per-account
// in-flight against the limit, and per-function sandboxes.
func FormatStatus(w io.Writer, s api.Status) error {
	ew := &errWriter{w: w}
	leader := s.Leader
	if leader == "" {
		leader = "none (placement has no quorum?)"
	}
	fmt.Fprintf(ew, "Leader: %s\n\n", leader)

	nodes := append([]api.Node(nil), s.Nodes...)
	sort.SliceStable(nodes, func(i, j int) bool {
		ri, rj := rank(nodes[i].Role), rank(nodes[j].Role)
		if ri != rj {
			return ri < rj
		}
		return nodes[i].ID < nodes[j].ID
	})
	if len(nodes) == 0 {
		fmt.Fprintln(ew, "Nodes: none reported")
	} else {
		t := Table{Header: []string{"NODE", "ROLE", "STATE", "ADDR", "DETAIL"}}
		for _, n := range nodes {
			id := n.ID
			if n.ID == s.Leader && s.Leader != "" {
				id += " *"
			}
			t.Rows = append(t.Rows, []string{id, dash(n.Role), dash(n.State), dash(n.Addr), n.Detail})
		}
		t.Write(ew)
		fmt.Fprintln(ew, countRoles(nodes))
	}
	fmt.Fprintln(ew)

	if len(s.Replicas) > 0 {
		FormatReplicas(ew, s.Replicas)
		fmt.Fprintln(ew)
	}

	if len(s.Workers) > 0 {
		t := Table{Header: []string{"WORKER", "IDLE", "BUSY", "PROCESSES", "SANDBOX LIMITS"}, Right: []bool{false, true, true, true, false}}
		for _, w := range s.Workers {
			t.Rows = append(t.Rows, []string{w.ID, strconv.Itoa(w.Idle), strconv.Itoa(w.Busy), strconv.Itoa(w.Processes), dash(w.Limits)})
		}
		t.Write(ew)
		fmt.Fprintln(ew)
	}

	if a := s.Async; a != nil {
		fmt.Fprintf(ew, "Async events: %d queued, %d in flight, %d redelivered, %d dead-lettered\n", a.Queued, a.InFlight, a.Redelivered, a.DeadLetters)
		fmt.Fprintf(ew, "  %s: AsyncEventsReceived %d, AsyncEventsDropped %d, DeadLetterErrors %d, DestinationDeliveryFailures %d\n\n", dash(a.Gateway), a.Received, a.Dropped, a.DeadLetterErrors, a.DestinationDeliveryFailures)
	}

	accounts := append([]api.AccountStatus(nil), s.Accounts...)
	sort.SliceStable(accounts, func(i, j int) bool { return accounts[i].Account < accounts[j].Account })
	if len(accounts) == 0 {
		fmt.Fprintln(ew, "Accounts: none")
	} else {
		t := Table{Header: []string{"ACCOUNT", "IN-FLIGHT", "LIMIT", "USED", "SANDBOXES"}, Right: []bool{false, true, true, true, true}}
		for _, a := range accounts {
			t.Rows = append(t.Rows, []string{a.Account, strconv.Itoa(a.InFlight), strconv.Itoa(a.Limit), percent(a.InFlight, a.Limit), strconv.Itoa(a.Sandboxes)})
		}
		t.Write(ew)
	}
	fmt.Fprintln(ew)

	fns := append([]api.FunctionStatus(nil), s.Functions...)
	sort.SliceStable(fns, func(i, j int) bool {
		if fns[i].Account != fns[j].Account {
			return fns[i].Account < fns[j].Account
		}
		return fns[i].Name < fns[j].Name
	})
	if len(fns) == 0 {
		fmt.Fprintln(ew, "Functions: none")
	} else {
		t := Table{Header: []string{"FUNCTION", "ACCOUNT", "SANDBOXES", "IDLE", "IN-FLIGHT", "RESERVED"}, Right: []bool{false, false, true, true, true, true}}
		for _, f := range fns {
			reserved := "-"
			if f.Reserved != nil {
				reserved = strconv.Itoa(*f.Reserved)
			}
			t.Rows = append(t.Rows, []string{f.Name, f.Account, strconv.Itoa(f.Sandboxes), strconv.Itoa(f.Idle), strconv.Itoa(f.InFlight), reserved})
		}
		t.Write(ew)
	}
	return ew.err
}

// Table is a plain text table: columns two spaces apart, each left- or
// right-aligned (Right[i]), no trailing spaces.
type Table struct {
	Header []string
	Right  []bool
	Rows   [][]string
}

// Write renders the table to w.
func (t Table) Write(w io.Writer) {
	widths := make([]int, len(t.Header))
	all := append([][]string{t.Header}, t.Rows...)
	for _, row := range all {
		for i, cell := range row {
			if i < len(widths) && len(cell) > widths[i] {
				widths[i] = len(cell)
			}
		}
	}
	var b strings.Builder
	for _, row := range all {
		line := ""
		for i := range widths {
			cell := ""
			if i < len(row) {
				cell = row[i]
			}
			if i > 0 {
				line += "  "
			}
			pad := strings.Repeat(" ", widths[i]-len(cell))
			if i < len(t.Right) && t.Right[i] {
				line += pad + cell
			} else {
				line += cell + pad
			}
		}
		b.WriteString(strings.TrimRight(line, " "))
		b.WriteByte('\n')
	}
	io.WriteString(w, b.String())
}

func rank(role string) int {
	if r, ok := roleOrder[role]; ok {
		return r
	}
	return len(roleOrder)
}

func countRoles(nodes []api.Node) string {
	counts := map[string]int{}
	alive := map[string]int{}
	var roles []string
	for _, n := range nodes {
		if counts[n.Role] == 0 {
			roles = append(roles, n.Role)
		}
		counts[n.Role]++
		if n.State != "dead" && n.State != "suspect" {
			alive[n.Role]++
		}
	}
	out := ""
	for i, r := range roles {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s %d/%d up", dash(r), alive[r], counts[r])
	}
	return out
}

func percent(n, of int) string {
	if of <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(of))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// errWriter keeps the first write error so the formatter can report it once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
