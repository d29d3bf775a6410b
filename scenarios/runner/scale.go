package runner

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/skiff-mesh/skiff/mesh/proxy/control"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/scenarios/spec"
	"github.com/skiff-mesh/skiff/simulator/local"
)

// This file runs a control_plane_scale scenario: the controller alone,
// fed with synthetic services through the registry file it reads, watched
// by light clients of its Destination API (the proxy's own client), while
// the runner changes the file and times each change's arrival at every
// watcher of the changed service.
//
// How a watcher knows a snapshot reflects a change: the runner plans every
// change before the run, so it knows each service's state after each of
// its changes (its version). Every state is new: adds use fresh addresses,
// removes take endpoints of the initial set (never re-added), and weights
// are set to values used nowhere else. So a snapshot equal to the state of
// version v says the watcher has seen every change of that service up to
// v, even if it skipped states in between (the Destination API folds
// changes a slow stream had no time for).

// Kinds of change of a control-plane scale run.
const (
	changeAdd    = "add"
	changeRemove = "remove"
	changeWeight = "weight"
)

// Synthetic endpoints: meshed, on the sidecars' inbound port, with the
// initial weight and labels a real pod would have.
const (
	scalePort          = 8080
	scaleEndpointPort  = 4143
	scaleInitialWeight = 100
	// scaleChangedWeight is the first weight a change sets; each change
	// sets its own, scaleChangedWeight + its index.
	scaleChangedWeight = 1000
)

// scalePlan is everything the run will do, drawn from the seed up front.
type scalePlan struct {
	cfg        spec.ControlPlaneScale
	authority  []string              // per service
	initial    [][]endpoint.Endpoint // per service, sorted by address
	watches    [][]int               // per watcher: the services it watches
	watchersOf [][]int               // per service: its watchers, ascending
	changes    []scaleChange
	// version maps a service's state key to its version: 0 initially, n
	// after the service's n-th change.
	version []map[string]int
	// changeOf[s][n-1] is the index of service s's n-th change.
	changeOf [][]int
}

// scaleChange is one planned change.
type scaleChange struct {
	kind    string
	service int
	addr    string              // the endpoint added, removed or reweighted
	after   []endpoint.Endpoint // the service's endpoints after it
}

// stateKey identifies a service's state by what the Destination API
// carries of it: addresses and weights, in address order.
func stateKey(eps []endpoint.Endpoint) string {
	var b strings.Builder
	for _, ep := range eps {
		b.WriteString(ep.Addr)
		b.WriteByte('=')
		b.WriteString(strconv.FormatUint(uint64(ep.Weight), 10))
		b.WriteByte(' ')
	}
	return b.String()
}

