package results

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchmath"
)

// Alpha is the significance level of Compare: a change is significant when
// the Mann–Whitney U test's p-value is below it (benchstat's default).
const Alpha = 0.05

// Confidence is the level of the confidence intervals Compare reports.
const Confidence = 0.95

// Comparison is what changed between two runs of a scenario, metric by
// metric, with statistics (Compare builds it).
type Comparison struct {
	Old, New RunInfo
	Changes  []Change
	// Unmatched lists what only one run has ("phase during_fault: only in
	// new"); it is not compared.
	Unmatched []string
}

// RunInfo identifies one side of a Comparison.
type RunInfo struct {
	Scenario, GitRevision, Start string
}

// Change compares one metric of one phase and path (or one process).
type Change struct {
	// Phase is empty for process metrics, which cover the whole run.
	Phase string
	// Subject is the path ("meshed"), the added latency of the meshed path
	// over the direct one ("meshed−direct"), or the process name.
	Subject string
	// Metric is "p50_ms", "p99_ms", "success_rate", "p50_added_ms",
	// "p99_added_ms", "vmrss_mb" or "cpu_us_per_request".
	Metric string
	// Samples says what the values are: "trials" (one per interleaved
	// trial), "seconds" (one per second of the phase), "rss samples", or
	// "run" (one value per run).
	Samples  string
	Old, New Estimate
	// DeltaPct is (New−Old)/|Old| of the medians in percent; NaN when Old
	// is 0 and New is not.
	DeltaPct float64
	// P is the Mann–Whitney U p-value; 1 when the test could not run.
	P float64
	// Significant is P < Alpha with enough samples to tell.
	Significant bool
	// Note is the verdict in words: "no significant change",
	// "significant: worse", "no significant change (too few samples to
	// tell: …)".
	Note string
	// Warnings are benchmath's remarks on the confidence intervals ("need
	// >= 6 samples for confidence interval at level 0.95").
	Warnings []string
}

// Estimate is a sample's median with its confidence interval.
type Estimate struct {
	Median, Lo, Hi float64
	N              int
	// Range is the interval as benchstat prints it: "± 3%", "± ∞".
	Range string
}

// lowerIsBetter tells the direction of each metric for the note.
var lowerIsBetter = map[string]bool{
	"p50_ms": true, "p99_ms": true, "p50_added_ms": true, "p99_added_ms": true,
	"vmrss_mb": true, "cpu_us_per_request": true, "success_rate": false,
}

