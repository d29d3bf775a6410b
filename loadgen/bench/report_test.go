package bench

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/results"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// report builds a report from per-trial two-hop added latencies (ms), with
// direct and one-hop paths around them, 2 000 requests a trial and path.
func report(addedP50, addedP99 []float64, failed map[string]int64, vmhwm float64) *Report {
	n := len(addedP50)
	r := &Report{Schema: "skiff.bench/v1", Rate: 500, Protocol: "http1", DurationS: 5, WarmUpS: 1, TrialsCount: n}
	for _, path := range []string{PathDirect, PathOneHop, PathTwoHop} {
		var ts []Trial
		for i := range n {
			t := Trial{Requests: 2000, Success: 2000, P50Ms: 0.4 + 0.01*float64(i%3), P99Ms: 0.9 + 0.02*float64(i%2), P999Ms: 1.5 + 0.1*float64(i%4)}
			switch path {
			case PathOneHop:
				t.AddedP50Ms, t.AddedP99Ms, t.AddedP999Ms = addedP50[i]/2, addedP99[i]/2, addedP99[i]
				t.ProxyCPUUsPerReq = 350 + float64(i%5)
			case PathTwoHop:
				t.AddedP50Ms, t.AddedP99Ms, t.AddedP999Ms = addedP50[i], addedP99[i], 2*addedP99[i]
				t.ProxyCPUUsPerReq = 700 + 2*float64(i%5)
			}
			t.P50Ms += t.AddedP50Ms
			t.P99Ms += t.AddedP99Ms
			t.P999Ms += t.AddedP999Ms
			if i == 0 {
				t.Success -= failed[path]
			}
			t.SuccessRate = float64(t.Success) / float64(t.Requests)
			ts = append(ts, t)
		}
		pr := summarize(path, ts)
		pr.Kind = KindSkiff
		if path == PathDirect {
			pr.Kind = KindDirect
		}
		r.Paths = append(r.Paths, pr)
	}
	r.Procs = []ProcReport{
		{Name: "proxy-one-hop", Path: PathOneHop, IdleVmRSSMB: 5.1, MaxVmRSSMB: 6.2, VmHWMMB: 6.4, MaxPssMB: 3.9, MaxPssAnonMB: 2.1, MaxPssFileMB: 1.8},
		{Name: "proxy-outbound", Path: PathTwoHop, IdleVmRSSMB: 5.2, MaxVmRSSMB: 6.5, VmHWMMB: vmhwm, MaxPssMB: 3.7, MaxPssAnonMB: 2.2, MaxPssFileMB: 1.5},
		{Name: "proxy-inbound", Path: PathTwoHop, IdleVmRSSMB: 5.0, MaxVmRSSMB: 6.1, VmHWMMB: 6.3, MaxPssMB: 3.6, MaxPssAnonMB: 2.1, MaxPssFileMB: 1.5},
	}
	return r
}

var (
	quietP50 = []float64{0.30, 0.32, 0.35, 0.31, 0.33, 0.34}
	quietP99 = []float64{0.61, 0.70, 0.66, 0.58, 0.75, 0.64}
)

