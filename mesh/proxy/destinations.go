package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/balance"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
)

// discoveryWait bounds how long a first request waits for discovery.
const discoveryWait = 3 * time.Second

// An authority discovery does not know is remembered as unknown, without a
// watch, for unknownTTL: a client sending random Host headers costs a map
// entry each, and never a watch. At most maxUnknown are remembered; beyond
// it the record starts over.
const (
	unknownTTL = 5 * time.Second
	maxUnknown = 4096
)

// destinations resolves authorities to balancers, watching each one's
// endpoints from its first request on. Every distinct Host or :authority a
// client sends asks discovery, so what that leaves behind is bounded: an
// authority discovery does not know is dropped with its watch at once and
// remembered as unknown for a few seconds; a known one unused for the idle
// timeout is forgotten and its watch cancelled, and when the table is full
// the least recently used make room. A client sending random authorities
// therefore costs bounded memory, not a table that grows until every new
// authority fails.
type destinations struct {
	src     endpoint.Source
	policy  route.Source // nil: no routes from the control plane
	seed    uint64       // of the control plane's routes' backoff jitter
	opts    balance.Options
	peers   *peerIdentities // the identities meshed endpoints must prove; nil without mTLS
	idle    time.Duration
	max     int
	log     *slog.Logger
	evicted *atomic.Uint64 // entries forgotten, idle or to make room

	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.RWMutex
	m       map[string]*destination
	unknown map[string]int64 // authority -> until when (Unix ns) it is taken as unknown
}

type destination struct {
	authority string
	bal       *balance.Balancer
	ready     chan struct{}
	once      sync.Once
	exists    atomic.Bool
	// used is when a request last asked for the authority, in Unix
	// nanoseconds, updated at most once a second.
	used   atomic.Int64
	cancel context.CancelFunc
	health health // breakers and backpressure of the endpoints

	// route is the authority's route from the control plane; nil when it
	// has none. policyReady is closed once the first policy arrived, or
	// the source gave up; nil without a policy source.
	route       atomic.Pointer[route.Compiled]
	policyReady chan struct{}
	policyOnce  sync.Once

	mu   sync.Mutex
	ids  map[string]string // meshed endpoint address -> identity, as last learned
	gone bool              // forgotten: learn nothing more
}

func newDestinations(src endpoint.Source, opts balance.Options, peers *peerIdentities, idle time.Duration, max int, log *slog.Logger, evicted *atomic.Uint64) *destinations {
	ctx, cancel := context.WithCancel(context.Background())
	return &destinations{
		src: src, opts: opts, peers: peers, idle: idle, max: max, log: log, evicted: evicted,
		ctx: ctx, cancel: cancel, m: make(map[string]*destination), unknown: make(map[string]int64),
	}
}

