package results

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// fixtureStart is the fixed start time of the synthetic runs.
var fixtureStart = time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)

// newHist returns a histogram like the load generator's: 1 µs to 60 s,
// 3 significant figures.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

// fixture builds a deterministic failover-like run: 40 s, a warm-up, a
// fault from 15 s to 25 s on echo-2, meshed and direct paths, three
// processes (echo-2 restarted), and assertions that pass and fail.
func fixture() *Result {
	rng := rand.New(rand.NewPCG(1, 2))
	r := &Result{
		Schema:      SchemaV1,
		Scenario:    "failover",
		Description: "Kill one of three echo replicas under 200 req/s and bring it back; the mesh must route around it.",
		Environment: "local",
		GitRevision: "0123abc",
		Machine:     Machine{Hostname: "ci-1", Cores: 2, CPUModel: "Example CPU @ 2.0GHz", OS: "linux", Arch: "amd64", Kernel: "6.1.0-test", GoVersion: "go1.26.8"},
		Seed:        42,
		Start:       fixtureStart,
		End:         fixtureStart.Add(40 * time.Second),
	}
	type window struct {
		name     string
		from, to int
		excluded bool
		faulty   bool
	}
	windows := []window{
		{name: "warmup", from: 0, to: 5, excluded: true},
		{name: "steady", from: 5, to: 15},
		{name: "during_fault", from: 15, to: 25, faulty: true},
		{name: "after_recovery", from: 25, to: 40},
	}
	paths := []string{PathMeshed, PathDirect}
	const rate = 200

	// latency draws one latency in µs for a path at second sec.
	latency := func(path string, sec int) (us int64, ok bool) {
		base := 450.0
		if path == PathMeshed {
			base = 620
		}
		v := base * math.Exp(rng.NormFloat64()*0.25)
		if rng.Float64() < 0.01 {
			v *= 4 // a tail
		}
		faulty := sec >= 15 && sec < 25
		if faulty && path == PathMeshed && rng.Float64() < 0.04 {
			// Requests to the killed replica before the balancer notices:
			// a connect timeout or a retry.
			if sec < 17 {
				return int64(150_000 + rng.IntN(60_000)), false
			}
			return int64(v * 3), true
		}
		return int64(v), true
	}

	hists := map[string]*hdrhistogram.Histogram{} // phase/path
	counts := map[string]*PathStats{}             // phase/path
	whole := map[string]*hdrhistogram.Histogram{} // path
	wholeStats := map[string]*PathStats{}         // path
	for _, p := range paths {
		whole[p] = newHist()
		wholeStats[p] = &PathStats{Path: p, StatusCodes: map[string]int64{}, Errors: map[string]int64{}}
	}
	for _, w := range windows {
		for _, p := range paths {
			hists[w.name+"/"+p] = newHist()
			counts[w.name+"/"+p] = &PathStats{Path: p, StatusCodes: map[string]int64{}, Errors: map[string]int64{}}
		}
	}
	for _, p := range paths {
		for sec := 0; sec < 40; sec++ {
			var w window
			for _, cand := range windows {
				if sec >= cand.from && sec < cand.to {
					w = cand
				}
			}
			h := newHist()
			st := Second{Path: p, OffsetS: sec, Requests: rate}
			if w.faulty && p == PathMeshed {
				st.ActiveFaults = []string{"kill echo-2"}
			}
			for range rate {
				us, ok := latency(p, sec)
				_ = h.RecordValue(us)
				_ = hists[w.name+"/"+p].RecordValue(us)
				ps := counts[w.name+"/"+p]
				ps.Count++
				code := "200"
				if ok {
					ps.Success++
				} else {
					st.Errors++
					code = "503"
					ps.Errors["upstream connect timeout"]++
				}
				ps.StatusCodes[code]++
				if w.faulty && p == PathMeshed && us > 1500 && ok {
					ps.Retries++
					if !w.excluded {
						wholeStats[p].Retries++
					}
				}
				if !w.excluded {
					_ = whole[p].RecordValue(us)
					wst := wholeStats[p]
					wst.Count++
					if ok {
						wst.Success++
					} else {
						wst.Errors["upstream connect timeout"]++
					}
					wst.StatusCodes[code]++
				}
			}
			st.P50Ms = float64(h.ValueAtPercentile(50)) / 1000
			st.P99Ms = float64(h.ValueAtPercentile(99)) / 1000
			r.Series = append(r.Series, st)
		}
	}
	finish := func(ps *PathStats, h *hdrhistogram.Histogram) PathStats {
		ps.SuccessRate = float64(ps.Success) / float64(ps.Count)
		ps.Histogram = h
		ps.Latency = Summarize(h)
		if len(ps.Errors) == 0 {
			ps.Errors = nil
		}
		return *ps
	}
	for _, w := range windows {
		ph := Phase{Name: w.name, StartS: float64(w.from), EndS: float64(w.to), Excluded: w.excluded}
		for _, p := range paths {
			ph.Paths = append(ph.Paths, finish(counts[w.name+"/"+p], hists[w.name+"/"+p]))
		}
		r.Phases = append(r.Phases, ph)
	}
	wh := Phase{Name: "whole", StartS: 5, EndS: 40}
	for _, p := range paths {
		wh.Paths = append(wh.Paths, finish(wholeStats[p], whole[p]))
	}
	r.Phases = append(r.Phases, wh)

	// Interleaved trials in the steady phase: meshed, direct, meshed, …
	for i := 1; i <= 5; i++ {
		for j, p := range paths {
			h := newHist()
			for range 400 {
				us, _ := latency(p, 6)
				_ = h.RecordValue(us)
			}
			r.Trials = append(r.Trials, Trial{Trial: i, Phase: "steady", Path: p, OffsetS: 5 + float64(2*(i-1)+j), DurationS: 1,
				Count: 400, SuccessRate: 1, Latency: Summarize(h)})
		}
	}

	rss := func(base, growth float64) []RSSPoint {
		var pts []RSSPoint
		for s := 0; s <= 40; s++ {
			pts = append(pts, RSSPoint{OffsetS: float64(s), MB: math.Round((base+growth*(1-math.Exp(-float64(s)/8))+0.05*math.Sin(float64(s)))*100) / 100})
		}
		return pts
	}
	proxy := Process{Name: "skiff-proxy", Role: "proxy", PIDs: []int{4100}, RSS: rss(6.1, 2.2), VmHWMMB: 8.43, PssMaxMB: 5.92, CPUSeconds: 0.357}
	proxy.VmRSSMaxMB = maxRSS(proxy.RSS)
	proxy.SetRequests(35 * rate)
	echo1 := Process{Name: "echo-1", Role: "app", PIDs: []int{4101}, RSS: rss(4.0, 0.6), VmHWMMB: 4.71, CPUSeconds: 0.61}
	echo1.VmRSSMaxMB = maxRSS(echo1.RSS)
	echo2 := Process{Name: "echo-2", Role: "app", PIDs: []int{4102, 4230}, VmHWMMB: 4.66, CPUSeconds: 0.44,
		Note: "pid 4102 gone at 15.2 s"}
	for _, p := range rss(4.0, 0.6) {
		if p.OffsetS < 15 || p.OffsetS > 25 {
			echo2.RSS = append(echo2.RSS, p)
		}
	}
	echo2.VmRSSMaxMB = maxRSS(echo2.RSS)
	r.Processes = []Process{proxy, echo1, echo2}

	r.Events = []Event{
		{OffsetS: 15.02, Type: "kill", Target: "echo-2", OK: true},
		{OffsetS: 25.01, Type: "restore", Target: "echo-2", OK: true},
		{OffsetS: 30.5, Type: "latency", Target: "echo-1", Detail: "200ms", OK: false, Err: "toxiproxy: connection refused"},
	}
	v := func(f float64) *float64 { return &f }
	fault := r.Phase("during_fault").Path(PathMeshed)
	r.Assertions = []Assertion{
		{Expr: "p99_added_ms < 1", Phase: "steady", Metric: "p99_added_ms", Op: "<", Threshold: 1, Measured: v(0.312), Verdict: Pass,
			Message: "PASS [steady] p99_added_ms < 1: measured 0.312"},
		{Expr: "success_rate >= 0.999", Phase: "during_fault", Metric: "success_rate", Op: ">=", Threshold: 0.999, Measured: v(fault.SuccessRate), Verdict: Fail,
			Message: fmt.Sprintf("FAIL [during_fault] success_rate >= 0.999: measured %.4g", fault.SuccessRate)},
		{Expr: "proxy_vmhwm_mb <= 10", Phase: "whole", Metric: "proxy_vmhwm_mb", Op: "<=", Threshold: 10, Measured: v(8.43), Verdict: Pass,
			Message: "PASS [whole] proxy_vmhwm_mb <= 10: measured 8.43"},
		{Expr: "split_share(v2) within 0.10±0.02", Phase: "steady", Metric: "split_share(v2)", Op: "within", Threshold: 0.1, Tolerance: 0.02,
			Measured: v(0.104), Verdict: Pass, Message: "PASS [steady] split_share(v2) within 0.10±0.02: measured 0.104"},
	}
	r.Judge()
	return r
}

func maxRSS(pts []RSSPoint) float64 {
	m := 0.0
	for _, p := range pts {
		m = max(m, p.MB)
	}
	return m
}
