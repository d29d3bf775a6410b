// Package bench measures what the proxy costs. It starts a skiff-demo
// backend and three skiff-proxy processes, then drives the same open-model
// load, interleaved in one run (A B C A B C …), along three paths:
//
//	direct    client → backend
//	one-hop   client → proxy → backend
//	two-hop   client → outbound proxy → inbound proxy → backend (the meshed path:
//	          HTTP/1.1 crosses between the proxies on one HTTP/2 connection)
//
// A path's added latency is its percentile minus the direct path's in the
// same trial; the report gives the median over trials with a 95 %
// confidence interval (golang.org/x/perf/benchmath). Memory is each proxy's
// VmRSS (sampled through the run) and VmHWM from /proc/<pid>/status; CPU is
// utime+stime from /proc/<pid>/stat per request. The machine's own noise
// (other processes' CPU, steal, the load generator's lateness, the direct
// path's spread) is measured alongside and reported.
//
// With a Gate, Run decides by the intervals (see Gate) and, while a figure's
// interval straddles its limit, runs more interleaved trials, doubling
// their number up to Config.MaxTrials; what is still undecided then is
// inconclusive.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/perf/benchmath"

	"github.com/skiff-mesh/skiff/internal/procfs"
	"github.com/skiff-mesh/skiff/loadgen"
	"github.com/skiff-mesh/skiff/results"
)

// Paths, in the order each trial measures them.
const (
	PathDirect = "direct"
	PathOneHop = "one-hop"
	PathTwoHop = "two-hop"
)

var paths = []string{PathDirect, PathOneHop, PathTwoHop}

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
	for _, b := range []struct{ name, path string }{{"skiff-proxy", c.ProxyBin}, {"skiff-demo", c.DemoBin}} {
		if b.path == "" {
			return fmt.Errorf("the %s binary is not set", b.name)
		}
		if _, err := os.Stat(b.path); err != nil {
			return fmt.Errorf("the %s binary: %w", b.name, err)
		}
	}
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
	// AddedP50Ms and AddedP99Ms subtract the direct path of the same trial.
	AddedP50Ms float64 `json:"added_p50_ms"`
	AddedP99Ms float64 `json:"added_p99_ms"`
	// ProxyCPUUsPerReq is the CPU time of the path's proxies per request.
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

func (e Estimate) String() string {
	return fmt.Sprintf("%+.3f [%s, %s]", e.Median, signed(float64(e.Lo)), signed(float64(e.Hi)))
}

func signed(v float64) string {
	switch {
	case math.IsInf(v, -1):
		return "-inf"
	case math.IsInf(v, 1):
		return "+inf"
	}
	return fmt.Sprintf("%+.3f", v)
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
	s := benchmath.AssumeNothing.Summary(benchmath.NewSample(vals, &benchmath.DefaultThresholds), 0.95)
	return Estimate{Median: s.Center, Lo: jsonFloat(s.Lo), Hi: jsonFloat(s.Hi), N: len(vals)}
}

// PathReport summarizes one path over all trials.
type PathReport struct {
	Name   string  `json:"name"`
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
	ProxyCPUUsPerReq Estimate `json:"proxy_cpu_us_per_req"`
}

// ProcReport is one proxy process's memory, from /proc/<pid>/status.
type ProcReport struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// IdleVmRSSMB is VmRSS after start-up, before any load.
	IdleVmRSSMB float64 `json:"idle_vmrss_mb"`
	// MaxVmRSSMB is the largest VmRSS sampled during the run.
	MaxVmRSSMB float64 `json:"max_vmrss_mb"`
	// VmHWMMB is the kernel's peak-RSS record at the end of the run.
	VmHWMMB float64 `json:"vmhwm_mb"`
}

// Report is a benchmark's outcome. Schema "skiff.bench/v1"; fields were
// added since its first files (success counts, N, noise, gate), none
// removed.
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

