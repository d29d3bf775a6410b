package bench

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchmath"

	"github.com/skiff-mesh/skiff/results"
)

// ABGate compares the build under test with a base build measured in the
// same interleaved trials (Config.BaselineProxyBin). Zero fields take the
// defaults below.
//
// A figure fails when the new build exceeds the base build shifted by the
// margin (CPU: base × (1 + CPUMargin); added p50: base + P50MarginMs):
// the new median is above the shifted base median and, trial by trial,
// Wilcoxon's signed-rank test of the new figures against the shifted base
// figures of the same trials gives p < Alpha (compare says why paired).
// The margin keeps a real but small change from failing a build; the test
// keeps the machine's noise from failing one.
type ABGate struct {
	// CPUMargin is how much more CPU per request than the base the new
	// build may use, as a fraction: 0.05 lets it use 5 % more.
	CPUMargin float64
	// P50MarginMs is how much more added p50 than the base the new build
	// may add, in ms.
	P50MarginMs float64
	// Alpha is each comparison's significance level (two-sided p).
	Alpha float64
}

// The A/B gate's defaults.
//
// CPU margin 5 %: one hop costs about 350 µs of CPU per request on the
// 2-core CI machine (syscalls on a VM dominate), so 50 µs more on the hot
// path is only 14 %; with a 10 % margin the 4 % left to detect drowns in
// the busy machine's trial-to-trial noise (5-10 %), while two runs of one
// build differed by less than 5 % (docs/proxy.md, "The A/B gate").
//
// Added p50 margin 0.1 ms: the direct path's own p50 moves by 0.1-0.25 ms
// between trials on a busy machine.
//
// Alpha 0.01: four gated comparisons (CPU and added p50 of one-hop and
// two-hop), so 0.05 over the family, Bonferroni, is about 0.0125 each;
// 0.01 also leaves room for the looks the gate takes as it adds trials.
// The signed-rank test's smallest two-sided p is 2/2ⁿ: 0.031 with 6
// trials, 0.0078 with 8, 0.0005 with 12. So the first look of 6 trials
// cannot fail a build; a suspect figure asks for 12, where it can.
const (
	DefaultABCPUMargin   = 0.05
	DefaultABP50MarginMs = 0.1
	DefaultABAlpha       = 0.01
)

func (a ABGate) normalized() ABGate {
	if a.CPUMargin <= 0 {
		a.CPUMargin = DefaultABCPUMargin
	}
	if a.P50MarginMs <= 0 {
		a.P50MarginMs = DefaultABP50MarginMs
	}
	if a.Alpha <= 0 || a.Alpha >= 1 {
		a.Alpha = DefaultABAlpha
	}
	return a
}

// RuleAB is the rule of an A/B check (results.Assertion.Rule): the new
// build against the base build's trials shifted by a margin, paired by
// trial (Wilcoxon signed-rank).
const RuleAB = "ab-signed-rank"

// Comparison is one figure of the build under test against the base
// build's, over the same interleaved trials.
type Comparison struct {
	Path     string `json:"path"`
	BasePath string `json:"base_path"`
	// Metric is "cpu_us_per_req", "added_p50_ms" or "added_p99_ms".
	Metric string `json:"metric"`
	// New and Base are the builds' medians with their 95 % intervals.
	New  Estimate `json:"new"`
	Base Estimate `json:"base"`
	// Margin is how the base samples were shifted: "×1.1", "+0.1".
	Margin string `json:"margin"`
	// ShiftedBase is the median of the shifted base samples: the new
	// median must be above it to fail.
	ShiftedBase float64 `json:"shifted_base_median"`
	// P is the two-sided p-value of Wilcoxon's signed-rank test on the
	// per-trial differences between the new build and the shifted base:
	// the p the verdict is decided by.
	P float64 `json:"p"`
	// PMannWhitney is the two-sided Mann-Whitney U p-value of the new
	// samples against the shifted base samples, unpaired
	// (benchmath.AssumeNothing.Compare): reported, not decided by.
	PMannWhitney float64 `json:"p_mann_whitney"`
	Alpha        float64 `json:"alpha"`
	// Gated is false for a figure that is only reported (added p99: too
	// noisy to gate on); its Verdict is then what the rule would say.
	Gated   bool            `json:"gated"`
	Verdict results.Verdict `json:"verdict"`
	Message string          `json:"message"`
}

// abFigures are the figures compared, in report order.
var abFigures = []struct {
	path, metric string
	gated        bool
}{
	{PathOneHop, "cpu_us_per_req", true},
	{PathTwoHop, "cpu_us_per_req", true},
	{PathOneHop, "added_p50_ms", true},
	{PathTwoHop, "added_p50_ms", true},
	{PathOneHop, "added_p99_ms", false},
	{PathTwoHop, "added_p99_ms", false},
}

