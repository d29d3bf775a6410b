package registry_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// wait bounds every wait for a callback; nothing here sleeps blindly.
const wait = 10 * time.Second

type watcher struct {
	auth  string
	snaps chan discovery.Snapshot
	err   chan error
}

func watch(t *testing.T, src discovery.Source, authority string) *watcher {
	t.Helper()
	w := &watcher{auth: authority, snaps: make(chan discovery.Snapshot, 1024), err: make(chan error, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { w.err <- src.Watch(ctx, authority, func(s discovery.Snapshot) { w.snaps <- s }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.err:
			if err != nil {
				t.Errorf("Watch(%s): %v", authority, err)
			}
		case <-time.After(wait):
			t.Errorf("Watch(%s) did not return after its context ended", authority)
		}
	})
	return w
}

func (w *watcher) next(t *testing.T) discovery.Snapshot {
	t.Helper()
	select {
	case s := <-w.snaps:
		return s
	case err := <-w.err:
		t.Fatalf("Watch(%s) returned early: %v", w.auth, err)
	case <-time.After(wait):
		t.Fatalf("Watch(%s): no snapshot within %v", w.auth, wait)
	}
	panic("unreachable")
}

func (w *watcher) expect(t *testing.T, want discovery.Snapshot) {
	t.Helper()
	if got := w.next(t); !got.Equal(want) {
		t.Fatalf("Watch(%s):\n got %+v\nwant %+v", w.auth, got, want)
	}
}

func eps(addrs ...string) []discovery.Endpoint {
	out := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = discovery.Endpoint{Addr: a, Meshed: true, Labels: map[string]string{"pod": fmt.Sprint("p", i)}}
	}
	return out
}

func TestSetUpdateRemoveWithManyWatchers(t *testing.T) {
	leakcheck.Check(t)
	var r registry.Registry // the zero value is ready
	const auth, other = "web.default.svc:8080", "api.default.svc:8080"
	var ws, others []*watcher
	for range 50 {
		ws = append(ws, watch(t, &r, auth))
	}
	for range 10 {
		others = append(others, watch(t, &r, other))
	}
	unknown := discovery.Snapshot{Authority: auth}
	for _, w := range ws {
		w.expect(t, unknown)
	}
	for _, w := range others {
		w.expect(t, discovery.Snapshot{Authority: other})
	}

	steps := []struct {
		name string
		do   func() error
		want discovery.Snapshot
	}{
		{"set", func() error { return r.Set(auth, eps("127.0.0.2:1", "127.0.0.1:1")) },
			discovery.Snapshot{Authority: auth, Exists: true, Endpoints: []discovery.Endpoint{eps("x:1", "127.0.0.1:1")[1], eps("127.0.0.2:1")[0]}}}, // sorted by address
		{"update", func() error { return r.Set(auth, eps("127.0.0.3:1")) },
			discovery.Snapshot{Authority: auth, Exists: true, Endpoints: eps("127.0.0.3:1")}},
		{"no endpoints", func() error { return r.Set(auth, nil) },
			discovery.Snapshot{Authority: auth, Exists: true}},
		{"delete", func() error { return r.Delete(auth) }, unknown},
		{"set again, upper case", func() error { return r.Set("WEB.default.svc:8080", eps("127.0.0.4:1")) },
			discovery.Snapshot{Authority: auth, Exists: true, Endpoints: eps("127.0.0.4:1")}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		for _, w := range ws {
			w.expect(t, st.want) // every watcher sees every step
		}
	}
	// An equal Set notifies nobody; the next change is the next snapshot.
	if err := r.Set(auth, eps("127.0.0.4:1")); err != nil {
		t.Fatal(err)
	}
	if err := r.Set(auth, eps("127.0.0.5:1")); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		w.expect(t, discovery.Snapshot{Authority: auth, Exists: true, Endpoints: eps("127.0.0.5:1")})
	}
	// The other authority's watchers saw none of it.
	if err := r.Set(other, eps("127.0.1.1:1")); err != nil {
		t.Fatal(err)
	}
	for _, w := range others {
		w.expect(t, discovery.Snapshot{Authority: other, Exists: true, Endpoints: eps("127.0.1.1:1")})
	}
}

