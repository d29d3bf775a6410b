package runner

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/results/assert"
	"github.com/skiff-mesh/skiff/scenarios"
)

// rssSeries is a synthetic VmRSS series sampled every 250 ms over
// [0, seconds): base MiB, growing leak MiB a minute, with a garbage
// collector's sawtooth (up saw MiB over each 4 s, then back) and
// Gaussian noise of sd MiB drawn from seed.
func rssSeries(seed uint64, seconds, base, leak, saw, sd float64) []results.RSSPoint {
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []results.RSSPoint
	for at := 0.0; at < seconds; at += 0.25 {
		mb := base + leak*at/60 + saw*math.Mod(at, 4)/4 + sd*rng.NormFloat64()
		out = append(out, results.RSSPoint{OffsetS: at, MB: mb, PID: 100})
	}
	return out
}

func TestRSSSlopeLine(t *testing.T) {
	f, ok := rssSlope(rssSeries(1, 60, 10, 3, 0, 0), 0, 60, 0.95)
	if !ok {
		t.Fatal("no fit over 60 s of samples")
	}
	if math.Abs(f.PerMin-3) > 1e-9 || math.Abs(f.Hi-f.Lo) > 1e-9 || f.Blocks != slopeBlocks {
		t.Errorf("a straight line of 3 MiB/min: got %+v", f)
	}
}

// TestRSSSlopeFlatNoise: a flat series with a sawtooth and noise has a
// slope whose interval holds 0, and an assertion on it passes.
func TestRSSSlopeFlatNoise(t *testing.T) {
	for seed := range uint64(20) {
		pts := rssSeries(seed, 90, 12, 0, 0.4, 0.15)
		f, ok := rssSlope(pts, 45, 90, 0.95)
		if !ok {
			t.Fatal("no fit")
		}
		if f.Lo > 0 || f.Hi < 0 {
			t.Errorf("seed %d: flat series, yet the interval [%.3f, %.3f] excludes 0 (slope %.3f)", seed, f.Lo, f.Hi, f.PerMin)
		}
		m := worstRSSSlope([]results.Process{{Name: "client-proxy", Role: scenarios.RoleProxy, RSS: pts}}, 45, 90)
		if d := mustParse(t, "proxy_rss_slope_mb_per_min <= 1").Decide(m); d.Verdict != results.Pass {
			t.Errorf("seed %d: flat series judged %s: %s", seed, d.Verdict, d.Why)
		}
	}
}

// TestRSSSlopeLeak: a steady leak under the same noise is significant,
// and fails an assertion below it.
func TestRSSSlopeLeak(t *testing.T) {
	for seed := range uint64(20) {
		pts := rssSeries(seed, 90, 12, 4, 0.4, 0.15)
		f, ok := rssSlope(pts, 45, 90, 0.95)
		if !ok {
			t.Fatal("no fit")
		}
		if f.Lo <= 0 {
			t.Errorf("seed %d: a 4 MiB/min leak not significant: [%.3f, %.3f]", seed, f.Lo, f.Hi)
		}
		m := worstRSSSlope([]results.Process{{Name: "client-proxy", Role: scenarios.RoleProxy, RSS: pts}}, 45, 90)
		d := mustParse(t, "proxy_rss_slope_mb_per_min <= 1").Decide(m)
		if d.Verdict != results.Fail {
			t.Errorf("seed %d: a 4 MiB/min leak judged %s: %s", seed, d.Verdict, d.Why)
		}
		if !strings.Contains(d.Why, "steepest client-proxy") {
			t.Errorf("the message does not name the proxy: %s", d.Why)
		}
	}
}

// TestRSSSlopeCoverage: with independent noise, the 95 % interval holds
// the true slope in about 95 % of runs.
func TestRSSSlopeCoverage(t *testing.T) {
	const runs = 400
	held := 0
	for seed := range uint64(runs) {
		f, ok := rssSlope(rssSeries(seed, 60, 12, 0.5, 0, 0.3), 0, 60, 0.95)
		if ok && f.Lo <= 0.5 && 0.5 <= f.Hi {
			held++
		}
	}
	if share := float64(held) / runs; share < 0.9 || share > 0.99 {
		t.Errorf("the 95 %% interval held the true slope in %.3f of %d runs", share, runs)
	}
}

