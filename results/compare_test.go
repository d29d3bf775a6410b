package results

import (
	"strings"
	"testing"
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

func TestCompareIdentical(t *testing.T) {
	a, b := fixture(), fixture()
	c := Compare(a, b)
	if len(c.Changes) == 0 {
		t.Fatal("nothing compared")
	}
	for _, ch := range c.Changes {
		if ch.Significant || !strings.HasPrefix(ch.Note, "no significant change") {
			t.Errorf("identical runs: %s %s %s: %s (p=%v)", ch.Phase, ch.Subject, ch.Metric, ch.Note, ch.P)
		}
		if ch.DeltaPct != 0 {
			t.Errorf("identical runs: %s %s %s: delta %v%%", ch.Phase, ch.Subject, ch.Metric, ch.DeltaPct)
		}
	}
	// Trials are used where there are trials, seconds elsewhere.
	if ch := find(t, c, "steady", PathMeshed, "p99_ms"); ch.Samples != "trials" || ch.Old.N != 5 {
		t.Errorf("steady meshed p99: %+v, want 5 trials", ch)
	}
	if ch := find(t, c, "after_recovery", PathMeshed, "p99_ms"); ch.Samples != "seconds" || ch.Old.N != 15 {
		t.Errorf("after_recovery meshed p99: %+v, want 15 seconds", ch)
	}
	if ch := find(t, c, "steady", "meshed−direct", "p99_added_ms"); ch.Old.N != 5 || ch.Old.Median <= 0 {
		t.Errorf("added latency: %+v", ch)
	}
	// One CPU figure per run cannot show anything.
	if ch := find(t, c, "", "skiff-proxy", "cpu_us_per_request"); ch.Significant || !strings.Contains(ch.Note, "all values equal") {
		t.Errorf("cpu: %+v", ch)
	}
	for _, ch := range c.Changes {
		if ch.Phase == "warmup" {
			t.Error("the excluded warm-up was compared")
		}
	}
}

func TestCompareShifted(t *testing.T) {
	a, b := fixture(), fixture()
	// The new proxy is 30 % slower on the meshed path, and uses more memory
	// and CPU.
	for i := range b.Series {
		if b.Series[i].Path == PathMeshed {
			b.Series[i].P50Ms *= 1.3
			b.Series[i].P99Ms *= 1.3
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

	ch := find(t, c, "after_recovery", PathMeshed, "p99_ms")
	if !ch.Significant || ch.P >= Alpha || ch.Note != "significant: worse" || ch.DeltaPct < 20 || ch.DeltaPct > 40 {
		t.Errorf("after_recovery meshed p99: %+v, want a significant ~30 %% regression", ch)
	}
	ch = find(t, c, "steady", PathMeshed, "p50_ms")
	if !ch.Significant || ch.Note != "significant: worse" {
		t.Errorf("steady meshed p50 over 5 trials: %+v", ch)
	}
	if ch := find(t, c, "steady", PathDirect, "p50_ms"); ch.Significant {
		t.Errorf("the direct path did not change: %+v", ch)
	}
	if ch := find(t, c, "", "skiff-proxy", "vmrss_mb"); !ch.Significant || ch.Note != "significant: worse" {
		t.Errorf("rss: %+v", ch)
	}
	ch = find(t, c, "", "skiff-proxy", "cpu_us_per_request")
	if ch.Significant || !strings.Contains(ch.Note, "too few samples to tell") || ch.DeltaPct != 100 {
		t.Errorf("cpu from one value per run: %+v, want +100%% but too few samples to tell", ch)
	}

	// Better is better.
	c = Compare(b, a)
	if ch := find(t, c, "after_recovery", PathMeshed, "p99_ms"); ch.Note != "significant: better" {
		t.Errorf("reverse: %+v", ch)
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

func TestCompareText(t *testing.T) {
	a, b := fixture(), fixture()
	for i := range b.Trials {
		b.Trials[i].Latency.P99 *= 2
	}
	out := Compare(a, b).String()
	for _, want := range []string{
		"old: failover 0123abc (2026-11-27 14:00:00Z)",
		"medians with 95% confidence intervals; Mann–Whitney U, alpha 0.05",
		"phase", "subject", "metric", "samples", "old", "new", "delta", "p", "n",
		"steady", "meshed", "p99_ms", "trials", "+100.00%", "5+5", "significant: worse",
		"no significant change",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison text lacks %q:\n%s", want, out)
		}
	}
	if testing.Verbose() {
		t.Log("\n" + out)
	}
}