// Compare tells what changed from run a (old) to run b (new): for every
// phase and path both runs have, the p50, p99 and success rate (over
// interleaved trials when both runs have them, else over the phase's
// per-second values), the added latency of the meshed path over the direct
// one (per trial), and for every process both runs sampled, VmRSS (over its
// samples) and CPU per request (one value per run: too few to tell). Medians come with 95 % confidence
// intervals (benchmath.AssumeNothing), changes with Mann–Whitney U
// p-values; a change counts only when p < Alpha. Excluded phases are
// skipped.
func Compare(a, b *Result) Comparison {
	c := Comparison{Old: runInfo(a), New: runInfo(b)}
	for _, po := range a.Phases {
		if po.Excluded {
			continue
		}
		pn := b.Phase(po.Name)
		if pn == nil {
			c.Unmatched = append(c.Unmatched, fmt.Sprintf("phase %s: only in old", po.Name))
			continue
		}
		for _, so := range po.Paths {
			if pn.Path(so.Path) == nil {
				c.Unmatched = append(c.Unmatched, fmt.Sprintf("phase %s path %s: only in old", po.Name, so.Path))
				continue
			}
			kind, sa, sb := "trials", trialSamples(a, po.Name, so.Path), trialSamples(b, pn.Name, so.Path)
			if len(sa["p50_ms"]) == 0 || len(sb["p50_ms"]) == 0 {
				kind, sa, sb = "seconds", secondSamples(a, &po, so.Path), secondSamples(b, pn, so.Path)
			}
			for _, m := range []string{"p50_ms", "p99_ms", "success_rate"} {
				c.Changes = append(c.Changes, compareSamples(po.Name, so.Path, m, kind, sa[m], sb[m]))
			}
		}
		for _, sn := range pn.Paths {
			if po.Path(sn.Path) == nil {
				c.Unmatched = append(c.Unmatched, fmt.Sprintf("phase %s path %s: only in new", po.Name, sn.Path))
			}
		}
		for _, m := range []string{"p50", "p99"} {
			va, vb := addedLatency(a, po.Name, m), addedLatency(b, po.Name, m)
			if len(va) > 0 && len(vb) > 0 {
				c.Changes = append(c.Changes, compareSamples(po.Name, PathMeshed+"−"+PathDirect, m+"_added_ms", "trials", va, vb))
			}
		}
	}
	for _, pn := range b.Phases {
		if !pn.Excluded && a.Phase(pn.Name) == nil {
			c.Unmatched = append(c.Unmatched, fmt.Sprintf("phase %s: only in new", pn.Name))
		}
	}

	procs := func(r *Result) map[string]*Process {
		m := map[string]*Process{}
		for i := range r.Processes {
			m[r.Processes[i].Name] = &r.Processes[i]
		}
		return m
	}
	oldP, newP := procs(a), procs(b)
	for _, po := range a.Processes {
		pn, ok := newP[po.Name]
		if !ok {
			c.Unmatched = append(c.Unmatched, fmt.Sprintf("process %s: only in old", po.Name))
			continue
		}
		rss := func(p *Process) []float64 {
			v := make([]float64, len(p.RSS))
			for i, s := range p.RSS {
				v[i] = s.MB
			}
			return v
		}
		c.Changes = append(c.Changes, compareSamples("", po.Name, "vmrss_mb", "rss samples", rss(&po), rss(pn)))
		if po.Requests > 0 && pn.Requests > 0 {
			c.Changes = append(c.Changes, compareSamples("", po.Name, "cpu_us_per_request", "run",
				[]float64{po.CPUMicrosPerRequest}, []float64{pn.CPUMicrosPerRequest}))
		}
	}
	for _, pn := range b.Processes {
		if oldP[pn.Name] == nil {
			c.Unmatched = append(c.Unmatched, fmt.Sprintf("process %s: only in new", pn.Name))
		}
	}
	return c
}

func runInfo(r *Result) RunInfo {
	return RunInfo{Scenario: r.Scenario, GitRevision: r.GitRevision, Start: r.Start.UTC().Format("2006-01-02 15:04:05Z")}
}

// trialSamples collects a path's p50_ms, p99_ms and success_rate, one
// value per trial of the phase.
func trialSamples(r *Result, phase, path string) map[string][]float64 {
	out := map[string][]float64{}
	for _, t := range r.Trials {
		if t.Phase == phase && t.Path == path && t.Count > 0 {
			out["p50_ms"] = append(out["p50_ms"], t.Latency.P50)
			out["p99_ms"] = append(out["p99_ms"], t.Latency.P99)
			out["success_rate"] = append(out["success_rate"], t.SuccessRate)
		}
	}
	return out
}

// secondSamples collects a path's p50_ms, p99_ms and success_rate, one
// value per second that lies wholly inside the phase and had requests.
func secondSamples(r *Result, ph *Phase, path string) map[string][]float64 {
	out := map[string][]float64{}
	for _, s := range r.Series {
		if s.Path == path && s.Requests > 0 && float64(s.OffsetS) >= ph.StartS && float64(s.OffsetS+1) <= ph.EndS {
			out["p50_ms"] = append(out["p50_ms"], s.P50Ms)
			out["p99_ms"] = append(out["p99_ms"], s.P99Ms)
			out["success_rate"] = append(out["success_rate"], s.SuccessRate())
		}
	}
	return out
}

// addedLatency pairs the meshed and direct trials of a phase by trial
// number and returns meshed minus direct for the percentile ("p50",
// "p99").
func addedLatency(r *Result, phase, pct string) []float64 {
	direct := map[int]Latency{}
	for _, t := range r.Trials {
		if t.Phase == phase && t.Path == PathDirect && t.Count > 0 {
			direct[t.Trial] = t.Latency
		}
	}
	var out []float64
	for _, t := range r.Trials {
		d, ok := direct[t.Trial]
		if t.Phase != phase || t.Path != PathMeshed || t.Count == 0 || !ok {
			continue
		}
		if pct == "p50" {
			out = append(out, t.Latency.P50-d.P50)
		} else {
			out = append(out, t.Latency.P99-d.P99)
		}
	}
	return out
}

