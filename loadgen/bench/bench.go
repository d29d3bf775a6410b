// Package bench measures what the proxy costs. It starts a skiff-demo
// backend and the proxies, then drives the same open-model load,
// interleaved in one run (A B C A B C …), along a list of paths:
//
//	direct        client → backend
//	one-hop       client → proxy → backend
//	two-hop       client → outbound proxy → inbound proxy → backend (the
//	              meshed path: HTTP/1.1 crosses between the proxies on one
//	              HTTP/2 connection)
//	one-hop@base  one-hop and two-hop again through a base build's proxies
//	two-hop@base  (Config.BaselineProxyBin): the A/B gate compares builds
//	nginx         peers (Config.Peers): one-hop through nginx or haproxy,
//	haproxy       configured like Skiff's proxy (docs/proxy.md)
//
// A path's added latency is its percentile minus the direct path's in the
// same trial; the report gives the median over trials with a 95 %
// confidence interval (golang.org/x/perf/benchmath). Memory is each
// process's VmRSS (sampled through the run), VmHWM from /proc/<pid>/status
// and PSS from /proc/<pid>/smaps_rollup (sampled every few seconds); CPU
// is utime+stime from /proc/<pid>/stat per request, of every process
// serving the path (nginx's master and worker). The machine's own noise
// (other processes' CPU, steal, the load generator's lateness, the direct
// path's spread) is measured alongside and reported.
//
// With a Gate, Run decides by the intervals and, with a base build, by
// comparing the builds' samples (see Gate); while a figure is undecided it
// runs more interleaved trials, doubling their number up to
// Config.MaxTrials; what is still undecided then is inconclusive.
package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/perf/benchmath"

	"github.com/skiff-mesh/skiff/internal/procfs"
	"github.com/skiff-mesh/skiff/loadgen"
	"github.com/skiff-mesh/skiff/results"
)

// Config is a benchmark run. Zero fields take the defaults in Normalize.
type Config struct {
	ProxyBin, DemoBin string        // the binaries to run; required
	Rate              int           // requests per second; default 500
	Duration          time.Duration // per path per trial, warm-up included; default 6s
	WarmUp            time.Duration // not measured; default 1s
	Trials            int           // interleaved trials; default 5
	// Gate, when set, is decided after the trials; while it is
	// inconclusive, Run doubles the trials up to MaxTrials.
	Gate *Gate
	// MaxTrials caps the trials a gate may add; default 4 × Trials, at
	// least 24. A value below Trials is Trials (no extension).
	MaxTrials    int
	Protocol     string       // http1 (default), h2c or grpc
	Connections  int          // load generator connections; default loadgen's
	PayloadBytes int          // request body size; default 0
	WorkDir      string       // process logs; default a temp dir
	Logger       *slog.Logger // progress; nil discards
	// BaselineProxyBin, when set, is a base build's skiff-proxy: the
	// paths one-hop@base and two-hop@base run through it, in the same
	// trials, and a Gate compares the builds (Gate.AB). Every path's
	// processes are then started afresh for each trial, so that no
	// process's luck favours one build for the whole run; memory figures
	// are the largest over the instances.
	BaselineProxyBin string
	// Peers are other proxies measured beside Skiff's, one-hop each
	// (HTTP/1.1 only).
	Peers []Peer

	// runAsRoot is whether the bench runs as root (peers' configuration
	// depends on it); Normalize sets it.
	runAsRoot bool
}