// TestRSSSlopeRestart: a proxy restarted in the window is fitted over
// the process with the most samples, not across the two.
func TestRSSSlopeRestart(t *testing.T) {
	pts := rssSeries(1, 60, 30, 0, 0, 0)
	for i := range pts {
		if pts[i].OffsetS < 15 {
			pts[i].PID = 99 // the first process, larger
			pts[i].MB = 60
		}
	}
	f, ok := rssSlope(pts, 0, 60, 0.95)
	if !ok || math.Abs(f.PerMin) > 1e-9 || f.Blocks < 7 {
		t.Errorf("fit across a restart: %+v, %v", f, ok)
	}
}

func TestRSSSlopeTooFewSamples(t *testing.T) {
	if f, ok := rssSlope(rssSeries(1, 2.5, 10, 0, 0, 0.1), 0, 2.5, 0.95); ok {
		t.Errorf("2.5 s of samples fitted: %+v", f)
	}
	if m := worstRSSSlope(nil, 0, 60); !math.IsNaN(m.Value) {
		t.Errorf("no proxies: %+v, want NaN", m)
	}
}

// TestWorstRSSSlope: the steepest proxy is the value; the interval holds
// every proxy's, so one proxy whose slope the data cannot tell makes the
// verdict inconclusive rather than a pass.
func TestWorstRSSSlope(t *testing.T) {
	flat := results.Process{Name: "echo-0-proxy", Role: scenarios.RoleProxy, RSS: rssSeries(1, 90, 10, 0, 0, 0.05)}
	leak := results.Process{Name: "client-proxy", Role: scenarios.RoleProxy, RSS: rssSeries(2, 90, 10, 0.6, 0, 0.05)}
	app := results.Process{Name: "echo-0-app", Role: scenarios.RoleApp, RSS: rssSeries(3, 90, 10, 50, 0, 0)}
	m := worstRSSSlope([]results.Process{flat, leak, app}, 0, 90)
	if math.Abs(m.Value-0.6) > 0.05 {
		t.Errorf("steepest proxy's slope %.3f, want about 0.6 (the app's 50 is not a proxy's)", m.Value)
	}
	lo, hi := m.Interval.Bounds()
	if lo > 0.6 || hi < 0.6 || m.Interval.Confidence != assert.Confidence {
		t.Errorf("interval [%.3f, %.3f] at %v", lo, hi, m.Interval.Confidence)
	}
	if d := mustParse(t, "proxy_rss_slope_mb_per_min <= 1").Decide(m); d.Verdict != results.Pass {
		t.Errorf("0.6 MiB/min against 1: %s (%s)", d.Verdict, d.Why)
	}
	noisy := results.Process{Name: "echo-1-proxy", Role: scenarios.RoleProxy, RSS: rssSeries(4, 90, 10, 0, 0, 3)}
	m = worstRSSSlope([]results.Process{flat, leak, noisy}, 0, 90)
	if d := mustParse(t, "proxy_rss_slope_mb_per_min <= 1").Decide(m); d.Verdict != results.Inconclusive {
		t.Errorf("a proxy whose RSS swings by 3 MiB: %s (%s), want inconclusive", d.Verdict, d.Why)
	}
}

func TestGoroutineGrowth(t *testing.T) {
	start := map[string]float64{"client": 40, "echo-0": 30, "echo-1": 31}
	end := map[string]float64{"client": 38, "echo-0": 33, "gone": 900}
	if g, pod := goroutineGrowth(start, end); g != 3 || pod != "echo-0" {
		t.Errorf("growth %v on %q, want 3 on echo-0 (echo-1 unread at the end, gone unread at the start)", g, pod)
	}
	if g, pod := goroutineGrowth(start, nil); !math.IsNaN(g) || pod != "" {
		t.Errorf("nothing read at the end: %v %q, want NaN", g, pod)
	}
	if g, _ := goroutineGrowth(map[string]float64{"client": 40}, map[string]float64{"client": 35}); g != -5 {
		t.Errorf("a sidecar that ended with fewer: %v, want -5", g)
	}
}

func mustParse(t *testing.T, expr string) assert.Expr {
	t.Helper()
	e, err := assert.Parse(expr)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