// process is a started child.
type process struct {
	name, path string // path: the bench path it serves
	cmd        *exec.Cmd
	done       chan struct{}
	waitErr    error
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
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	backend, oneHop, outbound, inbound := addr(0), addr(1), addr(2), addr(3)
	const authority = "echo.bench.svc:8080"

	var procs []*process
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	start := func(name, path, bin string, args ...string) (*process, error) {
		logf, err := os.Create(filepath.Join(cfg.WorkDir, name+".log"))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		p := &process{name: name, path: path, cmd: cmd, done: make(chan struct{})}
		go func() { p.waitErr = cmd.Wait(); logf.Close(); close(p.done) }()
		procs = append(procs, p)
		return p, nil
	}
	if _, err := start("skiff-demo", "", cfg.DemoBin, "--addr", backend, "--name", "bench", "--seed", "1", "--log-level", "warn"); err != nil {
		return nil, err
	}
	proxyArgs := func(out, in, admin string, extra ...string) []string {
		return append([]string{"--outbound-addr", out, "--inbound-addr", in, "--admin-addr", admin, "--log-level", "warn"}, extra...)
	}
	p1, err := start("proxy-one-hop", PathOneHop, cfg.ProxyBin, proxyArgs(oneHop, "-", addr(4), "--endpoint", authority+"="+backend)...)
	if err != nil {
		return nil, err
	}
	p2, err := start("proxy-outbound", PathTwoHop, cfg.ProxyBin, proxyArgs(outbound, "-", addr(5), "--endpoint", authority+"="+inbound+";meshed")...)
	if err != nil {
		return nil, err
	}
	p3, err := start("proxy-inbound", PathTwoHop, cfg.ProxyBin, proxyArgs("-", inbound, addr(6), "--inbound-forward", backend)...)
	if err != nil {
		return nil, err
	}
	proxies := []*process{p1, p2, p3}
	ready := []string{"http://" + backend + "/healthz", "http://" + addr(4) + "/ready", "http://" + addr(5) + "/ready", "http://" + addr(6) + "/ready"}
	if err := waitReady(ctx, ready, procs, 10*time.Second); err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, cfg.WorkDir)
	}
	rep := &Report{Schema: "skiff.bench/v1", Rate: cfg.Rate, Protocol: cfg.Protocol, DurationS: cfg.Duration.Seconds(),
		WarmUpS: cfg.WarmUp.Seconds(), Machine: procfs.CurrentMachine()}
	procRep := make(map[*process]*ProcReport)
	var procMu sync.Mutex // procRep: the sampler writes, finish reads
	for _, p := range proxies {
		st, err := procfs.ReadPID(p.cmd.Process.Pid)
		if err != nil {
			return nil, fmt.Errorf("read %s memory: %w", p.name, err)
		}
		procRep[p] = &ProcReport{Name: p.name, Path: p.path, IdleVmRSSMB: st.VmRSSMB}
	}

	// Sample VmRSS through the run.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			for _, p := range proxies {
				st, err := procfs.ReadPID(p.cmd.Process.Pid)
				procMu.Lock()
				if err == nil && st.VmRSSMB > procRep[p].MaxVmRSSMB {
					procRep[p].MaxVmRSSMB = st.VmRSSMB
				}
				procMu.Unlock()
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-t.C:
			}
		}
	})
	defer func() { stopSampling(); sampler.Wait() }()

	entry := map[string]string{PathDirect: backend, PathOneHop: oneHop, PathTwoHop: outbound}
	trials := make(map[string][]Trial)
	var noise []*loadgen.Noise
	var sendLag []float64
	runTrials := func(from, to int) error {
		for trial := from; trial <= to; trial++ {
			var direct Trial
			for _, path := range paths {
				cpuBefore := cpuOf(proxies, path)
				res, err := loadgen.Run(ctx, loadOptions(cfg, entry[path], path != PathDirect, authority))
				if err != nil {
					return fmt.Errorf("trial %d, %s: %w", trial, path, err)
				}
				for _, p := range procs {
					select {
					case <-p.done:
						return fmt.Errorf("%s exited during the run: %w (log: %s)", p.name, p.waitErr, filepath.Join(cfg.WorkDir, p.name+".log"))
					default:
					}
				}
				noise = append(noise, res.Noise)
				sendLag = append(sendLag, ms(res.SendLag.P99))
				tr := Trial{
					Requests: res.Requests, Success: res.Success, SuccessRate: res.SuccessRate,
					P50Ms: ms(res.Latency.P50), P99Ms: ms(res.Latency.P99), P999Ms: ms(res.Latency.P999), MaxMs: ms(res.Latency.Max),
				}
				if path == PathDirect {
					direct = tr
				} else {
					tr.AddedP50Ms = tr.P50Ms - direct.P50Ms
					tr.AddedP99Ms = tr.P99Ms - direct.P99Ms
					if res.Requests > 0 {
						// Warm-up requests burn CPU too: divide by all sent.
						sent := float64(res.Requests) * cfg.Duration.Seconds() / (cfg.Duration - cfg.WarmUp).Seconds()
						tr.ProxyCPUUsPerReq = (cpuOf(proxies, path) - cpuBefore) * 1e6 / sent
					}
				}
				trials[path] = append(trials[path], tr)
				log.Info("trial", "n", trial, "path", path, "p50_ms", round3(tr.P50Ms), "p99_ms", round3(tr.P99Ms),
					"added_p99_ms", round3(tr.AddedP99Ms), "success", tr.SuccessRate)
			}
		}
		return nil
	}
	// finish reads the proxies' memory and summarizes the trials so far.
	finish := func() {
		procMu.Lock()
		defer procMu.Unlock()
		rep.Procs = rep.Procs[:0]
		for _, p := range proxies {
			if st, err := procfs.ReadPID(p.cmd.Process.Pid); err == nil {
				procRep[p].VmHWMMB = st.VmHWMMB
				if st.VmRSSMB > procRep[p].MaxVmRSSMB {
					procRep[p].MaxVmRSSMB = st.VmRSSMB
				}
			}
			rep.Procs = append(rep.Procs, *procRep[p])
		}
		rep.Paths = rep.Paths[:0]
		for _, path := range paths {
			rep.Paths = append(rep.Paths, summarize(path, trials[path]))
		}
		rep.TrialsCount = len(trials[PathDirect])
		rep.Noise = machineNoise(noise, sendLag, rep.Path(PathDirect))
	}

	if err := runTrials(1, cfg.Trials); err != nil {
		return nil, err
	}
	finish()
	if cfg.Gate != nil {
		d := cfg.Gate.Decide(rep)
		looks := []Look{{Trials: rep.TrialsCount, Verdict: d.Verdict, Undecided: d.undecided()}}
		for d.Verdict == results.Inconclusive && rep.TrialsCount < cfg.MaxTrials {
			next := min(2*rep.TrialsCount, cfg.MaxTrials)
			log.Info("gate inconclusive: more interleaved trials", "undecided", d.undecided(), "trials", rep.TrialsCount, "next", next)
			if err := runTrials(rep.TrialsCount+1, next); err != nil {
				return nil, err
			}
			finish()
			d = cfg.Gate.Decide(rep)
			looks = append(looks, Look{Trials: rep.TrialsCount, Verdict: d.Verdict, Undecided: d.undecided()})
		}
		d.Looks, d.MaxTrials = looks, cfg.MaxTrials
		rep.Gate = &d
	}
	stopSampling()
	sampler.Wait()
	finish()
	if rep.Gate != nil {
		// Decide again on the final memory reading (the last look's
		// verdict unless a proxy's VmHWM grew since).
		d := cfg.Gate.Decide(rep)
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
		pr.ProxyCPUUsPerReq = estimate(col(func(t Trial) float64 { return t.ProxyCPUUsPerReq }))
	}
	return pr
}

func loadOptions(cfg Config, addr string, viaProxy bool, authority string) loadgen.Options {
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

// cpuOf is the CPU seconds used so far by the proxies of a path.
func cpuOf(procs []*process, path string) float64 {
	var s float64
	for _, p := range procs {
		if p.path == path {
			if st, err := procfs.ReadPID(p.cmd.Process.Pid); err == nil {
				s += st.CPUSeconds
			}
		}
	}
	return s
}

// ms converts the load generator's microseconds.
func ms(us int64) float64      { return float64(us) / 1000 }
func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

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

func waitReady(ctx context.Context, urls []string, procs []*process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 500 * time.Millisecond}
	pending := append([]string(nil), urls...)
	for len(pending) > 0 {
		for _, p := range procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited at start: %w", p.name, p.waitErr)
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, pending)
		}
		var still []string
		for _, u := range pending {
			resp, err := c.Get(u)
			if err == nil {
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != 200 {
				still = append(still, u)
			}
		}
		pending = still
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