// compareBuilds makes every comparison of r's build under test with its
// base build; none when r has no base paths. final says no more trials
// will follow: a figure above the margin but not significantly so is then
// a PASS (not shown worse), and INCONCLUSIVE before, so that more trials
// can tell.
func (a ABGate) compareBuilds(r *Report, final bool) []Comparison {
	a = a.normalized()
	var out []Comparison
	for _, f := range abFigures {
		nw, base := r.Path(f.path), r.Path(f.path+BaseSuffix)
		if nw == nil || base == nil {
			continue
		}
		col := func(p *PathReport) []float64 {
			v := make([]float64, len(p.Trials))
			for i, t := range p.Trials {
				switch f.metric {
				case "cpu_us_per_req":
					v[i] = t.ProxyCPUUsPerReq
				case "added_p50_ms":
					v[i] = t.AddedP50Ms
				default:
					v[i] = t.AddedP99Ms
				}
			}
			return v
		}
		var shift func(float64) float64
		var margin string
		logScale := f.metric == "cpu_us_per_req"
		if logScale {
			k := 1 + a.CPUMargin
			shift, margin = func(v float64) float64 { return v * k }, "×"+strconv.FormatFloat(k, 'g', -1, 64)
		} else {
			d := a.P50MarginMs
			shift, margin = func(v float64) float64 { return v + d }, "+"+strconv.FormatFloat(d, 'g', -1, 64)
		}
		c := compare(col(nw), col(base), shift, logScale, a.Alpha, final)
		c.Path, c.BasePath, c.Metric, c.Margin, c.Gated = nw.Name, base.Name, f.metric, margin, f.gated
		c.Message = c.message()
		out = append(out, c)
	}
	return out
}

// compare tests newVals against baseVals shifted, trial by trial: FAIL
// when the new median is above the shifted base median, most trials say
// so too (the median of the per-trial differences is above zero), and the
// paired test gives p < alpha; INCONCLUSIVE when it is above but p ≥ alpha
// and more trials may follow; PASS otherwise.
//
// The test is Wilcoxon's signed-rank test on the per-trial differences
// (for CPU, a multiplicative margin, the difference of logarithms), not a
// Mann-Whitney U test of the two samples: both builds run seconds apart
// in every trial, and the machine's load moves them together, trial to
// trial, more than it moves one against the other. The U test treats that
// shared swing as noise; pairing by trial removes it. The U test's p is
// reported beside it (PMannWhitney).
func compare(newVals, baseVals []float64, shift func(float64) float64, logScale bool, alpha float64, final bool) Comparison {
	c := Comparison{New: estimate(newVals), Base: estimate(baseVals), Alpha: alpha, P: 1, PMannWhitney: 1}
	shifted := make([]float64, len(baseVals))
	for i, v := range baseVals {
		shifted[i] = shift(v)
	}
	if len(newVals) == 0 || len(newVals) != len(shifted) {
		c.Verdict = results.Inconclusive
		return c
	}
	c.ShiftedBase = results.NewSpread(shifted).Median
	th := benchmath.DefaultThresholds
	th.CompareAlpha = alpha
	// NewSample sorts in place; the pairs below need the trials' order.
	c.PMannWhitney = benchmath.AssumeNothing.Compare(benchmath.NewSample(slices.Clone(newVals), &th), benchmath.NewSample(slices.Clone(shifted), &th)).P
	d := make([]float64, len(newVals))
	for i := range newVals {
		if logScale && newVals[i] > 0 && shifted[i] > 0 {
			d[i] = math.Log(newVals[i]) - math.Log(shifted[i])
		} else {
			d[i] = newVals[i] - shifted[i]
		}
	}
	c.P = signedRank(d)
	above := c.New.Median > c.ShiftedBase && results.NewSpread(d).Median > 0
	switch {
	case above && c.P < alpha:
		c.Verdict = results.Fail
	case above && !final:
		c.Verdict = results.Inconclusive
	default:
		c.Verdict = results.Pass
	}
	return c
}

