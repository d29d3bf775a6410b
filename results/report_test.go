package results

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// timelineFixture is a run as the runner writes one for a scenario like
// control-plane-down, on its one time base (0 = the end of a 2 s warm-up):
// 20 s of load, the controller killed at 5 s and restarted at 15 s, echo-2
// killed at 16.5 s and never restarted; processes sampled every 0.5 s from
// the start of the warm-up to a last sample in the teardown, after the end.
func timelineFixture() *Result {
	r := &Result{
		Schema: SchemaV1, Scenario: "control-plane-down", Environment: "local", Seed: 13, Quick: true,
		Start: fixtureStart, End: fixtureStart.Add(26 * time.Second), // set-up and teardown included
	}
	whole, down := newHist(), newHist()
	for sec := range 20 {
		st := Second{Path: PathMeshed, OffsetS: sec, Requests: 300, P50Ms: 2.8 + 0.1*float64(sec%3), P99Ms: 4 + float64(sec%5)}
		if sec == 16 {
			st.Errors, st.P99Ms = 3, 31.5 // the requests in flight on echo-2
		}
		if sec == 9 {
			st.Requests, st.P50Ms, st.P99Ms = 0, 0, 0 // nothing sent: a gap
		}
		r.Series = append(r.Series, st)
		for i := range 100 {
			us := int64(2500 + 40*i + 10*sec)
			_ = whole.RecordValue(us)
			if sec >= 5 && sec < 15 {
				_ = down.RecordValue(us)
			}
		}
	}
	r.Phases = []Phase{
		{Name: "whole", StartS: 0, EndS: 20, Paths: []PathStats{{Path: PathMeshed, Histogram: whole, Latency: Summarize(whole)}}},
		{Name: "down", StartS: 5, EndS: 15, Paths: []PathStats{{Path: PathMeshed, Histogram: down, Latency: Summarize(down)}}},
		{Name: "after_change", StartS: 17.5, EndS: 20},
	}
	r.Events = []Event{
		{OffsetS: 5.02, Type: "kill", Target: "controller", OK: true},
		{OffsetS: 15.04, Type: "restart", Target: "controller", OK: true},
		{OffsetS: 16.51, Type: "kill", Target: "echo-2", OK: true},
	}
	f := func(v float64) *float64 { return &v }
	// life samples pid every 0.5 s over [from, to] with memory growing from
	// base.
	life := func(p *Process, pid int, from, to, base float64) {
		for t := from; t <= to+1e-9; t += 0.5 {
			p.RSS = append(p.RSS, RSSPoint{OffsetS: t, MB: math.Round((base+0.05*(t-from))*100) / 100, PID: pid})
		}
	}
	client := Process{Name: "client-proxy", Role: "proxy", PIDs: []int{300}, Lives: []Life{{PID: 300, FirstS: -2, LastS: 20.5}}}
	life(&client, 300, -2, 20.5, 8)
	ctl := Process{Name: "controller", Role: "controller", PIDs: []int{100, 200}, Lives: []Life{
		{PID: 100, FirstS: -2, LastS: 5, EndS: f(5.5), End: "gone"},
		{PID: 200, FirstS: 15.5, LastS: 20.5},
	}}
	life(&ctl, 100, -2, 5, 40)
	life(&ctl, 200, 15.5, 20.5, 38)
	echo := Process{Name: "echo-2-app", Role: "app", PIDs: []int{101}, Lives: []Life{{PID: 101, FirstS: -2, LastS: 16.5, EndS: f(17), End: "gone"}},
		Note: "pid 101 gone at 17.0 s"}
	life(&echo, 101, -2, 16.5, 12)
	for _, p := range []*Process{&client, &ctl, &echo} {
		p.VmRSSMaxMB, p.VmHWMMB = maxRSS(p.RSS), maxRSS(p.RSS)+0.4
	}
	r.Processes = []Process{client, ctl, echo}
	r.Judge()
	return r
}

