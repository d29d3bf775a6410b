package results

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/perf/benchmath"
)

// Alpha is the significance level of Compare: a change is significant when
// its test's p-value is below it.
const Alpha = 0.05

// Confidence is the level of the confidence intervals Compare reports.
const Confidence = 0.95

// BootstrapDraws is the number of resamples behind a latency comparison
// from histograms.
const BootstrapDraws = 2000

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
	Verdict                      Verdict
	// Noise is the run's machine noise; nil when it was not measured.
	Noise *Noise
}

// Change compares one metric of one phase and path (or one process).
type Change struct {
	// Phase is empty for process metrics, which cover the whole run.
	Phase string
	// Subject is the path ("meshed"), the added latency of the meshed path
	// over the direct one ("meshed−direct"), or the process name.
	Subject string
	// Metric is "error_rate", "p50_ms", "p99_ms", "p50_added_ms",
	// "p99_added_ms", "vmrss_mb" or "cpu_us_per_request".
	Metric string
	// Unit is the unit of Old, New and Diff: "%" for a rate (Diff in
	// percentage points), "ms", "MiB" or "µs".
	Unit string
	// Samples says what the statistics are over: "requests" (every
	// request of the phase: its counts or its latency histogram),
	// "trials" (one value per interleaved trial), "rss samples", or "run"
	// (one value per run: nothing to test).
	Samples  string
	Old, New Estimate
	// Diff is New − Old in Unit (percentage points for a rate), with its
	// 95 % interval [DiffLo, DiffHi]; the bounds are NaN when the test
	// gives none.
	Diff, DiffLo, DiffHi float64
	// DeltaPct is (New−Old)/|Old| in percent; NaN where a ratio means
	// nothing: rates (whose Old is often 0), added latency (a difference
	// already, near 0), and an Old of 0.
	DeltaPct float64
	// Test names the statistics: "Fisher exact" (counts), "bootstrap"
	// (quantiles of two histograms), "Mann–Whitney U" (trials, samples),
	// or "none".
	Test string
	// P is the test's two-sided p-value; 1 when no test could run.
	P float64
	// Significant is P < Alpha with enough samples to tell.
	Significant bool
	// Note is the verdict in words: "significant: worse", "no
	// significant change", "no significant change (too few samples to
	// tell: …)".
	Note string
	// Warnings are remarks on the statistics ("need >= 6 samples for
	// confidence interval at level 0.95").
	Warnings []string
}

// Estimate is one side's figure with its 95 % confidence interval; Lo and
// Hi are infinite when there is none (too few samples).
type Estimate struct {
	Median, Lo, Hi float64
	// N is the number of samples: requests, trials or RSS samples.
	N int
	// Events is, for a rate, how many of the N requests it counts
	// (errors).
	Events int64
}

// lowerIsBetter tells the direction of each metric for the note.
var lowerIsBetter = map[string]bool{
	"error_rate": true, "p50_ms": true, "p99_ms": true, "p50_added_ms": true, "p99_added_ms": true,
	"vmrss_mb": true, "cpu_us_per_request": true,
}

