package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// fakeClock is a manually advanced clock, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time          { return epoch.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) Set(t time.Time)         { c.ns.Store(int64(t.Sub(epoch))) }

// seededRand is a deterministic IntN, safe for concurrent use.
type seededRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newSeededRand(seed uint64) *seededRand {
	return &seededRand{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (s *seededRand) IntN(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.IntN(n)
}

func newTestBalancer(t testing.TB, seed uint64, eps ...endpoint.Endpoint) (*Balancer, *fakeClock) {
	t.Helper()
	clk := &fakeClock{}
	// The tests' arithmetic (penalties decaying over "10 s of traffic")
	// is written for a 10 s time constant, whatever the default.
	b := New(Options{Now: clk.Now, IntN: newSeededRand(seed).IntN, Decay: 10 * time.Second})
	b.Update(eps)
	if b.Len() != len(eps) {
		t.Fatalf("Len() = %d after Update with %d endpoints", b.Len(), len(eps))
	}
	return b, clk
}

func eps(addrs ...string) []endpoint.Endpoint {
	out := make([]endpoint.Endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = endpoint.Endpoint{Addr: a}
	}
	return out
}

func mustPick(t testing.TB, b *Balancer, tried []*Node) *Node {
	t.Helper()
	n, ok := b.Pick(tried)
	if !ok || n == nil {
		t.Fatalf("Pick(%d tried) = %v, %v; want a node", len(tried), n, ok)
	}
	return n
}

func nodeFor(t testing.TB, b *Balancer, addr string) *Node {
	t.Helper()
	for _, n := range b.set.Load().nodes {
		if n.Endpoint().Addr == addr {
			return n
		}
	}
	t.Fatalf("no node for %s", addr)
	return nil
}

// runSequential sends n requests one after the other: pick, start, advance
// the clock by the picked endpoint's latency, finish. It returns the count
// of picks per Addr.
func runSequential(t testing.TB, b *Balancer, clk *fakeClock, latency map[string]time.Duration, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		nd := mustPick(t, b, nil)
		addr := nd.Endpoint().Addr
		got[addr]++
		start := nd.Start()
		clk.Advance(latency[addr])
		nd.Finish(start, false)
	}
	return got
}

// runClosedLoop simulates conc clients that each send a request as soon as
// their previous one finished, so requests overlap and in-flight counts
// matter. It runs until n requests have finished and returns the count of
// picks per Addr.
func runClosedLoop(t testing.TB, b *Balancer, clk *fakeClock, latency map[string]time.Duration, conc, n int) map[string]int {
	t.Helper()
	type req struct {
		node  *Node
		start time.Time
		end   time.Time
	}
	got := map[string]int{}
	pending := make([]req, 0, conc)
	for done := 0; done < n; done++ {
		for len(pending) < conc {
			nd := mustPick(t, b, nil)
			addr := nd.Endpoint().Addr
			got[addr]++
			start := nd.Start()
			pending = append(pending, req{nd, start, start.Add(latency[addr])})
		}
		first := 0
		for i, r := range pending {
			if r.end.Before(pending[first].end) {
				first = i
			}
		}
		r := pending[first]
		pending = append(pending[:first], pending[first+1:]...)
		clk.Set(r.end)
		r.node.Finish(r.start, false)
	}
	for _, r := range pending { // drain, so in-flight ends at zero
		r.node.Finish(r.start, false)
	}
	return got
}

func share(got map[string]int, addr string) float64 {
	total := 0
	for _, c := range got {
		total += c
	}
	return float64(got[addr]) / float64(total)
}

func TestAvoidsSlowEndpointSequential(t *testing.T) {
	b, clk := newTestBalancer(t, 1, eps("fast-a", "fast-b", "slow")...)
	lat := map[string]time.Duration{"fast-a": 10 * time.Millisecond, "fast-b": 10 * time.Millisecond, "slow": 100 * time.Millisecond}
	runSequential(t, b, clk, lat, 500) // warm-up
	got := runSequential(t, b, clk, lat, 5000)
	if s := share(got, "slow"); s > 0.10 {
		t.Errorf("slow endpoint got %.1f%% of requests, want <= 10%% (counts %v)", 100*s, got)
	}
	if got["fast-a"] == 0 || got["fast-b"] == 0 {
		t.Errorf("a fast endpoint got no traffic: %v", got)
	}
	t.Logf("counts %v", got)
}

func TestAvoidsSlowEndpointConcurrent(t *testing.T) {
	b, clk := newTestBalancer(t, 2, eps("fast-a", "fast-b", "slow")...)
	lat := map[string]time.Duration{"fast-a": 10 * time.Millisecond, "fast-b": 10 * time.Millisecond, "slow": 100 * time.Millisecond}
	runClosedLoop(t, b, clk, lat, 8, 500)
	got := runClosedLoop(t, b, clk, lat, 8, 5000)
	if s := share(got, "slow"); s > 0.10 {
		t.Errorf("slow endpoint got %.1f%% of requests, want <= 10%% (counts %v)", 100*s, got)
	}
	t.Logf("counts %v", got)
}

func TestInFlightSpreadsEqualEndpoints(t *testing.T) {
	b, clk := newTestBalancer(t, 3, eps("a", "b", "c")...)
	lat := map[string]time.Duration{"a": 10 * time.Millisecond, "b": 10 * time.Millisecond, "c": 10 * time.Millisecond}
	got := runClosedLoop(t, b, clk, lat, 12, 6000)
	for _, a := range []string{"a", "b", "c"} {
		if s := share(got, a); s < 0.25 || s > 0.42 {
			t.Errorf("%s got %.1f%% of requests, want about a third (counts %v)", a, 100*s, got)
		}
	}
}

func TestBusyNodeIsAvoided(t *testing.T) {
	b, _ := newTestBalancer(t, 4, eps("a", "b")...)
	busy := nodeFor(t, b, "a")
	for range 5 {
		busy.Start() // never finished: five requests hang on a
	}
	for i := range 100 {
		if n := mustPick(t, b, nil); n == busy {
			t.Fatalf("pick %d chose the node with 5 requests in flight over an idle equal peer", i)
		}
	}
}

func TestFailedEndpointAvoidedThenRetried(t *testing.T) {
	b, clk := newTestBalancer(t, 5, eps("a", "b", "c")...)
	lat := map[string]time.Duration{"a": 10 * time.Millisecond, "b": 10 * time.Millisecond, "c": 10 * time.Millisecond}
	runSequential(t, b, clk, lat, 1000)

	bad := nodeFor(t, b, "c")
	bad.Finish(bad.Start(), true) // connection refused: takes no time
	if got, want := bad.Load(clk.Now()), float64(DefaultFailurePenalty); got != want {
		t.Fatalf("Load right after a failure = %v, want the penalty %v", got, want)
	}

	// For the next 10s of traffic (1000 requests), c's decayed penalty
	// (>= 1s·e^-1 ≈ 368ms) stays far above its peers' 10ms.
	if got := runSequential(t, b, clk, lat, 1000); got["c"] != 0 {
		t.Fatalf("failed endpoint picked %d times right after failing", got["c"])
	}

	// The penalty decays below 10ms after tau·ln(100) ≈ 46s of traffic:
	// c must be probed again before 100s of traffic have passed.
	for i := range 10000 {
		if got := runSequential(t, b, clk, lat, 1); got["c"] == 1 {
			t.Logf("failed endpoint probed again after %d more requests", i+1000)
			// One good sample standing for ~46s outweighs the decayed
			// penalty: E' = w·E + (1-w)·10ms with w = e^-4.6 ≈ 0.01.
			if l := bad.Load(clk.Now()); l > float64(25*time.Millisecond) {
				t.Errorf("after a good response Load = %v, want close to 10ms", time.Duration(l))
			}
			return
		}
	}
	t.Fatal("failed endpoint never tried again after its penalty decayed")
}

func TestFailurePenaltyIsAFloor(t *testing.T) {
	b, clk := newTestBalancer(t, 6, eps("a")...)
	n := nodeFor(t, b, "a")
	start := n.Start()
	clk.Advance(5 * time.Second) // a timeout, slower than the penalty
	n.Finish(start, true)
	if got, want := n.Load(clk.Now()), float64(5*time.Second); got != want {
		t.Errorf("Load after a 5s failed attempt = %v, want %v", time.Duration(got), time.Duration(want))
	}
}

func TestEstimateFormula(t *testing.T) {
	const tau = 10 * time.Second
	clk := &fakeClock{}
	b := New(Options{Now: clk.Now, Decay: tau, DefaultRTT: 20 * time.Millisecond})
	b.Update(eps("a"))
	n := nodeFor(t, b, "a")
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-6*want {
			t.Errorf("%s: got %v, want %v", what, time.Duration(got), time.Duration(want))
		}
	}
	near("initial", n.Load(clk.Now()), float64(20*time.Millisecond))

	// Idle decay toward zero.
	clk.Advance(tau)
	near("after tau idle", n.Load(clk.Now()), float64(20*time.Millisecond)*math.Exp(-1))

	// The first answer may only lower the prior.
	s := n.Start()
	clk.Advance(5 * time.Millisecond)
	n.Finish(s, false)
	near("first answer below the prior", n.Load(clk.Now()), float64(5*time.Millisecond))

	// Peak: a sample above the estimate replaces it.
	s = n.Start()
	clk.Advance(50 * time.Millisecond)
	n.Finish(s, false)
	near("peak", n.Load(clk.Now()), float64(50*time.Millisecond))

	// In flight multiplies the load.
	s1, s2 := n.Start(), n.Start()
	near("two in flight", n.Load(clk.Now()), 3*float64(50*time.Millisecond))

	// Below the estimate: E' = w·E + (1-w)·r, w = exp(-dt/tau).
	clk.Advance(time.Second)
	n.Finish(s1, false) // r = 1s > E: peak again
	near("peak 1s", n.Load(clk.Now())/2, float64(time.Second))
	clk.Advance(2 * time.Second)
	w := math.Exp(-0.2)
	n.Finish(s2, false) // r = 3s > E: peak
	near("peak 3s", n.Load(clk.Now()), float64(3*time.Second))
	s3 := n.Start()
	clk.Advance(2 * time.Second)
	n.Finish(s3, false) // r = 2s < E = 3s
	near("average", n.Load(clk.Now()), w*float64(3*time.Second)+(1-w)*float64(2*time.Second))
}

