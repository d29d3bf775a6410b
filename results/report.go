package results

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
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
	"word":    verdictWord,
	"measure": measured,
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
	colors := r.pathColors()
	for _, c := range []*chart{r.latencyChart(colors), r.successChart(colors), r.distributionChart(colors), r.rssChart()} {
		// Trusted: chart.render escapes every text it draws.
		data.Plots = append(data.Plots, template.HTML(c.render()))
	}
	if r.Propagation != nil {
		data.PropagationPlot = template.HTML(r.propagationChart().render())
	}
	return reportTmpl.Execute(w, data)
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

// timeAxis spans the run in seconds.
func (r *Result) timeAxis() axis {
	end := r.duration()
	for _, s := range r.Series {
		end = max(end, float64(s.OffsetS+1))
	}
	for _, ph := range r.Phases {
		end = max(end, ph.EndS)
	}
	for _, e := range r.Events {
		end = max(end, e.OffsetS)
	}
	return linearAxis(0, max(end, 1), 10, func(v float64) string { return fmtTick(v) + " s" })
}

// timeDecor returns the fault markers and the excluded-phase bands shared
// by the plots over time.
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
	for _, ph := range r.Phases {
		if ph.Excluded {
			bs = append(bs, band{from: ph.StartS, to: ph.EndS, label: ph.Name + " (excluded)"})
		}
	}
	return ms, bs
}

func (r *Result) latencyChart(colors map[string]string) *chart {
	c := &chart{id: "plot-latency", title: "Latency over time: p50 and p99 per second (ms)",
		xLabel: "time since start", yLabel: "latency (ms)", x: r.timeAxis(), empty: "no time series recorded"}
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
		xLabel: "time since start", yLabel: "success rate", x: r.timeAxis(), empty: "no time series recorded"}
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
	c := &chart{id: "plot-rss", title: "Resident memory over time: VmRSS per process (MiB)",
		xLabel: "time since start", yLabel: "VmRSS (MiB)", x: r.timeAxis(), empty: "no processes sampled"}
	hi := 0.0
	for i, p := range r.Processes {
		pts := make([]point, len(p.RSS))
		for j, s := range p.RSS {
			pts[j] = point{s.OffsetS, s.MB}
			hi = max(hi, s.MB)
		}
		c.lines = append(c.lines, line{label: fmt.Sprintf("%s (%s) max %s, HWM %s", p.Name, p.Role, fmtMB(p.VmRSSMaxMB), fmtMB(p.VmHWMMB)),
			color: palette[i%len(palette)], width: 2, points: pts})
	}
	c.y = linearAxis(0, max(hi*1.1, 1), 5, fmtTick)
	c.markers, _ = r.timeDecor()
	return c
}
