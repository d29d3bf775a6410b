package runner

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/perf/benchmath"

	"github.com/skiff-mesh/skiff/loadgen"
	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/results/assert"
	"github.com/skiff-mesh/skiff/scenarios"
	"github.com/skiff-mesh/skiff/scenarios/spec"
)

// podCounter polls the demo workloads' request counters, so the runner
// knows which replica served traffic when: the basis of share(POD) and
// recovery_s. Counts are per pod name; a restarted pod's counter starts
// again from zero, so only increases count.
type podCounter struct {
	env scenarios.Environment
	t0  time.Time

	mu      sync.Mutex
	last    map[string]int64 // last raw counter per pod
	samples []podSample
	stopc   chan struct{}
	wg      sync.WaitGroup
}

// podSample is the served-request total per pod at an offset from t0.
type podSample struct {
	at     time.Duration
	served map[string]int64
}

const podPoll = 200 * time.Millisecond

func newPodCounter(env scenarios.Environment) *podCounter {
	return &podCounter{env: env, last: map[string]int64{}, stopc: make(chan struct{})}
}

func (c *podCounter) start(t0 time.Time) {
	c.t0 = t0
	totals := map[string]int64{}
	c.wg.Go(func() {
		t := time.NewTicker(podPoll)
		defer t.Stop()
		for {
			c.poll(totals)
			select {
			case <-c.stopc:
				return
			case <-t.C:
			}
		}
	})
}

func (c *podCounter) poll(totals map[string]int64) {
	ctx, cancel := context.WithTimeout(context.Background(), podPoll)
	defer cancel()
	for _, svc := range c.env.Services() {
		for _, p := range c.env.Pods(svc.Name) {
			n, err := p.Requests(ctx)
			if err != nil {
				continue // killed or paused: it serves nothing
			}
			c.mu.Lock()
			prev := c.last[p.Name()]
			if n >= prev {
				totals[p.Name()] += n - prev
			} else { // restarted: its counter began again
				totals[p.Name()] += n
			}
			c.last[p.Name()] = n
			c.mu.Unlock()
		}
	}
	snap := make(map[string]int64, len(totals))
	for k, v := range totals {
		snap[k] = v
	}
	c.mu.Lock()
	c.samples = append(c.samples, podSample{at: time.Since(c.t0), served: snap})
	c.mu.Unlock()
}

func (c *podCounter) stop() {
	select {
	case <-c.stopc:
	default:
		close(c.stopc)
	}
	c.wg.Wait()
}