func TestPickTried(t *testing.T) {
	var zero Balancer
	if n, ok := zero.Pick(nil); ok || n != nil {
		t.Errorf("zero Balancer Pick = %v, %v; want nil, false", n, ok)
	}
	if zero.Len() != 0 {
		t.Errorf("zero Balancer Len = %d", zero.Len())
	}

	b, _ := newTestBalancer(t, 7, eps("a", "b", "c")...)
	a, bb, c := nodeFor(t, b, "a"), nodeFor(t, b, "b"), nodeFor(t, b, "c")
	for range 200 {
		if n := mustPick(t, b, []*Node{a, nil}); n == a {
			t.Fatal("Pick returned a tried node")
		}
		if n := mustPick(t, b, []*Node{a, c}); n != bb {
			t.Fatalf("Pick with a and c tried = %s, want b", n.Endpoint().Addr)
		}
	}
	if n, ok := b.Pick([]*Node{c, bb, a}); ok || n != nil {
		t.Errorf("Pick with all tried = %v, %v; want nil, false", n, ok)
	}

	// A node from an older snapshot in tried is ignored.
	b.Update(eps("d", "e"))
	seen := map[string]bool{}
	for range 100 {
		seen[mustPick(t, b, []*Node{a, bb, c}).Endpoint().Addr] = true
	}
	if !seen["d"] || !seen["e"] || len(seen) != 2 {
		t.Errorf("picks with stale tried = %v, want d and e", seen)
	}

	b.Update(nil)
	if n, ok := b.Pick(nil); ok || n != nil {
		t.Errorf("Pick with no endpoint = %v, %v; want nil, false", n, ok)
	}
}

