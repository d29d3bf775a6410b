package destination

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
)

const waitFor = 10 * time.Second

// countingSource records how many source watches are open, to check that
// watchers of one authority share one subscription.
type countingSource struct {
	discovery.Source
	open, max, total atomic.Int64
}

func (c *countingSource) Watch(ctx context.Context, authority string, fn func(discovery.Snapshot)) error {
	c.total.Add(1)
	n := c.open.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			break
		}
	}
	defer c.open.Add(-1)
	return c.Source.Watch(ctx, authority, fn)
}

type env struct {
	reg     *registry.Registry
	src     *countingSource
	srv     *Server
	metrics *prometheus.Registry
	lis     *bufconn.Listener
	client  destinationv1.DestinationClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{reg: &registry.Registry{}, metrics: prometheus.NewRegistry()}
	e.src = &countingSource{Source: e.reg}
	var err error
	e.srv, err = NewServer(Config{Source: e.src, Registerer: e.metrics})
	if err != nil {
		t.Fatal(err)
	}
	e.lis = bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	destinationv1.RegisterDestinationServer(gs, e.srv)
	go gs.Serve(e.lis)
	t.Cleanup(func() {
		e.srv.Close()
		gs.Stop()
	})
	e.client = destinationv1.NewDestinationClient(e.dial(t))
	return e
}

func (e *env) dial(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.lis.DialContext(ctx) }),
	}, opts...)
	cc, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func (e *env) set(t *testing.T, auth string, eps ...discovery.Endpoint) {
	t.Helper()
	if err := e.reg.Set(auth, eps); err != nil {
		t.Fatal(err)
	}
}

func (e *env) watch(t *testing.T, ctx context.Context, auth string) destinationv1.Destination_WatchClient {
	t.Helper()
	s, err := e.client.Watch(ctx, &destinationv1.WatchRequest{Authority: auth})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// counter sums a counter family's samples (all label values).
func (e *env) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := e.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// eventually polls cond until it holds or the deadline passes: waiting for
// an event, never a blind sleep.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func ep(addr string) discovery.Endpoint {
	return discovery.Endpoint{Addr: addr, Meshed: true, Identity: "spiffe://cluster.local/ns/shop/sa/web"}
}

// model is a client's view: it applies updates as a proxy would.
type model struct {
	exists bool
	eps    map[string]*destinationv1.Endpoint
}

func (m *model) apply(t *testing.T, u *destinationv1.Update) {
	t.Helper()
	switch k := u.GetKind().(type) {
	case *destinationv1.Update_Snapshot:
		m.exists = k.Snapshot.GetExists()
		m.eps = make(map[string]*destinationv1.Endpoint)
		for _, e := range k.Snapshot.GetEndpoints() {
			m.eps[e.GetAddress()] = e
		}
	case *destinationv1.Update_Add:
		if len(k.Add.GetEndpoints()) == 0 {
			t.Fatal("empty Add")
		}
		m.exists = true
		for _, e := range k.Add.GetEndpoints() {
			m.eps[e.GetAddress()] = e
		}
	case *destinationv1.Update_Remove:
		if len(k.Remove.GetAddresses()) == 0 {
			t.Fatal("empty Remove")
		}
		for _, a := range k.Remove.GetAddresses() {
			delete(m.eps, a)
		}
	case *destinationv1.Update_NoEndpoints:
		m.exists = k.NoEndpoints.GetExists()
		clear(m.eps)
	default:
		t.Fatalf("update with no kind: %v", u)
	}
}

func (m *model) equals(snap discovery.Snapshot) bool {
	if m.exists != snap.Exists || len(m.eps) != len(snap.Endpoints) {
		return false
	}
	for _, want := range toProto(snap.Endpoints) {
		if !proto.Equal(m.eps[want.GetAddress()], want) {
			return false
		}
	}
	return true
}

func (m *model) String() string {
	return fmt.Sprintf("exists=%v %v", m.exists, slices.Sorted(maps.Keys(m.eps)))
}

func recv(t *testing.T, s destinationv1.Destination_WatchClient) *destinationv1.Update {
	t.Helper()
	u, err := s.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return u
}

