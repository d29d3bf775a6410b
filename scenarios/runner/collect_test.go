package runner

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/loadgen"
	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/results/assert"
	"github.com/skiff-mesh/skiff/scenarios/spec"
)

// fakeTrials makes interleaved trials whose meshed p50 exceeds the direct
// one's by added[i] ms, 2 000 requests each, all answered.
func fakeTrials(added ...float64) []trial {
	var out []trial
	for i, a := range added {
		direct := &loadgen.Result{Requests: 2000, Success: 2000, SuccessRate: 1, Latency: loadgen.Latency{P50: 400, P99: 900}}
		meshed := &loadgen.Result{Requests: 2000, Success: 2000, SuccessRate: 1,
			Latency: loadgen.Latency{P50: 400 + int64(math.Round(a*1000)), P99: 1200}}
		out = append(out, trial{n: i + 1, meshed: meshed, direct: direct})
	}
	return out
}

func TestTrialsWanted(t *testing.T) {
	sc := &spec.Scenario{Name: "baseline", Load: spec.Traffic{Trials: 3, Duration: 6 * time.Second}, Assertions: []spec.Assertion{
		{Expr: "p50_added_ms <= 0.5"},
		{Expr: "p99_added_ms <= 1"},
		{Expr: "proxy_vmhwm_mb <= 10"},
	}}
	r := &run{sc: sc}
	for _, tc := range []struct {
		name  string
		added []float64
		want  int
	}{
		// Three trials give no 95 % interval: double them.
		{"quick run", []float64{0.3, 0.31, 0.32}, 6},
		{"decided: all within", []float64{0.3, 0.31, 0.32, 0.33, 0.29, 0.3}, 6},
		{"decided: none within", []float64{1.3, 1.31, 1.32, 1.33, 1.29, 1.3}, 6},
		{"straddles", []float64{0.45, 0.48, 0.52, 0.55, 0.49, 0.6}, 12},
		{"at the cap", []float64{0.45, 0.48, 0.52, 0.55, 0.49, 0.6, 0.45, 0.48, 0.52, 0.55, 0.49, 0.6}, 12},
	} {
		if got := r.trialsWanted(fakeTrials(tc.added...)); got != tc.want {
			t.Errorf("%s: trialsWanted = %d, want %d", tc.name, got, tc.want)
		}
	}
	// Options.MaxTrials caps them (make planted: 6).
	r.o.MaxTrials = 6
	if got := r.trialsWanted(fakeTrials(0.45, 0.48, 0.52, 0.55, 0.49, 0.6)); got != 6 {
		t.Errorf("straddling at MaxTrials 6: trialsWanted = %d, want 6", got)
	}
	if got := r.trialsWanted(fakeTrials(0.3, 0.31, 0.32)); got != 6 {
		t.Errorf("a quick run under MaxTrials 6: trialsWanted = %d, want 6", got)
	}
	// A known failure asks for no trials; its ceiling does.
	r = &run{sc: &spec.Scenario{Load: spec.Traffic{Trials: 3}, Assertions: []spec.Assertion{
		{Expr: "p50_added_ms <= 0.5", KnownFailure: "slow today", Ceiling: "p50_added_ms <= 0.8"}}}}
	if got := r.trialsWanted(fakeTrials(0.45, 0.48, 0.52, 0.55, 0.49, 0.6)); got != 6 {
		t.Errorf("straddling the known failure, within its ceiling: trialsWanted = %d, want 6", got)
	}
	if got := r.trialsWanted(fakeTrials(0.65, 0.7, 0.75, 0.85, 0.78, 0.9)); got != 12 {
		t.Errorf("straddling the ceiling: trialsWanted = %d, want 12", got)
	}
	// Without an assertion decided over the trials, 3 stay 3.
	r = &run{sc: &spec.Scenario{Load: spec.Traffic{Trials: 3}, Assertions: []spec.Assertion{{Expr: "proxy_vmhwm_mb <= 10"}}}}
	if got := r.trialsWanted(fakeTrials(0.3, 0.31, 0.32)); got != 3 {
		t.Errorf("no trial assertion: trialsWanted = %d, want 3", got)
	}
}

