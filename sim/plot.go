package sim

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
)

// The plot is hand-written SVG (no plotting dependency): two panels sharing
// the time axis. The top one shows in-flight invocations, the warm pool
// (idle sandboxes) and all live sandboxes; the bottom one cold starts and
// throttles per time bucket.

const (
	plotW, plotH       = 960, 560
	plotLeft, plotRght = 70, 20
	panel1Top, panel1H = 50, 270
	panel2Top, panel2H = 380, 130
)

type svg struct {
	w   *bufio.Writer
	err error
}

func (s *svg) f(format string, a ...any) {
	if s.err == nil {
		_, s.err = fmt.Fprintf(s.w, format, a...)
	}
}

// WritePlot draws res.Timeline as SVG.
func WritePlot(w io.Writer, res *Result, title string) error {
	tl := res.Timeline
	if tl == nil || len(tl.Cold) == 0 {
		return fmt.Errorf("no timeline recorded")
	}
	s := &svg{w: bufio.NewWriter(w)}
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	s.f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	s.f(`<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", plotLeft, html.EscapeString(title))
	horizon := tl.Step * float64(len(tl.Cold))
	unit, div := timeUnit(horizon)

	top := maxOf(tl.Sandboxes, tl.Concurrency, tl.WarmPool)
	s.axes(panel1Top, panel1H, top, "sandboxes", horizon, unit, div)
	s.line(tl.Sandboxes, top, panel1Top, panel1H, "#999999", "4,3")
	s.line(tl.WarmPool, top, panel1Top, panel1H, "#e08a00", "")
	s.line(tl.Concurrency, top, panel1Top, panel1H, "#1f5fbf", "")
	s.legend(panel1Top-8, []string{"in flight", "warm pool (idle)", "live sandboxes"}, []string{"#1f5fbf", "#e08a00", "#999999"})

	top2 := maxOf(tl.Cold, tl.Throttles)
	s.axes(panel2Top, panel2H, top2, "per bucket", horizon, unit, div)
	s.bars(tl.Cold, top2, panel2Top, panel2H, "#d62728", 0)
	s.bars(tl.Throttles, top2, panel2Top, panel2H, "#8a3fbf", 0.5)
	s.legend(panel2Top-8, []string{"cold starts", "throttles"}, []string{"#d62728", "#8a3fbf"})
	s.f(`<text x="%d" y="%d" text-anchor="middle">time (%s); bucket %.3g s</text>`+"\n", (plotLeft+plotW-plotRght)/2, plotH-12, unit, tl.Step)
	s.f("</svg>\n")
	if s.err != nil {
		return s.err
	}
	return s.w.Flush()
}

func timeUnit(horizon float64) (string, float64) {
	switch {
	case horizon > 3*3600:
		return "h", 3600
	case horizon > 600:
		return "min", 60
	}
	return "s", 1
}

func maxOf(series ...[]int) int {
	m := 1
	for _, s := range series {
		for _, v := range s {
			m = max(m, v)
		}
	}
	return m
}

func xAt(i, n int) float64 {
	return plotLeft + float64(i)*float64(plotW-plotLeft-plotRght)/float64(n)
}

func yAt(v, top, panelTop, panelH int) float64 {
	return float64(panelTop+panelH) - float64(v)*float64(panelH)/float64(top)
}

// axes draws a panel's frame, y ticks and x ticks.
func (s *svg) axes(panelTop, panelH, top int, ylabel string, horizon float64, unit string, div float64) {
	x0, x1 := plotLeft, plotW-plotRght
	s.f(`<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>`+"\n", x0, panelTop, x1-x0, panelH)
	for k := 0; k <= 4; k++ {
		v := int(math.Round(float64(top) * float64(k) / 4))
		y := yAt(v, top, panelTop, panelH)
		s.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%d</text>`+"\n", x0, y, x1, y, x0-6, y+4, v)
	}
	step := niceStep(horizon / div / 6)
	for v := 0.0; v <= horizon/div; v += step {
		x := float64(x0) + float64(x1-x0)*v*div/horizon
		s.f(`<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x, panelTop+panelH+16, v)
	}
	s.f(`<text transform="translate(18,%d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", panelTop+panelH/2, ylabel)
}

func (s *svg) line(v []int, top, panelTop, panelH int, color, dash string) {
	s.f(`<polyline fill="none" stroke="%s" stroke-width="1.5"`, color)
	if dash != "" {
		s.f(` stroke-dasharray="%s"`, dash)
	}
	s.f(` points="`)
	for i, c := range v {
		y := yAt(c, top, panelTop, panelH)
		s.f("%.1f,%.1f %.1f,%.1f ", xAt(i, len(v)), y, xAt(i+1, len(v)), y)
	}
	s.f(`"/>` + "\n")
}

// bars draws one bar per bucket in half its width, from offset (0 or 0.5),
// so that cold starts and throttles in the same bucket are both visible.
func (s *svg) bars(v []int, top, panelTop, panelH int, color string, offset float64) {
	w := (xAt(1, len(v)) - xAt(0, len(v))) / 2
	for i, c := range v {
		if c == 0 {
			continue
		}
		y := yAt(c, top, panelTop, panelH)
		s.f(`<rect x="%.2f" y="%.1f" width="%.2f" height="%.1f" fill="%s"/>`+"\n",
			xAt(i, len(v))+offset*2*w, y, math.Max(w, 1), float64(panelTop+panelH)-y, color)
	}
}

func (s *svg) legend(y int, names, colors []string) {
	x := plotLeft
	for i, n := range names {
		s.f(`<rect x="%d" y="%d" width="12" height="4" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", x, y-4, colors[i], x+16, y, n)
		x += 24 + 8*len(n)
	}
}

// niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}