func TestSnapshotFirst(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.set(t, "web.shop:8080",
		discovery.Endpoint{Addr: "10.0.0.2:8080", Weight: 3, Identity: "spiffe://cluster.local/ns/shop/sa/web", Protocol: discovery.ProtocolH2C,
			Meshed: true, Zone: "z1", Pod: "web-1", Labels: map[string]string{"version": "v2"}},
		discovery.Endpoint{Addr: "10.0.0.1:8080", Protocol: discovery.ProtocolOpaque},
	)
	s := e.watch(t, ctx, "WEB.shop.:8080") // normalised like discovery does
	snap := recv(t, s).GetSnapshot()
	if snap == nil || !snap.GetExists() || len(snap.GetEndpoints()) != 2 {
		t.Fatalf("first message = %v, want a snapshot of 2 endpoints", snap)
	}
	want := []*destinationv1.Endpoint{
		{Address: "10.0.0.1:8080", ProtocolHint: destinationv1.ProtocolHint_PROTOCOL_HINT_OPAQUE},
		{Address: "10.0.0.2:8080", Weight: 3, Identity: "spiffe://cluster.local/ns/shop/sa/web", ProtocolHint: destinationv1.ProtocolHint_PROTOCOL_HINT_H2C,
			Meshed: true, Zone: "z1", Pod: "web-1", Labels: map[string]string{"version": "v2"}},
	}
	for i, w := range want {
		if !proto.Equal(snap.GetEndpoints()[i], w) {
			t.Errorf("endpoint %d = %v, want %v", i, snap.GetEndpoints()[i], w)
		}
	}
}

func TestUnknownAuthority(t *testing.T) {
	e := newEnv(t)
	s := e.watch(t, t.Context(), "nope.shop:80")
	// The API's contract: the first message is always a Snapshot; for an
	// unknown authority it says exists=false (the same state as
	// NoEndpoints{exists:false}).
	if snap := recv(t, s).GetSnapshot(); snap == nil || snap.GetExists() || len(snap.GetEndpoints()) != 0 {
		t.Fatalf("first message = %v, want Snapshot{exists:false}", snap)
	}
	// The stream stays open: the authority appears, then goes away.
	e.set(t, "nope.shop:80", ep("10.0.0.1:80"))
	if add := recv(t, s).GetAdd(); len(add.GetEndpoints()) != 1 {
		t.Fatalf("after the authority appears: %v, want Add of 1", add)
	}
	if err := e.reg.Delete("nope.shop:80"); err != nil {
		t.Fatal(err)
	}
	u := recv(t, s)
	if ne := u.GetNoEndpoints(); ne == nil || ne.GetExists() {
		t.Fatalf("after the authority is deleted: %v, want NoEndpoints{exists:false}", u)
	}
}

func TestInvalidAuthority(t *testing.T) {
	e := newEnv(t)
	for _, auth := range []string{"", "web:99999", "web:http", "a b:80", "web/x:80"} {
		s := e.watch(t, t.Context(), auth)
		_, err := s.Recv()
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Watch(%q): %v, want InvalidArgument", auth, err)
			continue
		}
		if msg := status.Convert(err).Message(); !strings.Contains(msg, "authority") {
			t.Errorf("Watch(%q): message %q does not say what is wrong", auth, msg)
		}
	}
	if n := e.src.total.Load(); n != 0 {
		t.Errorf("invalid requests opened %d source watches", n)
	}
}

func TestChurnStepwise(t *testing.T) {
	e := newEnv(t)
	const auth = "web.shop:80"
	e.set(t, auth, ep("10.0.0.1:80"))
	s := e.watch(t, t.Context(), auth)
	m := &model{}
	if u := recv(t, s); u.GetSnapshot() == nil {
		t.Fatal("first message is not a snapshot")
	} else {
		m.apply(t, u)
	}
	b2 := ep("10.0.0.2:80")
	b2.Weight = 2
	steps := []struct {
		name string
		do   func()
		kind []string // expected message kinds, in order
	}{
		{"add b", func() { e.set(t, auth, ep("10.0.0.1:80"), ep("10.0.0.2:80")) }, []string{"add"}},
		{"remove a", func() { e.set(t, auth, ep("10.0.0.2:80")) }, []string{"remove"}},
		{"reweight b", func() { e.set(t, auth, b2) }, []string{"add"}},
		{"add c, remove b", func() { e.set(t, auth, ep("10.0.0.3:80"), ep("10.0.0.4:80"), ep("10.0.0.5:80"), ep("10.0.0.6:80")) }, []string{"snapshot"}},
		{"add d remove c", func() { e.set(t, auth, ep("10.0.0.4:80"), ep("10.0.0.5:80"), ep("10.0.0.6:80"), ep("10.0.0.7:80")) }, []string{"add", "remove"}},
		{"none ready", func() { e.set(t, auth) }, []string{"no_endpoints"}},
		{"gone", func() { e.reg.Delete(auth) }, []string{"no_endpoints"}},
		{"back", func() { e.set(t, auth, ep("10.0.0.9:80")) }, []string{"add"}},
	}
	for _, st := range steps {
		st.do()
		for _, k := range st.kind {
			u := recv(t, s)
			if got := kindOf(u); got != k {
				t.Fatalf("%s: got %s %v, want %s", st.name, got, u, k)
			}
			m.apply(t, u)
		}
		cur, _ := e.reg.Snapshot(auth)
		if !m.equals(cur) {
			t.Fatalf("%s: client holds %v, want %v", st.name, m, cur)
		}
	}
}