func TestMetricsEvidence(t *testing.T) {
	sc := &spec.Scenario{Name: "baseline", Load: spec.Traffic{Trials: 6, Duration: 6 * time.Second}}
	r := &run{sc: sc}
	res := &results.Result{Scenario: "baseline"}
	res.Trials = trialRecords(fakeTrials(0.3, 0.31, 0.32, 0.33, 0.29, 0.3), sc.Load.Duration)
	res.Phases = []results.Phase{{Name: spec.PhaseWhole, EndS: 36, Paths: []results.PathStats{
		{Path: results.PathMeshed, Count: 2400, Success: 2396, SuccessRate: 2396.0 / 2400},
	}}}
	m := r.metrics(res, spec.PhaseWhole)
	if c := m["success_rate"].Count; c == nil || *c != (results.Count{K: 2396, N: 2400}) {
		t.Errorf("success_rate without its count: %+v", m["success_rate"])
	}
	if c := m["error_rate"].Count; c == nil || *c != (results.Count{K: 4, N: 2400}) {
		t.Errorf("error_rate without its count: %+v", m["error_rate"])
	}
	added := m["p50_added_ms"]
	lo, hi := added.Interval.Bounds()
	if math.Abs(added.Value-0.305) > 1e-9 || math.Abs(lo-0.29) > 1e-9 || math.Abs(hi-0.33) > 1e-9 || added.Interval.Samples != 6 {
		t.Errorf("p50_added_ms = %v [%v, %v] over %d, want 0.305 [0.29, 0.33] over 6", added.Value, lo, hi, added.Interval.Samples)
	}
	a := assert.CheckMeasures("success_rate >= 0.999", spec.PhaseWhole, m)
	if a.Verdict != results.Inconclusive || a.Rule != results.RuleBinomial {
		t.Errorf("4 failures in 2400 against 0.999: %s by %s, want inconclusive by the binomial rule", a.Verdict, a.Rule)
	}

	// On a busy machine, latency measures carry the machine's noise.
	res.Noise = &results.Noise{CPUs: 2, OtherCPU: 1.2, SendLagP99Ms: 4}
	res.Trials[1].Latency.P50 = 0.52 // direct trial 1: the direct p50s span 0.4..0.52
	m = r.metrics(res, spec.PhaseWhole)
	if m["p50_added_ms"].Busy == "" || math.Abs(m["p50_added_ms"].Margin-0.12) > 1e-9 {
		t.Errorf("busy machine: p50_added_ms %+v, want the direct spread 0.12 as its margin", m["p50_added_ms"])
	}
	if m["p99_ms"].Margin != 4 || m["success_rate"].Busy != "" {
		t.Errorf("busy machine: p99_ms margin %v (want 4), success_rate busy %q (want none)", m["p99_ms"].Margin, m["success_rate"].Busy)
	}
}

// A fault that could not be carried out makes the run an error: the
// assertions did not test what the scenario says.
func TestFailedEventsAreAnError(t *testing.T) {
	ok := []results.Event{{OffsetS: 10, Type: "kill", Target: "echo-2", OK: true}}
	if err := failedEvents(ok); err != nil {
		t.Errorf("all carried out: %v", err)
	}
	bad := append(ok, results.Event{OffsetS: 24.6, Type: "add_trust_anchor", Target: "controller", Err: "local: sidecars echo-0 did not report 2 trust anchors within 15s"})
	err := failedEvents(bad)
	if err == nil || !strings.Contains(err.Error(), "add_trust_anchor controller at 24.6s: local: sidecars echo-0 did not report 2 trust anchors within 15s") {
		t.Errorf("a failed step: %v", err)
	}
}

// TestWholeSeconds pins how a phase's declared bounds become the whole
// seconds of load it is judged on: the seconds they touch, no fewer (a
// request left out would be unjudged) and no more.
func TestWholeSeconds(t *testing.T) {
	s := time.Second
	for _, c := range []struct{ from, to, lo, hi time.Duration }{
		{0, 10 * s, 0, 10 * s},
		{7500 * time.Millisecond, 22500 * time.Millisecond, 7 * s, 23 * s},
		{24750 * time.Millisecond, 34 * s, 24 * s, 34 * s},
		{3 * s, 3 * s, 3 * s, 3 * s},
	} {
		lo, hi := wholeSeconds(c.from, c.to)
		if lo != c.lo || hi != c.hi {
			t.Errorf("wholeSeconds(%v, %v) = %v, %v; want %v, %v", c.from, c.to, lo, hi, c.lo, c.hi)
		}
	}
}
