package results

import (
	"math"
	"strings"
	"testing"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// find returns the change for phase, subject and metric.
func find(t *testing.T, c Comparison, phase, subject, metric string) Change {
	t.Helper()
	for _, ch := range c.Changes {
		if ch.Phase == phase && ch.Subject == subject && ch.Metric == metric {
			return ch
		}
	}
	t.Fatalf("no change for %s %s %s in\n%s", phase, subject, metric, c)
	return Change{}
}

// scaled returns a copy of h with every value multiplied by f.
func scaled(h *hdrhistogram.Histogram, f float64) *hdrhistogram.Histogram {
	out := newHist()
	for _, bar := range h.Distribution() {
		if bar.Count > 0 {
			_ = out.RecordValues(int64(float64(bar.To)*f), bar.Count)
		}
	}
	return out
}

// setErrors makes a phase's path have errors failed requests of n.
func setErrors(r *Result, phase, path string, errors, n int64) {
	ps := r.Phase(phase).Path(path)
	ps.Count, ps.Success = n, n-errors
	ps.SuccessRate = float64(ps.Success) / float64(n)
}

func TestCompareIdentical(t *testing.T) {
	a, b := fixture(), fixture()
	c := Compare(a, b)
	if len(c.Changes) == 0 {
		t.Fatal("nothing compared")
	}
	for _, ch := range c.Changes {
		if ch.Significant || ch.Note == "" {
			t.Errorf("identical runs: %s %s %s: %s (p=%v)", ch.Phase, ch.Subject, ch.Metric, ch.Note, ch.P)
		}
		if ch.Diff != 0 {
			t.Errorf("identical runs: %s %s %s: a change of %v", ch.Phase, ch.Subject, ch.Metric, ch.Diff)
		}
	}
	// Latency over trials where there are trials, from the histograms of
	// every request elsewhere; errors always from the counts.
	if ch := find(t, c, "steady", PathMeshed, "p99_ms"); ch.Samples != "trials" || ch.Old.N != 5 || ch.Test != "Mann–Whitney U" {
		t.Errorf("steady meshed p99: %+v, want 5 trials", ch)
	}
	if ch := find(t, c, "after_recovery", PathMeshed, "p99_ms"); ch.Samples != "requests" || ch.Old.N != 3000 || ch.Test != "bootstrap" || ch.Unit != "ms" {
		t.Errorf("after_recovery meshed p99: %+v, want the 3000 requests' histogram", ch)
	}
	if ch := find(t, c, "during_fault", PathMeshed, "error_rate"); ch.Test != "Fisher exact" || ch.Old.Events != 14 || ch.Old.N != 2000 || ch.P != 1 {
		t.Errorf("during_fault errors: %+v, want 14 of 2000 on both sides, p = 1", ch)
	}
	if ch := find(t, c, "steady", "meshed−direct", "p99_added_ms"); ch.Old.N != 5 || ch.Old.Median <= 0 || !math.IsNaN(ch.DeltaPct) {
		t.Errorf("added latency: %+v, want 5 trials and no percentage", ch)
	}
	// One CPU figure per run cannot show anything.
	if ch := find(t, c, "", "skiff-proxy", "cpu_us_per_request"); ch.Significant || ch.Test != "none" || !strings.Contains(ch.Note, "cannot tell") {
		t.Errorf("cpu: %+v", ch)
	}
	for _, ch := range c.Changes {
		if ch.Phase == "warmup" {
			t.Error("the excluded warm-up was compared")
		}
	}
}

// The case: one run with 6 × 502 in a phase and one with none.
// Per-second medians called it "no significant change"; the counts say
// otherwise.
func TestCompareErrorCounts(t *testing.T) {
	for _, tc := range []struct {
		oldErr, newErr int64
		significant    bool
		note           string
	}{
		{0, 6, true, "significant: worse"},
		{6, 0, true, "significant: better"},
		{1, 4, false, "no significant change"},
		{0, 0, false, "no errors in either run"},
	} {
		a, b := fixture(), fixture()
		setErrors(a, "after_recovery", PathMeshed, tc.oldErr, 2400)
		setErrors(b, "after_recovery", PathMeshed, tc.newErr, 2400)
		ch := find(t, Compare(a, b), "after_recovery", PathMeshed, "error_rate")
		if ch.Significant != tc.significant || ch.Note != tc.note {
			t.Errorf("%d → %d errors of 2400: %s (p=%.4f), want %s", tc.oldErr, tc.newErr, ch.Note, ch.P, tc.note)
		}
		if tc.oldErr == 0 && tc.newErr == 6 {
			if math.Abs(ch.P-0.0311523844825) > 1e-9 {
				t.Errorf("p = %v, want Fisher's 0.0312", ch.P)
			}
			// 0.25 percentage points more, the interval clear of 0.
			if math.Abs(ch.Diff-0.25) > 1e-9 || ch.DiffLo <= 0 || ch.DiffHi <= ch.Diff {
				t.Errorf("difference %v pp [%v, %v], want 0.25 with an interval above 0", ch.Diff, ch.DiffLo, ch.DiffHi)
			}
		}
	}
}

func TestCompareShifted(t *testing.T) {
	a, b := fixture(), fixture()
	// The new proxy is 30 % slower on the meshed path, and uses more memory
	// and CPU.
	for i := range b.Phases {
		if ps := b.Phases[i].Path(PathMeshed); ps != nil && ps.Histogram != nil {
			ps.Histogram = scaled(ps.Histogram, 1.3)
		}
	}
	for i := range b.Trials {
		if b.Trials[i].Path == PathMeshed {
			b.Trials[i].Latency.P50 *= 1.3
			b.Trials[i].Latency.P99 *= 1.3
		}
	}
	for i := range b.Processes[0].RSS {
		b.Processes[0].RSS[i].MB += 3
	}
	b.Processes[0].CPUMicrosPerRequest *= 2
	c := Compare(a, b)

	ch := find(t, c, "after_recovery", PathMeshed, "p50_ms")
	if !ch.Significant || ch.Note != "significant: worse" || ch.DeltaPct < 25 || ch.DeltaPct > 35 || ch.DiffLo <= 0 {
		t.Errorf("after_recovery meshed p50: %+v, want a significant ~30 %% regression with an interval above 0", ch)
	}
	if ch := find(t, c, "after_recovery", PathDirect, "p50_ms"); ch.Significant {
		t.Errorf("the direct path did not change: %+v", ch)
	}
	ch = find(t, c, "steady", PathMeshed, "p50_ms")
	if !ch.Significant || ch.Note != "significant: worse" {
		t.Errorf("steady meshed p50 over 5 trials: %+v", ch)
	}
	if ch := find(t, c, "", "skiff-proxy", "vmrss_mb"); !ch.Significant || ch.Note != "significant: worse" || ch.Unit != "MiB" {
		t.Errorf("rss: %+v", ch)
	}
	ch = find(t, c, "", "skiff-proxy", "cpu_us_per_request")
	if ch.Significant || !strings.Contains(ch.Note, "cannot tell") || ch.DeltaPct != 100 {
		t.Errorf("cpu from one value per run: %+v, want +100%% but cannot tell", ch)
	}

	// Better is better.
	c = Compare(b, a)
	if ch := find(t, c, "after_recovery", PathMeshed, "p50_ms"); ch.Note != "significant: better" {
		t.Errorf("reverse: %+v", ch)
	}
}

// The bootstrap draws are seeded: the same runs compare the same way.
func TestCompareDeterministic(t *testing.T) {
	a, b := fixture(), fixture()
	b.Phase("whole").Path(PathMeshed).Histogram = scaled(b.Phase("whole").Path(PathMeshed).Histogram, 1.05)
	if x, y := Compare(a, b).String(), Compare(a, b).String(); x != y {
		t.Error("two comparisons of the same runs differ")
	}
}

func TestCompareUnmatched(t *testing.T) {
	a, b := fixture(), fixture()
	b.Phases = b.Phases[:len(b.Phases)-1] // no "whole"
	b.Phases[1].Paths = b.Phases[1].Paths[:1]
	b.Processes = append(b.Processes, Process{Name: "skiff-controller", Role: "controller"})
	c := Compare(a, b)
	want := []string{"phase steady path direct: only in old", "phase whole: only in old", "process skiff-controller: only in new"}
	got := strings.Join(c.Unmatched, "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("unmatched %q missing from:\n%s", w, got)
		}
	}
}

