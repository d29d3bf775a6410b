package assert

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/skiff-mesh/skiff/results"
)

// Confidence is the level of the bounds and intervals verdicts are decided
// with.
const Confidence = 0.95

// MinTrialsFor95 is the fewest trials whose median has a distribution-free
// 95 % confidence interval: with 6, [min, max] covers the median with
// probability 1 − 2·0.5⁶ ≈ 96.9 %; with 5, only 93.8 %.
const MinTrialsFor95 = 6

// Measure is a metric's value with the evidence behind it. A Measure with
// only Value is judged by its value (results.RulePoint), as Check does.
type Measure struct {
	Value float64
	// Count, when set, says Value is the rate Count.K/Count.N of
	// independent events (success_rate: successful requests of those
	// due). The verdict follows results.RuleBinomial: an assertion fails
	// only when the count shows, with 95 % confidence, that the rate is
	// on the wrong side of the threshold; passes when the measured rate
	// meets it; and is inconclusive in between (over budget, but by no
	// more than chance allows in a sample of this size).
	Count *results.Count
	// Interval, when set, says Value is estimated over interleaved trials
	// (the median of meshed-minus-direct, say) and gives its 95 %
	// confidence interval. The verdict follows results.RuleInterval: pass
	// when the whole interval meets the threshold, fail when none of it
	// does, inconclusive when it straddles the threshold or is unbounded
	// (fewer than MinTrialsFor95 trials). Interval wins over Count.
	Interval *results.Interval
	// Over, when set, says Interval is estimated over samples taken in
	// the run rather than over trials, and what they are, for the message
	// ("the medians of 10 stretches of each proxy's samples"): a longer
	// run, not more trials, narrows it. Empty means Interval.Samples
	// trials.
	Over string
	// Busy, when not empty, says the machine was busy apart from the run
	// while the value was measured, and why ("other processes used 1.3 of
	// 2 CPUs"). A FAIL whose evidence clears the threshold by no more than
	// Margin, the machine's own noise in the metric's unit, is then
	// INCONCLUSIVE: the run cannot tell the mesh's share from the
	// neighbour's. Set it for latency only; a mesh must not fail requests
	// or grow its memory because its machine is busy.
	Busy   string
	Margin float64
	// MarginOf names what Margin is ("the direct path's spread"), for the
	// message.
	MarginOf string
}

// Metrics are the measures of one phase, by metric key.
type Metrics map[string]Measure

// Values wraps plain values as Metrics judged by value alone.
func Values(m map[string]float64) Metrics {
	out := make(Metrics, len(m))
	for k, v := range m {
		out[k] = Measure{Value: v}
	}
	return out
}

// Decision is a verdict and how it was reached.
type Decision struct {
	Verdict results.Verdict
	// Rule is results.RulePoint, RuleBinomial or RuleInterval.
	Rule string
	// Interval is what the rule decided with: the binomial bounds or the
	// trials' interval; nil for RulePoint.
	Interval *results.Interval
	// Why says it in words, for the assertion's message: "(2394 of 2400;
	// even its 95 % upper bound 0.99891 is below 0.999)".
	Why string
}

// Decide judges e against m by the rules of Measure. "==" and "!=" are
// always judged by value: they ask for exactness ("success_rate == 1":
// every request), which no bound relaxes. A NaN value fails.
func (e Expr) Decide(m Measure) Decision {
	d := e.decide(m)
	if d.Verdict != results.Fail || m.Busy == "" || math.IsNaN(m.Value) || e.Op == EQ || e.Op == NE {
		return d
	}
	// How far beyond the threshold the evidence is: the near end of the
	// interval, or the value.
	lo, hi := m.Value, m.Value
	if d.Interval != nil && d.Rule == results.RuleInterval {
		lo, hi = d.Interval.Bounds()
	}
	clear := e.clearance(lo, hi)
	if clear > m.Margin {
		if d.Why != "" {
			d.Why += "; "
		}
		d.Why += fmt.Sprintf("the machine was busy (%s), but this is beyond %s by %s, more than its own noise (%s, %s)",
			m.Busy, e.bound(), formatNum(clear), formatNum(m.Margin), m.MarginOf)
		return d
	}
	d.Verdict = results.Inconclusive
	prefix := ""
	if d.Rule == results.RuleInterval {
		prefix = d.Why + "; but "
	}
	d.Why = fmt.Sprintf("%sbeyond %s by only %s, within the machine's own noise (%s, %s) while it was busy: %s",
		prefix, e.bound(), formatNum(clear), formatNum(m.Margin), m.MarginOf, m.Busy)
	return d
}

// clearance is how far [lo, hi], wholly on the wrong side, is from the
// threshold.
func (e Expr) clearance(lo, hi float64) float64 {
	switch e.Op {
	case LT, LE:
		return lo - e.Threshold
	case GT, GE:
		return e.Threshold - hi
	case Within:
		if hi < e.Threshold-e.Tolerance {
			return e.Threshold - e.Tolerance - hi
		}
		return lo - (e.Threshold + e.Tolerance)
	}
	return 0
}

