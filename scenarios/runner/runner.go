// Package runner runs a scenario: it brings the topology up on an
// environment, drives open-model load, applies the fault timeline at its
// offsets, tears everything down, evaluates the assertions and writes the
// results folder. A scenario with a control_plane_scale section runs the
// controller alone instead, against synthetic services, and times how
// changes reach the watchers of its Destination API (scale.go).
//
// Time 0 of a scenario is the end of the warm-up: timeline offsets and
// phase bounds count from there, and the warm-up is never measured.
package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/skiff-mesh/skiff/faultinject"
	"github.com/skiff-mesh/skiff/loadgen"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/results/assert"
	"github.com/skiff-mesh/skiff/scenarios"
	"github.com/skiff-mesh/skiff/scenarios/kind"
	"github.com/skiff-mesh/skiff/scenarios/spec"
	"github.com/skiff-mesh/skiff/simulator/demo"
	"github.com/skiff-mesh/skiff/simulator/local"
	"github.com/skiff-mesh/skiff/simulator/netns"
)

// Environments a scenario may name. Only local runs here; the others say
// in one line what they need.
const (
	EnvLocal = "local"
	EnvNetns = "netns"
	EnvKind  = "kind"
	EnvKube  = "kube"
)

// Options is one run. Zero fields take the defaults stated.
type Options struct {
	Scenario *spec.Scenario // required
	Env      string         // default EnvLocal
	Quick    bool           // apply the scenario's quick overrides (CI)
	Seed     uint64         // 0: the scenario's seed, else one from the clock
	// MaxTrials caps the interleaved trials a run may extend to while an
	// assertion decided over them is inconclusive; 0 means 4 × the
	// scenario's trials. A value below the scenario's trials adds none.
	MaxTrials int
	OutDir    string         // results folder; required
	Bin       local.Binaries // skiff-proxy and skiff-demo; required
	Revision  string         // git revision recorded in the result
	// Progress receives the live status; nil is silent. TTY redraws one
	// line with a progress bar; otherwise a plain line per second.
	Progress io.Writer
	TTY      bool
	Logger   *slog.Logger
}