// TestChurnInOrder makes changes as fast as it can: a watcher may skip
// states (coalescing), but every state it holds after a message is a
// published one, in publication order, ending with the last. The states
// grow one endpoint at a time, then shrink, so that every change is one
// message (Add, Remove, a Snapshot or NoEndpoints) and no client state is
// half-applied.
func TestChurnInOrder(t *testing.T) {
	e := newEnv(t)
	const auth = "web.shop:80"
	e.set(t, auth)
	s := e.watch(t, t.Context(), auth)
	m := &model{}
	m.apply(t, recv(t, s))

	const n = 100
	var states []discovery.Snapshot
	all := make([]discovery.Endpoint, n)
	for i := range all {
		all[i] = ep(fmt.Sprintf("10.0.%d.%d:80", i/200, i%200))
	}
	publish := func(eps []discovery.Endpoint) {
		e.set(t, auth, eps...)
		snap, _ := e.reg.Snapshot(auth)
		states = append(states, snap)
	}
	for i := 1; i <= n; i++ {
		publish(all[:i])
	}
	for i := 1; i < n; i++ {
		publish(all[i:])
	}
	last, msgs := -1, 0
	for !m.equals(states[len(states)-1]) {
		m.apply(t, recv(t, s))
		msgs++
		i := slices.IndexFunc(states[last+1:], m.equals)
		if i < 0 {
			t.Fatalf("after message %d the client holds %v: not a state published after #%d", msgs, m, last)
		}
		last += 1 + i
	}
	t.Logf("%d states, %d messages", len(states), msgs)
}

func TestSlowWatcherDoesNotBlockFast(t *testing.T) {
	e := newEnv(t)
	const auth = "big.shop:80"
	// Big states (~45 KB each, each a full swap) so that the slow client's
	// flow-control windows fill after a few.
	state := func(n int) []discovery.Endpoint {
		eps := make([]discovery.Endpoint, 300)
		for i := range eps {
			eps[i] = ep(fmt.Sprintf("10.%d.%d.%d:80", n%250, i/250, i%250))
			eps[i].Labels = map[string]string{"filler": strings.Repeat("x", 64)}
		}
		return eps
	}
	e.set(t, auth, state(0)...)

	// The slow client never reads; a fixed 64 KiB window (no BDP growth)
	// makes the server's sends to it block soon.
	slowConn := e.dial(t, grpc.WithInitialWindowSize(65535), grpc.WithInitialConnWindowSize(65535))
	slow, err := destinationv1.NewDestinationClient(slowConn).Watch(t.Context(), &destinationv1.WatchRequest{Authority: auth})
	if err != nil {
		t.Fatal(err)
	}
	fast := e.watch(t, t.Context(), auth)
	fm := &model{}
	fm.apply(t, recv(t, fast))
	eventually(t, "the slow watcher's snapshot", func() bool { return e.counter(t, "skiff_destination_updates_sent_total") >= 2 })

	const changes = 30
	// The fast watcher sees every change while the slow one is stuck.
	got := 0
	for i := 1; i <= changes; i++ {
		e.set(t, auth, state(i)...)
		cur, _ := e.reg.Snapshot(auth)
		for !fm.equals(cur) {
			fm.apply(t, recv(t, fast))
			got++
		}
	}
	final, _ := e.reg.Snapshot(auth)
	// Everything sent to the fast watcher has been received, so the rest
	// went to the slow one: it must be far behind, or the test proved
	// nothing.
	slowSent := e.counter(t, "skiff_destination_updates_sent_total") - float64(got+1)
	if slowSent > changes/2 {
		t.Fatalf("the slow watcher was sent %v updates of %d: it was not blocked, the test is void", slowSent, changes+1)
	}

	// Once it reads, it catches up to the final state, skipping what it
	// missed.
	sm := &model{}
	n := 0
	for !sm.equals(final) {
		sm.apply(t, recv(t, slow))
		n++
	}
	if n > changes/2 {
		t.Errorf("the slow watcher needed %d messages for %d changes: not coalesced", n, changes)
	}
	if float64(n) <= slowSent {
		t.Errorf("the slow watcher received nothing after it started reading: it was never behind")
	}
	t.Logf("fast: %d messages, slow: %d before it read, %d in all", got+1, int(slowSent), n)
}