// planScale draws the services, the watchers' services and the changes.
// Synthetic addresses are taken in order from subnet, 127.X.1.1 onwards,
// 254 per third byte, as the environment lays out pods (none here).
func planScale(cfg spec.ControlPlaneScale, subnet netip.Prefix, seed uint64) *scalePlan {
	rng := rand.New(rand.NewPCG(seed, 0x5ca1e))
	base := subnet.Addr().As4()
	next := 0
	newAddr := func() string {
		n := next
		next++
		ip := netip.AddrFrom4([4]byte{base[0], base[1], byte(1 + n/254), byte(1 + n%254)})
		return netip.AddrPortFrom(ip, scaleEndpointPort).String()
	}
	S := cfg.Services
	p := &scalePlan{cfg: cfg, authority: make([]string, S), initial: make([][]endpoint.Endpoint, S),
		watchersOf: make([][]int, S), version: make([]map[string]int, S), changeOf: make([][]int, S)}
	newEndpoint := func(s, i int) endpoint.Endpoint {
		name := fmt.Sprintf("svc-%04d", s)
		return endpoint.Endpoint{
			Addr: newAddr(), Weight: scaleInitialWeight, Meshed: true, Protocol: endpoint.ProtocolHTTP1,
			Identity: "spiffe://" + local.TrustDomain + "/ns/" + local.Namespace + "/sa/" + name,
			Labels:   map[string]string{"pod": fmt.Sprintf("%s-%d", name, i), "service": name},
		}
	}
	sortEps := func(eps []endpoint.Endpoint) {
		slices.SortFunc(eps, func(a, b endpoint.Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
	}
	current := make([][]endpoint.Endpoint, S)
	pods := make([]int, S) // endpoints made per service, for pod names
	for s := range S {
		p.authority[s] = fmt.Sprintf("svc-%04d.%s.svc:%d", s, local.Namespace, scalePort)
		for i := range cfg.EndpointsPerService {
			p.initial[s] = append(p.initial[s], newEndpoint(s, i))
		}
		pods[s] = cfg.EndpointsPerService
		sortEps(p.initial[s])
		current[s] = slices.Clone(p.initial[s])
		p.version[s] = map[string]int{stateKey(current[s]): 0}
	}

	// Deal the services out: slot i of the W×K slots gets service
	// perm[i mod S], watcher w the slots w·K .. w·K+K-1: distinct services
	// for each watcher (K <= S), and every service watched by ⌊W·K/S⌋ or
	// ⌈W·K/S⌉ watchers.
	perm := rng.Perm(S)
	p.watches = make([][]int, cfg.Watchers)
	for w := range cfg.Watchers {
		for j := range cfg.WatchesPerWatcher {
			s := perm[(w*cfg.WatchesPerWatcher+j)%S]
			p.watches[w] = append(p.watches[w], s)
			p.watchersOf[s] = append(p.watchersOf[s], w)
		}
	}
	var watched []int // changes go to services someone watches
	for s := range S {
		if len(p.watchersOf[s]) > 0 {
			watched = append(watched, s)
		}
	}

	original := make([]map[string]bool, S) // initial endpoints still present
	for s := range S {
		original[s] = map[string]bool{}
		for _, ep := range p.initial[s] {
			original[s][ep.Addr] = true
		}
	}
	for k := range cfg.Changes {
		s := watched[rng.IntN(len(watched))]
		kind := []string{changeAdd, changeRemove, changeWeight}[rng.IntN(3)]
		if kind == changeRemove && len(original[s]) == 0 {
			kind = changeAdd // nothing left that may go without a state coming back
		}
		if kind == changeWeight && len(current[s]) == 0 {
			kind = changeAdd
		}
		eps := slices.Clone(current[s])
		var addr string
		switch kind {
		case changeAdd:
			ep := newEndpoint(s, pods[s])
			pods[s]++
			addr = ep.Addr
			eps = append(eps, ep)
			sortEps(eps)
		case changeRemove:
			addrs := make([]string, 0, len(original[s]))
			for a := range original[s] {
				addrs = append(addrs, a)
			}
			slices.Sort(addrs) // map order is not the seed's
			addr = addrs[rng.IntN(len(addrs))]
			delete(original[s], addr)
			eps = slices.DeleteFunc(eps, func(ep endpoint.Endpoint) bool { return ep.Addr == addr })
		case changeWeight:
			i := rng.IntN(len(eps))
			addr = eps[i].Addr
			eps[i].Weight = uint32(scaleChangedWeight + k)
		}
		current[s] = eps
		p.changeOf[s] = append(p.changeOf[s], k)
		key := stateKey(eps)
		if _, dup := p.version[s][key]; dup {
			panic("runner: a planned change brings back an earlier state of " + p.authority[s]) // a bug in this planner
		}
		p.version[s][key] = len(p.changeOf[s])
		p.changes = append(p.changes, scaleChange{kind: kind, service: s, addr: addr, after: eps})
	}
	return p
}

// endpointCount is the number of synthetic endpoints at the start.
func (p *scalePlan) endpointCount() int {
	n := 0
	for _, eps := range p.initial {
		n += len(eps)
	}
	return n
}

// scaleStream is one watcher's Watch of one service. Its callback runs on
// the stream's own goroutine, one call at a time.
type scaleStream struct {
	watcher, service int
	slot             int // the watcher's index among watchersOf[service]
	seen             int // highest version delivered; -1 before the first
}

// scaleRun is the measurement state shared by the streams.
type scaleRun struct {
	plan *scalePlan
	// seenAt[k][i] is when watcher watchersOf[s][i] first had change k
	// (UnixNano; 0: not yet). Each entry is written by one stream.
	seenAt    [][]int64
	synced    atomic.Int64 // streams that had their initial snapshot
	lastSync  atomic.Int64 // UnixNano of the latest initial snapshot
	seen      atomic.Int64 // (change, watcher) pairs seen
	unmatched atomic.Int64
}

func (sr *scaleRun) onSnapshot(st *scaleStream, snap endpoint.Snapshot) {
	now := time.Now().UnixNano()
	v, ok := sr.plan.version[st.service][stateKey(snap.Endpoints)]
	if !ok || !snap.Exists {
		sr.unmatched.Add(1)
		return
	}
	if v <= st.seen {
		return
	}
	if st.seen < 0 {
		storeMax(&sr.lastSync, now)
		sr.synced.Add(1) // after lastSync: whoever sees all synced reads the final one
	}
	for n := max(st.seen+1, 1); n <= v; n++ {
		k := sr.plan.changeOf[st.service][n-1]
		sr.seenAt[k][st.slot] = now
		sr.seen.Add(1)
	}
	st.seen = v
}

// storeMax raises a to v unless it is already higher.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// executeScale is execute for a control_plane_scale scenario.
func (r *run) executeScale(ctx context.Context, res *results.Result) error {
	cfg := *r.sc.ControlPlaneScale
	r.progressf("scenario %s on %s (seed %d): the control plane with %d services × %d endpoints, %d watchers × %d services, %d changes every %s",
		r.sc.Name, r.o.Env, r.seed, cfg.Services, cfg.EndpointsPerService, cfg.Watchers, cfg.WatchesPerWatcher, cfg.Changes, cfg.ChangeInterval)
	env, err := local.New(local.Config{
		Bin: r.o.Bin, RunDir: r.o.OutDir, Seed: r.seed, Logger: r.log, // the simulator adds component=simulator
		ControlPlane: true,
	})
	if err != nil {
		return err
	}
	r.env, r.local = env.Environment(), env
	defer env.Close()

	plan := planScale(cfg, env.Subnet(), r.seed)
	table := make(map[string][]endpoint.Endpoint, cfg.Services)
	for s, auth := range plan.authority {
		table[auth] = plan.initial[s]
	}
	// Before Up: the controller starts with every synthetic service.
	if err := env.SetEndpoints(table); err != nil {
		return err
	}
	if err := env.Up(ctx, nil); err != nil {
		return fmt.Errorf("bringing the control plane up: %w", err)
	}
	r.sampler.Start = res.Start
	for _, p := range env.Processes() {
		if err := r.sampler.Watch(p.Name, p.Role, p.PID); err != nil {
			r.log.Warn("cannot sample a process", "process", p.Name, "err", err)
		}
	}
	sctx, stopSampler := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() { r.sampler.Run(sctx) })

	prop, err := r.measureScale(ctx, res, env, plan)
	stopSampler()
	sampling.Wait()
	env.Close()
	// What was measured goes in the result even when the run failed.
	res.Processes = r.sampler.Processes()
	r.mu.Lock()
	res.Events = append(res.Events, r.events...)
	r.mu.Unlock()
	if err != nil {
		return err
	}
	res.Propagation = prop
	r.evaluate(res, nil)
	return nil
}

// measureScale connects the watchers, waits for their initial sync, makes
// the changes and waits for them to arrive (or time out).
func (r *run) measureScale(ctx context.Context, res *results.Result, env *local.Env, plan *scalePlan) (*results.Propagation, error) {
	cfg := plan.cfg
	sr := &scaleRun{plan: plan, seenAt: make([][]int64, len(plan.changes))}
	pairs := 0
	for k, c := range plan.changes {
		sr.seenAt[k] = make([]int64, len(plan.watchersOf[c.service]))
		pairs += len(plan.watchersOf[c.service])
	}
	event := func(at time.Time, typ, detail string) {
		r.mu.Lock()
		r.events = append(r.events, results.Event{OffsetS: at.Sub(res.Start).Seconds(), Type: typ, Detail: detail, OK: true})
		r.mu.Unlock()
	}

	// The watchers: one connection each, as a proxy has (TLS, the
	// controller verified as a proxy verifies it, a mesh certificate of
	// the watcher's own identity presented), and one Watch per service, as
	// a proxy sending to it would.
	wctx, stopWatchers := context.WithCancel(ctx)
	var watching sync.WaitGroup
	sources := make([]*control.DestinationSource, cfg.Watchers)
	conns := make([]*control.Conn, cfg.Watchers)
	defer func() {
		stopWatchers()
		watching.Wait()
		for _, c := range conns {
			c.Close()
		}
	}()
	// The watchers' certificates are issued before the clock starts: the
	// harness's signing is not the control plane's time.
	tlsConfigs := make([]*tls.Config, cfg.Watchers)
	for w := range tlsConfigs {
		tlsConfigs[w] = env.ControlTLSConfig(fmt.Sprintf("scale-watcher-%d", w))
	}
	streams := 0
	start := time.Now()
	for w, svcs := range plan.watches {
		conns[w] = control.NewConn(env.ControlAddr(), control.ConnConfig{TLS: tlsConfigs[w]})
		sources[w] = &control.DestinationSource{Conn: conns[w], Proxy: control.ProxyContext{
			ID: fmt.Sprintf("scale-watcher-%d", w), Pod: fmt.Sprintf("watcher-%d", w), Namespace: local.Namespace}}
		for _, s := range svcs {
			st := &scaleStream{watcher: w, service: s, slot: slices.Index(plan.watchersOf[s], w), seen: -1}
			streams++
			watching.Go(func() {
				sources[w].Watch(wctx, plan.authority[s], func(snap endpoint.Snapshot) { sr.onSnapshot(st, snap) })
			})
		}
	}
	event(start, "watchers connect", fmt.Sprintf("%d watchers × %d services", cfg.Watchers, cfg.WatchesPerWatcher))

	// Initial sync: every stream has its service's state.
	syncLimit := 10 * cfg.Timeout
	if err := waitFor(ctx, syncLimit, func() bool { return sr.synced.Load() == int64(streams) }); err != nil {
		return nil, fmt.Errorf("initial sync: %d of %d watch streams had their first snapshot after %s (%w); controller log: %s",
			sr.synced.Load(), streams, syncLimit, err, env.LogPath(local.ControllerPod, local.RoleController))
	}
	synced := time.Unix(0, sr.lastSync.Load())
	initialSync := synced.Sub(start)
	event(synced, "initial sync done", fmt.Sprintf("%d streams in %.2f s", streams, initialSync.Seconds()))
	r.progressf("initial sync: %d watchers × %d services (%d streams, %d endpoints) in %.2f s",
		cfg.Watchers, cfg.WatchesPerWatcher, streams, plan.endpointCount(), initialSync.Seconds())

	// The changes, on schedule: open model, whatever the watchers have
	// seen. Each is one atomic rewrite of the whole registry file, as the
	// simulator makes for a pod's change.
	writtenAt := make([]time.Time, len(plan.changes))
	t0 := time.Now()
	event(t0, "changes start", fmt.Sprintf("%d changes, one every %s", len(plan.changes), cfg.ChangeInterval))
	lastReport := t0
	for k, c := range plan.changes {
		if d := time.Until(t0.Add(time.Duration(k) * cfg.ChangeInterval)); d > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
		}
		if err := env.SetEndpoints(map[string][]endpoint.Endpoint{plan.authority[c.service]: c.after}); err != nil {
			return nil, fmt.Errorf("change %d (%s %s): %w", k, c.kind, plan.authority[c.service], err)
		}
		writtenAt[k] = time.Now()
		if time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			r.progressf("changes %d/%d  pairs seen %d/%d", k+1, len(plan.changes), sr.seen.Load(), pairs)
		}
	}
	last := writtenAt[len(writtenAt)-1]
	event(last, "changes end", "")
	// Wait for the last change to arrive everywhere, or its timeout (then
	// the pairs not seen are missed).
	waitFor(ctx, time.Until(last.Add(cfg.Timeout)), func() bool { return sr.seen.Load() == int64(pairs) })
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stopWatchers()
	watching.Wait() // every callback has returned: seenAt is final

	prop := &results.Propagation{
		Services: cfg.Services, Endpoints: plan.endpointCount(), Watchers: cfg.Watchers, Streams: streams,
		InitialSyncS: initialSync.Seconds(), Changes: len(plan.changes), ChangeIntervalMs: ms(cfg.ChangeInterval.Microseconds()),
		TimeoutS: cfg.Timeout.Seconds(), Pairs: int64(pairs), Unmatched: sr.unmatched.Load(),
		Histogram: hdrhistogram.New(1, max(cfg.Timeout.Microseconds(), 1_000_000), 3),
	}
	for _, src := range sources {
		prop.Reconnects += int64(src.Disconnects() + src.ConnectFailures())
	}
	for k, c := range plan.changes {
		rc := results.RegistryChange{OffsetS: writtenAt[k].Sub(res.Start).Seconds(), Kind: c.kind,
			Authority: plan.authority[c.service], Watchers: len(sr.seenAt[k])}
		h := hdrhistogram.New(1, prop.Histogram.HighestTrackableValue(), 3)
		for _, at := range sr.seenAt[k] {
			d := time.Unix(0, at).Sub(writtenAt[k])
			if at == 0 || d > cfg.Timeout {
				rc.Missed++
				continue
			}
			us := max(d.Microseconds(), 1) // seen within the write's own microsecond
			h.RecordValue(us)
			prop.Histogram.RecordValue(us)
		}
		if h.TotalCount() > 0 {
			rc.P50Ms, rc.MaxMs = ms(h.ValueAtPercentile(50)), ms(h.Max())
		}
		prop.Missed += int64(rc.Missed)
		prop.PerChange = append(prop.PerChange, rc)
	}
	prop.Latency = results.Summarize(prop.Histogram)
	r.progressf("propagation over %d (change, watcher) pairs: p50 %.1f ms  p99 %.1f ms  max %.1f ms  missed %d",
		pairs, prop.Latency.P50, prop.Latency.P99, prop.Latency.Max, prop.Missed)
	return prop, nil
}

// waitFor polls done every 5 ms until it holds (nil), limit passes or ctx
// ends (an error saying which).
func waitFor(ctx context.Context, limit time.Duration, done func() bool) error {
	deadline := time.NewTimer(max(limit, 0))
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return errors.New("timed out")
		case <-tick.C:
		}
	}
	return nil
}

// scaleMetrics adds a control-plane scale run's metrics to m.
func scaleMetrics(m map[string]float64, p *results.Propagation) {
	m["propagation_p50_ms"], m["propagation_p90_ms"], m["propagation_p99_ms"] = p.Latency.P50, p.Latency.P90, p.Latency.P99
	m["propagation_p999_ms"], m["propagation_max_ms"], m["propagation_mean_ms"] = p.Latency.P999, p.Latency.Max, p.Latency.Mean
	m["propagation_pairs"], m["propagation_missed"] = float64(p.Pairs), float64(p.Missed)
	m["initial_sync_s"] = p.InitialSyncS
	m["watchers"], m["watch_streams"], m["watch_reconnects"] = float64(p.Watchers), float64(p.Streams), float64(p.Reconnects)
	m["services"], m["endpoints"], m["changes"] = float64(p.Services), float64(p.Endpoints), float64(p.Changes)
}