// Compare tells what changed from run a (old) to run b (new). For every
// phase and path both runs have:
//
//   - error_rate, from the counts of every request of the phase: the two
//     rates with Wilson intervals, their difference in percentage points
//     with Newcombe's interval, and Fisher's exact test. A run with 6 × 502
//     against one with none is a significant change (p ≈ 0.03), whatever
//     the per-second figures look like.
//   - p50_ms and p99_ms: over the interleaved trials when both runs have
//     them (medians, intervals, Mann–Whitney U, as benchstat), else from the
//     phase's raw HDR histograms of both runs: each quantile with its
//     bootstrap interval, and the difference in ms with a bootstrap
//     interval and p-value (requests treated as independent).
//   - p50_added_ms and p99_added_ms, the meshed path over the direct one
//     per trial.
//
// For every process both runs sampled: VmRSS over its samples, and CPU per
// request (one value per run: reported, not tested). Intervals are in the
// metric's own unit; a percentage change is given only where a ratio means
// something. Excluded phases are skipped.
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
			sn := pn.Path(so.Path)
			if sn == nil {
				c.Unmatched = append(c.Unmatched, fmt.Sprintf("phase %s path %s: only in old", po.Name, so.Path))
				continue
			}
			c.Changes = append(c.Changes, compareCounts(po.Name, so.Path, &so, sn))
			ta, tb := trialSamples(a, po.Name, so.Path), trialSamples(b, pn.Name, so.Path)
			for _, m := range []struct {
				metric string
				q      float64
			}{{"p50_ms", 0.5}, {"p99_ms", 0.99}} {
				if len(ta[m.metric]) > 0 && len(tb[m.metric]) > 0 {
					c.Changes = append(c.Changes, compareSamples(po.Name, so.Path, m.metric, "ms", "trials", ta[m.metric], tb[m.metric]))
					continue
				}
				c.Changes = append(c.Changes, compareQuantile(po.Name, so.Path, m.metric, m.q, so.Histogram, sn.Histogram))
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
				ch := compareSamples(po.Name, PathMeshed+"−"+PathDirect, m+"_added_ms", "ms", "trials", va, vb)
				ch.DeltaPct = math.NaN() // a difference already: a ratio of two near-zero figures means nothing
				c.Changes = append(c.Changes, ch)
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
		c.Changes = append(c.Changes, compareSamples("", po.Name, "vmrss_mb", "MiB", "rss samples", rss(&po), rss(pn)))
		if po.Requests > 0 && pn.Requests > 0 {
			c.Changes = append(c.Changes, compareOnce("", po.Name, "cpu_us_per_request", "µs", po.CPUMicrosPerRequest, pn.CPUMicrosPerRequest))
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
	return RunInfo{Scenario: r.Scenario, GitRevision: r.GitRevision, Start: r.Start.UTC().Format("2006-01-02 15:04:05Z"),
		Verdict: r.Verdict, Noise: r.Noise}
}

// newChange is a Change with nothing decided yet.
func newChange(phase, subject, metric, unit, samples string) Change {
	return Change{Phase: phase, Subject: subject, Metric: metric, Unit: unit, Samples: samples, P: 1, Test: "none",
		Diff: math.NaN(), DiffLo: math.NaN(), DiffHi: math.NaN(), DeltaPct: math.NaN()}
}

// decide sets Significant and Note from P.
func (ch *Change) decide() {
	ch.Significant = ch.P < Alpha
	switch {
	case ch.Significant:
		worse := (ch.New.Median > ch.Old.Median) == lowerIsBetter[ch.Metric]
		ch.Note = "significant: better"
		if worse {
			ch.Note = "significant: worse"
		}
	default:
		ch.Note = "no significant change"
	}
}

// compareCounts compares the error rates of a phase's path by their counts.
func compareCounts(phase, path string, a, b *PathStats) Change {
	ch := newChange(phase, path, "error_rate", "%", "requests")
	ea, eb := a.Count-a.Success, b.Count-b.Success
	ch.Old, ch.New = rateEstimate(ea, a.Count), rateEstimate(eb, b.Count)
	if a.Count <= 0 || b.Count <= 0 {
		ch.Note = fmt.Sprintf("no data to compare (n=%d+%d)", a.Count, b.Count)
		return ch
	}
	d, lo, hi := RateDiff(ea, a.Count, eb, b.Count, Confidence)
	ch.Diff, ch.DiffLo, ch.DiffHi = 100*d, 100*lo, 100*hi
	ch.Test = "Fisher exact"
	ch.P = FisherExact(ea, a.Count, eb, b.Count)
	ch.decide()
	if !ch.Significant && ea == 0 && eb == 0 {
		ch.Note = "no errors in either run"
	}
	return ch
}

// rateEstimate is k of n as a percentage with its Wilson interval.
func rateEstimate(k, n int64) Estimate {
	e := Estimate{N: int(n), Events: k, Median: math.NaN(), Lo: math.Inf(-1), Hi: math.Inf(1)}
	if n > 0 {
		lo, hi := Wilson(k, n, Confidence)
		e.Median, e.Lo, e.Hi = 100*float64(k)/float64(n), 100*lo, 100*hi
	}
	return e
}

// compareQuantile compares the q-quantile (in ms) of two latency
// histograms (µs) by the bootstrap: each side's quantile is resampled
// BootstrapDraws times (exactly: the rank of a resample's quantile has a
// binomial law, so no request is drawn one by one), giving each side's
// interval and the difference's interval and two-sided p-value. The draws
// are seeded, so the same runs compare the same way every time. Requests
// are treated as independent; bursts (a GC pause, a busy neighbour) make
// the real uncertainty larger.
func compareQuantile(phase, path, metric string, q float64, ha, hb *hdrhistogram.Histogram) Change {
	ch := newChange(phase, path, metric, "ms", "requests")
	sa, sb := newSortedHist(ha), newSortedHist(hb)
	ch.Old, ch.New = Estimate{N: int(sa.n), Lo: math.Inf(-1), Hi: math.Inf(1), Median: math.NaN()}, Estimate{N: int(sb.n), Lo: math.Inf(-1), Hi: math.Inf(1), Median: math.NaN()}
	if sa.n == 0 || sb.n == 0 {
		ch.Note = fmt.Sprintf("no latencies to compare (n=%d+%d)", sa.n, sb.n)
		return ch
	}
	rng := rand.New(rand.NewPCG(0x5eed, uint64(q*1000)))
	da, db := sa.quantileDraws(q, rng), sb.quantileDraws(q, rng)
	diffs := make([]float64, len(da))
	for i := range da {
		diffs[i] = db[i] - da[i]
	}
	pct := func(v []float64, p float64) float64 {
		s := slices.Sorted(slices.Values(v))
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	ch.Old = Estimate{N: int(sa.n), Median: sa.quantile(q), Lo: pct(da, 0.025), Hi: pct(da, 0.975)}
	ch.New = Estimate{N: int(sb.n), Median: sb.quantile(q), Lo: pct(db, 0.025), Hi: pct(db, 0.975)}
	ch.Diff, ch.DiffLo, ch.DiffHi = ch.New.Median-ch.Old.Median, pct(diffs, 0.025), pct(diffs, 0.975)
	if ch.Old.Median > 0 {
		ch.DeltaPct = ch.Diff / ch.Old.Median * 100
	}
	var below, above float64
	for _, d := range diffs {
		switch {
		case d < 0:
			below++
		case d > 0:
			above++
		default:
			below += 0.5
			above += 0.5
		}
	}
	n := float64(len(diffs))
	ch.P = min(1, 2*min(below, above)/n)
	ch.P = max(ch.P, 1/n) // a bootstrap cannot tell p below one draw in n
	ch.Test = "bootstrap"
	ch.decide()
	return ch
}

// sortedHist is a latency histogram as sorted distinct values (ms) with
// their cumulative counts.
type sortedHist struct {
	vals []float64 // ms, increasing
	cum  []int64   // requests at or below vals[i]
	n    int64
}

func newSortedHist(h *hdrhistogram.Histogram) sortedHist {
	var s sortedHist
	if h == nil {
		return s
	}
	for _, bar := range h.Distribution() {
		if bar.Count <= 0 {
			continue
		}
		s.n += bar.Count
		// The bucket's highest equivalent value, as ValueAtQuantile
		// reports it.
		s.vals = append(s.vals, float64(bar.To)/1000)
		s.cum = append(s.cum, s.n)
	}
	return s
}

// rank is the rank (1-based) of the q-quantile in n values: ⌈q·n⌉.
func quantileRank(q float64, n int64) int64 {
	return min(n, max(1, int64(math.Ceil(q*float64(n)-1e-9))))
}

// at is the value of rank j (1-based).
func (s sortedHist) at(j int64) float64 {
	i := sort.Search(len(s.cum), func(i int) bool { return s.cum[i] >= j })
	return s.vals[min(i, len(s.vals)-1)]
}

func (s sortedHist) quantile(q float64) float64 { return s.at(quantileRank(q, s.n)) }

// quantileDraws returns BootstrapDraws bootstrap replicates of the
// q-quantile. A resample of n values has its q-quantile at or below the
// j-th smallest original value when at least r = ⌈q·n⌉ of its draws are,
// which is Binomial(n, j/n) ≥ r: so the replicate's value is drawn from
// that law over the distinct values, without resampling n requests.
func (s sortedHist) quantileDraws(q float64, rng *rand.Rand) []float64 {
	r := quantileRank(q, s.n)
	cdf := make([]float64, len(s.cum))
	for i, c := range s.cum {
		// P(Bin(n, c/n) ≥ r) = I_{c/n}(r, n−r+1)
		cdf[i] = regIncBeta(float64(r), float64(s.n-r+1), float64(c)/float64(s.n))
	}
	cdf[len(cdf)-1] = 1
	out := make([]float64, BootstrapDraws)
	for i := range out {
		u := rng.Float64()
		k := sort.SearchFloat64s(cdf, u)
		out[i] = s.vals[min(k, len(s.vals)-1)]
	}
	return out
}

// trialSamples collects a path's p50_ms and p99_ms, one value per trial of
// the phase.
func trialSamples(r *Result, phase, path string) map[string][]float64 {
	out := map[string][]float64{}
	for _, t := range r.Trials {
		if t.Phase == phase && t.Path == path && t.Count > 0 {
			out["p50_ms"] = append(out["p50_ms"], t.Latency.P50)
			out["p99_ms"] = append(out["p99_ms"], t.Latency.P99)
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

// compareSamples compares two samples (one value per trial or sample) by
// their medians, 95 % intervals and the Mann–Whitney U test, as benchstat
// does.
func compareSamples(phase, subject, metric, unit, kind string, a, b []float64) Change {
	ch := newChange(phase, subject, metric, unit, kind)
	if len(a) == 0 || len(b) == 0 {
		ch.Old = Estimate{N: len(a), Median: math.NaN(), Lo: math.Inf(-1), Hi: math.Inf(1)}
		ch.New = Estimate{N: len(b), Median: math.NaN(), Lo: math.Inf(-1), Hi: math.Inf(1)}
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
	ch.Diff = ch.New.Median - ch.Old.Median
	switch o := ch.Old.Median; {
	case ch.Diff == 0:
		ch.DeltaPct = 0
	case o != 0:
		ch.DeltaPct = ch.Diff / math.Abs(o) * 100
	}
	cmp := benchmath.AssumeNothing.Compare(sa, sb)
	ch.Test = "Mann–Whitney U"
	ch.P = cmp.P
	ch.decide()
	switch {
	case ch.Significant:
	case allEqual(sa.Values, sb.Values):
		ch.Note = "no significant change (all values equal)"
	case len(cmp.Warnings) > 0:
		var why []string
		for _, w := range cmp.Warnings {
			why = append(why, w.Error())
		}
		ch.Note = "no significant change (too few samples to tell: " + strings.Join(why, "; ") + ")"
	}
	return ch
}

// compareOnce reports a figure that each run has once: nothing to test.
func compareOnce(phase, subject, metric, unit string, a, b float64) Change {
	ch := newChange(phase, subject, metric, unit, "run")
	ch.Old = Estimate{N: 1, Median: a, Lo: math.Inf(-1), Hi: math.Inf(1)}
	ch.New = Estimate{N: 1, Median: b, Lo: math.Inf(-1), Hi: math.Inf(1)}
	ch.Diff = b - a
	if a != 0 {
		ch.DeltaPct = ch.Diff / math.Abs(a) * 100
	}
	ch.Note = "one value per run: cannot tell"
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
	return Estimate{Median: sum.Center, Lo: sum.Lo, Hi: sum.Hi, N: len(s.Values)}, sum
}

// WriteText writes c as an aligned table: per metric the old and new
// figures with their 95 % intervals in the metric's unit, the change with
// its interval (and in percent where a ratio means something), the test and
// its p-value, the sample sizes, and the verdict; then each run's machine
// noise.
func (c Comparison) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "old: %s %s (%s) %s\nnew: %s %s (%s) %s\n", c.Old.Scenario, c.Old.GitRevision, c.Old.Start, verdictWord(c.Old.Verdict),
		c.New.Scenario, c.New.GitRevision, c.New.Start, verdictWord(c.New.Verdict))
	fmt.Fprintf(&b, "figures with %g%% confidence intervals in their own unit; change = new − old; significant when p < %g\n",
		Confidence*100, Alpha)
	b.WriteString("error rates by their counts (Fisher's exact test, Newcombe interval in percentage points); latency by trials\n" +
		"(Mann–Whitney U) where both runs have them, else from both runs' histograms (bootstrap of the quantile)\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tsubject\tmetric\told\tnew\tchange [95% CI]\tp\ttest\tn\t")
	for _, ch := range c.Changes {
		phase := ch.Phase
		if phase == "" {
			phase = "(run)"
		}
		p := "—"
		if ch.Test != "none" {
			p = strconv.FormatFloat(ch.P, 'f', 3, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d+%d\t%s\n", phase, ch.Subject, ch.Metric,
			formatEstimate(ch, ch.Old), formatEstimate(ch, ch.New), formatChange(ch), p, ch.Test, ch.Old.N, ch.New.N, ch.Note)
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
	fmt.Fprintf(&b, "\nmachine, old run: %s\nmachine, new run: %s\n", c.Old.Noise, c.New.Noise)
	for _, side := range []struct {
		name string
		n    *Noise
	}{{"old", c.Old.Noise}, {"new", c.New.Noise}} {
		if busy, why := side.n.Busy(); busy {
			fmt.Fprintf(&b, "warning: the %s run's machine was busy (%s): its latencies include a neighbour's share of the CPUs\n", side.name, why)
		}
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

// formatEstimate writes a figure with its interval in the metric's unit:
// "1.23 [1.20, 1.26]", "0.05 % [0.02, 0.11] (6 of 12000)", "1.23 [—]" when
// there is no interval.
func formatEstimate(ch Change, e Estimate) string {
	if e.N == 0 || math.IsNaN(e.Median) {
		return "—"
	}
	num := func(v float64) string { return fmtSig(v) }
	ci := "[—]"
	if !math.IsInf(e.Lo, 0) && !math.IsInf(e.Hi, 0) && !math.IsNaN(e.Lo) && !math.IsNaN(e.Hi) {
		ci = "[" + num(e.Lo) + ", " + num(e.Hi) + "]"
	}
	if ch.Unit == "%" {
		return fmt.Sprintf("%s %% %s (%d of %d)", num(e.Median), ci, e.Events, e.N)
	}
	if ch.Samples == "run" {
		return num(e.Median)
	}
	return num(e.Median) + " " + ci
}

// formatChange writes the difference in the metric's unit with its
// interval, and the relative change where it means something:
// "+0.050 pp [+0.011, +0.106]", "+0.12 ms [+0.05, +0.19] (+9.8 %)".
func formatChange(ch Change) string {
	if math.IsNaN(ch.Diff) {
		return "—"
	}
	unit := ch.Unit
	if unit == "%" {
		unit = "pp"
	}
	s := signedSig(ch.Diff) + " " + unit
	if !math.IsNaN(ch.DiffLo) && !math.IsNaN(ch.DiffHi) {
		s += " [" + signedSig(ch.DiffLo) + ", " + signedSig(ch.DiffHi) + "]"
	}
	if !math.IsNaN(ch.DeltaPct) && ch.Unit != "%" {
		s += fmt.Sprintf(" (%+.1f %%)", ch.DeltaPct)
	}
	return s
}

// fmtSig writes v with three significant figures, plainly.
func fmtSig(v float64) string {
	if v == 0 {
		return "0"
	}
	d := max(0, 2-int(math.Floor(math.Log10(math.Abs(v)))))
	return strconv.FormatFloat(v, 'f', min(d, 6), 64)
}

func signedSig(v float64) string {
	if v >= 0 {
		return "+" + fmtSig(v)
	}
	return "−" + fmtSig(-v)
}