// Normalize fills defaults and checks the configuration.
func (c *Config) Normalize() error {
	if c.Rate <= 0 {
		c.Rate = 500
	}
	if c.Duration <= 0 {
		c.Duration = 6 * time.Second
	}
	if c.WarmUp <= 0 {
		c.WarmUp = time.Second
	}
	if c.WarmUp >= c.Duration {
		return fmt.Errorf("warm-up %v must be shorter than the duration %v", c.WarmUp, c.Duration)
	}
	if c.Trials <= 0 {
		c.Trials = 5
	}
	if c.MaxTrials == 0 {
		c.MaxTrials = max(4*c.Trials, 24)
	}
	c.MaxTrials = max(c.MaxTrials, c.Trials)
	if c.Protocol == "" {
		c.Protocol = loadgen.ProtocolHTTP1
	}
	switch c.Protocol {
	case loadgen.ProtocolHTTP1, loadgen.ProtocolH2C, loadgen.ProtocolGRPC:
	default:
		return fmt.Errorf("protocol %q: want http1, h2c or grpc", c.Protocol)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	bins := []struct{ name, path string }{{"skiff-proxy", c.ProxyBin}, {"skiff-demo", c.DemoBin}}
	if c.BaselineProxyBin != "" {
		bins = append(bins, struct{ name, path string }{"base skiff-proxy", c.BaselineProxyBin})
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if p.Name != PeerNginx && p.Name != PeerHAProxy {
			return fmt.Errorf("peer %q: want %s or %s", p.Name, PeerNginx, PeerHAProxy)
		}
		if seen[p.Name] {
			return fmt.Errorf("peer %q named twice", p.Name)
		}
		seen[p.Name] = true
		bins = append(bins, struct{ name, path string }{p.Name, p.Bin})
	}
	if len(c.Peers) > 0 && c.Protocol != loadgen.ProtocolHTTP1 {
		return fmt.Errorf("peers are measured as HTTP/1.1 reverse proxies: --protocol %s cannot run them", c.Protocol)
	}
	for _, b := range bins {
		if b.path == "" {
			return fmt.Errorf("the %s binary is not set", b.name)
		}
		if _, err := os.Stat(b.path); err != nil {
			return fmt.Errorf("the %s binary: %w", b.name, err)
		}
	}
	c.runAsRoot = os.Geteuid() == 0
	return nil
}

// Trial is one path's measurement in one trial.
type Trial struct {
	Requests    int64   `json:"requests"`
	Success     int64   `json:"success"`
	SuccessRate float64 `json:"success_rate"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	P999Ms      float64 `json:"p999_ms"`
	MaxMs       float64 `json:"max_ms"`
	// AddedP50Ms, AddedP99Ms and AddedP999Ms subtract the direct path of
	// the same trial.
	AddedP50Ms  float64 `json:"added_p50_ms"`
	AddedP99Ms  float64 `json:"added_p99_ms"`
	AddedP999Ms float64 `json:"added_p999_ms"`
	// ProxyCPUUsPerReq is the CPU time of the path's proxies per request
	// (every process of a peer: nginx's master and worker).
	ProxyCPUUsPerReq float64 `json:"proxy_cpu_us_per_req"`
}

// Estimate is a median over trials with its 95 % confidence interval.
// Lo and Hi are infinite when there are too few trials for that level
// (fewer than 6); JSON then carries null.
type Estimate struct {
	Median float64   `json:"median"`
	Lo     jsonFloat `json:"lo"`
	Hi     jsonFloat `json:"hi"`
	N      int       `json:"n"`
}

func (e Estimate) String() string { return e.Format(3, true) }

// Format prints "median [lo, hi]" with prec decimals, each with its sign
// when signed (an added latency), ±inf for an unbounded side.
func (e Estimate) Format(prec int, signed bool) string {
	f := func(v float64) string {
		switch {
		case math.IsInf(v, -1):
			return "-inf"
		case math.IsInf(v, 1):
			return "+inf"
		}
		s := strconv.FormatFloat(v, 'f', prec, 64)
		if signed && !strings.HasPrefix(s, "-") {
			s = "+" + s
		}
		return s
	}
	return fmt.Sprintf("%s [%s, %s]", f(e.Median), f(float64(e.Lo)), f(float64(e.Hi)))
}

// jsonFloat is a float64 that encodes an infinity or NaN as null: an
// interval too wide to state.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return []byte("null"), nil
	}
	return json.Marshal(v)
}

func estimate(vals []float64) Estimate {
	if len(vals) == 0 {
		return Estimate{}
	}
	// NewSample sorts its values in place: the caller's order (trial by
	// trial, which the A/B comparison pairs on) must survive.
	s := benchmath.AssumeNothing.Summary(benchmath.NewSample(slices.Clone(vals), &benchmath.DefaultThresholds), 0.95)
	return Estimate{Median: s.Center, Lo: jsonFloat(s.Lo), Hi: jsonFloat(s.Hi), N: len(vals)}
}

// PathReport summarizes one path over all trials.
type PathReport struct {
	Name string `json:"name"`
	// Kind is KindDirect, KindSkiff, KindBase or KindPeer (empty in files
	// written before paths had kinds).
	Kind string `json:"kind,omitempty"`
	// Server is what serves the path: "skiff-proxy", "nginx/1.22.1".
	Server string  `json:"server,omitempty"`
	Trials []Trial `json:"trials"`
	// Requests and Success are summed over the trials; SuccessRate is
	// their ratio.
	Requests         int64    `json:"requests"`
	Success          int64    `json:"success"`
	SuccessRate      float64  `json:"success_rate"`
	P50Ms            Estimate `json:"p50_ms"`
	P99Ms            Estimate `json:"p99_ms"`
	P999Ms           Estimate `json:"p999_ms"`
	AddedP50Ms       Estimate `json:"added_p50_ms"`
	AddedP99Ms       Estimate `json:"added_p99_ms"`
	AddedP999Ms      Estimate `json:"added_p999_ms"`
	ProxyCPUUsPerReq Estimate `json:"proxy_cpu_us_per_req"`
	// Processes is the number of OS processes serving the path (nginx:
	// master and worker); the memory figures below are their totals.
	Processes int `json:"processes,omitempty"`
	// MaxVmRSSMB is the largest sum of the processes' VmRSS sampled at
	// one time.
	MaxVmRSSMB float64 `json:"max_vmrss_mb,omitempty"`
	// VmHWMMB is the sum of the processes' VmHWM: a bound on their peak
	// together (each peaked when it did).
	VmHWMMB float64 `json:"vmhwm_mb,omitempty"`
	// MaxPssMB is the largest sum of the processes' PSS sampled at one
	// time: pages shared between them (nginx's master and worker, or the
	// proxies' common binary) counted once.
	MaxPssMB float64 `json:"max_pss_mb,omitempty"`
}

// ProcReport is one serving process's memory, from /proc/<pid>/status
// and /proc/<pid>/smaps_rollup.
type ProcReport struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Role is "master" or "worker" for a process of nginx; empty
	// otherwise.
	Role string `json:"role,omitempty"`
	// IdleVmRSSMB is VmRSS after start-up, before any load.
	IdleVmRSSMB float64 `json:"idle_vmrss_mb"`
	// MaxVmRSSMB is the largest VmRSS sampled during the run.
	MaxVmRSSMB float64 `json:"max_vmrss_mb"`
	// VmHWMMB is the kernel's peak-RSS record at the end of the run.
	VmHWMMB float64 `json:"vmhwm_mb"`
	// MaxPssMB is the largest PSS sampled (every 2 s and at the end),
	// and MaxPssAnonMB, MaxPssFileMB the largest of its anonymous and
	// file-backed parts; 0 when smaps_rollup could not be read.
	MaxPssMB     float64 `json:"max_pss_mb,omitempty"`
	MaxPssAnonMB float64 `json:"max_pss_anon_mb,omitempty"`
	MaxPssFileMB float64 `json:"max_pss_file_mb,omitempty"`
}

// Report is a benchmark's outcome. Schema "skiff.bench/v1"; fields were
// added since its first files (success counts, N, noise, gate, kinds,
// added p99.9, PSS, peers, A/B comparisons), none removed.
type Report struct {
	Schema    string  `json:"schema"`
	Rate      int     `json:"rate"`
	Protocol  string  `json:"protocol"`
	DurationS float64 `json:"trial_duration_s"`
	WarmUpS   float64 `json:"warm_up_s"`
	// TrialsCount is the number of trials run, a gate's extra ones
	// included.
	TrialsCount int            `json:"trials"`
	Machine     procfs.Machine `json:"machine"`
	Paths       []PathReport   `json:"paths"`
	Procs       []ProcReport   `json:"procs"`
	// Noise is how busy the machine was apart from the bench; nil when
	// it could not be read.
	Noise *results.Noise `json:"noise,omitempty"`
	// Peers compares every proxied path with the peers, when peers ran.
	Peers *PeerTable `json:"peers,omitempty"`
	// Notes say what the run left out and why ("haproxy: not installed").
	Notes []string `json:"notes,omitempty"`
	// Gate is the gate's decision, when Config.Gate was set.
	Gate *Decision `json:"gate,omitempty"`
}

// Path returns the report of the named path, or nil.
func (r *Report) Path(name string) *PathReport {
	for i := range r.Paths {
		if r.Paths[i].Name == name {
			return &r.Paths[i]
		}
	}
	return nil
}

// Run executes the benchmark. It stops every process it started, whatever
// happens.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	log := cfg.Logger
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "skiff-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.WorkDir = dir
	}
	// Count the addresses the paths need, then take them from the kernel
	// all at once.
	n := 1
	planPaths(cfg, "", func() string { n++; return "" })
	ports, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	next := func() string {
		a := "127.0.0.1:" + strconv.Itoa(ports[0])
		ports = ports[1:]
		return a
	}
	backend := next()
	specs := planPaths(cfg, backend, next)

	demo, err := startProcess(cfg.WorkDir, "", procSpec{Name: "skiff-demo", Bin: cfg.DemoBin,
		Args: []string{"--addr", backend, "--name", "bench", "--seed", "1", "--log-level", "warn"}}, false)
	if err != nil {
		return nil, err
	}
	defer demo.stop()
	if err := waitReady(ctx, []string{"http://" + backend + "/healthz"}, []*process{demo}, 10*time.Second); err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, cfg.WorkDir)
	}
	// The paths' processes. With a base build they are started afresh
	// for every trial (fresh): two processes of one binary differ by a
	// few per cent of CPU per request for their whole life (where their
	// memory landed, their pools), which would be a bias of one build
	// against the other; a new pair each trial makes it noise, which the
	// paired test copes with.
	fresh := cfg.BaselineProxyBin != ""
	var servers []*process
	var members []member
	stopServers := func() {
		for _, p := range servers {
			p.stop()
		}
		servers = nil
	}
	defer stopServers()
	startServers := func(restart bool) error {
		var ready []string
		for _, sp := range specs {
			for _, ps := range sp.Procs {
				p, err := startProcess(cfg.WorkDir, sp.Name, ps, restart)
				if err != nil {
					return err
				}
				servers = append(servers, p)
				ready = append(ready, ps.Ready)
			}
		}
		if err := waitReady(ctx, ready, append([]*process{demo}, servers...), 10*time.Second); err != nil {
			return fmt.Errorf("%w (logs in %s)", err, cfg.WorkDir)
		}
		members = members[:0]
		for _, p := range servers {
			members = append(members, membersOf(p)...)
		}
		return nil
	}
	if err := startServers(false); err != nil {
		return nil, err
	}
	rep := &Report{Schema: "skiff.bench/v1", Rate: cfg.Rate, Protocol: cfg.Protocol, DurationS: cfg.Duration.Seconds(),
		WarmUpS: cfg.WarmUp.Seconds(), Machine: procfs.CurrentMachine()}
	mem := newMemory()
	if err := mem.attach(members); err != nil {
		return nil, err
	}

	// Sample VmRSS through the run, PSS every tenth time (it walks the
	// page tables).
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			mem.sample(i%10 == 0)
			select {
			case <-sampleCtx.Done():
				return
			case <-t.C:
			}
		}
	})
	defer func() { stopSampling(); sampler.Wait() }()

	entry := map[string]pathSpec{}
	for _, sp := range specs {
		entry[sp.Name] = sp
	}
	trials := make(map[string][]Trial)
	var noise []*loadgen.Noise
	var sendLag []float64
	runTrials := func(from, to int) error {
		for trial := from; trial <= to; trial++ {
			if fresh && trial > 1 {
				mem.detach()
				stopServers()
				if err := startServers(true); err != nil {
					return fmt.Errorf("trial %d: %w", trial, err)
				}
				if err := mem.attach(members); err != nil {
					return err
				}
			}
			got := map[string]Trial{}
			for _, path := range trialOrder(specs, trial) {
				sp := entry[path]
				cpuBefore := cpuOf(members, path)
				res, err := loadgen.Run(ctx, loadOptions(cfg, sp.Entry, sp.Kind != KindDirect))
				if err != nil {
					return fmt.Errorf("trial %d, %s: %w", trial, path, err)
				}
				for _, m := range members {
					if err := m.alive(); err != nil {
						return fmt.Errorf("during the run: %w (logs in %s)", err, cfg.WorkDir)
					}
				}
				if err := demo.exited(); err != nil {
					return fmt.Errorf("during the run: %w (logs in %s)", err, cfg.WorkDir)
				}
				noise = append(noise, res.Noise)
				sendLag = append(sendLag, ms(res.SendLag.P99))
				tr := Trial{
					Requests: res.Requests, Success: res.Success, SuccessRate: res.SuccessRate,
					P50Ms: ms(res.Latency.P50), P99Ms: ms(res.Latency.P99), P999Ms: ms(res.Latency.P999), MaxMs: ms(res.Latency.Max),
				}
				if sp.Kind != KindDirect && res.Requests > 0 {
					// Warm-up requests burn CPU too: divide by all sent.
					sent := float64(res.Requests) * cfg.Duration.Seconds() / (cfg.Duration - cfg.WarmUp).Seconds()
					tr.ProxyCPUUsPerReq = (cpuOf(members, path) - cpuBefore) * 1e6 / sent
				}
				got[path] = tr
			}
			direct := got[PathDirect]
			for _, sp := range specs {
				tr := got[sp.Name]
				if sp.Kind != KindDirect {
					tr.AddedP50Ms = tr.P50Ms - direct.P50Ms
					tr.AddedP99Ms = tr.P99Ms - direct.P99Ms
					tr.AddedP999Ms = tr.P999Ms - direct.P999Ms
				}
				trials[sp.Name] = append(trials[sp.Name], tr)
				log.Info("trial", "n", trial, "path", sp.Name, "p50_ms", round3(tr.P50Ms), "p99_ms", round3(tr.P99Ms),
					"added_p99_ms", round3(tr.AddedP99Ms), "cpu_us_per_req", round3(tr.ProxyCPUUsPerReq), "success", tr.SuccessRate)
			}
		}
		return nil
	}
	versions := map[string]string{}
	for _, p := range cfg.Peers {
		versions[p.Name] = cmp.Or(p.Version, p.Name)
	}
	// finish reads the processes' memory and summarizes the trials so far.
	finish := func(final bool) {
		rep.Procs = mem.report(final)
		rep.Paths = rep.Paths[:0]
		for _, sp := range specs {
			pr := summarize(sp.Name, trials[sp.Name])
			pr.Kind = sp.Kind
			switch sp.Kind {
			case KindSkiff:
				pr.Server = "skiff-proxy"
			case KindBase:
				pr.Server = "skiff-proxy (base build)"
			case KindPeer:
				pr.Server = versions[sp.Name]
			}
			mem.pathTotals(&pr)
			rep.Paths = append(rep.Paths, pr)
		}
		rep.TrialsCount = len(trials[PathDirect])
		rep.Noise = machineNoise(noise, sendLag, rep.Path(PathDirect))
		if len(cfg.Peers) > 0 {
			rep.Peers = NewPeerTable(rep.Paths)
		}
	}

	if err := runTrials(1, cfg.Trials); err != nil {
		return nil, err
	}
	finish(false)
	if cfg.Gate != nil {
		d := cfg.Gate.decide(rep, rep.TrialsCount >= cfg.MaxTrials)
		looks := []Look{{Trials: rep.TrialsCount, Verdict: d.Verdict, Undecided: d.undecided()}}
		// More trials while the gate is undecided, and while a comparison
		// with the base build is, even when another figure has already
		// failed: a busy machine can fail an absolute limit at once, and
		// the A/B verdict is what a run with a base build is for.
		for (d.Verdict == results.Inconclusive || d.abUndecided()) && rep.TrialsCount < cfg.MaxTrials {
			next := min(2*rep.TrialsCount, cfg.MaxTrials)
			log.Info("gate undecided: more interleaved trials", "undecided", d.undecided(), "trials", rep.TrialsCount, "next", next)
			if err := runTrials(rep.TrialsCount+1, next); err != nil {
				return nil, err
			}
			finish(false)
			d = cfg.Gate.decide(rep, rep.TrialsCount >= cfg.MaxTrials)
			looks = append(looks, Look{Trials: rep.TrialsCount, Verdict: d.Verdict, Undecided: d.undecided()})
		}
		d.Looks, d.MaxTrials = looks, cfg.MaxTrials
		rep.Gate = &d
	}
	stopSampling()
	sampler.Wait()
	finish(true)
	if rep.Gate != nil {
		// Decide again on the final memory reading (the last look's
		// verdict unless a proxy's VmHWM grew since). An A/B figure still
		// undecided when the trials stopped short of MaxTrials (another
		// figure failed) stays undecided.
		d := cfg.Gate.decide(rep, rep.TrialsCount >= cfg.MaxTrials)
		d.Looks, d.MaxTrials = rep.Gate.Looks, rep.Gate.MaxTrials
		rep.Gate = &d
	}
	return rep, nil
}

// machineNoise gathers the runs' noise, the load generator's lateness (the
// median of the runs' p99 send lag) and the direct path's spread.
func machineNoise(ns []*loadgen.Noise, sendLagP99 []float64, direct *PathReport) *results.Noise {
	c := loadgen.CombineNoise(ns...)
	if c == nil {
		return nil
	}
	n := &results.Noise{CPUs: c.CPUs, Seconds: c.Seconds, OtherCPU: c.OtherCPU, OtherCPUMax: c.OtherCPUMax,
		StealPct: c.StealPct, StealMaxPct: c.StealMaxPct, RunCPU: c.RunCPU, LoadAvg1: c.LoadAvg1}
	if s := results.NewSpread(sendLagP99); s != nil {
		n.SendLagP99Ms = s.Median
	}
	if direct != nil {
		p50 := make([]float64, len(direct.Trials))
		for i, t := range direct.Trials {
			p50[i] = t.P50Ms
		}
		n.DirectP50Ms = results.NewSpread(p50)
	}
	return n
}

func summarize(name string, ts []Trial) PathReport {
	pr := PathReport{Name: name, Trials: ts}
	col := func(f func(Trial) float64) []float64 {
		out := make([]float64, len(ts))
		for i, t := range ts {
			out[i] = f(t)
		}
		return out
	}
	for _, t := range ts {
		pr.Requests += t.Requests
		pr.Success += t.Success
	}
	if pr.Requests > 0 {
		pr.SuccessRate = float64(pr.Success) / float64(pr.Requests)
	}
	pr.P50Ms = estimate(col(func(t Trial) float64 { return t.P50Ms }))
	pr.P99Ms = estimate(col(func(t Trial) float64 { return t.P99Ms }))
	pr.P999Ms = estimate(col(func(t Trial) float64 { return t.P999Ms }))
	if name != PathDirect {
		pr.AddedP50Ms = estimate(col(func(t Trial) float64 { return t.AddedP50Ms }))
		pr.AddedP99Ms = estimate(col(func(t Trial) float64 { return t.AddedP99Ms }))
		pr.AddedP999Ms = estimate(col(func(t Trial) float64 { return t.AddedP999Ms }))
		pr.ProxyCPUUsPerReq = estimate(col(func(t Trial) float64 { return t.ProxyCPUUsPerReq }))
	}
	return pr
}

func loadOptions(cfg Config, addr string, viaProxy bool) loadgen.Options {
	t := loadgen.Target{Protocol: cfg.Protocol, PayloadBytes: cfg.PayloadBytes}
	switch cfg.Protocol {
	case loadgen.ProtocolGRPC:
		t.URL = addr
	default:
		t.URL = "http://" + addr + "/"
		if cfg.PayloadBytes > 0 {
			t.URL = "http://" + addr + "/echo"
			t.Method = http.MethodPost
		}
	}
	if viaProxy {
		// The proxies route by authority; the backend ignores it.
		t.Header = http.Header{"Host": {authority}}
	}
	return loadgen.Options{
		Target:      t,
		Rate:        loadgen.Rate{Shape: loadgen.ShapeConstant, PerSecond: cfg.Rate},
		Duration:    cfg.Duration,
		WarmUp:      cfg.WarmUp,
		Connections: cfg.Connections,
		Timeout:     5 * time.Second,
	}
}

// ms converts the load generator's microseconds.
func ms(us int64) float64      { return float64(us) / 1000 }
func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
