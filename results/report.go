package results

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

//go:embed report.html.tmpl
var reportTemplate string

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":      fmtMs,
	"pct":     fmtPct,
	"mb":      fmtMB,
	"num":     fmtNum,
	"counts":  fmtCounts,
	"mark":    verdictMark,
	"amark":   assertionMark,
	"word":    verdictWord,
	"measure": measured,
	"pids":    func(p Process) []string { return p.pidHistory() },
	"s1":      func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
}).Parse(reportTemplate))

// WriteReport writes r as one self-contained HTML page: the verdict, the
// assertion table, four inline SVG plots (ids plot-latency, plot-success,
// plot-distribution, plot-rss) and the tables of summary.md. A
// control-plane scale run, which has no traffic, gets plot-propagation
// instead of plot-latency and plot-success. It needs no script and no
// network.
func (r *Result) WriteReport(w io.Writer) error {
	data := struct {
		*Result
		Duration float64
		FailText string
		Plots    []template.HTML
		// PropagationPlot is drawn for a control-plane scale run only.
		PropagationPlot template.HTML
	}{Result: r, Duration: r.duration()}
	if err := r.Failures(); err != nil {
		data.FailText = err.Error()
	}
	for _, c := range r.charts() {
		// Trusted: chart.render escapes every text it draws.
		svg := template.HTML(c.render())
		if c.id == propagationPlotID {
			data.PropagationPlot = svg
			continue
		}
		data.Plots = append(data.Plots, svg)
	}
	return reportTmpl.Execute(w, data)
}

const propagationPlotID = "plot-propagation"

// charts are the report's plots in page order: latency and success over
// time, the latency distribution, memory over time, and for a control-plane
// scale run the propagation over time. The plots over time share one time
// base and one x axis (timeAxis).
func (r *Result) charts() []*chart {
	colors := r.pathColors()
	cs := []*chart{r.latencyChart(colors), r.successChart(colors), r.distributionChart(colors), r.rssChart()}
	if r.Propagation != nil {
		cs = append(cs, r.propagationChart())
	}
	return cs
}

// pathColors gives each path one color in every plot, in order of first
// appearance.
func (r *Result) pathColors() map[string]string {
	colors := map[string]string{}
	add := func(p string) {
		if _, ok := colors[p]; !ok {
			colors[p] = palette[len(colors)%len(palette)]
		}
	}
	for _, ph := range r.Phases {
		for _, ps := range ph.Paths {
			add(ps.Path)
		}
	}
	for _, s := range r.Series {
		add(s.Path)
	}
	return colors
}

// seriesByPath groups r.Series by path, paths in order of first appearance.
func (r *Result) seriesByPath() (paths []string, by map[string][]Second) {
	by = map[string][]Second{}
	for _, s := range r.Series {
		if _, ok := by[s.Path]; !ok {
			paths = append(paths, s.Path)
		}
		by[s.Path] = append(by[s.Path], s)
	}
	return paths, by
}

// timeSpan is the stretch of time the plots over time share, in seconds on
// the run's one time base, where the series, the events and the process
// samples all count from the same time 0 (for a scenario with load, the end
// of its warm-up). It runs from the earliest sample (processes are sampled
// through the warm-up, before 0) to the end of the measured load: the last
// second of the series, phase or event. Without a per-second series
// (interleaved trials, a control-plane scale run) it ends with the last
// sample, change or event. Samples after it (the teardown) are not drawn.
func (r *Result) timeSpan() (lo, hi float64) {
	timed := len(r.Series) > 0
	for _, s := range r.Series {
		hi = max(hi, float64(s.OffsetS+1))
	}
	if timed {
		// Not otherwise: the "whole" phase of interleaved trials adds
		// up their durations, which is no point in time.
		for _, ph := range r.Phases {
			hi = max(hi, ph.EndS)
		}
	}
	for _, e := range r.Events {
		hi = max(hi, e.OffsetS)
	}
	if p := r.Propagation; p != nil {
		for _, c := range p.PerChange {
			hi = max(hi, c.OffsetS)
		}
	}
	for _, p := range r.Processes {
		for _, s := range p.RSS {
			lo = min(lo, s.OffsetS)
			if !timed {
				hi = max(hi, s.OffsetS)
			}
		}
	}
	if hi <= lo {
		hi = lo + 1
	}
	return lo, hi
}

// timeAxis spans timeSpan exactly: it ends where the run ends, not at the
// next round number.
func (r *Result) timeAxis() axis {
	lo, hi := r.timeSpan()
	return spanAxis(lo, hi, 10, func(v float64) string { return fmtTick(v) + " s" })
}