func TestPickOneEndpoint(t *testing.T) {
	b, _ := newTestBalancer(t, 8, eps("only")...)
	only := nodeFor(t, b, "only")
	for range 10 {
		only.Start() // even a busy lone node is returned
	}
	if n := mustPick(t, b, nil); n != only {
		t.Fatalf("Pick = %p, want the only node %p", n, only)
	}
	if n, ok := b.Pick([]*Node{only}); ok {
		t.Fatalf("Pick with the only node tried = %v, true", n)
	}
}

func TestPickIsFairOnTies(t *testing.T) {
	b, _ := newTestBalancer(t, 9, eps("a", "b", "c", "d")...)
	got := map[string]int{}
	const picks = 8000
	for range picks {
		got[mustPick(t, b, nil).Endpoint().Addr]++
	}
	for a, c := range got {
		if s := float64(c) / picks; s < 0.2 || s > 0.3 {
			t.Errorf("%s got %.1f%% of tied picks, want about 25%% (%v)", a, 100*s, got)
		}
	}
}

func TestWeightsShiftShare(t *testing.T) {
	b, clk := newTestBalancer(t, 10,
		endpoint.Endpoint{Addr: "heavy", Weight: 3},
		endpoint.Endpoint{Addr: "light"}, // zero weight counts as 1
	)
	lat := map[string]time.Duration{"heavy": 10 * time.Millisecond, "light": 10 * time.Millisecond}
	runClosedLoop(t, b, clk, lat, 16, 500)
	got := runClosedLoop(t, b, clk, lat, 16, 8000)
	if s := share(got, "heavy"); s < 0.6 || s > 0.9 {
		t.Errorf("weight-3 endpoint got %.1f%% of requests, want about 75%% (counts %v)", 100*s, got)
	}
	t.Logf("counts %v", got)
}

