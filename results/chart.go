package results

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// This file draws the report's plots as inline SVG by hand: a handful of
// line charts do not justify a plotting dependency, and hand-written SVG
// stays small, deterministic (golden files) and readable without scripts.

// chart is one line chart.
type chart struct {
	id, title      string
	xLabel, yLabel string
	x, y           axis
	lines          []line
	markers        []marker
	bands          []band
	// empty is shown in the middle of the plot when there are no lines.
	empty string
}

// axis maps data values to a plot coordinate, linearly or on a log10 scale.
type axis struct {
	min, max float64
	log      bool
	ticks    []tick
}

type tick struct {
	v     float64
	label string
}

// line is one data series; a NaN y breaks it.
type line struct {
	label  string
	color  string
	dash   string // SVG stroke-dasharray, "" for solid
	width  float64
	points []point
}

type point struct{ x, y float64 }

// marker is a labelled vertical line (a fault event).
type marker struct {
	x     float64
	label string
	bad   bool // the step failed
}

// band is a shaded x range (an excluded phase).
type band struct {
	from, to float64
	label    string
}

const (
	chartW      = 960
	plotLeft    = 64
	plotRight   = 24
	plotH       = 220
	legendRowH  = 18
	markerRowH  = 14
	charW       = 6.6 // average glyph width at 11–12 px, for layout only
	maxMarkRows = 3
)

// palette is color-blind-safe enough (Tableau 10) and prints well.
var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

// dashes tell phases apart in the distribution plot.
var dashes = []string{"", "6 3", "2 3", "8 3 2 3"}

func (a axis) pos(v float64, lo, hi float64) float64 {
	f := func(v float64) float64 {
		if a.log {
			return math.Log10(v)
		}
		return v
	}
	if a.max == a.min {
		return lo
	}
	return lo + (f(v)-f(a.min))/(f(a.max)-f(a.min))*(hi-lo)
}