// writeData writes the numbers a chart is drawn from, one per line: the
// axes' extents and ticks, the bands, the markers and every point of every
// line ("gap" where the line breaks). The distribution plot's lines have
// 201 points each; every 25th is written.
func (c *chart) writeData(b *strings.Builder) {
	n := func(v float64) string { return strconv.FormatFloat(math.Round(v*1000)/1000+0, 'f', -1, 64) }
	ax := func(name string, a axis) {
		kind := "linear"
		if a.log {
			kind = "log"
		}
		var ticks []string
		for _, t := range a.ticks {
			ticks = append(ticks, t.label)
		}
		fmt.Fprintf(b, "  %s %s %s .. %s, ticks %s\n", name, kind, n(a.min), n(a.max), strings.Join(ticks, " | "))
	}
	fmt.Fprintf(b, "%s: %s\n", c.id, c.title)
	fmt.Fprintf(b, "  x label %q\n", c.xLabel)
	ax("x", c.x)
	ax("y", c.y)
	for _, bd := range c.bands {
		fmt.Fprintf(b, "  band %s .. %s %q\n", n(bd.from), n(bd.to), bd.label)
	}
	for _, m := range c.markers {
		bad := ""
		if m.bad {
			bad = " (failed)"
		}
		fmt.Fprintf(b, "  marker %s %q%s\n", n(m.x), m.label, bad)
	}
	every := 1
	if c.id == "plot-distribution" {
		every = 25
	}
	for _, l := range c.lines {
		fmt.Fprintf(b, "  line %q\n", l.label)
		for i, p := range l.points {
			if i%every != 0 && i != len(l.points)-1 {
				continue
			}
			if math.IsNaN(p.y) {
				fmt.Fprintf(b, "    %s gap\n", n(p.x))
				continue
			}
			fmt.Fprintf(b, "    %s %s\n", n(p.x), n(p.y))
		}
	}
}

// TestReportSeriesGolden pins the numbers the report's plots are drawn
// from, built from a run on the runner's time base: every series and
// marker on one time base (the controller's memory ends before its kill
// marker and resumes after its restart marker), the warm-up's samples
// before 0 under a warm-up band, a dead process's time as a gap, and the
// time axis ending with the 20 s of load (not the 26 s the run took with
// its set-up and teardown). A regression in alignment shows as a diff.
func TestReportSeriesGolden(t *testing.T) {
	var b strings.Builder
	for _, c := range timelineFixture().charts() {
		c.writeData(&b)
		b.WriteString("\n")
	}
	golden(t, "report-series.golden.txt", []byte(b.String()))
}

// TestTimeSpan: the plots over time end with the measured load, or with
// the samples when there is no per-second series; they start with the
// earliest sample.
func TestTimeSpan(t *testing.T) {
	r := timelineFixture()
	if lo, hi := r.timeSpan(); lo != -2 || hi != 20 {
		t.Errorf("timed run: span %v..%v, want -2..20 (warm-up to the end of the load)", lo, hi)
	}
	if a := r.timeAxis(); a.min != -2 || a.max != 20 || a.ticks[0].label != "0 s" || a.ticks[len(a.ticks)-1].label != "20 s" {
		t.Errorf("timed run: axis %v..%v ticks %q", a.min, a.max, tickLabels(a))
	}
	// Interleaved trials: no series, and a "whole" phase as long as all
	// trials together, which is no point in time.
	trials := &Result{Phases: []Phase{{Name: "whole", EndS: 60}}, Processes: []Process{{RSS: []RSSPoint{{OffsetS: -0.01}, {OffsetS: 47.3}}}}}
	if lo, hi := trials.timeSpan(); lo != -0.01 || hi != 47.3 {
		t.Errorf("trials: span %v..%v, want -0.01..47.3", lo, hi)
	}
	if _, bands := trials.timeDecor(); len(bands) != 0 {
		t.Errorf("trials: bands %+v, want no warm-up band", bands)
	}
	if lo, hi := (&Result{}).timeSpan(); lo != 0 || hi != 1 {
		t.Errorf("empty run: span %v..%v, want 0..1", lo, hi)
	}
}