func TestUpdate(t *testing.T) {
	b, clk := newTestBalancer(t, 11, eps("a", "b", "c")...)
	lat := map[string]time.Duration{"a": 10 * time.Millisecond, "b": 50 * time.Millisecond, "c": 10 * time.Millisecond}
	runSequential(t, b, clk, lat, 300)
	a, bn, c := nodeFor(t, b, "a"), nodeFor(t, b, "b"), nodeFor(t, b, "c")
	aStart := a.Start() // a request in flight across the update
	loadA, loadB := a.Load(clk.Now()), bn.Load(clk.Now())

	// c removed, b re-weighted and relabelled, d added, a duplicated.
	b.Update([]endpoint.Endpoint{
		{Addr: "a"},
		{Addr: "b", Weight: 2, Labels: map[string]string{"zone": "z1"}},
		{Addr: "d"},
		{Addr: "a", Identity: "ignored duplicate"},
	})
	if b.Len() != 3 {
		t.Fatalf("Len = %d, want 3 (a, b, d)", b.Len())
	}
	if nodeFor(t, b, "a") != a || nodeFor(t, b, "b") != bn {
		t.Fatal("surviving endpoints did not keep their node")
	}
	if a.InFlight() != 1 || a.Load(clk.Now()) != loadA {
		t.Errorf("a lost its stats: in flight %d, load %v (was %v)", a.InFlight(), a.Load(clk.Now()), loadA)
	}
	if got := bn.Load(clk.Now()); got != loadB/2 {
		t.Errorf("b load after weight 2 = %v, want %v", got, loadB/2)
	}
	if ep := bn.Endpoint(); ep.Weight != 2 || ep.Labels["zone"] != "z1" {
		t.Errorf("b endpoint not updated in place: %+v", ep)
	}
	if ep := a.Endpoint(); ep.Identity != "" {
		t.Errorf("duplicate Addr overrode the first occurrence: %+v", ep)
	}
	for range 200 {
		if mustPick(t, b, nil) == c {
			t.Fatal("removed endpoint picked")
		}
	}
	c.Finish(clk.Now(), false) // finishing a dropped node is harmless
	a.Finish(aStart, false)

	// d starts at the mean of the survivors' decayed estimates.
	now := clk.Now()
	d := nodeFor(t, b, "d")
	want := (a.estimateAt(now) + bn.estimateAt(now)) / 2
	if got := d.estimateAt(now); math.Abs(got-want) > float64(time.Millisecond) {
		t.Errorf("new endpoint estimate = %v, want about the peers' mean %v", time.Duration(got), time.Duration(want))
	}

	// A changed identity is a new backend: fresh node.
	b.Update([]endpoint.Endpoint{{Addr: "a", Identity: "spiffe://x/a"}, {Addr: "b", Weight: 2}, {Addr: "d"}})
	if nodeFor(t, b, "a") == a {
		t.Error("endpoint with a changed Identity kept its old node")
	}
}