// timeLabel names the time axis: where its 0 is.
func (r *Result) timeLabel() string {
	if len(r.Series) > 0 {
		return "time since the end of the warm-up"
	}
	return "time since start"
}

// timeDecor returns the fault markers and the shaded bands shared by the
// plots over time: the excluded phases, and the warm-up before time 0 when
// the processes were sampled through it.
func (r *Result) timeDecor() ([]marker, []band) {
	var ms []marker
	for _, e := range r.Events {
		label := e.Label()
		if !e.OK {
			label = "✗ " + label
		}
		ms = append(ms, marker{x: e.OffsetS, label: label, bad: !e.OK})
	}
	var bs []band
	if lo, _ := r.timeSpan(); lo < 0 && len(r.Series) > 0 {
		bs = append(bs, band{from: lo, to: 0, label: "warm-up"})
	}
	for _, ph := range r.Phases {
		if ph.Excluded {
			bs = append(bs, band{from: ph.StartS, to: ph.EndS, label: ph.Name + " (excluded)"})
		}
	}
	return ms, bs
}

func (r *Result) latencyChart(colors map[string]string) *chart {
	c := &chart{id: "plot-latency", title: "Latency over time: p50 and p99 per second (ms)",
		xLabel: r.timeLabel(), yLabel: "latency (ms)", x: r.timeAxis(), empty: "no time series recorded"}
	paths, by := r.seriesByPath()
	for _, p := range paths {
		var p50, p99 []point
		for _, s := range by[p] {
			x := float64(s.OffsetS) + 0.5
			if s.P99Ms == 0 { // nothing was sent this second
				p50, p99 = append(p50, point{x, math.NaN()}), append(p99, point{x, math.NaN()})
				continue
			}
			p50, p99 = append(p50, point{x, s.P50Ms}), append(p99, point{x, s.P99Ms})
		}
		c.lines = append(c.lines,
			line{label: p + " p99", color: colors[p], width: 2, points: p99},
			line{label: p + " p50", color: colors[p], width: 1.5, dash: "5 3", points: p50})
	}
	c.y = valueAxis(c.lines, fmtTick)
	c.markers, c.bands = r.timeDecor()
	return c
}

func (r *Result) successChart(colors map[string]string) *chart {
	c := &chart{id: "plot-success", title: "Success rate over time, per second",
		xLabel: r.timeLabel(), yLabel: "success rate", x: r.timeAxis(), empty: "no time series recorded"}
	paths, by := r.seriesByPath()
	lo := 1.0
	for _, p := range paths {
		var pts []point
		for _, s := range by[p] {
			v := math.NaN()
			if s.Requests > 0 {
				v = s.SuccessRate()
				lo = min(lo, v)
			}
			pts = append(pts, point{float64(s.OffsetS) + 0.5, v})
		}
		c.lines = append(c.lines, line{label: p, color: colors[p], width: 2, points: pts})
	}
	// Zoom in on the failures: from a little below the worst second to
	// 100 %, never less than a 1 % span.
	span := max(1-lo, 0.01) * 1.1
	c.y = linearAxis(max(0, 1-span), 1, 5, func(v float64) string { return fmtTick(v*100) + " %" })
	c.markers, c.bands = r.timeDecor()
	return c
}

// distributionPercentiles are where the latency distribution is drawn: 200
// points evenly spaced on the 1/(1-p) log scale from p50 to p99.99.
var distributionPercentiles = func() []float64 {
	const n = 200
	ps := make([]float64, n+1)
	for i := range ps {
		x := math.Log10(2) + (4-math.Log10(2))*float64(i)/n
		ps[i] = 100 - 100/math.Pow(10, x)
	}
	return ps
}()

// percentileX maps a percentile to the distribution plot's x: the number
// of nines, log10(1/(1-p)).
func percentileX(p float64) float64 { return -math.Log10(1 - p/100) }