func TestGateDecide(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p50, p99   []float64
		failed     map[string]int64
		vmhwm      float64
		want       results.Verdict
		undecided  []string
		failedWhat string
	}{
		{name: "quiet machine", p50: quietP50, p99: quietP99, vmhwm: 6.6, want: results.Pass},
		{
			// Today's machine: the median above the limit, the interval
			// across it. The point-estimate gate failed this on noise.
			name: "p50 straddles", p50: []float64{0.48, 0.53, 0.55, 0.58, 0.60, 0.64}, p99: quietP99, vmhwm: 6.6,
			want: results.Inconclusive, undecided: []string{"two-hop added_p50_ms"},
		},
		{
			// The p99: +0.628 ms, the interval up to +2.371 ms.
			// The point-estimate gate passed this.
			name: "p99 interval reaches past the limit", p50: quietP50, p99: []float64{0.41, 0.60, 0.628, 0.63, 0.71, 2.371}, vmhwm: 6.6,
			want: results.Inconclusive, undecided: []string{"two-hop added_p99_ms"},
		},
		{
			name: "p50 beyond the limit", p50: []float64{0.52, 0.55, 0.57, 0.58, 0.59, 0.60}, p99: quietP99, vmhwm: 6.6,
			want: results.Fail, failedWhat: "[two-hop] added_p50_ms <= 0.5",
		},
		{
			name: "three trials give no interval", p50: quietP50[:3], p99: quietP99[:3], vmhwm: 6.6,
			want: results.Inconclusive, undecided: []string{"two-hop added_p50_ms", "two-hop added_p99_ms"},
		},
		{name: "VmHWM over", p50: quietP50, p99: quietP99, vmhwm: 11.0, want: results.Fail, failedWhat: "[proxy-outbound] vmhwm_mb <= 9"},
		{
			// 12 000 requests a path: 0.999 allows 12.
			name: "a few failures", p50: quietP50, p99: quietP99, vmhwm: 6.6, failed: map[string]int64{PathTwoHop: 16},
			want: results.Inconclusive, undecided: []string{"two-hop success_rate"},
		},
		{name: "many failures", p50: quietP50, p99: quietP99, vmhwm: 6.6, failed: map[string]int64{PathDirect: 30}, want: results.Fail, failedWhat: "[direct] success_rate >= 0.999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := DefaultGate.Decide(report(tc.p50, tc.p99, tc.failed, tc.vmhwm))
			if d.Verdict != tc.want {
				t.Fatalf("verdict %s, want %s:\n%s", d.Verdict, tc.want, messages(d))
			}
			if got := strings.Join(d.undecided(), ","); got != strings.Join(tc.undecided, ",") {
				t.Errorf("undecided %q, want %q", got, strings.Join(tc.undecided, ","))
			}
			if tc.failedWhat != "" && !strings.Contains(messages(d), "FAIL "+tc.failedWhat) {
				t.Errorf("no failure of %q in:\n%s", tc.failedWhat, messages(d))
			}
			if len(d.Checks) != 2+3+3 {
				t.Errorf("%d checks, want 8 (two latencies, three proxies, three paths)", len(d.Checks))
			}
		})
	}
}

func messages(d Decision) string {
	var b strings.Builder
	for _, c := range d.Checks {
		b.WriteString(c.Message + "\n")
	}
	return b.String()
}

// TestReportText is the text a gated bench prints: the tables, the
// machine's noise and the decision with its looks.
func TestReportText(t *testing.T) {
	r := report([]float64{0.48, 0.53, 0.55, 0.58, 0.60, 0.64, 0.47, 0.49, 0.50, 0.46, 0.49, 0.48}, append(quietP99, quietP99...), nil, 6.6)
	r.Noise = &results.Noise{CPUs: 2, Seconds: 180, OtherCPU: 0.62, OtherCPUMax: 1.4, StealPct: 0.4, StealMaxPct: 2.5, RunCPU: 0.9, LoadAvg1: 2.1,
		SendLagP99Ms: 0.21, DirectP50Ms: &results.Spread{Min: 0.4, Median: 0.41, Max: 0.42, Trials: 12}}
	d := DefaultGate.Decide(r)
	d.MaxTrials = 24
	d.Looks = []Look{{Trials: 6, Verdict: results.Inconclusive, Undecided: []string{"two-hop added_p50_ms"}}, {Trials: 12, Verdict: d.Verdict, Undecided: d.undecided()}}
	r.Gate = &d
	r.Machine.Hostname, r.Machine.Cores, r.Machine.Kernel = "ci-1", 2, "6.1.0-test"
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("report text differs from %s (rerun with -update if intended):\n%s", golden, b.String())
	}
}

func TestReportJSONUnboundedInterval(t *testing.T) {
	r := report(quietP50[:3], quietP99[:3], nil, 6.6)
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatalf("a report with too few trials for an interval must still encode: %v", err)
	}
	if !strings.Contains(b.String(), `"lo": null`) {
		t.Errorf("an unbounded interval should encode as null:\n%s", b.String()[:min(b.Len(), 600)])
	}
}