func TestSpanAxis(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		labels []string
	}{
		{0, 40, []string{"0", "5", "10", "15", "20", "25", "30", "35", "40"}},
		{-2.02, 30, []string{"0", "5", "10", "15", "20", "25", "30"}},
		{-5, 32.4, []string{"-5", "0", "5", "10", "15", "20", "25", "30"}},
		{0, 0.6, []string{"0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6"}},
	} {
		a := spanAxis(tc.lo, tc.hi, 10, fmtTick)
		if a.min != tc.lo || a.max != tc.hi || !slices.Equal(tickLabels(a), tc.labels) {
			t.Errorf("spanAxis(%v, %v): %v..%v ticks %q, want %v..%v %q", tc.lo, tc.hi, a.min, a.max, tickLabels(a), tc.lo, tc.hi, tc.labels)
		}
	}
}

// TestRSSPoints: the line breaks between two pids, and, for results
// written before samples carried pids, across a long silence.
func TestRSSPoints(t *testing.T) {
	str := func(ps []point) string {
		var parts []string
		for _, p := range ps {
			if math.IsNaN(p.y) {
				parts = append(parts, fmt.Sprintf("%g:gap", p.x))
				continue
			}
			parts = append(parts, fmt.Sprintf("%g:%g", p.x, p.y))
		}
		return strings.Join(parts, " ")
	}
	restarted := []RSSPoint{{0, 5, 1}, {1, 6, 1}, {2, 6, 1}, {9, 4, 2}, {10, 5, 2}}
	if got, want := str(rssPoints(restarted)), "0:5 1:6 2:6 5.5:gap 9:4 10:5"; got != want {
		t.Errorf("restart: %s, want %s", got, want)
	}
	// A late sample of a live process is no gap.
	late := []RSSPoint{{0, 5, 1}, {1, 6, 1}, {2.8, 6, 1}, {3.8, 6, 1}}
	if got, want := str(rssPoints(late)), "0:5 1:6 2.8:6 3.8:6"; got != want {
		t.Errorf("late sample: %s, want %s", got, want)
	}
	old := []RSSPoint{{0, 5, 0}, {1, 6, 0}, {2, 6, 0}, {9, 4, 0}, {10, 5, 0}}
	if got, want := str(rssPoints(old)), "0:5 1:6 2:6 5.5:gap 9:4 10:5"; got != want {
		t.Errorf("no pids: %s, want %s", got, want)
	}
	if got := str(rssPoints(nil)); got != "" {
		t.Errorf("no samples: %s", got)
	}
}

func TestPIDHistory(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		p    Process
		want []string
	}{
		{Process{PIDs: []int{7}, Lives: []Life{{PID: 7, FirstS: -2, LastS: 20}}}, []string{"7"}},
		{Process{PIDs: []int{7, 9}, Lives: []Life{{PID: 7, FirstS: -2, LastS: 5, EndS: f(5.25), End: "gone"}, {PID: 9, FirstS: 15.5, LastS: 20}}},
			[]string{"7 (gone at 5.2 s)", "9 (from 15.5 s)"}},
		{Process{PIDs: []int{7, 9}, Lives: []Life{{PID: 7, FirstS: -2, LastS: -1.5, EndS: f(-1), End: "replaced by pid 9"}, {PID: 9, FirstS: -1, LastS: 3, EndS: f(3.5), End: "unreadable: permission denied"}}},
			[]string{"7 (replaced at −1.0 s)", "9 (from −1.0 s, unreadable at 3.5 s: permission denied)"}},
		// Written before lives: each pid once.
		{Process{PIDs: []int{1273, 1273, 1794, 1794}}, []string{"1273", "1794"}},
	} {
		if got := tc.p.pidHistory(); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.p.Lives, got, tc.want)
		}
	}
}
