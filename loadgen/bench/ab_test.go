package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/results"
)

// withBase adds one-hop@base and two-hop@base to r: the base build's
// trials are r's own with CPU per request divided by cpuFactor and added
// p50 lowered by p50Ms (so the build under test looks that much worse),
// each trial nudged so that the samples interleave.
func withBase(r *Report, cpuFactor, p50Ms float64) *Report {
	for _, name := range []string{PathOneHop, PathTwoHop} {
		src := r.Path(name)
		ts := make([]Trial, len(src.Trials))
		for i, t := range src.Trials {
			nudge := []float64{-1, 1}[i%2] * 0.004 * float64(i%3+1)
			t.ProxyCPUUsPerReq = t.ProxyCPUUsPerReq/cpuFactor + 1000*nudge
			t.AddedP50Ms += nudge - p50Ms
			t.AddedP99Ms -= p50Ms
			ts[i] = t
		}
		pr := summarize(name+BaseSuffix, ts)
		pr.Kind = KindBase
		r.Paths = append(r.Paths, pr)
	}
	r.Procs = append(r.Procs,
		ProcReport{Name: "proxy-one-hop@base", Path: PathOneHop + BaseSuffix, VmHWMMB: 12},
		ProcReport{Name: "nginx-worker", Path: PeerNginx, Role: "worker", VmHWMMB: 11})
	return r
}

func comparison(d Decision, path, metric string) *Comparison {
	for i := range d.AB {
		if d.AB[i].Path == path && d.AB[i].Metric == metric {
			return &d.AB[i]
		}
	}
	return nil
}

// twelve are 12 trials of quiet two-hop added latencies: enough for the
// signed-rank test to reach α 0.01 (6 cannot: its smallest p is 0.031).
var (
	twelveP50 = append(append([]float64(nil), quietP50...), quietP50...)
	twelveP99 = append(append([]float64(nil), quietP99...), quietP99...)
)

func TestGateAB(t *testing.T) {
	// The planted 50 µs loop: +50 µs on ~350 µs one-hop, +100 on ~700
	// two-hop, 14 % more.
	slow := withBase(report(twelveP50, twelveP99, nil, 6.6), 1.14, 0.05)
	d := DefaultGate.Decide(slow)
	if d.Verdict != results.Fail {
		t.Fatalf("14 %% more CPU: %s, want fail\n%s", d.Verdict, messages(d))
	}
	c := comparison(d, PathOneHop, "cpu_us_per_req")
	if c == nil || c.Verdict != results.Fail || c.P >= DefaultABAlpha || !c.Gated {
		t.Fatalf("one-hop CPU comparison: %+v", c)
	}
	if !strings.Contains(messages(d), "FAIL [one-hop] cpu_us_per_req: this build") || !strings.Contains(c.Message, "p = 0.00049 < α 0.01") {
		t.Errorf("the failure must name the metric and its p-value:\n%s", messages(d))
	}
	// 0.05 ms more at p50 is within the 0.1 ms margin.
	if c := comparison(d, PathOneHop, "added_p50_ms"); c == nil || c.Verdict != results.Pass {
		t.Errorf("one-hop p50, 0.05 ms worse: %+v", c)
	}
	if c := comparison(d, PathTwoHop, "added_p99_ms"); c == nil || c.Gated {
		t.Errorf("added p99 is reported, not gated: %+v", c)
	}
	// The base build's and the peers' memory is reported, not gated: 12
	// and 11 MB do not fail this build.
	if strings.Contains(messages(d), "@base] vmhwm") || strings.Contains(messages(d), "nginx-worker") {
		t.Errorf("a base or peer process judged:\n%s", messages(d))
	}
	if n := len(d.Checks); n != 8+4 {
		t.Errorf("%d checks, want 12 (8 absolute, 4 A/B)", n)
	}

	// The same at the first look of 6 trials: suspect, not yet shown.
	first := withBase(report(quietP50, quietP99, nil, 6.6), 1.14, 0.05)
	if d := DefaultGate.decide(first, false); d.Verdict != results.Inconclusive || !strings.Contains(strings.Join(d.undecided(), ","), "one-hop cpu_us_per_req_vs_base") {
		t.Errorf("14 %% more after 6 trials: %s %q\n%s", d.Verdict, d.undecided(), messages(d))
	}

	// An absolute failure does not end the A/B question: Run keeps
	// adding trials while a comparison is undecided.
	failing := withBase(report(quietP50, quietP99, nil, 11), 1.14, 0.05)
	if d := DefaultGate.decide(failing, false); d.Verdict != results.Fail || !d.abUndecided() {
		t.Errorf("VmHWM over and CPU suspect after 6 trials: %s, A/B undecided %v", d.Verdict, d.abUndecided())
	}

	// A/A: the same build twice passes.
	same := withBase(report(twelveP50, twelveP99, nil, 6.6), 1, 0)
	if d := DefaultGate.Decide(same); d.Verdict != results.Pass {
		t.Errorf("A/A: %s\n%s", d.Verdict, messages(d))
	}
	// 5.5 % more: above the margin of 5 %, but hardly: not significant.
	// Inconclusive while trials may be added; a pass at the end.
	edge := withBase(report(twelveP50, twelveP99, nil, 6.6), 1.055, 0)
	if d := DefaultGate.decide(edge, false); d.Verdict != results.Inconclusive || !strings.Contains(strings.Join(d.undecided(), ","), "cpu_us_per_req_vs_base") {
		t.Errorf("just over the margin, more trials possible: %s %q\n%s", d.Verdict, d.undecided(), messages(d))
	}
	if d := DefaultGate.Decide(edge); d.Verdict != results.Pass || !strings.Contains(messages(d), "not shown worse") {
		t.Errorf("just over the margin, no more trials: %s\n%s", d.Verdict, messages(d))
	}
	// A looser margin lets 14 % through.
	g := DefaultGate
	g.AB.CPUMargin = 0.2
	if d := g.Decide(withBase(report(twelveP50, twelveP99, nil, 6.6), 1.14, 0)); d.Verdict != results.Pass {
		t.Errorf("14 %% more under a 20 %% margin: %s\n%s", d.Verdict, messages(d))
	}
	// Without base paths there is nothing to compare.
	if d := DefaultGate.Decide(report(quietP50, quietP99, nil, 6.6)); len(d.AB) != 0 {
		t.Errorf("comparisons without a base: %+v", d.AB)
	}
}

