package client

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// roleOrder lists roles the way a reader traces a request: the deciders, the
// front door, the executors.
var roleOrder = map[string]int{"placement": 0, "gateway": 1, "worker": 2}

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
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	if len(nodes) == 0 {
		fmt.Fprintln(tw, "Nodes: none reported")
	} else {
		fmt.Fprintln(tw, "NODE\tROLE\tSTATE\tADDR\tDETAIL")
		for _, n := range nodes {
			id := n.ID
			if n.ID == s.Leader && s.Leader != "" {
				id += " *"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", id, dash(n.Role), dash(n.State), dash(n.Addr), n.Detail)
		}
		fmt.Fprintf(tw, "%s\n", countRoles(nodes))
	}
	tw.Flush()
	fmt.Fprintln(ew)

	accounts := append([]api.AccountStatus(nil), s.Accounts...)
	sort.SliceStable(accounts, func(i, j int) bool { return accounts[i].Account < accounts[j].Account })
	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(accounts) == 0 {
		fmt.Fprintln(ew, "Accounts: none")
	} else {
		fmt.Fprintln(tw, "ACCOUNT\tIN-FLIGHT\tLIMIT\tUSED\tSANDBOXES\t")
		for _, a := range accounts {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t\n", a.Account, a.InFlight, a.Limit, percent(a.InFlight, a.Limit), a.Sandboxes)
		}
		tw.Flush()
	}
	fmt.Fprintln(ew)

	fns := append([]api.FunctionStatus(nil), s.Functions...)
	sort.SliceStable(fns, func(i, j int) bool {
		if fns[i].Account != fns[j].Account {
			return fns[i].Account < fns[j].Account
		}
		return fns[i].Name < fns[j].Name
	})
	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(fns) == 0 {
		fmt.Fprintln(ew, "Functions: none")
	} else {
		fmt.Fprintln(tw, "FUNCTION\tACCOUNT\tSANDBOXES\tIDLE\tIN-FLIGHT\tRESERVED\t")
		for _, f := range fns {
			reserved := "-"
			if f.Reserved != nil {
				reserved = strconv.Itoa(*f.Reserved)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t\n", f.Name, f.Account, f.Sandboxes, f.Idle, f.InFlight, reserved)
		}
		tw.Flush()
	}
	return ew.err
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