// TestSlowWatcherDoesNotBlockOthers: a watcher stuck in its callback
// holds up neither Set nor the other watchers, and once unstuck sees only
// the latest snapshot.
func TestSlowWatcherDoesNotBlockOthers(t *testing.T) {
	leakcheck.Check(t)
	r := &registry.Registry{}
	const auth = "web.default.svc:80"
	version := func(i int) []discovery.Endpoint {
		return []discovery.Endpoint{{Addr: "127.0.0.1:80", Weight: uint32(i)}}
	}
	if err := r.Set(auth, version(0)); err != nil {
		t.Fatal(err)
	}

	gate := make(chan struct{})
	started, stuck := make(chan struct{}, 1), make(chan struct{}, 1)
	var mu sync.Mutex
	var slowSaw []uint32
	ctx, cancel := context.WithCancel(t.Context())
	slowDone := make(chan error, 1)
	go func() {
		slowDone <- r.Watch(ctx, auth, func(s discovery.Snapshot) {
			mu.Lock()
			slowSaw = append(slowSaw, s.Endpoints[0].Weight)
			n := len(slowSaw)
			mu.Unlock()
			switch n {
			case 1:
				started <- struct{}{}
			case 2:
				stuck <- struct{}{}
				<-gate
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-slowDone; err != nil {
			t.Error(err)
		}
	}()
	fast := watch(t, r, auth)
	fast.next(t)
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("the slow watcher never got its first snapshot")
	}

	if err := r.Set(auth, version(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stuck:
	case <-time.After(wait):
		t.Fatal("the slow watcher never got its second snapshot")
	}
	const last = 1000
	for i := 2; i <= last; i++ { // would hang if a watcher could block Set
		if err := r.Set(auth, version(i)); err != nil {
			t.Fatal(err)
		}
	}
	for { // the fast watcher reaches the last version while the slow one is stuck
		if s := fast.next(t); s.Endpoints[0].Weight == last {
			break
		}
	}
	close(gate)
	deadline := time.After(wait)
	for {
		mu.Lock()
		saw := append([]uint32(nil), slowSaw...)
		mu.Unlock()
		if saw[len(saw)-1] == last {
			// Initial, the one it was stuck in, then straight to the latest.
			if want := []uint32{0, 1, last}; fmt.Sprint(saw) != fmt.Sprint(want) {
				t.Errorf("slow watcher saw %v, want %v", saw, want)
			}
			return
		}
		select {
		case <-deadline:
			t.Fatalf("slow watcher saw %v, never %d", saw, last)
		case <-time.After(time.Millisecond): // polling a condition, bounded by deadline
		}
	}
}

func TestSetRejectsBadInput(t *testing.T) {
	leakcheck.Check(t)
	r := &registry.Registry{}
	w := watch(t, r, "a.b:80")
	w.next(t)
	for name, err := range map[string]error{
		"invalid authority": r.Set("a.b:http", eps("127.0.0.1:1")),
		"no port":           r.Set("a.b:80", eps("127.0.0.1")),
		"duplicate address": r.Set("a.b:80", eps("127.0.0.1:1", "127.0.0.1:1")),
		"delete invalid":    r.Delete(" :80"),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := r.Set("a.b:http", nil); !errors.Is(err, discovery.ErrInvalidAuthority) {
		t.Errorf("Set with a bad port = %v, want ErrInvalidAuthority", err)
	}
	if err := r.Watch(t.Context(), "a.b:http", func(discovery.Snapshot) { t.Error("called") }); !errors.Is(err, discovery.ErrInvalidAuthority) {
		t.Errorf("Watch with a bad port = %v, want ErrInvalidAuthority", err)
	}
	// Nothing changed: the next snapshot is the next valid Set.
	if err := r.Set("a.b:80", eps("127.0.0.9:1")); err != nil {
		t.Fatal(err)
	}
	w.expect(t, discovery.Snapshot{Authority: "a.b:80", Exists: true, Endpoints: eps("127.0.0.9:1")})
}

func TestSetCopiesItsInput(t *testing.T) {
	leakcheck.Check(t)
	r := &registry.Registry{}
	in := eps("127.0.0.1:1")
	if err := r.Set("a.b:80", in); err != nil {
		t.Fatal(err)
	}
	in[0].Addr, in[0].Labels["pod"] = "changed:1", "changed"
	s, err := r.Snapshot("a.b:80")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Equal(discovery.Snapshot{Authority: "a.b:80", Exists: true, Endpoints: eps("127.0.0.1:1")}) {
		t.Errorf("the registry shares the caller's slice or labels: %+v", s)
	}
}

func TestReplace(t *testing.T) {
	leakcheck.Check(t)
	r := &registry.Registry{}
	if err := r.Replace(map[string][]discovery.Endpoint{"a.x:80": eps("127.0.0.1:1"), "b.x:80": eps("127.0.0.2:1")}); err != nil {
		t.Fatal(err)
	}
	a, b := watch(t, r, "a.x:80"), watch(t, r, "b.x:80")
	a.next(t)
	b.next(t)
	// a unchanged, b gone, c new.
	if err := r.Replace(map[string][]discovery.Endpoint{"a.x:80": eps("127.0.0.1:1"), "c.x:80": nil}); err != nil {
		t.Fatal(err)
	}
	b.expect(t, discovery.Snapshot{Authority: "b.x:80"})
	if s, _ := r.Snapshot("c.x:80"); !s.Exists || len(s.Endpoints) != 0 {
		t.Errorf("c: %+v", s)
	}
	if err := r.Replace(map[string][]discovery.Endpoint{"a.x:80": nil, "A.x:80": nil}); err == nil {
		t.Error("Replace accepted one authority twice")
	}
	if err := r.Set("a.x:80", eps("127.0.0.7:1")); err != nil {
		t.Fatal(err)
	}
	a.expect(t, discovery.Snapshot{Authority: "a.x:80", Exists: true, Endpoints: eps("127.0.0.7:1")}) // nothing between
}

// simulatorRegistry is simulator/local.Registry, restated so this test
// does not import the simulator.
type simulatorRegistry interface {
	Set(authority string, endpoints []endpoint.Endpoint) error
}

var _ simulatorRegistry = registry.ProxySink{}

func TestProxySink(t *testing.T) {
	leakcheck.Check(t)
	r := &registry.Registry{}
	w := watch(t, r, "echo.default.svc:8080")
	w.next(t)
	var sink simulatorRegistry = r.ProxySink()
	err := sink.Set("echo.default.svc:8080", []endpoint.Endpoint{{
		Addr: "127.10.1.1:4143", Weight: 2, Meshed: true, Identity: "spiffe://cluster.local/ns/default/sa/echo",
		Protocol: endpoint.ProtocolH2C, Labels: map[string]string{"pod": "echo-0", "zone": "z1", "service": "echo"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	w.expect(t, discovery.Snapshot{Authority: "echo.default.svc:8080", Exists: true, Endpoints: []discovery.Endpoint{{
		Addr: "127.10.1.1:4143", Weight: 2, Meshed: true, Identity: "spiffe://cluster.local/ns/default/sa/echo",
		Protocol: discovery.ProtocolH2C, Pod: "echo-0", Zone: "z1",
		Labels: map[string]string{"pod": "echo-0", "zone": "z1", "service": "echo"},
	}}})
}

func TestWatchFile(t *testing.T) {
	leakcheck.Check(t)
	path := filepath.Join(t.TempDir(), "endpoints.txt")
	mod := time.Now()
	write := func(text string) {
		t.Helper()
		// Atomically, as the simulator does: a poll never reads half a file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		// Coarse file clocks: make every write visibly newer.
		mod = mod.Add(time.Second)
		if err := os.Chtimes(tmp, mod, mod); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("# the proxy's --endpoints-file format\nweb.default.svc:80 127.0.0.1:8080;meshed;id=spiffe://td/ns/default/sa/web;proto=http1;label=pod=web-0\nempty.default.svc:80\n")
	if _, err := registry.WatchFile(t.Context(), filepath.Join(t.TempDir(), "missing"), time.Millisecond, nil); err == nil {
		t.Error("WatchFile of a missing file succeeded")
	}
	r, err := registry.WatchFile(t.Context(), path, time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	web, empty := watch(t, r, "web.default.svc:80"), watch(t, r, "empty.default.svc:80")
	web.expect(t, discovery.Snapshot{Authority: "web.default.svc:80", Exists: true, Endpoints: []discovery.Endpoint{{
		Addr: "127.0.0.1:8080", Meshed: true, Identity: "spiffe://td/ns/default/sa/web", Protocol: discovery.ProtocolHTTP1,
		Pod: "web-0", Labels: map[string]string{"pod": "web-0"},
	}}})
	empty.expect(t, discovery.Snapshot{Authority: "empty.default.svc:80", Exists: true})

	write("web.default.svc:80 127.0.0.1:8080;bogus\n") // malformed: the previous table stays
	write("web.default.svc:80 127.0.0.2:8080\n")       // empty.default.svc goes away
	empty.expect(t, discovery.Snapshot{Authority: "empty.default.svc:80"})
	for { // the malformed table was never applied; the valid one is
		s := web.next(t)
		if len(s.Endpoints) == 1 && s.Endpoints[0].Addr == "127.0.0.2:8080" {
			break
		}
		t.Fatalf("unexpected snapshot %+v", s)
	}
}