// get returns the destination of authority, or nil when discovery does
// not know it.
func (ds *destinations) get(ctx context.Context, authority string) (*destination, error) {
	if ds.src == nil {
		return nil, nil
	}
	now := time.Now().UnixNano()
	ds.mu.RLock()
	d := ds.m[authority]
	until, unknown := ds.unknown[authority]
	ds.mu.RUnlock()
	if d == nil {
		if unknown && now < until {
			return nil, nil
		}
		d = ds.add(authority, now)
	}
	if now-d.used.Load() > int64(time.Second) {
		d.used.Store(now)
	}
	select {
	case <-d.ready:
	default:
		t := time.NewTimer(discoveryWait)
		select {
		case <-d.ready:
			t.Stop()
		case <-t.C:
			return nil, errDiscovery
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if !d.exists.Load() {
		ds.dropUnknown(d, now)
		return nil, nil
	}
	if d.policyReady != nil {
		select {
		case <-d.policyReady:
		default:
			ds.waitPolicy(ctx, d)
		}
	}
	return d, nil
}

// waitPolicy waits for d's first policy, at most discoveryWait: a control
// plane that serves endpoints but not policy delays the authority's first
// requests by that much once, which then go without a route.
func (ds *destinations) waitPolicy(ctx context.Context, d *destination) {
	t := time.NewTimer(discoveryWait)
	defer t.Stop()
	select {
	case <-d.policyReady:
	case <-ctx.Done():
	case <-t.C:
		d.policyOnce.Do(func() {
			ds.log.Warn("no policy from the control plane in time; the authority's requests go without a route until it arrives",
				"authority", d.authority, "waited", discoveryWait)
			close(d.policyReady)
		})
	}
}

// Route is d's route from the control plane, nil when it has none.
func (d *destination) Route() *route.Compiled { return d.route.Load() }

// dropUnknown forgets d, which discovery does not know, and remembers its
// authority as unknown for unknownTTL.
func (ds *destinations) dropUnknown(d *destination, now int64) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.m[d.authority] != d {
		return // already gone
	}
	delete(ds.m, d.authority)
	d.cancel()
	d.forget(ds.peers)
	if len(ds.unknown) >= maxUnknown {
		clear(ds.unknown)
	}
	ds.unknown[d.authority] = now + int64(unknownTTL)
}

// add starts watching authority, making room first when the table is full.
func (ds *destinations) add(authority string, now int64) *destination {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if d := ds.m[authority]; d != nil {
		return d
	}
	if len(ds.m) >= ds.max {
		ds.evictOldestLocked()
	}
	delete(ds.unknown, authority)
	ctx, cancel := context.WithCancel(ds.ctx)
	d := &destination{authority: authority, bal: balance.New(ds.opts), ready: make(chan struct{}), cancel: cancel}
	d.used.Store(now)
	ds.m[authority] = d
	go ds.src.Watch(ctx, authority, func(s endpoint.Snapshot) {
		if plant.On(plant.UpdatesIgnored) && d.exists.Load() {
			return // the first endpoints stay, whatever discovery says later
		}
		d.exists.Store(s.Exists)
		d.learn(ds.peers, s.Endpoints) // identities first: the balancer may pick at once
		d.bal.Update(s.Endpoints)
		d.once.Do(func() { close(d.ready) })
	})
	if ds.policy != nil {
		d.policyReady = make(chan struct{})
		go ds.watchPolicy(ctx, d)
	}
	return d
}

// watchPolicy keeps d's route as the control plane's policy gives it
// until ctx ends, and marks the policy ready when the source gives up.
func (ds *destinations) watchPolicy(ctx context.Context, d *destination) {
	ready := func() { d.policyOnce.Do(func() { close(d.policyReady) }) }
	defer ready()
	got := false
	ds.policy.Watch(ctx, d.authority, func(r *route.Route) {
		if plant.On(plant.PolicyUpdatesIgnored) && got {
			return // the first policy stays, whatever the control plane says later
		}
		got = true
		if r == nil {
			d.route.Store(nil)
		} else {
			c, err := route.Compile(*r, d.route.Load(), ds.seed)
			if err != nil { // the source checks; this is the last line
				ds.log.Warn("control plane sent a route the proxy refuses; keeping the previous one", "authority", d.authority, "err", err)
				return
			}
			d.route.Store(c)
		}
		ready()
	})
}

// evictOldestLocked forgets the least recently used eighth of the table:
// one sort pays for many insertions while an attacker floods it.
func (ds *destinations) evictOldestLocked() {
	all := make([]*destination, 0, len(ds.m))
	for _, d := range ds.m {
		all = append(all, d)
	}
	slices.SortFunc(all, func(a, b *destination) int { return int(a.used.Load() - b.used.Load()) })
	n := max(1, len(all)/8)
	for _, d := range all[:n] {
		ds.forgetLocked(d)
	}
	ds.log.Warn("too many authorities: forgot the least recently used", "forgotten", n, "max", ds.max)
}

// forgetLocked removes d: its watch ends, the identities it vouched for are
// released. A request that already holds d finishes with it.
func (ds *destinations) forgetLocked(d *destination) {
	delete(ds.m, d.authority)
	d.cancel()
	d.forget(ds.peers)
	ds.evicted.Add(1)
}

// expire forgets, every quarter of the idle timeout, the authorities no
// request asked for during a whole idle timeout, until ctx is done.
func (ds *destinations) expire(ctx context.Context) {
	t := time.NewTicker(ds.idle / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ds.sweep(now)
		}
	}
}

// sweep forgets the authorities unused since now minus the idle timeout.
func (ds *destinations) sweep(now time.Time) {
	cutoff := now.Add(-ds.idle).UnixNano()
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for _, d := range ds.m {
		if d.used.Load() < cutoff {
			ds.forgetLocked(d)
		}
	}
	for a, until := range ds.unknown {
		if until < now.UnixNano() {
			delete(ds.unknown, a)
		}
	}
}

func (ds *destinations) len() int {
	ds.mu.RLock()
	defer ds.mu.RUnlock()
	return len(ds.m)
}

func (ds *destinations) close() { ds.cancel() }

// learn records the identities of d's meshed endpoints in peers, releasing
// the ones the previous snapshot vouched for and this one no longer does.
func (d *destination) learn(peers *peerIdentities, eps []endpoint.Endpoint) {
	if peers == nil {
		return
	}
	next := make(map[string]string, len(eps))
	for i := range eps {
		if ep := &eps[i]; ep.Meshed && ep.Identity != "" {
			next[ep.Addr] = ep.Identity
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return
	}
	peers.replace(d.authority, d.ids, next)
	d.ids = next
}

// forget releases every identity d vouched for.
func (d *destination) forget(peers *peerIdentities) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if peers != nil {
		peers.replace(d.authority, d.ids, nil)
	}
	d.ids, d.gone = nil, true
}

// writeBalancers lists every watched authority's endpoints with their
// latency estimate and requests in flight: what the balancer decides on.
func (p *Proxy) writeBalancers(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ds := p.destinations
	ds.mu.RLock()
	all := make([]*destination, 0, len(ds.m))
	for _, d := range ds.m {
		all = append(all, d)
	}
	ds.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return all[i].authority < all[j].authority })
	now := time.Now()
	for _, d := range all {
		fmt.Fprintf(w, "%s exists=%v idle_s=%.0f\n", d.authority, d.exists.Load(), now.Sub(time.Unix(0, d.used.Load())).Seconds())
		for _, n := range d.bal.Nodes() {
			ep := n.Endpoint()
			fmt.Fprintf(w, "  %s meshed=%v in_flight=%d load_ms=%.3f breaker=%s\n", ep.Addr, ep.Meshed, n.InFlight(), n.Load(now)/1e6, d.breakerState(n, now))
		}
	}
}
