package runner

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aclements/go-moremath/stats"

	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/results/assert"
	"github.com/skiff-mesh/skiff/scenarios"
	"github.com/skiff-mesh/skiff/scenarios/spec"
)

// This file holds the soak metrics: does a proxy's memory or goroutine
// count keep growing under steady load? A leak per connection or per
// request shows only as a trend over minutes, beneath the garbage
// collector's sawtooth, so each is judged by what the run can show.

// goroutineMetric is the sidecars' goroutine gauge, named as Prometheus'
// Go collector names it.
const goroutineMetric = "go_goroutines"

// Metric names of the soak.
const (
	metricRSSSlope        = "proxy_rss_slope_mb_per_min"
	metricGoroutineGrowth = "proxy_goroutine_growth"
)

// needsGoroutines says whether an assertion needs the sidecars'
// goroutines read at the start and the end of the load.
func needsGoroutines(sc *spec.Scenario) bool {
	for _, a := range sc.Assertions {
		if strings.Contains(a.Expr, metricGoroutineGrowth) || strings.Contains(a.Ceiling, metricGoroutineGrowth) {
			return true
		}
	}
	return false
}

// soakReads are the sidecars' goroutines by pod, at the end of the warm-up
// and at the end of the load; nil until read.
type soakReads struct {
	start, end map[string]float64
}

// sidecars are the pods that run a proxy: the client's and every meshed
// service's.
func sidecars(env scenarios.Environment) []scenarios.Pod {
	out := []scenarios.Pod{env.Client()}
	for _, svc := range env.Services() {
		if svc.Meshed {
			out = append(out, env.Pods(svc.Name)...)
		}
	}
	return out
}

// readGoroutines reads go_goroutines from every sidecar. A sidecar that
// cannot be read (killed, paused) is left out, and its error returned
// with the others.
func readGoroutines(ctx context.Context, env scenarios.Environment) (map[string]float64, []error) {
	out := map[string]float64{}
	var errs []error
	for _, p := range sidecars(env) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := p.Sums(rctx, goroutineMetric)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name(), err))
			continue
		}
		out[p.Name()] = v[0]
	}
	return out, errs
}

// goroutinesAtStart reads the sidecars' goroutines at t0, the end of the
// warm-up: by then the pools and the control-plane streams are up.
func (r *run) goroutinesAtStart(ctx context.Context, t0 time.Time) {
	t := time.NewTimer(time.Until(t0))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return
	}
	got, errs := readGoroutines(ctx, r.env)
	for _, err := range errs {
		r.log.Warn("cannot read a sidecar's goroutines at the end of the warm-up", "err", err)
	}
	r.mu.Lock()
	r.soak.start = got
	r.mu.Unlock()
	r.progressf("goroutines at the end of the warm-up: %s", podValues(got))
}

// endReads and endReadGap: the end of the load is read this many times,
// this far apart, and each sidecar's fewest goroutines count. The load's
// connections close as it ends, and the goroutines that served them take
// a moment to return; one kept for good is in every read.
const (
	endReads   = 3
	endReadGap = 500 * time.Millisecond
)

// goroutinesAtEnd reads the sidecars' goroutines once the load is over.
func (r *run) goroutinesAtEnd(ctx context.Context) {
	var fewest map[string]float64
	for i := range endReads {
		if i > 0 {
			select {
			case <-time.After(endReadGap):
			case <-ctx.Done():
				return
			}
		}
		got, errs := readGoroutines(ctx, r.env)
		for _, err := range errs {
			r.log.Warn("cannot read a sidecar's goroutines at the end of the load", "err", err)
		}
		if fewest == nil {
			fewest = got
			continue
		}
		for pod, v := range got {
			if old, ok := fewest[pod]; ok {
				fewest[pod] = min(old, v)
			}
		}
	}
	r.mu.Lock()
	r.soak.end = fewest
	start := r.soak.start
	r.mu.Unlock()
	r.progressf("goroutines at the end of the load (fewest of %d reads): %s", endReads, podValues(fewest))
	if g, pod := goroutineGrowth(start, fewest); pod != "" {
		r.progressf("most goroutines gained: %+g (%s)", g, pod)
	}
}

// podValues writes a pod→value map as "client 41, echo-0 37".
func podValues(m map[string]float64) string {
	parts := make([]string, 0, len(m))
	for _, pod := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %g", pod, m[pod]))
	}
	return strings.Join(parts, ", ")
}

// goroutineGrowth is the most goroutines any sidecar read at both ends
// gained between them, and that sidecar; NaN when none was read at both.
func goroutineGrowth(start, end map[string]float64) (float64, string) {
	worst, who := math.NaN(), ""
	for _, pod := range slices.Sorted(maps.Keys(start)) {
		e, ok := end[pod]
		if !ok {
			continue
		}
		if g := e - start[pod]; math.IsNaN(worst) || g > worst {
			worst, who = g, pod
		}
	}
	return worst, who
}

// slopeBlocks is how many equal stretches of time the slope's window is
// cut into; each contributes the median of its samples. A median per
// block takes the garbage collector's sawtooth and a lone sample caught
// mid-scavenge out of the fit, and the samples of one block, 250 ms
// apart, are too alike to count as independent; ten medians leave the
// fit 8 degrees of freedom.
const slopeBlocks = 10

// Fewest samples a block needs to count, and fewest blocks a fit needs.
const (
	minBlockSamples = 3
	minSlopeBlocks  = 4
)