func TestManyWatchersShareOneSubscription(t *testing.T) {
	e := newEnv(t)
	const auth = "web.shop:80"
	const watchers = 200
	e.set(t, auth, ep("10.0.0.1:80"))
	ctx, cancel := context.WithCancel(t.Context())
	var started, updated sync.WaitGroup
	errs := make(chan error, watchers)
	streams := make([]destinationv1.Destination_WatchClient, watchers)
	for i := range streams {
		streams[i] = e.watch(t, ctx, auth)
	}
	started.Add(watchers)
	updated.Add(watchers)
	for _, s := range streams {
		go func() {
			defer updated.Done()
			u, err := s.Recv()
			started.Done()
			if err != nil || u.GetSnapshot() == nil {
				errs <- fmt.Errorf("first message: %v %v", u, err)
				return
			}
			u, err = s.Recv()
			if err != nil || len(u.GetAdd().GetEndpoints()) != 1 || u.GetAdd().GetEndpoints()[0].GetAddress() != "10.0.0.2:80" {
				errs <- fmt.Errorf("second message: %v %v", u, err)
			}
		}()
	}
	started.Wait()
	e.set(t, auth, ep("10.0.0.1:80"), ep("10.0.0.2:80"))
	updated.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := e.src.total.Load(); n != 1 {
		t.Errorf("%d watchers opened %d source watches, want 1", watchers, n)
	}
	if got := e.counter(t, "skiff_destination_watchers"); got != watchers {
		t.Errorf("skiff_destination_watchers = %v, want %d", got, watchers)
	}
	if got := e.counter(t, "skiff_destination_propagation_seconds"); got < 2*watchers {
		t.Errorf("propagation samples = %v, want >= %d", got, 2*watchers)
	}
	// The last watcher to leave closes the subscription.
	cancel()
	eventually(t, "the source watch to close", func() bool { return e.src.open.Load() == 0 })
	eventually(t, "the gauges to drop", func() bool {
		return e.counter(t, "skiff_destination_watchers") == 0 && e.counter(t, "skiff_destination_subscriptions") == 0
	})
}

func TestReconnectGetsFullSnapshot(t *testing.T) {
	e := newEnv(t)
	const auth = "web.shop:80"
	e.set(t, auth, ep("10.0.0.1:80"))
	ctx, cancel := context.WithCancel(t.Context())
	s := e.watch(t, ctx, auth)
	recv(t, s)
	e.set(t, auth, ep("10.0.0.1:80"), ep("10.0.0.2:80"))
	if recv(t, s).GetAdd() == nil {
		t.Fatal("want an Add")
	}
	cancel()
	eventually(t, "the first stream to leave", func() bool { return e.src.open.Load() == 0 })
	e.set(t, auth, ep("10.0.0.2:80"), ep("10.0.0.3:80"))

	s = e.watch(t, t.Context(), auth)
	m := &model{}
	u := recv(t, s)
	if u.GetSnapshot() == nil {
		t.Fatalf("first message after reconnect = %v, want a snapshot", u)
	}
	m.apply(t, u)
	if cur, _ := e.reg.Snapshot(auth); !m.equals(cur) {
		t.Fatalf("snapshot after reconnect = %v, want %v", m, cur)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	e := newEnv(t)
	s := e.watch(t, t.Context(), "web.shop:80")
	recv(t, s)
	e.srv.Close()
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("after Close: %v, want Unavailable", err)
	}
	s = e.watch(t, t.Context(), "web.shop:80")
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("new watch after Close: %v, want Unavailable", err)
	}
}

// failingSource fails every watch, as a source whose backend is gone would.
type failingSource struct{}

func (failingSource) Watch(context.Context, string, func(discovery.Snapshot)) error {
	return fmt.Errorf("backend gone")
}

func TestSourceFailureIsUnavailable(t *testing.T) {
	srv, err := NewServer(Config{Source: failingSource{}})
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 16)
	gs := grpc.NewServer()
	destinationv1.RegisterDestinationServer(gs, srv)
	go gs.Serve(lis)
	defer gs.Stop()
	cc, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for range 2 { // the failed subscription is forgotten: the second watch tries again
		s, err := destinationv1.NewDestinationClient(cc).Watch(t.Context(), &destinationv1.WatchRequest{Authority: "web:80"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "backend gone") {
			t.Fatalf("Recv: %v, want Unavailable naming the cause", err)
		}
	}
}

func TestNewServerNeedsSource(t *testing.T) {
	if _, err := NewServer(Config{}); err == nil {
		t.Fatal("NewServer without a source: no error")
	}
}