func (r *Result) distributionChart(colors map[string]string) *chart {
	c := &chart{id: "plot-distribution", title: "Latency distribution by percentile (ms), per phase and path",
		xLabel: "percentile (log scale of 1/(1−p))", yLabel: "latency (ms)", empty: "no histograms recorded"}
	c.x = axis{min: percentileX(50), max: percentileX(99.99)}
	for _, p := range []float64{50, 90, 99, 99.9, 99.99} {
		c.x.ticks = append(c.x.ticks, tick{percentileX(p), strconv.FormatFloat(p, 'f', -1, 64) + "%"})
	}
	k := 0
	for _, ph := range r.Phases {
		if ph.Excluded {
			continue
		}
		drawn := false
		for _, ps := range ph.Paths {
			h := ps.Histogram
			if h == nil || h.TotalCount() == 0 {
				continue
			}
			vals := h.ValueAtPercentilesSlice(distributionPercentiles)
			pts := make([]point, len(vals))
			for i, v := range vals {
				pts[i] = point{percentileX(distributionPercentiles[i]), float64(v) / 1000}
			}
			c.lines = append(c.lines, line{label: fmt.Sprintf("%s %s", ph.Name, ps.Path), color: colors[ps.Path],
				dash: dashes[k%len(dashes)], width: 2, points: pts})
			drawn = true
		}
		if drawn {
			k++
		}
	}
	if p := r.Propagation; p != nil && p.Histogram != nil && p.Histogram.TotalCount() > 0 {
		vals := p.Histogram.ValueAtPercentilesSlice(distributionPercentiles)
		pts := make([]point, len(vals))
		for i, v := range vals {
			pts[i] = point{percentileX(distributionPercentiles[i]), float64(v) / 1000}
		}
		c.lines = append(c.lines, line{label: "propagation (change to watcher)", color: palette[3], width: 2, points: pts})
	}
	c.y = valueAxis(c.lines, fmtTick)
	return c
}

func (r *Result) rssChart() *chart {
	c := &chart{id: "plot-rss", title: "Resident memory over time: VmRSS per process (MiB); a gap is a time no process of that name ran",
		xLabel: r.timeLabel(), yLabel: "VmRSS (MiB)", x: r.timeAxis(), empty: "no processes sampled"}
	hi := 0.0
	for i, p := range r.Processes {
		for _, s := range p.RSS {
			hi = max(hi, s.MB)
		}
		c.lines = append(c.lines, line{label: fmt.Sprintf("%s (%s) max %s, HWM %s", p.Name, p.Role, fmtMB(p.VmRSSMaxMB), fmtMB(p.VmHWMMB)),
			color: palette[i%len(palette)], width: 2, points: rssPoints(p.RSS)})
	}
	c.y = linearAxis(0, max(hi*1.1, 1), 5, fmtTick)
	c.markers, c.bands = r.timeDecor()
	return c
}

// rssPoints turns one process's samples into a line that breaks (a NaN
// point) wherever no process ran: between two pids, from the old one's
// last sample to the new one's first (a kill and a restart), so the time
// it was dead is a gap, not a diagonal. Samples without a pid (results
// written before pids were recorded) break across a silence of more than
// three sampling intervals instead.
func rssPoints(rss []RSSPoint) []point {
	var steps []float64
	for i := 1; i < len(rss); i++ {
		steps = append(steps, rss[i].OffsetS-rss[i-1].OffsetS)
	}
	silence := math.Inf(1)
	if len(steps) > 0 {
		slices.Sort(steps)
		silence = 3 * steps[len(steps)/2]
	}
	pts := make([]point, 0, len(rss))
	for i, s := range rss {
		if i > 0 {
			prev := rss[i-1]
			if prev.PID != s.PID || (s.PID == 0 && s.OffsetS-prev.OffsetS > silence) {
				pts = append(pts, point{(prev.OffsetS + s.OffsetS) / 2, math.NaN()})
			}
		}
		pts = append(pts, point{s.OffsetS, s.MB})
	}
	return pts
}

// pidHistory says which pids ran under p's name and when they changed:
// "4102 (gone at 15.2 s)", "4230 (from 25.1 s)". A pid sampled to the end
// of a run it started with is just its number. Results written before
// lives were recorded give their distinct pids.
func (p Process) pidHistory() []string {
	if len(p.Lives) == 0 {
		var out []string
		seen := map[int]bool{}
		for _, pid := range p.PIDs {
			if !seen[pid] {
				seen[pid] = true
				out = append(out, strconv.Itoa(pid))
			}
		}
		return out
	}
	out := make([]string, 0, len(p.Lives))
	for i, l := range p.Lives {
		var when []string
		if i > 0 {
			when = append(when, "from "+fmtSeconds(l.FirstS))
		}
		if l.EndS != nil {
			how, detail, _ := strings.Cut(l.End, ": ")
			if strings.HasPrefix(how, "replaced") {
				how = "replaced"
			}
			w := how + " at " + fmtSeconds(*l.EndS)
			if detail != "" {
				w += ": " + detail
			}
			when = append(when, w)
		}
		s := strconv.Itoa(l.PID)
		if len(when) > 0 {
			s += " (" + strings.Join(when, ", ") + ")"
		}
		out = append(out, s)
	}
	return out
}

// fmtSeconds formats an offset: "15.2 s", "−1.0 s".
func fmtSeconds(v float64) string {
	return strings.Replace(strconv.FormatFloat(v, 'f', 1, 64), "-", "−", 1) + " s"
}