// The machine's load moves both builds together from trial to trial:
// pairing by trial sees a shift the unpaired U test cannot.
func TestComparePaired(t *testing.T) {
	var nw, base []float64
	for i := range 12 {
		load := 1 + 0.12*float64(i%4) // the machine: 0 to 36 % slower
		base = append(base, 350*load)
		nw = append(nw, 350*load*(1.12+0.01*float64(i%3)))
	}
	times := func(k float64) func(float64) float64 { return func(v float64) float64 { return v * k } }
	c := compare(nw, base, times(1.05), true, DefaultABAlpha, true)
	if c.Verdict != results.Fail || c.PMannWhitney < DefaultABAlpha {
		t.Errorf("12-14 %% more in every trial: %s, p %g, U p %g (want a fail the U test alone would miss)", c.Verdict, c.P, c.PMannWhitney)
	}
	// Better than the shifted base is never a failure, however
	// significant.
	if c := compare(base, nw, times(1.05), true, DefaultABAlpha, true); c.Verdict != results.Pass || c.P >= DefaultABAlpha {
		t.Errorf("better than the base: %+v", c)
	}
	// Unequal lengths cannot be paired.
	if c := compare(nw, base[:6], times(1.05), true, DefaultABAlpha, true); c.Verdict != results.Inconclusive {
		t.Errorf("unpaired samples: %s", c.Verdict)
	}
}

// Two runs of one build: per trial, the builds differ both ways. Sorting
// either sample before pairing (benchmath.NewSample sorts in place) would
// line up the largest with the largest and make a difference of nothing.
func TestComparePairsByTrial(t *testing.T) {
	nw := []float64{352, 336, 324, 328, 332, 360, 328, 372, 292, 344, 292, 348}
	base := []float64{320, 280, 276, 296, 316, 332, 312, 328, 324, 336, 312, 260}
	nwCopy, baseCopy := slices.Clone(nw), slices.Clone(base)
	c := compare(nw, base, func(v float64) float64 { return v * 1.05 }, true, DefaultABAlpha, true)
	if !slices.Equal(nw, nwCopy) || !slices.Equal(base, baseCopy) {
		t.Fatalf("compare reordered its inputs: %v %v", nw, base)
	}
	if c.P < 0.2 || c.Verdict == results.Fail {
		t.Errorf("9 of 12 trials above the margin, 3 well below: p %g, %s; want a large p", c.P, c.Verdict)
	}
}

func TestSignedRank(t *testing.T) {
	for _, tc := range []struct {
		d    []float64
		want float64
	}{
		{[]float64{1, 2, 3, 4, 5, 6}, 2.0 / 64},                         // all one way: the smallest p for 6
		{[]float64{-1, -2, -3, -4, -5, -6}, 2.0 / 64},                   // either way
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8}, 2.0 / 256},                  // 8 reach 0.01
		{[]float64{-1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 4.0 / 4096}, // W- = 1: two ways in 4096, both tails
		{[]float64{1, 1, 1, 1}, 2.0 / 16},                               // ties share a rank
		{[]float64{0, 0, 3}, 1},                                         // zeros dropped
		{nil, 1},
		{[]float64{-2, 1, -1, 2}, 1}, // balanced
	} {
		if got := signedRank(tc.d); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("signedRank(%v) = %g, want %g", tc.d, got, tc.want)
		}
	}
}

func TestABGateDefaults(t *testing.T) {
	a := ABGate{}.normalized()
	if a.CPUMargin != DefaultABCPUMargin || a.P50MarginMs != DefaultABP50MarginMs || a.Alpha != DefaultABAlpha {
		t.Errorf("zero ABGate: %+v", a)
	}
	if a := (ABGate{Alpha: 2}).normalized(); a.Alpha != DefaultABAlpha {
		t.Errorf("alpha 2: %v", a.Alpha)
	}
}

// TestReportTextAB is what make ab-gate prints: the five paths, and the
// decision with its A/B table.
func TestReportTextAB(t *testing.T) {
	r := withBase(report(twelveP50, twelveP99, nil, 6.6), 1.14, 0.05)
	r.Machine.Hostname, r.Machine.Cores, r.Machine.Kernel = "ci-1", 2, "6.1.0-test"
	d := DefaultGate.Decide(r)
	d.MaxTrials = 16
	d.Looks = []Look{{Trials: 6, Verdict: results.Inconclusive, Undecided: []string{"one-hop cpu_us_per_req_vs_base", "two-hop cpu_us_per_req_vs_base"}}, {Trials: 12, Verdict: d.Verdict}}
	r.Gate = &d
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "report_ab.golden", b.String())
	var j bytes.Buffer
	if err := r.WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Gate struct {
			AB []struct {
				Path, Metric string
				P            float64
				Verdict      string
			}
		}
	}
	if err := json.Unmarshal(j.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Gate.AB) != 6 || back.Gate.AB[1].Verdict != "fail" || math.Abs(back.Gate.AB[1].P-2.0/4096) > 1e-9 {
		t.Errorf("JSON A/B: %+v", back.Gate.AB)
	}
}
