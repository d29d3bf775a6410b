// Package balance picks the endpoint for each request: power of two choices
// (P2C) over a peak-EWMA load estimate, the default of Linkerd and of tower's
// p2c::Balance with PeakEwma.
//
// The decision logic is pure: time and randomness are injected through
// [Options], so the same code runs in the proxy and in a virtual-time
// simulator. [Balancer.Pick], [Node.Start] and [Node.Finish] do not allocate
// and take no lock shared between nodes; [Balancer.Update] copies on write.
package balance

import (
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// Defaults applied by [Options] fields left at zero.
const (
	// DefaultRTT is Linkerd's default_rtt: the estimate of an endpoint
	// before anything is known about it or its peers.
	DefaultRTT = 30 * time.Millisecond
	// DefaultDecay is the EWMA decay time constant. Linkerd uses 10 s;
	// measured here, with millisecond hops on a busy machine, a single
	// latency spike then kept a healthy replica at a few percent of the
	// traffic for seconds on end (a peak takes τ·ln(peak/normal) to fade).
	// At 2 s a spike fades within about a second, while a slow replica
	// still shows its latency with every answer, each one a new peak.
	DefaultDecay = 2 * time.Second
	// DefaultFailurePenalty is the round-trip time recorded for a failed
	// attempt.
	DefaultFailurePenalty = time.Second
)

// Options configures a [Balancer]. The zero value is ready to use: every
// zero or nil field takes the default stated on it.
type Options struct {
	// DefaultRTT is the initial estimate of an endpoint when no peer has
	// one. Zero or negative means [DefaultRTT] (30ms).
	DefaultRTT time.Duration
	// Decay is the time constant tau of the moving average: an estimate
	// left alone for tau keeps 1/e of its weight. Zero or negative means
	// [DefaultDecay] (2s).
	Decay time.Duration
	// FailurePenalty is the round-trip time recorded for a failed attempt
	// (connection refused, reset, timed out) when it took less than that.
	// Zero or negative means [DefaultFailurePenalty] (1s).
	FailurePenalty time.Duration
	// Now reads the clock. Nil means time.Now. It must be safe for
	// concurrent use and should be monotonic.
	Now func() time.Time
	// IntN returns a uniform random int in [0, n) for n > 0. Nil means
	// math/rand/v2.IntN. It must be safe for concurrent use.
	IntN func(n int) int
	// RoundRobin replaces P2C over peak-EWMA with plain rotation, blind
	// to latency. It exists to compare against (the slow-replica scenario
	// measures what latency awareness buys); false is the default policy.
	RoundRobin bool
}

// config is the normalized, immutable form of Options shared by a Balancer
// and its nodes.
type config struct {
	defaultRTT float64 // nanoseconds
	tau        float64 // nanoseconds
	penalty    time.Duration
	now        func() time.Time
	intN       func(n int) int
	roundRobin bool
}

func newConfig(o Options) *config {
	c := &config{
		defaultRTT: float64(o.DefaultRTT),
		tau:        float64(o.Decay),
		penalty:    o.FailurePenalty,
		now:        o.Now,
		intN:       o.IntN,
		roundRobin: o.RoundRobin,
	}
	if o.DefaultRTT <= 0 {
		c.defaultRTT = float64(DefaultRTT)
	}
	if o.Decay <= 0 {
		c.tau = float64(DefaultDecay)
	}
	if o.FailurePenalty <= 0 {
		c.penalty = DefaultFailurePenalty
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.intN == nil {
		c.intN = rand.IntN
	}
	return c
}

// Balancer spreads requests over the endpoints of one authority.
//
// The zero value is a balancer with default [Options] and no endpoint.
// A Balancer must not be copied after first use. All methods are safe for
// concurrent use; Pick is meant to be called from many goroutines while
// Update runs rarely.
type Balancer struct {
	mu   sync.Mutex // serializes Update; Pick never takes it
	cfg  *config    // set by New or by the first Update; guarded by mu
	opts Options    // as given to New; guarded by mu
	set  atomic.Pointer[nodeSet]
	next atomic.Uint64 // round-robin position
}

// nodeSet is an immutable snapshot of the nodes, published atomically.
type nodeSet struct {
	nodes []*Node
	cfg   *config
}

// New returns a balancer with no endpoint; call [Balancer.Update] to give it
// some.
func New(o Options) *Balancer {
	return &Balancer{cfg: newConfig(o), opts: o}
}

// Update replaces the endpoints with eps, a full snapshot.
//
// An endpoint whose Addr was already known keeps its node, and so its
// estimate and in-flight count, provided Meshed, Identity and Protocol are
// unchanged; a new Weight or Labels is taken over in place. Otherwise (new
// Addr, or a changed Meshed, Identity or Protocol) it gets a fresh node whose
// estimate is the mean of the current decayed estimates of the nodes kept by
// this update, or DefaultRTT when none is kept, so a restored replica gets
// traffic again promptly rather than waiting out a stale penalty. Nodes whose
// Addr is gone are dropped; a caller still holding one may Finish it safely.
//
// When eps holds an Addr twice, the first occurrence wins. eps is not
// retained: Update copies what it keeps, Labels included. A nil or empty eps
// leaves the balancer with no endpoint.
func (b *Balancer) Update(eps []endpoint.Endpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg == nil {
		b.cfg = newConfig(b.opts)
	}
	cfg := b.cfg

	var old map[string]*Node
	if s := b.set.Load(); s != nil && len(s.nodes) > 0 {
		old = make(map[string]*Node, len(s.nodes))
		for _, n := range s.nodes {
			old[n.info.Load().ep.Addr] = n
		}
	}

	nodes := make([]*Node, 0, len(eps))
	seen := make(map[string]struct{}, len(eps))
	fresh := make([]int, 0, len(eps)) // indexes in nodes needing an estimate
	now := cfg.now()
	var sum float64
	var kept int
	for i := range eps {
		ep := &eps[i]
		if _, dup := seen[ep.Addr]; dup {
			continue
		}
		seen[ep.Addr] = struct{}{}
		inf := newInfo(ep)
		if n, ok := old[ep.Addr]; ok && sameIdentity(&n.info.Load().ep, ep) {
			n.info.Store(inf)
			sum += n.estimateAt(now)
			kept++
			nodes = append(nodes, n)
			continue
		}
		n := &Node{cfg: cfg}
		n.info.Store(inf)
		fresh = append(fresh, len(nodes))
		nodes = append(nodes, n)
	}

	start := cfg.defaultRTT
	if kept > 0 {
		start = sum / float64(kept)
	}
	for _, i := range fresh {
		nodes[i].est = start
		nodes[i].stamp = now
	}
	b.set.Store(&nodeSet{nodes: nodes, cfg: cfg})
}

// sameIdentity reports whether b describes the same backend as a, for the
// purpose of keeping its statistics: everything but Weight and Labels.
func sameIdentity(a, b *endpoint.Endpoint) bool {
	return a.Addr == b.Addr && a.Meshed == b.Meshed &&
		a.Identity == b.Identity && a.Protocol == b.Protocol
}

// Len returns the number of endpoints. It is zero for the zero Balancer.
func (b *Balancer) Len() int {
	s := b.set.Load()
	if s == nil {
		return 0
	}
	return len(s.nodes)
}

// Nodes returns the current nodes (a snapshot; do not modify the slice).
func (b *Balancer) Nodes() []*Node {
	if s := b.set.Load(); s != nil {
		return s.nodes
	}
	return nil
}

// Pick chooses a node among the current ones that are not in tried (compared
// by pointer; nil and stale entries are ignored). It returns false when no
// node is left. With one candidate it returns it; with more it draws two
// distinct candidates uniformly at random and returns the one with the lower
// [Node.Load], ties broken by fewer requests in flight, then at random. A
// candidate that has never answered successfully and has nothing in flight
// is chosen outright, so that a new endpoint is measured rather than judged
// by its prior.
//
// Pick does not allocate. It is O(1) when tried is empty and
// O(len(nodes)·len(tried)) otherwise; tried is meant to hold the few nodes
// a retry already failed on.
func (b *Balancer) Pick(tried []*Node) (*Node, bool) {
	s := b.set.Load()
	if s == nil {
		return nil, false
	}
	nodes := s.nodes
	m := len(nodes)
	if len(tried) > 0 {
		m = 0
		for _, n := range nodes {
			if !contains(tried, n) {
				m++
			}
		}
		if m == len(nodes) {
			tried = nil // nothing to skip: use the O(1) path
		}
	}
	switch m {
	case 0:
		return nil, false
	case 1:
		return nth(nodes, tried, 0), true
	}
	if s.cfg.roundRobin {
		return nth(nodes, tried, int(b.next.Add(1)%uint64(m))), true
	}
	i := s.cfg.intN(m)
	j := s.cfg.intN(m - 1)
	if j >= i {
		j++
	}
	// (i, j) is a uniformly random ordered pair of distinct indexes, so
	// keeping the first on a full tie is a random tie-break.
	x, y := nth(nodes, tried, i), nth(nodes, tried, j)
	// Probe a node nothing is known about yet, one request at a time: its
	// prior may rank it below peers it never gets compared fairly with.
	if !x.seen.Load() && x.inFlight.Load() == 0 {
		return x, true
	}
	if !y.seen.Load() && y.inFlight.Load() == 0 {
		return y, true
	}
	now := s.cfg.now()
	lx, ly := x.Load(now), y.Load(now)
	switch {
	case lx < ly:
		return x, true
	case ly < lx:
		return y, true
	case y.InFlight() < x.InFlight():
		return y, true
	default:
		return x, true
	}
}

// nth returns the k-th node of nodes that is not in skip.
func nth(nodes, skip []*Node, k int) *Node {
	if len(skip) == 0 {
		return nodes[k]
	}
	for _, n := range nodes {
		if contains(skip, n) {
			continue
		}
		if k == 0 {
			return n
		}
		k--
	}
	panic("balance: candidate index out of range") // unreachable: k < count
}

func contains(ns []*Node, n *Node) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}

// Node is one endpoint inside a [Balancer], with its load statistics. Nodes
// are created by [Balancer.Update]; the zero Node is not usable. A node keeps
// its identity across updates as long as its endpoint survives, so it can be
// compared by pointer (for example in Pick's tried list).
type Node struct {
	cfg      *config
	info     atomic.Pointer[info]
	inFlight atomic.Int64

	// busySince is when the node last made progress while it had
	// requests in flight (Unix ns from Options.Now): set when its first
	// request starts and whenever one finishes. See Load.
	busySince atomic.Int64

	mu    sync.Mutex
	est   float64     // peak-EWMA estimate in nanoseconds, as of stamp
	stamp time.Time   // when est was last updated
	seen  atomic.Bool // est comes from a real sample, not the prior
}

// info is the immutable description of a node, replaced as a whole when
// Update changes its Weight or Labels.
type info struct {
	ep     endpoint.Endpoint
	weight float64 // ep.Weight, with zero meaning 1
}

func newInfo(ep *endpoint.Endpoint) *info {
	inf := &info{ep: *ep, weight: float64(ep.Weight)}
	inf.ep.Labels = maps.Clone(ep.Labels)
	if inf.weight == 0 {
		inf.weight = 1
	}
	return inf
}

// Endpoint returns the endpoint the node stands for. The result is shared
// and must be treated as read-only; a later Update that changes the Weight
// or Labels installs a new value rather than modifying this one.
func (n *Node) Endpoint() *endpoint.Endpoint {
	return &n.info.Load().ep
}

// Start records a request sent to the node and returns its start stamp,
// read from Options.Now. Every Start must be paired with exactly one
// [Node.Finish] given the returned stamp, whatever the outcome (success,
// failure, timeout, cancellation); otherwise the node looks busy forever.
func (n *Node) Start() time.Time {
	now := n.cfg.now()
	if n.inFlight.Add(1) == 1 {
		n.busySince.Store(now.UnixNano())
	}
	return now
}

// Finish records the end of a request begun by [Node.Start] at start. The
// observed round-trip time is Now()-start; when failed, it is at least
// Options.FailurePenalty, so that a fast failure (connection refused) is not
// mistaken for a fast endpoint while a slow one (a timeout) counts in full.
func (n *Node) Finish(start time.Time, failed bool) {
	now := n.cfg.now()
	n.busySince.Store(now.UnixNano())
	n.inFlight.Add(-1)
	rtt := now.Sub(start)
	if rtt < 0 {
		rtt = 0
	}
	if failed && rtt < n.cfg.penalty && !plant.On(plant.FailureBiasOff) {
		rtt = n.cfg.penalty
	}
	n.observe(now, float64(rtt), !failed)
}

// observe folds one round-trip time (in nanoseconds) seen at now into the
// estimate.
//
// The estimate E follows a continuous-time moving average with time
// constant tau. Over an interval dt = now - stamp during which the signal
// held the value r, dE/dt = (r - E)/tau integrates to
//
//	E' = w·E + (1-w)·r,   w = exp(-dt/tau),
//
// so a sample's weight grows with the time it stands for: the memory is tau
// in time whatever the request rate. Reading the estimate with no new sample
// (estimateAt) uses r = 0, which gives the decay toward zero of an idle
// endpoint, E·w: with no evidence, an endpoint is assumed to have recovered,
// which is what lets a penalized or slow endpoint be probed again.
//
// Peak: the estimate never ends below the latest sample,
//
//	E' = max(r, w·E + (1-w)·r).
//
// This is tower's PeakEwma written as one expression: when r > E it gives r
// (bad news is believed at once); when r <= E the average is already >= r.
// It is continuous and non-decreasing in r.
//
// The first successful sample may only lower the initial estimate: that
// one is a prior (DefaultRTT, or the peers' mean), not evidence, so a
// sample below it replaces it. Averaged in, a 2 ms sample barely moved a
// 30 ms prior (the weight is time, not samples), and every node of a fresh
// balancer sat near the same decaying prior for tens of seconds, apart by
// microscopic differences that P2C's strict comparison turned into a
// fixed ranking: three equal replicas got 64 %, 32 % and 4 % of the
// traffic. A first sample above the prior is not taken: it carries the
// dial and a freshly started process, and taken as a peak it kept a
// restored replica at under 1 % of the traffic for twenty seconds. A slow
// endpoint shows it again with its second answer, which is a peak.
func (n *Node) observe(now time.Time, rtt float64, ok bool) {
	n.mu.Lock()
	w := n.weightSince(now)
	est := w*n.est + (1-w)*rtt
	switch {
	case ok && !n.seen.Load():
		est = min(n.est, rtt)
		n.seen.Store(true)
	case rtt > est:
		est = rtt
	}
	if !ok {
		// A failure is evidence too: the node is no longer unknown, and
		// Pick stops probing it outright. An endpoint that never answers
		// would otherwise be probed every time it is drawn.
		n.seen.Store(true)
	}
	n.est = est
	if now.After(n.stamp) {
		n.stamp = now
	}
	n.mu.Unlock()
}

// weightSince returns exp(-(now-stamp)/tau), 1 when now is not after stamp
// (concurrent Finish calls may read the clock out of order). n.mu is held.
func (n *Node) weightSince(now time.Time) float64 {
	dt := now.Sub(n.stamp)
	if dt <= 0 {
		return 1
	}
	return math.Exp(-float64(dt) / n.cfg.tau)
}

// estimateAt returns the estimate in nanoseconds decayed to now.
func (n *Node) estimateAt(now time.Time) float64 {
	n.mu.Lock()
	e := n.est * n.weightSince(now)
	n.mu.Unlock()
	return e
}

// Load returns the node's cost at now, the quantity Pick minimizes:
// the decayed estimate in nanoseconds, times (requests in flight + 1),
// divided by the endpoint's weight (zero weight counts as 1). A weight of k
// thus lets a node carry about k times the concurrency of a weight-1 peer
// with the same latency.
//
// A node with requests in flight that has finished none for longer than
// its estimate is taken to be at least that slow: the estimate learns only
// from answers, so a stalled endpoint (a stopped process, a full queue)
// would otherwise look as fast as before, its estimate even decaying, and
// keep drawing requests until the first of them timed out.
func (n *Node) Load(now time.Time) float64 {
	k := n.inFlight.Load()
	if k < 0 {
		k = 0 // unpaired Finish: do not let the node look better than idle
	}
	est := n.estimateAt(now)
	if k > 0 {
		if silent := float64(now.UnixNano() - n.busySince.Load()); silent > est {
			est = silent
		}
	}
	return est * float64(k+1) / n.info.Load().weight
}

// InFlight returns the number of requests started and not yet finished.
func (n *Node) InFlight() int {
	return int(n.inFlight.Load())
}