func TestReaddedEndpointGetsTrafficPromptly(t *testing.T) {
	b, clk := newTestBalancer(t, 12, eps("a", "b", "c")...)
	lat := map[string]time.Duration{"a": 10 * time.Millisecond, "b": 10 * time.Millisecond, "c": 10 * time.Millisecond}
	runSequential(t, b, clk, lat, 300)
	c := nodeFor(t, b, "c")
	c.Finish(c.Start(), true) // c fails, then is removed by discovery...
	b.Update(eps("a", "b"))
	runSequential(t, b, clk, lat, 100)
	b.Update(eps("a", "b", "c")) // ...and comes back healthy.
	if nodeFor(t, b, "c") == c {
		t.Fatal("re-added endpoint reused its stale node")
	}
	got := runSequential(t, b, clk, lat, 60)
	if s := share(got, "c"); s < 0.15 {
		t.Errorf("re-added endpoint got %.1f%% of the next requests, want a fair share (counts %v)", 100*s, got)
	}
}

func TestZeroValueBalancer(t *testing.T) {
	var b Balancer
	b.Update(eps("a", "b"))
	n := mustPick(t, &b, nil)
	if l := n.Load(time.Now()); l <= 0 || l > float64(DefaultRTT) {
		t.Errorf("fresh node load %v, want at most DefaultRTT", l)
	}
	n.Finish(n.Start(), false)
}

func TestNoAllocs(t *testing.T) {
	for _, size := range []int{1, 3, 100} {
		addrs := make([]string, size)
		for i := range addrs {
			addrs[i] = fmt.Sprintf("10.0.0.%d:80", i)
		}
		b, _ := newTestBalancer(t, 13, eps(addrs...)...)
		first := mustPick(t, b, nil)
		tried := []*Node{first}
		if a := testing.AllocsPerRun(100, func() { b.Pick(nil) }); a != 0 {
			t.Errorf("%d endpoints: Pick(nil) allocates %v times", size, a)
		}
		if a := testing.AllocsPerRun(100, func() { b.Pick(tried) }); a != 0 {
			t.Errorf("%d endpoints: Pick(tried) allocates %v times", size, a)
		}
		if a := testing.AllocsPerRun(100, func() { first.Finish(first.Start(), false) }); a != 0 {
			t.Errorf("%d endpoints: Start/Finish allocates %v times", size, a)
		}
	}
}