func (e Expr) decide(m Measure) Decision {
	v := m.Value
	point := Decision{Verdict: results.Fail, Rule: results.RulePoint}
	if e.Holds(v) {
		point.Verdict = results.Pass
	}
	if math.IsNaN(v) || e.Op == EQ || e.Op == NE {
		return point
	}
	switch {
	case m.Interval != nil:
		lo, hi := m.Interval.Bounds()
		d := Decision{Rule: results.RuleInterval, Interval: m.Interval}
		over, more := fmt.Sprintf("%d trials", m.Interval.Samples), "more trials would tell"
		if m.Over != "" {
			over, more = m.Over, "a longer run would tell"
		}
		ci := fmt.Sprintf("95 %% CI [%s, %s] over %s", fmtBound(lo), fmtBound(hi), over)
		switch {
		case math.IsInf(lo, 0) || math.IsInf(hi, 0):
			d.Verdict = results.Inconclusive
			d.Why = fmt.Sprintf("%d trials give no 95 %% interval; it needs at least %d", m.Interval.Samples, MinTrialsFor95)
		case e.Holds(lo) && e.Holds(hi):
			d.Verdict = results.Pass
			d.Why = ci + ": all of it meets " + e.bound()
		case e.violatedThroughout(lo, hi):
			d.Verdict = results.Fail
			d.Why = ci + ": none of it meets " + e.bound()
		default:
			d.Verdict = results.Inconclusive
			d.Why = ci + ": straddles " + e.bound() + "; " + more
		}
		return d
	case m.Count != nil && m.Count.N > 0 && m.Count.K >= 0 && m.Count.K <= m.Count.N:
		k, n := m.Count.K, m.Count.N
		lo, hi := results.RateLower(k, n, Confidence), results.RateUpper(k, n, Confidence)
		d := Decision{Rule: results.RuleBinomial, Interval: results.NewInterval(lo, hi, Confidence, 0)}
		counts := fmt.Sprintf("%d of %d", k, n)
		// The bound on the threshold's side: the one a violation must
		// clear.
		side, b := "upper", hi
		if e.Op == LT || e.Op == LE || (e.Op == Within && v > e.Threshold) {
			side, b = "lower", lo
		}
		switch {
		case e.violatedThroughout(lo, hi):
			d.Verdict = results.Fail
			d.Why = fmt.Sprintf("%s; even its one-sided 95 %% %s bound %s misses %s", counts, side, fmtRate(b, e), e.bound())
		case point.Verdict == results.Pass:
			d.Verdict = results.Pass
			d.Why = counts
		default:
			d.Verdict = results.Inconclusive
			d.Why = fmt.Sprintf("%s: misses %s, but by no more than chance allows in %d: its one-sided 95 %% %s bound is %s", counts, e.bound(), n, side, fmtRate(b, e))
		}
		return d
	}
	return point
}

// violatedThroughout reports whether every value in [lo, hi] breaks e.
func (e Expr) violatedThroughout(lo, hi float64) bool {
	if e.Op == Within {
		slack := relSlack * max(math.Abs(e.Threshold), e.Tolerance, 1e-300)
		return hi < e.Threshold-e.Tolerance-slack || lo > e.Threshold+e.Tolerance+slack
	}
	// The other operators hold on a half-line: both ends outside it
	// means all of it is.
	return !e.Holds(lo) && !e.Holds(hi)
}

// bound is the threshold as the rule reads it: "0.999", "<= 0.5",
// "0.08..0.12".
func (e Expr) bound() string {
	if e.Op == Within {
		return formatNum(e.Threshold-e.Tolerance) + ".." + formatNum(e.Threshold+e.Tolerance)
	}
	return formatNum(e.Threshold)
}

func fmtBound(v float64) string {
	switch {
	case math.IsInf(v, -1):
		return "−∞"
	case math.IsInf(v, 1):
		return "+∞"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// fmtRate writes a rate bound with enough digits to show its side of the
// threshold.
func fmtRate(v float64, e Expr) string { return formatMeasured(v, e) }

// EvalMeasures is Eval over Metrics: it judges e by Decide and records the
// count, the interval and the rule with the verdict.
func EvalMeasures(e Expr, src, phase string, metrics Metrics) (results.Assertion, error) {
	if src == "" {
		src = e.String()
	}
	a := results.Assertion{Expr: src, Phase: phase, Metric: e.Metric, Op: string(e.Op), Threshold: e.Threshold, Tolerance: e.Tolerance}
	m, ok := metrics[e.Metric]
	if !ok {
		return a, fmt.Errorf("assert: [%s] %s: unknown metric %q; known metrics: %s",
			phase, src, e.Metric, strings.Join(slices.Sorted(maps.Keys(metrics)), ", "))
	}
	v := m.Value
	d := e.Decide(m)
	a.Verdict, a.Rule, a.Interval = d.Verdict, d.Rule, d.Interval
	if d.Rule == results.RuleBinomial {
		c := *m.Count
		a.Count = &c
	}
	if math.IsNaN(v) {
		a.Message = fmt.Sprintf("FAIL [%s] %s: no measurement (NaN: no data in this phase?)", phase, src)
		return a, nil
	}
	if !math.IsInf(v, 0) { // JSON has no infinity; the message keeps it
		a.Measured = &v
	}
	a.Message = fmt.Sprintf("%s [%s] %s: measured %s", strings.ToUpper(string(a.Verdict)), phase, src, formatMeasured(v, e))
	switch {
	case d.Why != "":
		a.Message += " (" + d.Why + ")"
	case e.Op == Within && a.Verdict == results.Fail:
		a.Message += fmt.Sprintf(" (outside %s..%s)", formatNum(e.Threshold-e.Tolerance), formatNum(e.Threshold+e.Tolerance))
	}
	return a, nil
}

// CheckMeasures is Check over Metrics.
func CheckMeasures(src, phase string, metrics Metrics) results.Assertion {
	e, err := Parse(src)
	if err != nil {
		return results.Assertion{Expr: src, Phase: phase, Verdict: results.Error,
			Message: "ERROR [" + phase + "] " + strings.TrimPrefix(err.Error(), "assert: ")}
	}
	a, err := EvalMeasures(e, src, phase, metrics)
	if err != nil {
		a.Verdict = results.Error
		a.Message = "ERROR " + strings.TrimPrefix(err.Error(), "assert: ")
	}
	return a
}