// render writes the chart as an <svg> element.
func (c *chart) render() string {
	var b strings.Builder
	x0, x1 := float64(plotLeft), float64(chartW-plotRight)
	X := func(v float64) float64 { return c.x.pos(v, x0, x1) }
	markRow, markRows := c.markerRows(X)
	legendRows := c.layoutLegend()
	top := 14.0 + float64(markRows)*markerRowH
	if markRows > 0 {
		top += 4
	}
	y0, y1 := top+plotH, top // y0 is the bottom
	height := y0 + 40 + float64(len(legendRows))*legendRowH + 4
	Y := func(v float64) float64 { return c.y.pos(v, y0, y1) }

	fmt.Fprintf(&b, `<svg id="%s" class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %s" role="img" aria-labelledby="%s-title">`+"\n",
		c.id, chartW, f1(height), c.id)
	fmt.Fprintf(&b, `<title id="%s-title">%s</title>`+"\n", c.id, esc(c.title))

	// Bands under everything else.
	for _, bd := range c.bands {
		a, z := max(X(bd.from), x0), min(X(bd.to), x1)
		if z <= a {
			continue
		}
		fmt.Fprintf(&b, `<rect class="band" x="%s" y="%s" width="%s" height="%s"/>`+"\n", f1(a), f1(y1), f1(z-a), f1(y0-y1))
		fmt.Fprintf(&b, `<text class="band-label" x="%s" y="%s">%s</text>`+"\n", f1(a+4), f1(y0-6), esc(bd.label))
	}

	// Grid and ticks.
	for _, t := range c.y.ticks {
		y := Y(t.v)
		fmt.Fprintf(&b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`, f1(x0), f1(y), f1(x1), f1(y))
		fmt.Fprintf(&b, `<text class="tick" x="%s" y="%s" text-anchor="end">%s</text>`+"\n", f1(x0-6), f1(y+4), esc(t.label))
	}
	for _, t := range c.x.ticks {
		x := X(t.v)
		fmt.Fprintf(&b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`, f1(x), f1(y0), f1(x), f1(y1))
		fmt.Fprintf(&b, `<text class="tick" x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", f1(x), f1(y0+16), esc(t.label))
	}
	fmt.Fprintf(&b, `<rect class="frame" x="%s" y="%s" width="%s" height="%s"/>`+"\n", f1(x0), f1(y1), f1(x1-x0), f1(y0-y1))
	fmt.Fprintf(&b, `<text class="axis-label" x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", f1((x0+x1)/2), f1(y0+32), esc(c.xLabel))
	fmt.Fprintf(&b, `<text class="axis-label" transform="translate(14 %s) rotate(-90)" text-anchor="middle">%s</text>`+"\n", f1((y0+y1)/2), esc(c.yLabel))

	// Data, clipped to the plot area.
	fmt.Fprintf(&b, `<clipPath id="%s-clip"><rect x="%s" y="%s" width="%s" height="%s"/></clipPath>`+"\n", c.id, f1(x0), f1(y1-2), f1(x1-x0), f1(y0-y1+4))
	fmt.Fprintf(&b, `<g clip-path="url(#%s-clip)">`+"\n", c.id)
	drawn := 0
	for _, l := range c.lines {
		d := pathData(l.points, X, Y, c.y.log)
		if d == "" {
			continue
		}
		drawn++
		dash := ""
		if l.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, l.dash)
		}
		fmt.Fprintf(&b, `<path class="series" d="%s" stroke="%s" stroke-width="%s"%s><title>%s</title></path>`+"\n", d, l.color, f1(l.width), dash, esc(l.label))
	}
	b.WriteString("</g>\n")
	if drawn == 0 && c.empty != "" {
		fmt.Fprintf(&b, `<text class="empty" x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", f1((x0+x1)/2), f1((y0+y1)/2), esc(c.empty))
	}

	// Fault markers over the data, labels above the plot.
	for i, m := range c.markers {
		if m.x < c.x.min || m.x > c.x.max {
			continue
		}
		x := X(m.x)
		cls := "marker"
		if m.bad {
			cls += " bad"
		}
		ly := 12 + float64(markRow[i])*markerRowH
		fmt.Fprintf(&b, `<g class="%s"><line x1="%s" y1="%s" x2="%s" y2="%s"/><text x="%s" y="%s">%s</text></g>`+"\n",
			cls, f1(x), f1(ly+2), f1(x), f1(y0), f1(x+3), f1(ly), esc(m.label))
	}

	// Legend below the x-axis label.
	for r, row := range legendRows {
		y := y0 + 40 + float64(r)*legendRowH + 8
		x := x0
		for _, i := range row {
			l := c.lines[i]
			dash := ""
			if l.dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, l.dash)
			}
			fmt.Fprintf(&b, `<line class="key" x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="%s"%s/>`, f1(x), f1(y), f1(x+22), f1(y), l.color, f1(l.width), dash)
			fmt.Fprintf(&b, `<text class="legend" x="%s" y="%s">%s</text>`+"\n", f1(x+27), f1(y+4), esc(l.label))
			x += legendWidth(l.label)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func legendWidth(label string) float64 { return 27 + float64(len([]rune(label)))*charW + 18 }

// layoutLegend splits the lines into rows that fit the plot's width.
func (c *chart) layoutLegend() [][]int {
	var rows [][]int
	w, room := 0.0, float64(chartW-plotLeft-plotRight)
	for i := range c.lines {
		lw := legendWidth(c.lines[i].label)
		if len(rows) == 0 || w+lw > room {
			rows = append(rows, nil)
			w = 0
		}
		rows[len(rows)-1] = append(rows[len(rows)-1], i)
		w += lw
	}
	return rows
}

// markerRows places each marker's label on the first of maxMarkRows rows
// where it clears the label before it (the last row when none is clear),
// and returns the row of each marker and the number of rows used.
func (c *chart) markerRows(X func(float64) float64) (rows []int, n int) {
	end := make([]float64, maxMarkRows) // right edge of the last label per row
	for r := range end {
		end[r] = math.Inf(-1)
	}
	rows = make([]int, len(c.markers))
	for i, m := range c.markers {
		if m.x < c.x.min || m.x > c.x.max {
			continue
		}
		x := X(m.x)
		row := maxMarkRows - 1
		for r := range end {
			if x >= end[r]+6 {
				row = r
				break
			}
		}
		end[row] = x + 3 + float64(len([]rune(m.label)))*charW
		rows[i] = row
		n = max(n, row+1)
	}
	return rows, n
}

// pathData turns points into an SVG path, breaking at NaN (and, on a log
// axis, at values that are not positive).
func pathData(ps []point, X, Y func(float64) float64, logY bool) string {
	var b strings.Builder
	pen := false
	for _, p := range ps {
		if math.IsNaN(p.y) || math.IsInf(p.y, 0) || (logY && p.y <= 0) {
			pen = false
			continue
		}
		cmd := "L"
		if !pen {
			cmd = "M"
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
		}
		b.WriteString(cmd + f1(X(p.x)) + "," + f1(Y(p.y)))
		pen = true
	}
	return b.String()
}

// linearAxis covers [lo, hi] with about n "nice" ticks (1, 2 or 5 × 10^k
// apart), labelled by format.
func linearAxis(lo, hi float64, n int, format func(float64) string) axis {
	if !(hi > lo) {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / float64(n))
	a := axis{min: math.Floor(lo/step+1e-9) * step, max: math.Ceil(hi/step-1e-9) * step}
	for v := a.min; v <= a.max+step/2; v += step {
		v = math.Round(v/step) * step
		a.ticks = append(a.ticks, tick{v, format(v)})
	}
	return a
}

// spanAxis covers exactly [lo, hi], with ticks at the multiples of a "nice"
// step (about n of them) that fall inside: a run of 32.4 s ends at 32.4 s,
// not at 35 or 40.
func spanAxis(lo, hi float64, n int, format func(float64) string) axis {
	if !(hi > lo) {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / float64(n))
	a := axis{min: lo, max: hi}
	for k := math.Ceil(lo/step - 1e-9); k*step <= hi+step*1e-9; k++ {
		v := k * step
		if v == 0 {
			v = 0 // not -0
		}
		a.ticks = append(a.ticks, tick{v, format(v)})
	}
	return a
}

func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// logAxis covers [lo, hi] (both > 0) on a log10 scale, from the largest
// 1, 2 or 5 × 10^k at or below lo to the smallest at or above hi. Ticks sit
// at 1, 2 and 5 × 10^k, or at the ends and powers of ten only when the range
// spans more than two decades (more labels would crowd the axis).
func logAxis(lo, hi float64, format func(float64) string) axis {
	const eps = 1e-9
	var vals []float64
	for d := math.Pow(10, math.Floor(math.Log10(lo))); len(vals) == 0 || vals[len(vals)-1] < hi*(1-eps); d *= 10 {
		vals = append(vals, d, 2*d, 5*d)
	}
	// Keep one value at or below lo and one at or above hi.
	first, last := 0, len(vals)-1
	for first+1 < last && vals[first+1] <= lo*(1+eps) {
		first++
	}
	for last-1 > first && vals[last-1] >= hi*(1-eps) {
		last--
	}
	vals = vals[first : last+1]
	a := axis{log: true, min: vals[0], max: vals[len(vals)-1]}
	decadesOnly := math.Log10(a.max/a.min) > 2
	for i, v := range vals {
		mantissa := v / math.Pow(10, math.Floor(math.Log10(v)+eps))
		if decadesOnly && math.Abs(mantissa-1) > 1e-6 && i != 0 && i != len(vals)-1 {
			continue
		}
		a.ticks = append(a.ticks, tick{v, format(v)})
	}
	return a
}

// valueAxis picks a scale for positive values such as latencies: linear
// from zero, or log10 when they span more than two decades (a fault's
// spikes would otherwise flatten the steady state into the floor).
func valueAxis(lines []line, format func(float64) string) axis {
	lo, hi := math.Inf(1), 0.0
	for _, l := range lines {
		for _, p := range l.points {
			if p.y > 0 && !math.IsInf(p.y, 0) {
				lo, hi = min(lo, p.y), max(hi, p.y)
			}
		}
	}
	if hi == 0 {
		return linearAxis(0, 1, 5, format)
	}
	if hi/lo > 100 {
		return logAxis(lo, hi, format)
	}
	return linearAxis(0, hi*1.05, 5, format)
}

// fmtTick labels a tick value: at most 6 significant figures, no trailing
// zeros (0.3, not 0.30000000000000004 or 0.300).
func fmtTick(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func esc(s string) string { return html.EscapeString(s) }
