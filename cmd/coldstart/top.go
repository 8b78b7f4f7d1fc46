package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/client"
)

// runTop is `coldstart top`: the dashboard's numbers in a terminal, from
// the same gateway endpoints (the sampled series and the timeline).
func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	gw := fs.String("gateway", "", "gateway URL (default $"+client.EnvGateway+", else "+client.DefaultGatewayURL+")")
	once := fs.Bool("once", false, "print one frame and exit (for scripts and tests)")
	every := fs.Duration("interval", time.Second, "refresh interval")
	events := fs.Int("events", 8, "how many of the latest timeline events to show")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart top [flags]",
		"A live terminal view of the cluster: per function invocations/s (cold and warm),\n"+
			"p50/p99 latency, throttles, errors and concurrency against its limit; the nodes\n"+
			"and the placement leader; the latest timeline events. q quits.",
		"coldstart top --gateway http://127.0.0.1:9000\n  coldstart top --once")
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "coldstart top: unexpected argument %q (see --help)\n", pos[0])
		return 2
	}
	if *every <= 0 || *events < 0 {
		fmt.Fprintln(stderr, "coldstart top: --interval must be positive and --events not negative")
		return 2
	}
	src := &topSource{base: strings.TrimRight(client.DefaultGateway(*gw), "/"), hc: &http.Client{Timeout: 3 * time.Second}}
	m := topModel{src: src, every: *every, events: *events}
	if *once {
		m.frame = src.fetch(ctx)
		if m.frame.err != nil {
			fmt.Fprintf(stderr, "coldstart top: %v\n", m.frame.err)
			return 1
		}
		fmt.Fprint(stdout, m.View())
		return 0
	}
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithOutput(stdout), tea.WithAltScreen())
	if _, err := p.Run(); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "coldstart top: %v\n", err)
		return 1
	}
	return 0
}

// topSource reads the gateway's series and timeline. Both endpoints are
// served without authentication, like the dashboard.
type topSource struct {
	base string
	hc   *http.Client
}

type topFrame struct {
	at       time.Time
	series   gateway.Series
	timeline []gateway.TimelineEvent
	err      error
}

func (s *topSource) fetch(ctx context.Context) topFrame {
	f := topFrame{at: time.Now()}
	// The last 3 samples are enough for the current rates.
	since := time.Now().Add(-3 * gateway.SampleInterval).UnixMilli()
	if f.err = s.get(ctx, fmt.Sprintf("%s?since=%d", gateway.PathSeries, since), &f.series); f.err != nil {
		return f
	}
	var page gateway.TimelinePage
	if f.err = s.get(ctx, gateway.PathTimeline, &page); f.err != nil {
		return f
	}
	f.timeline = page.Events
	return f
}

func (s *topSource) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("gateway %s unreachable: %w", s.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

type topModel struct {
	src    *topSource
	every  time.Duration
	events int
	frame  topFrame
}

type topTick struct{}

func (m topModel) fetchCmd() tea.Cmd {
	return func() tea.Msg { return m.src.fetch(context.Background()) }
}

func (m topModel) Init() tea.Cmd { return m.fetchCmd() }

func (m topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "ctrl+c", "esc":
			return m, tea.Quit
		}
	case topFrame:
		m.frame = msg
		return m, tea.Tick(m.every, func(time.Time) tea.Msg { return topTick{} })
	case topTick:
		return m, m.fetchCmd()
	}
	return m, nil
}

// View renders one frame: the header (leader, nodes), one line per
// function from the latest sample, then the latest timeline events.
func (m topModel) View() string {
	var b strings.Builder
	f := m.frame
	fmt.Fprintf(&b, "coldstart top  %s  %s\n", m.src.base, f.at.Format("15:04:05"))
	if f.err != nil {
		fmt.Fprintf(&b, "error: %v\n", f.err)
		return b.String()
	}
	s := f.series
	if s.Quorum && s.Leader != "" {
		fmt.Fprintf(&b, "placement leader %s (quorum)\n", s.Leader)
	} else {
		b.WriteString("placement: NO QUORUM (cold starts fail, warm invocations go on)\n")
	}
	b.WriteString(nodeSummary(s.Nodes) + "\n\n")

	var last gateway.SeriesPoint
	if n := len(s.Points); n > 0 {
		last = s.Points[n-1]
	}
	names := make([]string, 0, len(last.Functions))
	width := len("FUNCTION")
	for fn := range last.Functions {
		names = append(names, fn)
		width = max(width, len(fn))
	}
	sort.Strings(names)
	// Numbers align right; names are padded so that they read left-aligned.
	pad := func(s string) string { return s + strings.Repeat(" ", width-len(s)) }
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, pad("FUNCTION")+"\tINV/S\tCOLD/S\tWARM/S\tP50 MS\tP99 MS\tTHR/S\tERR/S\tCONC/LIMIT\tINVOCATIONS\tTHROTTLES\t")
	for _, fn := range names {
		p := last.Functions[fn]
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%.1f\t%.1f\t%d/%d\t%.0f\t%.0f\t\n", pad(fn), p.Invocations, p.Cold, p.Warm, p.P50Ms, p.P99Ms, p.Throttles, p.Errors, p.Concurrency, p.Limit, p.TotalInvocations, p.TotalThrottles)
	}
	tw.Flush()
	if len(names) == 0 {
		b.WriteString("(no functions yet)\n")
	}

	b.WriteString("\nlatest events\n")
	evs := f.timeline
	if len(evs) > m.events {
		evs = evs[len(evs)-m.events:]
	}
	if len(evs) == 0 {
		b.WriteString("  (none)\n")
	}
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		line := "  " + time.UnixMilli(e.TimeMs).Format("15:04:05") + "  " + e.Kind
		if e.Node != "" {
			line += " " + e.Node
		}
		if e.Function != "" {
			line += " " + e.Function
		}
		if e.Detail != "" {
			line += ": " + e.Detail
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// nodeSummary counts the nodes of each role alive and names the ones
// that are not.
func nodeSummary(nodes []api.Node) string {
	type count struct{ alive, all int }
	roles := map[string]*count{}
	var down []string
	for _, n := range nodes {
		c := roles[n.Role]
		if c == nil {
			c = &count{}
			roles[n.Role] = c
		}
		c.all++
		if n.State == "dead" || n.State == "suspect" {
			down = append(down, n.ID+" ("+n.State+")")
		} else {
			c.alive++
		}
	}
	var parts []string
	for _, r := range []string{"placement", "gateway", "worker"} {
		if c := roles[r]; c != nil {
			parts = append(parts, fmt.Sprintf("%s %d/%d", r, c.alive, c.all))
		}
	}
	out := "nodes alive: " + strings.Join(parts, ", ")
	if len(nodes) == 0 {
		out = "nodes: none reported"
	}
	if len(down) > 0 {
		sort.Strings(down)
		out += "   down: " + strings.Join(down, ", ")
	}
	return out
}