// TestConcurrentUse is meant for -race: pickers, finishers and updates run
// at once.
func TestConcurrentUse(t *testing.T) {
	clk := &fakeClock{}
	b := New(Options{Now: clk.Now}) // default IntN: concurrent-safe
	sets := [][]endpoint.Endpoint{
		eps("a", "b", "c"),
		eps("b", "c", "d", "e"),
		{{Addr: "a", Weight: 3}, {Addr: "c", Labels: map[string]string{"k": "v"}}},
		nil,
	}
	b.Update(sets[0])
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			var tried []*Node
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n, ok := b.Pick(tried)
				if !ok {
					tried = tried[:0]
					continue
				}
				_ = n.Endpoint().Addr
				s := n.Start()
				clk.Advance(time.Duration(g+1) * time.Millisecond)
				n.Finish(s, i%7 == 0)
				_ = n.Load(clk.Now())
				if i%5 == 0 {
					tried = append(tried[:0], n)
				}
			}
		})
	}
	for i := range 200 {
		b.Update(sets[i%len(sets)])
		_ = b.Len()
	}
	close(stop)
	wg.Wait()
	for _, n := range b.set.Load().nodes {
		if n.InFlight() != 0 {
			t.Errorf("%s: %d in flight after all requests finished", n.Endpoint().Addr, n.InFlight())
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, size := range []int{3, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", size), func(b *testing.B) {
			addrs := make([]string, size)
			for i := range addrs {
				addrs[i] = fmt.Sprintf("10.0.0.%d:80", i)
			}
			bal := New(Options{})
			bal.Update(eps(addrs...))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bal.Pick(nil)
				}
			})
		})
	}
}

func BenchmarkPickStartFinish(b *testing.B) {
	bal := New(Options{})
	bal.Update(eps("a", "b", "c"))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n, _ := bal.Pick(nil)
			n.Finish(n.Start(), false)
		}
	})
}

func TestRoundRobinIgnoresLatency(t *testing.T) {
	b := New(Options{RoundRobin: true})
	b.Update([]endpoint.Endpoint{{Addr: "a:1"}, {Addr: "b:1"}, {Addr: "c:1"}})
	counts := map[string]int{}
	for range 300 {
		n, ok := b.Pick(nil)
		if !ok {
			t.Fatal("no pick")
		}
		// A slow endpoint gets its turn all the same.
		n.Finish(n.Start().Add(-time.Second), false)
		counts[n.Endpoint().Addr]++
	}
	for addr, c := range counts {
		if c != 100 {
			t.Errorf("%s got %d of 300, want 100 each: %v", addr, c, counts)
		}
	}
	first, _ := b.Pick(nil)
	if n, ok := b.Pick([]*Node{first}); !ok || n == first {
		t.Error("round robin returned a tried node")
	}
}

// Equal replicas share the traffic: a fresh balancer must not rank them by
// microscopic differences of its prior (it once gave 64/32/4 %).
func TestEqualReplicasShareFairly(t *testing.T) {
	clock := time.Unix(0, 0)
	rng := rand.New(rand.NewPCG(7, 7))
	b := New(Options{Now: func() time.Time { return clock }, IntN: rng.IntN})
	// Replicas join one by one, as pods become ready.
	var eps []endpoint.Endpoint
	for _, a := range []string{"a:1", "b:1", "c:1"} {
		eps = append(eps, endpoint.Endpoint{Addr: a})
		b.Update(eps)
		clock = clock.Add(30 * time.Millisecond)
	}
	counts := map[string]int{}
	const n = 6000
	for range n {
		node, _ := b.Pick(nil)
		s := node.Start()
		// 2 ms ± 0.5 ms, one request every 2.5 ms (400/s, sequential).
		clock = clock.Add(1500*time.Microsecond + time.Duration(rng.IntN(1000))*time.Microsecond)
		node.Finish(s, false)
		clock = clock.Add(500 * time.Microsecond)
		counts[node.Endpoint().Addr]++
	}
	for addr, c := range counts {
		if share := float64(c) / n; share < 0.2 || share > 0.47 {
			t.Errorf("%s got %.0f%% of the traffic: %v", addr, 100*share, counts)
		}
	}
	if len(counts) != 3 {
		t.Errorf("not every replica was used: %v", counts)
	}
}