// On a busy machine, an added latency that fails by less than the direct
// path's own spread is inconclusive; one far beyond it still fails.
func TestGateDecideBusyMachine(t *testing.T) {
	busy := &results.Noise{CPUs: 2, OtherCPU: 1.34, OtherCPUMax: 1.8}
	near := report([]float64{0.524, 0.7, 0.75, 0.77, 0.9, 18.9}, quietP99, nil, 6.6)
	near.Noise = busy
	for i := range near.Paths[0].Trials { // the direct path: 0.96..1.14 ms
		near.Paths[0].Trials[i].P50Ms = 0.96 + 0.036*float64(i)
	}
	d := DefaultGate.Decide(near)
	if d.Verdict != results.Inconclusive || !strings.Contains(messages(d), "within the machine's own noise") {
		t.Errorf("busy, 0.024 ms beyond the limit, the direct path spread over 0.18 ms: %s\n%s", d.Verdict, messages(d))
	}
	near.Noise = &results.Noise{CPUs: 2, OtherCPU: 0.05}
	if d := DefaultGate.Decide(near); d.Verdict != results.Fail {
		t.Errorf("the same figures on a quiet machine: %s, want fail", d.Verdict)
	}
	far := report([]float64{1.4, 1.5, 1.5, 1.6, 1.6, 1.7}, quietP99, nil, 6.6)
	far.Noise = busy
	if d := DefaultGate.Decide(far); d.Verdict != results.Fail {
		t.Errorf("a proxy 1 ms slower on a busy machine: %s, want fail\n%s", d.Verdict, messages(d))
	}
}

// A known failure is judged and printed but its ceiling decides: the CI
// figures of the two-hop p50 (0.536..0.621 against 0.5) pass under a
// ceiling of 0.75 and fail above one of 0.55.
func TestGateKnownFailure(t *testing.T) {
	g := DefaultGate
	metric, k, err := g.ParseKnown("added_p50_ms<=0.75: issue 12, two hops add 0.55 ms on 2 cores")
	if err != nil || metric != "added_p50_ms" || k.Ceiling != 0.75 || k.Why != "issue 12, two hops add 0.55 ms on 2 cores" {
		t.Fatalf("parse: %q %+v %v", metric, k, err)
	}
	g.Known = map[string]Known{metric: k}
	r := report([]float64{0.536, 0.55, 0.56, 0.57, 0.6, 0.621}, quietP99, nil, 8.4)
	d := g.Decide(r)
	msgs := messages(d)
	if d.Verdict != results.Pass || !strings.Contains(msgs, "KNOWN FAIL [two-hop] added_p50_ms <= 0.5") ||
		!strings.Contains(msgs, "PASS [two-hop] added_p50_ms <= 0.75") || !strings.Contains(msgs, "(the ceiling of the known failure added_p50_ms <= 0.5)") {
		t.Errorf("under the ceiling: %s\n%s", d.Verdict, msgs)
	}
	if u := d.undecided(); len(u) != 0 {
		t.Errorf("a known failure asks for no more trials: %q", u)
	}
	// A ceiling the interval straddles asks for more trials, and after the
	// most of them is no evidence of a regression; one the interval is
	// wholly beyond fails.
	g.Known[metric] = Known{Ceiling: 0.55, Why: "x"}
	if d := g.decide(r, false); d.Verdict != results.Inconclusive {
		t.Errorf("straddling the ceiling, more trials to come: %s\n%s", d.Verdict, messages(d))
	}
	if d := g.Decide(r); d.Verdict != results.Pass || !strings.Contains(messages(d), "PASS [two-hop] added_p50_ms <= 0.55") || !strings.Contains(messages(d), "not shown beyond its ceiling after the most trials") {
		t.Errorf("straddling the ceiling after the most trials: %s\n%s", d.Verdict, messages(d))
	}
	g.Known[metric] = Known{Ceiling: 0.52, Why: "x"}
	if d := g.Decide(r); d.Verdict != results.Fail {
		t.Errorf("wholly over the ceiling: %s\n%s", d.Verdict, messages(d))
	}
	for _, bad := range []string{"added_p50_ms<=0.4: tighter", "added_p50_ms<=0.75", "added_p50_ms>=0.75: wrong way", "p50<=1: what", "vmhwm_mb<=x: nan", "success_rate>=0.9999: tighter"} {
		if _, _, err := DefaultGate.ParseKnown(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