// writeCSV writes the samples as offset_s,pod,served (requests served
// since time 0 of the run).
func (c *podCounter) writeCSV(path string) error {
	var b strings.Builder
	b.WriteString("offset_s,pod,served\n")
	for _, s := range c.samples {
		pods := make([]string, 0, len(s.served))
		for p := range s.served {
			pods = append(pods, p)
		}
		sort.Strings(pods)
		for _, p := range pods {
			fmt.Fprintf(&b, "%.3f,%s,%d\n", s.at.Seconds(), p, s.served[p])
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// at returns the totals at the last sample taken at or before offset d.
func (c *podCounter) at(d time.Duration) map[string]int64 {
	var out map[string]int64
	for _, s := range c.samples {
		if s.at > d {
			break
		}
		out = s.served
	}
	return out
}

// shares returns each pod's share of the requests served in [from, to).
func (c *podCounter) shares(from, to time.Duration) map[string]float64 {
	a, b := c.at(from), c.at(to)
	var total int64
	d := map[string]int64{}
	for pod, v := range b {
		d[pod] = v - a[pod]
		total += d[pod]
	}
	out := map[string]float64{}
	for pod, v := range d {
		if total > 0 {
			out[pod] = float64(v) / float64(total)
		}
	}
	return out
}

// firstServed is the offset at which pod first served a request after
// offset since, or false if it never did.
func (c *podCounter) firstServed(pod string, since time.Duration) (time.Duration, bool) {
	base := c.at(since)[pod]
	for _, s := range c.samples {
		if s.at >= since && s.served[pod] > base {
			return s.at, true
		}
	}
	return 0, false
}

// collect turns the load, samples and events into the result's phases,
// series, processes and events.
func (r *run) collect(res *results.Result, load *loadResult) {
	sc := r.sc
	r.mu.Lock()
	res.Events = append(res.Events, r.events...)
	r.mu.Unlock()
	// On the same time base as the series and the events: time 0 is the
	// end of the warm-up (the start of the trials), so samples taken in
	// the warm-up have negative offsets.
	res.Processes = r.sampler.ProcessesFrom(load.t0)
	var requests int64
	if load.meshed != nil {
		requests = load.meshed.Requests
		// Load seconds count from the start of the warm-up; time 0 of the
		// scenario is its end.
		warm := sc.Load.Warmup
		for _, s := range load.meshed.Series {
			at := float64(s.Second) - warm.Seconds()
			res.Series = append(res.Series, results.Second{Path: results.PathMeshed, OffsetS: int(math.Floor(at)), Requests: s.Requests,
				Errors: s.Errors, P50Ms: ms(s.P50US), P99Ms: ms(s.P99US), ActiveFaults: r.faultsAt(at, at+1)})
		}
		for _, ph := range r.phases() {
			from, to := ph.from, ph.to
			h, reqs, ok := mergeSeconds(load.meshed.Series, warm+from, warm+to)
			rp := results.Phase{Name: ph.name, StartS: from.Seconds(), EndS: to.Seconds(),
				Paths: []results.PathStats{pathStats(results.PathMeshed, h, reqs, ok, load.meshed, ph.name == spec.PhaseWhole)}}
			// The load counts requests by the whole second they were due
			// in: say so when that is wider than the phase.
			if cf, ct := wholeSeconds(warm+from, warm+to); cf != warm+from || ct != warm+to {
				cs, ce := (cf - warm).Seconds(), (ct - warm).Seconds()
				rp.CountedStartS, rp.CountedEndS = &cs, &ce
			}
			res.Phases = append(res.Phases, rp)
		}
	}
	for _, tr := range load.trials {
		requests += tr.meshed.Requests
	}
	res.Trials = append(res.Trials, trialRecords(load.trials, sc.Load.Duration)...)
	if len(load.trials) > 0 {
		whole := results.Phase{Name: spec.PhaseWhole, EndS: sc.Load.Duration.Seconds() * float64(len(load.trials))}
		for _, path := range []string{results.PathMeshed, results.PathDirect} {
			var h *hdrhistogram.Histogram
			var reqs, ok int64
			for _, tr := range load.trials {
				lr := tr.meshed
				if path == results.PathDirect {
					lr = tr.direct
				}
				reqs += lr.Requests
				ok += lr.Success
				if th, err := lr.Latency.Histogram(); err == nil && th != nil {
					if h == nil {
						h = hdrhistogram.New(1, th.HighestTrackableValue(), 3)
					}
					h.Merge(th)
				}
			}
			whole.Paths = append(whole.Paths, pathStats(path, h, reqs, ok, nil, false))
		}
		res.Phases = append(res.Phases, whole)
	}
	for i := range res.Processes {
		if res.Processes[i].Role == scenarios.RoleProxy {
			res.Processes[i].SetRequests(requests)
		}
	}
	res.Noise = machineNoise(load)
}

// machineNoise is how busy the machine was during the load, apart from
// the run: the load generator's measurements over every load run, its
// lateness (p99 send lag; the median over trials), and with trials the
// direct path's p50 across them.
func machineNoise(load *loadResult) *results.Noise {
	var ns []*loadgen.Noise
	var lag, direct []float64
	if load.meshed != nil {
		ns = append(ns, load.meshed.Noise)
		lag = append(lag, ms(load.meshed.SendLag.P99))
	}
	for _, tr := range load.trials {
		ns = append(ns, tr.meshed.Noise, tr.direct.Noise)
		lag = append(lag, ms(tr.meshed.SendLag.P99), ms(tr.direct.SendLag.P99))
		direct = append(direct, ms(tr.direct.Latency.P50))
	}
	c := loadgen.CombineNoise(ns...)
	if c == nil {
		return nil
	}
	n := &results.Noise{CPUs: c.CPUs, Seconds: c.Seconds, OtherCPU: c.OtherCPU, OtherCPUMax: c.OtherCPUMax,
		StealPct: c.StealPct, StealMaxPct: c.StealMaxPct, RunCPU: c.RunCPU, LoadAvg1: c.LoadAvg1,
		DirectP50Ms: results.NewSpread(direct)}
	if s := results.NewSpread(lag); s != nil {
		n.SendLagP99Ms = s.Median
	}
	return n
}

// trialRecords are the result's records of interleaved trials, meshed
// then direct for each.
func trialRecords(trials []trial, duration time.Duration) []results.Trial {
	var out []results.Trial
	for _, tr := range trials {
		for _, p := range []struct {
			path string
			lr   *loadgen.Result
		}{{results.PathMeshed, tr.meshed}, {results.PathDirect, tr.direct}} {
			out = append(out, results.Trial{Trial: tr.n, Phase: spec.PhaseWhole, Path: p.path,
				DurationS: duration.Seconds(), Count: p.lr.Requests, SuccessRate: p.lr.SuccessRate, Latency: latencyOf(p.lr.Latency)})
		}
	}
	return out
}

// maxTrialsFactor caps the interleaved trials trialsWanted may ask for:
// the scenario's trials doubled twice (3 → 6 → 12 in --quick).
const maxTrialsFactor = 4

// trialsWanted is how many interleaved trials the run should have, given
// those done: while an assertion decided over the trials (added latency,
// or a rate of phase whole) is inconclusive, twice as many, up to
// maxTrialsFactor times the scenario's, as the bench gate does. Fewer
// than 6 trials give no 95 % interval, so a quick run's 3 become 6 when an
// added-latency assertion is there to decide.
func (r *run) trialsWanted(done []trial) int {
	n := len(done)
	limit := maxTrialsFactor * r.sc.Load.Trials
	if r.o.MaxTrials > 0 {
		limit = r.o.MaxTrials
	}
	if n == 0 || n >= limit {
		return n
	}
	m := assert.Metrics{}
	recs := trialRecords(done, r.sc.Load.Duration)
	for name, pick := range addedPicks {
		m[name] = addedLatency(recs, pick)
	}
	withNoise(m, machineNoise(&loadResult{trials: done}), recs)
	var k, total int64
	for _, tr := range done {
		k += tr.meshed.Success
		total += tr.meshed.Requests
	}
	if total > 0 {
		rate := float64(k) / float64(total)
		m["success_rate"] = assert.Measure{Value: rate, Count: &results.Count{K: k, N: total}}
		m["error_rate"] = assert.Measure{Value: 1 - rate, Count: &results.Count{K: total - k, N: total}}
	}
	var undecided []string
	for _, a := range r.sc.Assertions {
		if a.Phase != "" && a.Phase != spec.PhaseWhole {
			continue
		}
		e, err := assert.Parse(a.Judged())
		if err != nil {
			continue
		}
		if meas, ok := m[e.Metric]; ok && e.Decide(meas).Verdict == results.Inconclusive {
			undecided = append(undecided, a.Judged())
		}
	}
	if len(undecided) == 0 {
		return n
	}
	next := min(2*n, limit)
	r.progressf("after %d trials %s undecided: %d more interleaved trials (up to %d)", n, strings.Join(undecided, ", "), next-n, limit)
	return next
}

func latencyOf(l loadgen.Latency) results.Latency {
	return results.Latency{P50: ms(l.P50), P90: ms(l.P90), P99: ms(l.P99), P999: ms(l.P999), Max: ms(l.Max), Mean: l.Mean / 1000}
}

func pathStats(path string, h *hdrhistogram.Histogram, reqs, ok int64, lr *loadgen.Result, whole bool) results.PathStats {
	ps := results.PathStats{Path: path, Count: reqs, Success: ok, Histogram: h, Latency: results.Summarize(h)}
	if reqs > 0 {
		ps.SuccessRate = float64(ok) / float64(reqs)
	}
	if whole && lr != nil {
		ps.StatusCodes, ps.Errors = lr.StatusCodes, lr.Errors
	}
	return ps
}

type phaseWindow struct {
	name     string
	from, to time.Duration
}

// phases are "whole" and the scenario's named windows.
func (r *run) phases() []phaseWindow {
	out := []phaseWindow{{spec.PhaseWhole, 0, r.sc.Load.Duration}}
	for _, p := range r.sc.Phases {
		out = append(out, phaseWindow{p.Name, p.From.Resolve(r.sc.Load.Duration), p.To.Resolve(r.sc.Load.Duration)})
	}
	return out
}

// faultsAt lists the faults active during [from, to) seconds, from the
// events as they happened.
func (r *run) faultsAt(from, to float64) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	active := map[string]bool{}
	for _, ev := range r.events {
		if ev.OffsetS >= to {
			break
		}
		label := ev.Type + " " + ev.Target
		switch {
		case strings.HasPrefix(ev.Type, "undo "):
			delete(active, strings.TrimPrefix(ev.Type, "undo ")+" "+ev.Target)
		case ev.Type == spec.FaultRestart || ev.Type == spec.FaultResume || ev.Type == spec.FaultResetBehaviour:
			for l := range active {
				if strings.HasSuffix(l, " "+ev.Target) {
					delete(active, l)
				}
			}
			if ev.OffsetS >= from {
				active[label] = true // shown in the second it happened
			}
		default:
			active[label] = true
		}
	}
	out := make([]string, 0, len(active))
	for l := range active {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// metrics are the named measures assertions may use, for one phase. Rates
// of requests come with their counts and added latency with its interval
// over the trials, so that assertions on them are decided by what the
// evidence can show (package results/assert).
func (r *run) metrics(res *results.Result, phase string) assert.Metrics {
	m := map[string]float64{}
	evidence := assert.Metrics{}
	ph := res.Phase(phase)
	if ph != nil {
		if ps := ph.Path(results.PathMeshed); ps != nil {
			m["success_rate"] = ps.SuccessRate
			m["error_rate"] = 1 - ps.SuccessRate
			if ps.Count > 0 {
				evidence["success_rate"] = assert.Measure{Value: ps.SuccessRate, Count: &results.Count{K: ps.Success, N: ps.Count}}
				evidence["error_rate"] = assert.Measure{Value: 1 - ps.SuccessRate, Count: &results.Count{K: ps.Count - ps.Success, N: ps.Count}}
			}
			m["p50_ms"], m["p90_ms"], m["p99_ms"] = ps.Latency.P50, ps.Latency.P90, ps.Latency.P99
			m["p999_ms"], m["max_ms"], m["mean_ms"] = ps.Latency.P999, ps.Latency.Max, ps.Latency.Mean
			if d := ph.EndS - ph.StartS; d > 0 {
				m["rps"] = float64(ps.Count) / d
			}
		}
	}
	if len(res.Trials) > 0 && phase == spec.PhaseWhole {
		for name, pick := range addedPicks {
			e := addedLatency(res.Trials, pick)
			evidence[name] = e
			m[name] = e.Value
		}
	}
	var rss, hwm, cpu float64
	var reqs int64
	for _, p := range res.Processes {
		if p.Role != scenarios.RoleProxy {
			continue
		}
		rss, hwm = math.Max(rss, p.VmRSSMaxMB), math.Max(hwm, p.VmHWMMB)
		cpu += p.CPUSeconds
		reqs = p.Requests
	}
	m["proxy_vmrss_mb"], m["proxy_vmhwm_mb"] = rss, hwm
	for _, p := range res.Processes {
		if p.Role == scenarios.RoleController {
			m["controller_vmrss_mb"] = math.Max(m["controller_vmrss_mb"], p.VmRSSMaxMB)
			m["controller_vmhwm_mb"] = math.Max(m["controller_vmhwm_mb"], p.VmHWMMB)
		}
	}
	if p := res.Propagation; p != nil {
		scaleMetrics(m, p)
	}
	if reqs > 0 {
		m["proxy_cpu_us_per_req"] = cpu * 1e6 / float64(reqs)
	}
	if ph != nil && r.pods != nil {
		for pod, share := range r.pods.shares(time.Duration(ph.StartS*float64(time.Second)), time.Duration(ph.EndS*float64(time.Second))) {
			m["share("+pod+")"] = share
		}
		for _, svc := range r.env.Services() {
			for _, p := range r.env.Pods(svc.Name) {
				if _, ok := m["share("+p.Name()+")"]; !ok {
					m["share("+p.Name()+")"] = 0
				}
			}
		}
	}
	if ph != nil && phase == spec.PhaseWhole {
		if ps := ph.Path(results.PathMeshed); ps != nil && ps.Count > 0 {
			for code, n := range ps.StatusCodes {
				m["status_share("+code+")"] = float64(n) / float64(ps.Count)
			}
			// A status no request got has a share of 0, not no share.
			for _, a := range r.sc.Assertions {
				if e, err := assert.Parse(a.Expr); err == nil && strings.HasPrefix(e.Metric, "status_share(") {
					if _, ok := m[e.Metric]; !ok {
						m[e.Metric] = 0
					}
				}
			}
		}
	}
	if rec, ok := r.recovery(res); ok {
		m["recovery_s"] = rec
	}
	if r.hits != nil {
		m["plaintext_marker_hits"] = float64(*r.hits)
	}
	for k, v := range r.rot {
		m[k] = v
	}
	if phase == spec.PhaseWhole {
		for k, v := range r.sidecars {
			m[k] = v
		}
	}
	if r.routed != nil && phase == spec.PhaseWhole {
		for k, v := range r.routed {
			m[k] = v
		}
		if ph != nil {
			if ps := ph.Path(results.PathMeshed); ps != nil && ps.Count > 0 {
				m["retry_ratio"] = r.routed["retries"] / float64(ps.Count)
			}
		}
	}
	if ev := r.mtls; ev != nil {
		m["mtls_share"] = ev.inboundTLS
		for k, v := range ev.probes {
			m[k] = v
		}
	}
	if r.rr != nil {
		if rr := r.rr.Phase(phase); rr != nil && ph != nil {
			a, b := ph.Path(results.PathMeshed), rr.Path(results.PathMeshed)
			if a != nil && b != nil && b.Latency.P99 > 0 {
				m["p99_vs_round_robin"] = a.Latency.P99 / b.Latency.P99
				m["p50_vs_round_robin"] = a.Latency.P50 / b.Latency.P50
				if b.Latency.P90 > 0 {
					m["p90_vs_round_robin"] = a.Latency.P90 / b.Latency.P90
				}
				m["round_robin_p99_ms"] = b.Latency.P99
			}
		}
	}
	r.soakMetrics(evidence, res, ph, phase)
	out := assert.Values(m)
	for k, v := range evidence {
		out[k] = v
	}
	withNoise(out, res.Noise, res.Trials)
	return out
}

// pathLatencies are the meshed path's latency metrics, measured in one
// run against absolute thresholds.
var pathLatencies = []string{"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms"}

// withNoise marks the latency measures of a run on a busy machine with the
// machine's own noise in their unit (see assert.Measure.Busy): for added
// latency, the direct path's spread of the same percentile over the
// trials; for the meshed path's own latency, the load generator's p99
// lateness. Rates and memory are left alone.
func withNoise(m assert.Metrics, noise *results.Noise, trials []results.Trial) {
	busy, why := noise.Busy()
	if !busy {
		return
	}
	for name, pick := range addedPicks {
		meas, ok := m[name]
		if !ok {
			continue
		}
		var direct []float64
		for _, t := range trials {
			if t.Path == results.PathDirect && t.Count > 0 {
				direct = append(direct, pick(t.Latency))
			}
		}
		if len(direct) > 1 {
			meas.Margin = slices.Max(direct) - slices.Min(direct)
		}
		meas.Busy, meas.MarginOf = why, "the direct path's spread over the trials"
		m[name] = meas
	}
	for _, name := range pathLatencies {
		if meas, ok := m[name]; ok {
			meas.Busy, meas.Margin, meas.MarginOf = why, noise.SendLagP99Ms, "the load generator's own lateness at p99"
			m[name] = meas
		}
	}
}

// addedPicks are the added-latency metrics and the percentile each takes.
var addedPicks = map[string]func(results.Latency) float64{
	"p50_added_ms": func(l results.Latency) float64 { return l.P50 },
	"p99_added_ms": func(l results.Latency) float64 { return l.P99 },
}

// addedLatency is the meshed path's percentile minus the direct path's in
// the same trial, as the median over trials with its 95 % confidence
// interval (benchmath's, distribution-free: unbounded below 6 trials).
// Trials missing either path are left out.
func addedLatency(trials []results.Trial, pick func(results.Latency) float64) assert.Measure {
	type pair struct {
		meshed, direct float64
		has            int
	}
	byTrial := map[int]*pair{}
	for _, t := range trials {
		p := byTrial[t.Trial]
		if p == nil {
			p = &pair{}
			byTrial[t.Trial] = p
		}
		switch t.Path {
		case results.PathMeshed:
			p.meshed, p.has = pick(t.Latency), p.has|1
		case results.PathDirect:
			p.direct, p.has = pick(t.Latency), p.has|2
		}
	}
	var diffs []float64
	for _, n := range slices.Sorted(maps.Keys(byTrial)) {
		if p := byTrial[n]; p.has == 3 {
			diffs = append(diffs, p.meshed-p.direct)
		}
	}
	if len(diffs) == 0 {
		return assert.Measure{Value: math.NaN()}
	}
	sum := benchmath.AssumeNothing.Summary(benchmath.NewSample(diffs, &benchmath.DefaultThresholds), assert.Confidence)
	return assert.Measure{Value: sum.Center, Interval: results.NewInterval(sum.Lo, sum.Hi, assert.Confidence, len(diffs))}
}

// recovery is the longest time, over restore events (restart, resume, or
// the undo of a kill or pause), from the event until the restored pods
// served traffic again. Never serving again counts as +Inf.
func (r *run) recovery(res *results.Result) (float64, bool) {
	if r.pods == nil {
		return 0, false
	}
	worst, any := 0.0, false
	for _, ev := range res.Events {
		restore := ev.Type == spec.FaultRestart || ev.Type == spec.FaultResume || ev.Type == "undo "+spec.FaultKill || ev.Type == "undo "+spec.FaultPause
		if !restore || !ev.OK {
			continue
		}
		pods, err := r.targetPods(ev.Target)
		if err != nil {
			continue
		}
		since := time.Duration(ev.OffsetS * float64(time.Second))
		for _, p := range pods {
			any = true
			at, ok := r.pods.firstServed(p.Name(), since)
			if !ok {
				worst = math.Inf(1)
				continue
			}
			worst = math.Max(worst, (at - since).Seconds())
		}
	}
	return worst, any
}

// evaluate computes every assertion.
func (r *run) evaluate(res *results.Result, load *loadResult) {
	cache := map[string]assert.Metrics{}
	for _, a := range r.sc.Assertions {
		phase := a.Phase
		if phase == "" {
			phase = spec.PhaseWhole
		}
		m, ok := cache[phase]
		if !ok {
			m = r.metrics(res, phase)
			cache[phase] = m
		}
		if a.KnownFailure == "" {
			res.Assertions = append(res.Assertions, assert.CheckMeasures(a.Expr, phase, m))
			continue
		}
		// A known failure is judged and reported, but its ceiling decides.
		known := assert.CheckMeasures(a.Expr, phase, m)
		known.KnownFailure = a.KnownFailure
		if known.Verdict != results.Pass {
			known.Message = "KNOWN " + known.Message + " — known failure: " + a.KnownFailure
		} else {
			known.Message += " — listed as a known failure, but it held: remove known_failure if it keeps holding"
		}
		ceiling := assert.CheckMeasures(a.Ceiling, phase, m)
		ceiling.Message += " (the ceiling of the known failure " + a.Expr + ")"
		res.Assertions = append(res.Assertions, known, ceiling)
	}
}

// needsRoundRobin says whether an assertion compares with round robin.
func needsRoundRobin(sc *spec.Scenario) bool {
	for _, a := range sc.Assertions {
		if strings.Contains(a.Expr, "_vs_round_robin") || strings.Contains(a.Expr, "round_robin_") {
			return true
		}
	}
	return false
}

// roundRobinComparison runs the same scenario, same seed, with the
// latency-blind balancer, for the *_vs_round_robin metrics.
func (r *run) roundRobinComparison(ctx context.Context, res *results.Result) error {
	sc := r.sc.Clone()
	sc.Mesh.Balancer = spec.BalancerRoundRobin
	sc.Assertions = nil
	r.progressf("comparison: the same scenario with round-robin balancing (seed %d)", r.seed)
	o := r.o
	o.Scenario, o.Quick, o.Seed = sc, false, r.seed
	o.OutDir = strings.TrimRight(r.o.OutDir, "/") + "/round-robin"
	rr, err := Run(ctx, o)
	if err != nil {
		return fmt.Errorf("round-robin comparison: %w", err)
	}
	r.rr = rr
	return nil
}