// A restored replica's first answer carries the dial and a cold process:
// it must not keep the replica out, but a second slow answer must.
func TestColdFirstSampleIsNotAPeak(t *testing.T) {
	clock := time.Unix(0, 0)
	b := New(Options{Now: func() time.Time { return clock }, IntN: func(n int) int { return 0 }})
	b.Update([]endpoint.Endpoint{{Addr: "a:1"}, {Addr: "b:1"}})
	for range 50 { // both measured at 2 ms
		n, _ := b.Pick(nil)
		s := n.Start()
		clock = clock.Add(2 * time.Millisecond)
		n.Finish(s, false)
	}
	b.Update([]endpoint.Endpoint{{Addr: "a:1"}, {Addr: "b:1"}, {Addr: "c:1"}})
	var c *Node
	for _, n := range b.Nodes() {
		if n.Endpoint().Addr == "c:1" {
			c = n
		}
	}
	s := c.Start()
	clock = clock.Add(40 * time.Millisecond) // cold: dial and a fresh process
	c.Finish(s, false)
	if l := c.Load(clock); l > float64(10*time.Millisecond) {
		t.Fatalf("after a cold first answer the estimate is %v; want it near its peers' 2ms", time.Duration(l))
	}
	s = c.Start()
	clock = clock.Add(40 * time.Millisecond) // slow again: now it is believed
	c.Finish(s, false)
	if l := c.Load(clock); l < float64(39*time.Millisecond) {
		t.Fatalf("a second slow answer must be a peak; estimate %v", time.Duration(l))
	}
}

// TestStalledNodeAvoided: a node whose requests stopped coming back counts
// as at least as slow as it has been silent, so new requests go elsewhere
// long before the first stuck one times out; an idle node is not judged by
// how long it was idle.
func TestStalledNodeAvoided(t *testing.T) {
	var clk fakeClock
	b := New(Options{Now: clk.Now})
	b.Update([]endpoint.Endpoint{{Addr: "a"}, {Addr: "b"}})
	nodes := b.Nodes()
	for range 20 { // both answer in 2 ms
		for _, n := range nodes {
			s := n.Start()
			clk.Advance(2 * time.Millisecond)
			n.Finish(s, false)
		}
	}
	clk.Advance(time.Minute) // both idle a long time: neither is penalized
	if la, lb := nodes[0].Load(clk.Now()), nodes[1].Load(clk.Now()); la > float64(2*time.Millisecond) || lb > float64(2*time.Millisecond) {
		t.Fatalf("idle loads %v and %v: an idle node must not look slower than its estimate", time.Duration(la), time.Duration(lb))
	}
	nodes[0].Start() // a's endpoint stops answering
	clk.Advance(20 * time.Millisecond)
	if la, lb := nodes[0].Load(clk.Now()), nodes[1].Load(clk.Now()); la < float64(20*time.Millisecond) || la <= lb {
		t.Fatalf("a silent for 20 ms with a request in flight has load %v (b %v): want at least 20 ms", time.Duration(la), time.Duration(lb))
	}
	for range 50 {
		if n, _ := b.Pick(nil); n == nodes[0] {
			t.Fatal("picked the stalled node")
		}
	}
}

// TestFailingNewNodeNotProbedForever: a new node is probed outright while
// nothing is known of it; once it has failed it is known, and judged by
// its penalty like any other.
func TestFailingNewNodeNotProbedForever(t *testing.T) {
	var clk fakeClock
	b := New(Options{Now: clk.Now})
	b.Update([]endpoint.Endpoint{{Addr: "good"}, {Addr: "bad"}})
	var picksBad int
	for range 200 {
		n, _ := b.Pick(nil)
		s := n.Start()
		clk.Advance(time.Millisecond)
		bad := n.Endpoint().Addr == "bad"
		if bad {
			picksBad++
		}
		n.Finish(s, bad)
	}
	if picksBad > 1 {
		t.Fatalf("a node that failed its first request was picked %d times in 200 ms; its 1 s penalty should keep it away", picksBad)
	}
}