// TestCompareGolden is the text of a comparison of a run against one with
// 6 more errors after recovery, a meshed path 10 % slower and a busy
// machine: intervals in each metric's unit, never "± ∞" or a percentage
// of a rate.
func TestCompareGolden(t *testing.T) {
	a, b := fixture(), fixture()
	setErrors(a, "after_recovery", PathMeshed, 0, 3000)
	setErrors(b, "after_recovery", PathMeshed, 6, 3000)
	for i := range b.Phases {
		if ps := b.Phases[i].Path(PathMeshed); ps != nil && ps.Histogram != nil {
			ps.Histogram = scaled(ps.Histogram, 1.1)
		}
	}
	a.Noise = &Noise{CPUs: 2, Seconds: 40, OtherCPU: 0.04, OtherCPUMax: 0.3, StealPct: 0.2, StealMaxPct: 1.1, RunCPU: 0.8, LoadAvg1: 0.9, SendLagP99Ms: 0.08}
	b.Noise = &Noise{CPUs: 2, Seconds: 40, OtherCPU: 0.9, OtherCPUMax: 1.7, StealPct: 0.4, StealMaxPct: 3, RunCPU: 0.8, LoadAvg1: 3.2, SendLagP99Ms: 2.4}
	out := Compare(a, b).String()
	for _, bad := range []string{"± ∞", "±"} {
		if strings.Contains(out, bad) {
			t.Errorf("comparison text holds %q", bad)
		}
	}
	golden(t, "compare.golden.txt", []byte(out))
}