// slopeFit is a least-squares slope of VmRSS against time with its
// confidence interval, in MiB a minute.
type slopeFit struct {
	PerMin, Lo, Hi float64
	// Blocks is how many block medians the line was fitted through.
	Blocks int
}

// rssSlope fits a line through the VmRSS samples of one process in the
// window [from, to] (seconds from time 0): the window is cut into
// slopeBlocks equal blocks, each block with enough samples gives its
// median at its samples' mean time, and the slope is the ordinary least
// squares one through those points, with Student's t interval at
// confidence (two-sided) on blocks − 2 degrees of freedom. A process
// restarted in the window is fitted over its pid with the most samples
// there: a line across two processes says nothing. False when the window
// holds too few samples to fit (fewer than minSlopeBlocks usable blocks).
func rssSlope(points []results.RSSPoint, from, to, confidence float64) (slopeFit, bool) {
	if !(to > from) {
		return slopeFit{}, false
	}
	byPID := map[int]int{}
	for _, p := range points {
		if p.OffsetS >= from && p.OffsetS <= to {
			byPID[p.PID]++
		}
	}
	pid, most := 0, 0
	for _, id := range slices.Sorted(maps.Keys(byPID)) {
		if byPID[id] > most {
			pid, most = id, byPID[id]
		}
	}
	width := (to - from) / slopeBlocks
	var mbs, ats [slopeBlocks][]float64
	for _, p := range points {
		if p.OffsetS < from || p.OffsetS > to || p.PID != pid {
			continue
		}
		i := min(int((p.OffsetS-from)/width), slopeBlocks-1)
		mbs[i] = append(mbs[i], p.MB)
		ats[i] = append(ats[i], p.OffsetS)
	}
	var xs, ys []float64
	for i := range slopeBlocks {
		if len(mbs[i]) < minBlockSamples {
			continue
		}
		xs = append(xs, mean(ats[i])/60) // minutes
		ys = append(ys, median(mbs[i]))
	}
	n := len(xs)
	if n < minSlopeBlocks {
		return slopeFit{}, false
	}
	b, se := leastSquares(xs, ys)
	t := stats.InvCDF(stats.TDist{V: float64(n - 2)})(1 - (1-confidence)/2)
	return slopeFit{PerMin: b, Lo: b - t*se, Hi: b + t*se, Blocks: n}, true
}

// leastSquares returns the slope of the ordinary least-squares line
// through (xs, ys) and its standard error. The xs must not all be equal.
func leastSquares(xs, ys []float64) (slope, se float64) {
	mx, my := mean(xs), mean(ys)
	var sxx, sxy float64
	for i := range xs {
		sxx += (xs[i] - mx) * (xs[i] - mx)
		sxy += (xs[i] - mx) * (ys[i] - my)
	}
	slope = sxy / sxx
	var rss float64
	for i := range xs {
		r := ys[i] - my - slope*(xs[i]-mx)
		rss += r * r
	}
	return slope, math.Sqrt(rss / float64(len(xs)-2) / sxx)
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// worstRSSSlope is proxy_rss_slope_mb_per_min over [from, to]: the
// steepest proxy's slope, with an interval that holds every proxy's at
// once. Each proxy's interval is taken at 1 − 0.05/n (Bonferroni, n
// proxies), so that together they cover all n slopes with 95 %
// confidence; [max of the lows, max of the highs] then holds the largest
// slope. An assertion "<= X" passes when every proxy's interval is under
// X, fails when one's is wholly above, and is inconclusive otherwise. A
// NaN value when no proxy has enough samples in the window.
func worstRSSSlope(procs []results.Process, from, to float64) assert.Measure {
	var proxies []results.Process
	for _, p := range procs {
		if p.Role == scenarios.RoleProxy {
			proxies = append(proxies, p)
		}
	}
	conf := 1 - (1-assert.Confidence)/float64(max(len(proxies), 1))
	worst, lo, hi, who, blocks := math.Inf(-1), math.Inf(-1), math.Inf(-1), "", 0
	fitted := 0
	for _, p := range proxies {
		f, ok := rssSlope(p.RSS, from, to, conf)
		if !ok {
			continue
		}
		fitted++
		if f.PerMin > worst {
			worst, who, blocks = f.PerMin, p.Name, f.Blocks
		}
		lo, hi = max(lo, f.Lo), max(hi, f.Hi)
	}
	if fitted == 0 {
		return assert.Measure{Value: math.NaN()}
	}
	return assert.Measure{Value: worst, Interval: results.NewInterval(lo, hi, assert.Confidence, blocks),
		Over: fmt.Sprintf("the medians of %d stretches of each of %d proxies' samples, steepest %s", blocks, fitted, who)}
}

// soakMetrics adds the soak's metrics of a phase to m:
// proxy_rss_slope_mb_per_min over the phase, and for phase whole
// proxy_goroutine_growth when it was read.
func (r *run) soakMetrics(m assert.Metrics, res *results.Result, ph *results.Phase, phase string) {
	if ph != nil {
		m[metricRSSSlope] = worstRSSSlope(res.Processes, ph.StartS, ph.EndS)
	}
	if phase != spec.PhaseWhole || !needsGoroutines(r.sc) {
		return
	}
	r.mu.Lock()
	start, end := r.soak.start, r.soak.end
	r.mu.Unlock()
	g, _ := goroutineGrowth(start, end)
	m[metricGoroutineGrowth] = assert.Measure{Value: g}
}