func compareSamples(phase, subject, metric, kind string, a, b []float64) Change {
	ch := Change{Phase: phase, Subject: subject, Metric: metric, Samples: kind, P: 1, DeltaPct: math.NaN()}
	if len(a) == 0 || len(b) == 0 {
		ch.Old, ch.New = Estimate{N: len(a), Range: "± ∞"}, Estimate{N: len(b), Range: "± ∞"}
		ch.Note = fmt.Sprintf("no data to compare (n=%d+%d)", len(a), len(b))
		return ch
	}
	th := benchmath.DefaultThresholds
	th.CompareAlpha = Alpha
	sa := benchmath.NewSample(slices.Clone(a), &th)
	sb := benchmath.NewSample(slices.Clone(b), &th)
	var sumA, sumB benchmath.Summary
	ch.Old, sumA = estimate(sa)
	ch.New, sumB = estimate(sb)
	for _, w := range slices.Concat(sumA.Warnings, sumB.Warnings) {
		if !slices.Contains(ch.Warnings, w.Error()) {
			ch.Warnings = append(ch.Warnings, w.Error())
		}
	}
	switch o, n := ch.Old.Median, ch.New.Median; {
	case o == n:
		ch.DeltaPct = 0
	case o != 0:
		ch.DeltaPct = (n - o) / math.Abs(o) * 100
	}
	cmp := benchmath.AssumeNothing.Compare(sa, sb)
	ch.P = cmp.P
	ch.Significant = cmp.P < cmp.Alpha
	switch {
	case ch.Significant:
		worse := (ch.New.Median > ch.Old.Median) == lowerIsBetter[metric]
		ch.Note = "significant: better"
		if worse {
			ch.Note = "significant: worse"
		}
	case allEqual(sa.Values, sb.Values):
		ch.Note = "no significant change (all values equal)"
	case len(cmp.Warnings) > 0:
		var why []string
		for _, w := range cmp.Warnings {
			why = append(why, w.Error())
		}
		ch.Note = "no significant change (too few samples to tell: " + strings.Join(why, "; ") + ")"
	default:
		ch.Note = "no significant change"
	}
	return ch
}

// allEqual reports whether every value of both samples is the same.
func allEqual(a, b []float64) bool {
	for _, v := range slices.Concat(a, b) {
		if v != a[0] {
			return false
		}
	}
	return true
}

func estimate(s *benchmath.Sample) (Estimate, benchmath.Summary) {
	sum := benchmath.AssumeNothing.Summary(s, Confidence)
	return Estimate{Median: sum.Center, Lo: sum.Lo, Hi: sum.Hi, N: len(s.Values), Range: "± " + sum.PctRangeString()}, sum
}

// WriteText writes c as an aligned table in the manner of benchstat: per
// metric the old and new medians with their confidence ranges, the change,
// the p-value and sample sizes, and the verdict.
func (c Comparison) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "old: %s %s (%s)\nnew: %s %s (%s)\n", c.Old.Scenario, c.Old.GitRevision, c.Old.Start, c.New.Scenario, c.New.GitRevision, c.New.Start)
	fmt.Fprintf(&b, "medians with %g%% confidence intervals; Mann–Whitney U, alpha %g\n\n", Confidence*100, Alpha)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tsubject\tmetric\tsamples\told\tnew\tdelta\tp\tn\t")
	for _, ch := range c.Changes {
		phase := ch.Phase
		if phase == "" {
			phase = "(run)"
		}
		delta := "n/a"
		if !math.IsNaN(ch.DeltaPct) {
			delta = fmt.Sprintf("%+.2f%%", ch.DeltaPct)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d+%d\t%s\n", phase, ch.Subject, ch.Metric, ch.Samples,
			formatEstimate(ch.Old), formatEstimate(ch.New), delta, strconv.FormatFloat(ch.P, 'f', 3, 64), ch.Old.N, ch.New.N, ch.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, ch := range c.Changes {
		for _, w := range ch.Warnings {
			if !slices.Contains(notes, w) {
				notes = append(notes, w)
			}
		}
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, u := range c.Unmatched {
		fmt.Fprintf(&b, "not compared: %s\n", u)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String is WriteText's output.
func (c Comparison) String() string {
	var b strings.Builder
	_ = c.WriteText(&b) // a strings.Builder does not fail
	return b.String()
}

func formatEstimate(e Estimate) string {
	if e.N == 0 {
		return "—"
	}
	return strconv.FormatFloat(e.Median, 'g', 4, 64) + " " + e.Range
}