// signedRank is the exact two-sided p-value of Wilcoxon's signed-rank
// test that d is centred on zero: zero differences are dropped, tied
// magnitudes share their mean rank (the distribution is then the exact
// one given those ranks). 1 when no difference is left.
func signedRank(d []float64) float64 {
	var nz []float64
	for _, v := range d {
		if v != 0 && !math.IsNaN(v) {
			nz = append(nz, v)
		}
	}
	n := len(nz)
	if n == 0 {
		return 1
	}
	slices.SortFunc(nz, func(a, b float64) int { return cmp.Compare(math.Abs(a), math.Abs(b)) })
	// Ranks doubled, so that mean ranks of ties stay integers.
	ranks := make([]int, n)
	for i := 0; i < n; {
		j := i
		for j+1 < n && math.Abs(nz[j+1]) == math.Abs(nz[i]) {
			j++
		}
		for k := i; k <= j; k++ {
			ranks[k] = i + j + 2
		}
		i = j + 1
	}
	total, wPlus := 0, 0
	for i, r := range ranks {
		total += r
		if nz[i] > 0 {
			wPlus += r
		}
	}
	// ways[s]: the sign assignments whose positive ranks sum to s.
	ways := make([]float64, total+1)
	ways[0] = 1
	for _, r := range ranks {
		for s := total; s >= r; s-- {
			ways[s] += ways[s-r]
		}
	}
	tail := 0.0
	for s := 0; s <= min(wPlus, total-wPlus); s++ {
		tail += ways[s]
	}
	return min(1, 2*tail/math.Pow(2, float64(n)))
}

// prec is the decimals a metric is printed with.
func (c Comparison) prec() int {
	if c.Metric == "cpu_us_per_req" {
		return 0
	}
	return 3
}

func pText(p float64) string { return strconv.FormatFloat(p, 'g', 2, 64) }

func (c Comparison) message() string {
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', c.prec(), 64) }
	head := fmt.Sprintf("[%s] %s: this build %s, base %s;", c.Path, c.Metric, c.New.Format(c.prec(), false), c.Base.Format(c.prec(), false))
	shifted := "base " + c.Margin + " = " + num(c.ShiftedBase)
	test := fmt.Sprintf("signed-rank, %d paired trials; unpaired U p = %s", c.New.N, pText(c.PMannWhitney))
	var s string
	switch {
	case c.Verdict == results.Fail:
		s = fmt.Sprintf("FAIL %s above %s, p = %s < α %g (%s): worse than the base by more than the margin", head, shifted, pText(c.P), c.Alpha, test)
	case c.Verdict == results.Inconclusive:
		s = fmt.Sprintf("INCONCLUSIVE %s above %s, but p = %s ≥ α %g (%s): more trials would tell", head, shifted, pText(c.P), c.Alpha, test)
	case c.New.Median > c.ShiftedBase:
		s = fmt.Sprintf("PASS %s above %s, but p = %s ≥ α %g (%s) after the last trial: not shown worse", head, shifted, pText(c.P), c.Alpha, test)
	default:
		s = fmt.Sprintf("PASS %s within %s (p = %s, %s)", head, shifted, pText(c.P), test)
	}
	if !c.Gated {
		s = "INFO (not gated: too noisy) " + s
	}
	return s
}

// assertion is a gated comparison as a gate check.
func (c Comparison) assertion() results.Assertion {
	measured := c.New.Median
	return results.Assertion{
		Expr: c.Metric + " <= base " + c.Margin, Phase: c.Path, Metric: c.Metric + "_vs_base", Op: "<=",
		Threshold: c.ShiftedBase, Measured: &measured, Rule: RuleAB, Verdict: c.Verdict, Message: c.Message,
	}
}

// writeABText prints the comparisons as a table.
func writeABText(w io.Writer, cs []Comparison) error {
	if len(cs) == 0 {
		return nil
	}
	var margins []string
	for _, c := range cs {
		if m := c.Metric + " " + c.Margin; c.Gated && !slices.Contains(margins, m) {
			margins = append(margins, m)
		}
	}
	fmt.Fprintf(w, "  A/B: this build against the base build in the same trials (median [95%% CI]; the base shifted by the margin:\n  %s; FAIL when this build's median is above the shifted base's and the signed-rank test, paired by\n  trial, gives p < α %g; U p: the unpaired Mann-Whitney U test, for reference):\n",
		strings.Join(margins, ", "), cs[0].Alpha)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  \tpath\tmetric\tthis build\tbase build\tbase+margin\tp\tU p\tverdict\t")
	for _, c := range cs {
		v := strings.ToUpper(string(c.Verdict))
		if !c.Gated {
			v = "info (" + strings.ToLower(v) + ")"
		}
		fmt.Fprintf(tw, "  \t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.Path, c.Metric, c.New.Format(c.prec(), false), c.Base.Format(c.prec(), false),
			strconv.FormatFloat(c.ShiftedBase, 'f', c.prec(), 64), pText(c.P), pText(c.PMannWhitney), v)
	}
	return tw.Flush()
}