// Run executes a scenario and returns its result, also written to
// OutDir. The error is for a run that could not happen; a run whose
// assertions failed returns a Result with Verdict Fail and no error.
func Run(ctx context.Context, o Options) (*results.Result, error) {
	if o.Scenario == nil || o.OutDir == "" {
		return nil, errors.New("runner: a scenario and an output folder are required")
	}
	if o.Env == "" {
		o.Env = EnvLocal
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch o.Env {
	case EnvLocal:
	case EnvNetns:
		if err := netns.Available(); err != nil {
			return nil, unavailable(EnvNetns, err)
		}
	case EnvKind:
		if err := kind.Available(ctx); err != nil {
			return nil, unavailable(EnvKind, err)
		}
		// make kind-up brings the cluster, the images and the install
		// up; deploying a scenario's topology on it is not built yet.
		return nil, unavailable(EnvKind, errors.New("running a scenario's topology on a cluster is not built yet (issue 14); make kind-up brings the cluster up with Skiff installed (use --env local or netns)"))
	case EnvKube:
		return nil, unavailable(EnvKube, errors.New("running a scenario's topology on a cluster (KUBECONFIG's current context) is not built yet (issue 14) (use --env local or netns)"))
	default:
		return nil, fmt.Errorf("environment %q: want local, netns, kind or kube", o.Env)
	}
	if !o.Scenario.RunsOn(o.Env) {
		return nil, unavailable(o.Env, fmt.Errorf("scenario %s runs on %s only: run it with --env %s", o.Scenario.Name, strings.Join(o.Scenario.Environments, ", "), o.Scenario.Environments[0]))
	}
	sc := o.Scenario.Clone()
	sc.Normalize()
	if o.Quick {
		sc.ApplyQuick()
	}
	seed := o.Seed
	if seed == 0 {
		seed = sc.Seed
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	r := &run{o: o, sc: sc, seed: seed, log: o.Logger.With("scenario", sc.Name), registry: faultinject.Default()}
	r.sampler.Interval = 250 * time.Millisecond
	res := &results.Result{
		Schema: results.SchemaV1, Scenario: sc.Name, Description: sc.Description, Environment: o.Env,
		GitRevision: o.Revision, Machine: results.CurrentMachine(), Seed: int64(seed), Quick: o.Quick, Start: time.Now().UTC(),
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	err := r.execute(ctx, res)
	if err == nil {
		err = failedEvents(res.Events)
	}
	res.End = time.Now().UTC()
	if err != nil {
		res.Err = err.Error()
	}
	res.Judge()
	if werr := res.Write(o.OutDir); werr != nil {
		return res, fmt.Errorf("writing results to %s: %w", o.OutDir, werr)
	}
	if err != nil && ctx.Err() != nil {
		return res, err
	}
	return res, nil
}

// failedEvents is an error naming every step of the timeline that could
// not be carried out, or nil. Such a run did not test what its scenario
// says (a replica that was not killed, an anchor no sidecar took), so its
// assertions cannot pass it: it is an ERROR, exit 1, whatever they say.
func failedEvents(events []results.Event) error {
	var bad []string
	for _, ev := range events {
		if !ev.OK {
			bad = append(bad, fmt.Sprintf("%s at %.1fs: %s", ev.Label(), ev.OffsetS, ev.Err))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("the timeline did not happen as written, so the run does not test what the scenario says: %s", strings.Join(bad, "; "))
}

type run struct {
	o        Options
	sc       *spec.Scenario
	seed     uint64
	log      *slog.Logger
	registry *faultinject.Registry
	// env is the environment, through the contract every environment
	// implements; local is the local simulator behind it, for the
	// measurements only it offers so far (mTLS and rotation probes, the
	// plaintext marker), nil on another environment.
	env     scenarios.Environment
	local   *local.Env
	sampler results.Sampler
	pods    *podCounter

	mu     sync.Mutex
	events []results.Event
	active map[string]int     // active fault labels
	rr     *results.Result    // the round-robin comparison run, if any
	mtls   *mtlsEvidence      // with a control plane
	hits   *uint64            // plaintext marker sightings, when watched
	rot    map[string]float64 // the rotation prober's metrics, when watched
	routed map[string]float64 // the client sidecar's route counters over the measured run, with resources
	// sidecars holds the sidecar(POD:SERIES) metrics, read at the end of
	// the load.
	sidecars map[string]float64
	// routedBase is the route counters at the end of the warm-up; guarded
	// by mu.
	routedBase map[string]float64
	// soak is the sidecars' goroutines at the end of the warm-up and of
	// the load, when an assertion needs them; guarded by mu.
	soak soakReads
}

// validate checks what the spec package cannot: fault types and params
// against the registry, and assertion syntax.
func (r *run) validate() error {
	var errs []error
	for _, ev := range r.sc.Timeline {
		f, err := r.registry.Get(ev.Fault)
		if err != nil {
			errs = append(errs, fmt.Errorf("timeline at %s: %w", ev.At, err))
			continue
		}
		if err := f.Validate(ev.Params); err != nil {
			errs = append(errs, fmt.Errorf("timeline at %s (%s %s): %w", ev.At, ev.Fault, ev.Target, err))
		}
	}
	for _, a := range r.sc.Assertions {
		if _, err := assert.Parse(a.Expr); err != nil {
			errs = append(errs, fmt.Errorf("assertion %q: %w", a.Expr, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("scenario %s: %w", r.sc.Name, errors.Join(errs...))
	}
	return nil
}

func (r *run) execute(ctx context.Context, res *results.Result) error {
	if r.sc.ControlPlaneScale != nil {
		return r.executeScale(ctx, res)
	}
	sc := r.sc
	specs, err := serviceSpecs(sc, r.o.Env == EnvLocal)
	if err != nil {
		return err
	}
	r.progressf("scenario %s on %s (seed %d): bringing up %s", sc.Name, r.o.Env, r.seed, topologySummary(sc))
	pargs := proxyArgs(sc.Mesh.Balancer)
	if d := sc.Mesh.DetectTimeout; d > 0 {
		pargs = append(pargs, "--detect-timeout", d.String())
	}
	var resources []byte
	if len(sc.Resources) > 0 {
		// With a control plane the objects go to the controller, which
		// serves them through the Policy API, as on a cluster; without
		// one the proxies read the routes they give from a file.
		path, err := writeRoutes(sc, r.o.OutDir)
		if err != nil {
			return err
		}
		if sc.Mesh.ControlPlane {
			resources = sc.ResourcesYAML()
		} else {
			pargs = append(pargs, "--routes", path)
		}
	}
	lc := local.Config{
		Resources: resources,
		Bin:       r.o.Bin, RunDir: r.o.OutDir, Seed: r.seed, Logger: r.log, // the simulator adds component=simulator
		ProxyArgs:    pargs,
		ControlPlane: sc.Mesh.ControlPlane,
		LeafLifetime: sc.Mesh.LeafLifetime,
		StrictMTLS:   sc.Mesh.MTLS == spec.MTLSStrict,
	}
	if needsMarker(sc) {
		lc.Marker = []byte(Marker)
	}
	env, err := r.newEnvironment(ctx, lc)
	if err != nil {
		return err
	}
	r.env = env
	defer func() {
		if env != nil {
			env.Close()
		}
	}()
	if err := env.Up(ctx, specs); err != nil {
		return fmt.Errorf("bringing the topology up: %w", err)
	}
	if err := r.checkEntries(); err != nil {
		return err
	}
	if needsRotation(sc) && r.local == nil {
		return fmt.Errorf("scenario %s probes certificate rotation, which environment %s does not offer yet", sc.Name, env.Name())
	}
	for _, p := range env.Processes() {
		if err := r.sampler.Watch(p.Name, p.Role, p.PID); err != nil {
			r.log.Warn("cannot sample a process", "process", p.Name, "err", err)
		}
	}
	r.pods = newPodCounter(env)
	sctx, stopSampler := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() { r.sampler.Run(sctx) })

	var (
		rot     *rotationProber
		probing sync.WaitGroup
	)
	pctx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	if needsRotation(sc) {
		rot = newRotationProber(r.local, r.local.Pods(sc.Load.Target))
		probing.Go(func() { rot.run(pctx) })
	}

	var load *loadResult
	if sc.Load.CompareDirect {
		load, err = r.trials(ctx)
	} else {
		load, err = r.timedLoad(ctx)
	}
	stopProbes()
	probing.Wait()
	if rot != nil && err == nil {
		rot.round(ctx) // the state at the end of the run
		r.rot = map[string]float64{}
		rot.metrics(r.rot)
		for _, f := range rot.failures {
			r.log.Warn("rotation probe failed", "probe", f)
		}
		if serr := sidecarIdentity(ctx, r.local, r.rot); serr != nil {
			r.log.Warn("cannot read the sidecars' identity metrics", "err", serr)
		}
	}
	if needsMarker(sc) && r.local != nil {
		n := r.local.MarkerHits()
		r.hits = &n
	}
	if len(sc.Resources) > 0 && err == nil {
		if r.routed, err = routeCounters(ctx, env); err != nil {
			err = fmt.Errorf("reading the client sidecar's route counters: %w", err)
		} else {
			r.mu.Lock()
			for k, v := range r.routedBase {
				r.routed[k] -= v
			}
			r.mu.Unlock()
		}
	}
	if needsGoroutines(sc) && err == nil {
		r.goroutinesAtEnd(ctx)
	}
	if keys := sidecarKeys(sc); len(keys) > 0 && err == nil {
		if r.sidecars, err = r.sidecarCounters(ctx, keys); err != nil {
			err = fmt.Errorf("reading the sidecars' counters: %w", err)
		}
	}
	if sc.Mesh.ControlPlane && err == nil {
		r.mtls = r.gatherMTLS(ctx)
		for _, pe := range r.mtls.probeErrors {
			r.log.Warn("mTLS probe could not run", "err", pe)
		}
	}
	// Tear down before judging: the environment's processes stop and the
	// last samples are in.
	r.pods.stop()
	if err := r.pods.writeCSV(filepath.Join(r.o.OutDir, "pods.csv")); err != nil {
		r.log.Warn("cannot write pods.csv", "err", err)
	}
	stopSampler()
	sampling.Wait()
	env.Close()
	env = nil
	if err != nil {
		return err
	}
	r.collect(res, load)
	if needsRoundRobin(sc) && sc.Mesh.Balancer != spec.BalancerRoundRobin {
		if err := r.roundRobinComparison(ctx, res); err != nil {
			return err
		}
	}
	r.evaluate(res, load)
	return nil
}

// needsMarker says whether an assertion watches the plaintext marker.
func needsMarker(sc *spec.Scenario) bool {
	for _, a := range sc.Assertions {
		if strings.Contains(a.Expr, "plaintext_marker_hits") {
			return true
		}
	}
	return false
}

// routeMetrics are the client sidecar's route counters, by the metric
// name assertions use, summed over its routes.
var routeMetrics = []struct{ name, counter string }{
	{"retries", "outbound_http_route_retry_requests_total"},
	{"retry_overflow", "outbound_http_route_retry_overflow_total"},
	{"retry_limit_exceeded", "outbound_http_route_retry_limit_exceeded_total"},
	{"route_timeouts", "outbound_http_route_timeouts_total"},
}

// routeCounters reads the client sidecar's route counters at the end of
// the load.
func routeCounters(ctx context.Context, env scenarios.Environment) (map[string]float64, error) {
	names := make([]string, len(routeMetrics))
	for i, m := range routeMetrics {
		names[i] = m.counter
	}
	vals, err := env.Client().Sums(ctx, names...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(vals))
	for i, m := range routeMetrics {
		out[m.name] = vals[i]
	}
	return out, nil
}

// writeRoutes writes the routes the scenario's resources give as the
// proxies' routes file, routes.json in dir, and returns its path.
func writeRoutes(sc *spec.Scenario, dir string) (string, error) {
	routes, _, err := sc.Routes(sc.Name)
	if err != nil {
		return "", fmt.Errorf("scenario %s: resources: %w", sc.Name, err)
	}
	data, err := route.Marshal(routes)
	if err != nil {
		return "", err
	}
	path, err := filepath.Abs(filepath.Join(dir, "routes.json"))
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("writing the proxies' routes: %w", err)
	}
	return path, nil
}

// proxyArgs are extra skiff-proxy flags for the scenario's mesh settings.
func proxyArgs(balancer string) []string {
	if balancer == spec.BalancerRoundRobin {
		return []string{"--balancer", "round-robin"}
	}
	return nil
}

func serviceSpecs(sc *spec.Scenario, loopback bool) ([]local.ServiceSpec, error) {
	// Services a timeline targets with chaos get a chaos link per pod, and
	// on loopback every service does when the plaintext marker is watched
	// (on a network of pods, the switch is watched instead).
	chaotic := map[string]bool{}
	if needsMarker(sc) && loopback {
		for _, s := range sc.Topology.Services {
			chaotic[s.Name] = true
		}
	}
	for _, ev := range sc.Timeline {
		if ev.Fault == spec.FaultChaos || ev.Fault == spec.FaultClearChaos {
			if svc, _, ok := sc.ResolveTarget(ev.Target); ok {
				chaotic[svc.Name] = true
			}
		}
	}
	var out []local.ServiceSpec
	for i := range sc.Topology.Services {
		s := &sc.Topology.Services[i]
		ls := local.ServiceSpec{Name: s.Name, Port: s.Port, Replicas: s.Replicas, Meshed: s.IsMeshed(), Protocol: s.Protocol, Failover: s.Failover, Chaos: chaotic[s.Name]}
		for j := range s.Replicas {
			b, err := demoBehaviour(s.BehaviourOf(j))
			if err != nil {
				return nil, fmt.Errorf("service %s replica %d: %w", s.Name, j, err)
			}
			ls.Behaviour = append(ls.Behaviour, b)
		}
		out = append(out, ls)
	}
	return out, nil
}

// demoBehaviour converts the spec's behaviour into the demo's.
func demoBehaviour(b spec.Behaviour) (demo.Behaviour, error) {
	db := demo.Behaviour{Latency: b.Latency, LatencyJitter: b.LatencyJitter, ErrorRate: b.ErrorRate, ErrorStatus: b.ErrorStatus, ResetRate: b.ResetRate, MaxConcurrent: b.MaxConcurrent}
	return db, db.Validate()
}

func topologySummary(sc *spec.Scenario) string {
	var parts []string
	for _, s := range sc.Topology.Services {
		m := "meshed"
		if !s.IsMeshed() {
			m = "unmeshed"
		}
		parts = append(parts, fmt.Sprintf("%s ×%d (%s, %s)", s.Name, s.Replicas, s.Protocol, m))
	}
	return strings.Join(parts, ", ")
}

// loadResult is what the load produced.
type loadResult struct {
	meshed *loadgen.Result
	trials []trial   // compare_direct runs
	t0     time.Time // time 0: the end of the warm-up
}

type trial struct {
	n              int
	meshed, direct *loadgen.Result
}

// target builds the load generator's target for a path.
func (r *run) target(direct bool) loadgen.Target {
	sc := r.sc
	t := loadgen.Target{Protocol: sc.Load.Protocol, Method: sc.Load.Method, PayloadBytes: sc.Load.PayloadBytes,
		Digest: sc.Load.Digest, Chunked: sc.Load.Chunked}
	entry := r.env.Entry(sc.Load.Target, direct)
	addr := entry.Addr
	if !direct {
		t.Header = http.Header{"Host": {entry.Authority}}
		if needsMarker(sc) {
			// In the body: HTTP/2 compresses header values (HPACK),
			// so a marker in a header never shows on the wire even in
			// plaintext. The echo sends it back: both directions.
			t.Payload = []byte(Marker)
			t.Method = http.MethodPost
		}
	}
	t.TLSCommonName = demo.TLSCommonName // the workload's own, passed through untouched
	switch {
	case t.Protocol == loadgen.ProtocolGRPC || t.Protocol == loadgen.ProtocolGRPCStream:
		t.URL = addr
		t.Method = sc.Load.Method // not the marker's POST
		t.Messages = sc.Load.Messages
	case rawEntry(entry, t.Protocol, direct) != "":
		t.URL = rawEntry(entry, t.Protocol, direct)
	default:
		t.URL = "http://" + addr + sc.Load.Path
		if len(t.Payload) > 0 && sc.Load.Path == "/" {
			t.URL = "http://" + addr + "/echo"
		}
	}
	if len(sc.Load.Mix) > 0 {
		// Each kind of call of the mix has its protocol and method; the
		// target's address is the HTTP and gRPC kinds'.
		t.Protocol, t.Method = "", ""
		t.Messages = sc.Load.Messages
	}
	return t
}

func (r *run) loadOptions(direct bool, duration time.Duration, warmup time.Duration, progress func(loadgen.Second)) loadgen.Options {
	sc := r.sc
	lr := loadgen.Rate{Shape: sc.Load.Rate.Shape, PerSecond: sc.Load.Rate.RPS, From: sc.Load.Rate.From, To: sc.Load.Rate.To}
	for _, st := range sc.Load.Rate.Steps {
		lr.Steps = append(lr.Steps, loadgen.Step{Rate: float64(st.RPS), For: st.For})
	}
	var mix []loadgen.Share
	for _, m := range sc.Load.Mix {
		mix = append(mix, loadgen.Share{Protocol: m.Protocol, Weight: m.Weight, URL: rawEntry(r.env.Entry(sc.Load.Target, direct), m.Protocol, direct)})
	}
	return loadgen.Options{
		Target: r.target(direct), Mix: mix, Rate: lr, Duration: duration + warmup, WarmUp: warmup,
		Connections: sc.Load.Connections, Timeout: 10 * time.Second, Progress: progress,
		Dial: r.env.Entry(sc.Load.Target, direct).Dial, RequestsPerConnection: sc.Load.RequestsPerConnection,
	}
}

// timedLoad drives the meshed path for the whole run with the timeline.
func (r *run) timedLoad(ctx context.Context) (*loadResult, error) {
	sc := r.sc
	start := time.Now()
	t0 := start.Add(sc.Load.Warmup)
	lo := r.loadOptions(false, sc.Load.Duration, sc.Load.Warmup, r.progressSecond(sc.Load.Warmup, sc.Load.Duration))
	tctx, stopTimeline := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.timeline(tctx, t0) })
	if needsGoroutines(sc) {
		wg.Go(func() { r.goroutinesAtStart(tctx, t0) })
	}
	if len(sc.Resources) > 0 {
		// The route counters at the end of the warm-up: what the measured
		// run adds is counted from there.
		wg.Go(func() {
			t := time.NewTimer(time.Until(t0))
			defer t.Stop()
			select {
			case <-t.C:
			case <-tctx.Done():
				return
			}
			base, err := routeCounters(tctx, r.env)
			if err != nil {
				r.log.Warn("cannot read the client sidecar's route counters at the end of the warm-up", "err", err)
				return
			}
			r.mu.Lock()
			r.routedBase = base
			r.mu.Unlock()
		})
	}
	r.pods.start(t0)
	res, err := loadgen.Run(ctx, lo)
	stopTimeline()
	wg.Wait()
	r.progressDone()
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return &loadResult{meshed: res, t0: t0}, nil
}

// trials measures the meshed and the direct path alternately (A B A B …)
// for added-latency gates; a timeline is not applied. While an assertion
// decided over the trials is inconclusive, more trials follow
// (trialsWanted).
func (r *run) trials(ctx context.Context) (*loadResult, error) {
	sc := r.sc
	out := &loadResult{t0: time.Now()}
	r.pods.start(out.t0)
	for n, total := 1, sc.Load.Trials; n <= total; n++ {
		tr := trial{n: n}
		for _, direct := range []bool{false, true} {
			lr, err := loadgen.Run(ctx, r.loadOptions(direct, sc.Load.Duration, sc.Load.Warmup, nil))
			if err != nil {
				return nil, fmt.Errorf("trial %d: %w", n, err)
			}
			if direct {
				tr.direct = lr
			} else {
				tr.meshed = lr
			}
		}
		out.trials = append(out.trials, tr)
		r.progressf("trial %d/%d: meshed p50 %.3f p99 %.3f ms | direct p50 %.3f p99 %.3f ms | added p99 %+.3f ms",
			n, total, ms(tr.meshed.Latency.P50), ms(tr.meshed.Latency.P99), ms(tr.direct.Latency.P50), ms(tr.direct.Latency.P99),
			ms(tr.meshed.Latency.P99)-ms(tr.direct.Latency.P99))
		if n == total {
			total = r.trialsWanted(out.trials)
		}
	}
	return out, nil
}

func ms(us int64) float64 { return float64(us) / 1000 }

// timeline applies the scenario's faults at their offsets from t0.
func (r *run) timeline(ctx context.Context, t0 time.Time) {
	type action struct {
		at   time.Duration
		ev   spec.Event
		undo faultinject.Undo
	}
	var queue []action
	for _, ev := range r.sc.SortedTimeline() {
		queue = append(queue, action{at: ev.At, ev: ev})
	}
	for len(queue) > 0 {
		slices.SortStableFunc(queue, func(a, b action) int { return int(a.at - b.at) })
		a := queue[0]
		queue = queue[1:]
		wait := time.Until(t0.Add(a.at))
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		label := a.ev.Fault + " " + a.ev.Target
		if a.undo != nil {
			err := a.undo(ctx)
			r.record(t0, "undo "+a.ev.Fault, a.ev.Target, "", err)
			r.setActive(label, false)
			r.rewatch()
			continue
		}
		undo, err := r.apply(ctx, a.ev)
		r.record(t0, a.ev.Fault, a.ev.Target, paramsString(a.ev.Params), err)
		r.rewatch()
		switch {
		case a.ev.Fault == spec.FaultRestart || a.ev.Fault == spec.FaultResume || a.ev.Fault == spec.FaultResetBehaviour:
			r.clearActive(a.ev.Target)
		case spec.IdentityFault(a.ev.Fault):
			// A rotation step is done once applied; nothing stays active.
		default:
			r.setActive(label, true)
		}
		if a.ev.For > 0 && undo != nil {
			queue = append(queue, action{at: a.at + a.ev.For, ev: a.ev, undo: undo})
		}
	}
}

func (r *run) apply(ctx context.Context, ev spec.Event) (faultinject.Undo, error) {
	f, err := r.registry.Get(ev.Fault)
	if err != nil {
		return nil, err
	}
	pods, err := r.targetPods(ev.Target)
	if err != nil {
		return nil, err
	}
	return f.Apply(ctx, pods, ev.Params)
}

// targetPods resolves a pod name or a service name.
func (r *run) targetPods(target string) ([]faultinject.Pod, error) {
	if p, err := r.env.Pod(target); err == nil {
		return []faultinject.Pod{p}, nil
	}
	ps := r.env.Pods(target)
	if len(ps) == 0 {
		return nil, fmt.Errorf("no pod or service named %q", target)
	}
	out := make([]faultinject.Pod, len(ps))
	for i, p := range ps {
		out[i] = p
	}
	return out, nil
}

// The local environment can drain pods (faultinject's drain fault).
var _ faultinject.DrainPod = (*local.Pod)(nil)

// newEnvironment makes the environment the run names (Options.Env).
func (r *run) newEnvironment(ctx context.Context, lc local.Config) (scenarios.Environment, error) {
	if r.o.Env == EnvNetns {
		n, err := newNetnsNetwork(ctx, r)
		if err != nil {
			return nil, err
		}
		lc.Network = n
	}
	env, err := local.New(lc)
	if err != nil {
		if lc.Network != nil {
			lc.Network.Close()
		}
		return nil, err
	}
	r.local = env
	return env.Environment(), nil
}

// rewatch adds the processes of restarted pods to the sampler.
func (r *run) rewatch() {
	for _, p := range r.env.Processes() {
		r.sampler.Watch(p.Name, p.Role, p.PID) // same name: a new PID of the same process
	}
}

func (r *run) record(t0 time.Time, typ, target, detail string, err error) {
	ev := results.Event{OffsetS: time.Since(t0).Seconds(), Type: typ, Target: target, Detail: detail, OK: err == nil}
	if err != nil {
		ev.Err = err.Error()
		r.log.Warn("fault failed", "fault", typ, "target", target, "err", err)
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.progressf("t=%5.1fs  %s %s %s", ev.OffsetS, typ, target, okWord(err))
}

func okWord(err error) string {
	if err != nil {
		return "FAILED: " + err.Error()
	}
	return ""
}

func paramsString(p map[string]any) string {
	if len(p) == 0 {
		return ""
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		v := p[k]
		if list, ok := v.([]any); ok && k == "resources" {
			v = objectNames(list) // the objects themselves are in the scenario file
		}
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	return strings.Join(parts, " ")
}

// objectNames names Kubernetes objects as "[Kind namespace/name ...]".
func objectNames(list []any) string {
	names := make([]string, 0, len(list))
	for _, o := range list {
		m, _ := o.(map[string]any)
		meta, _ := m["metadata"].(map[string]any)
		ns, _ := meta["namespace"].(string)
		names = append(names, fmt.Sprintf("%v %s/%v", m["kind"], cmp.Or(ns, "default"), meta["name"]))
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func (r *run) setActive(label string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active == nil {
		r.active = map[string]int{}
	}
	if on {
		r.active[label]++
	} else if r.active[label]--; r.active[label] <= 0 {
		delete(r.active, label)
	}
}

// clearActive ends the faults on target that a restart or resume undoes.
func (r *run) clearActive(target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for label := range r.active {
		if strings.HasSuffix(label, " "+target) {
			delete(r.active, label)
		}
	}
}

func (r *run) activeFaults() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.active))
	for l := range r.active {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// wholeSeconds widens [from, to) to the whole seconds it touches.
func wholeSeconds(from, to time.Duration) (time.Duration, time.Duration) {
	lo := math.Floor(from.Seconds() + 1e-9)
	hi := math.Ceil(to.Seconds() - 1e-9)
	return time.Duration(lo) * time.Second, time.Duration(hi) * time.Second
}

// mergeSeconds merges the per-second histograms of the seconds that
// overlap [from, to), offsets from the start of the load.
func mergeSeconds(series []loadgen.Second, from, to time.Duration) (*hdrhistogram.Histogram, int64, int64) {
	var h *hdrhistogram.Histogram
	var reqs, ok int64
	f, t := wholeSeconds(from, to)
	lo, hi := int(f/time.Second), int(t/time.Second)
	for _, s := range series {
		if s.Second < lo || s.Second >= hi {
			continue
		}
		reqs += s.Requests
		ok += s.Success
		sh, err := s.Histogram()
		if err != nil || sh == nil {
			continue
		}
		if h == nil {
			h = hdrhistogram.New(1, sh.HighestTrackableValue(), 3)
		}
		h.Merge(sh)
	}
	return h, reqs, ok
}
