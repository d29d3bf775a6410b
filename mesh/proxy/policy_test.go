package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// fakePolicy is a route.Source the test drives: send hands a route (nil
// for none) to every watch of the authority.
type fakePolicy struct {
	mu      sync.Mutex
	watches map[string][]chan *route.Route
	first   map[string]*route.Route
}

func (f *fakePolicy) Watch(ctx context.Context, authority string, fn func(*route.Route)) {
	ch := make(chan *route.Route, 16)
	f.mu.Lock()
	if f.watches == nil {
		f.watches = map[string][]chan *route.Route{}
	}
	f.watches[authority] = append(f.watches[authority], ch)
	first, ok := f.first[authority]
	f.mu.Unlock()
	if ok {
		fn(first)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-ch:
			fn(r)
		}
	}
}

func (f *fakePolicy) send(authority string, r *route.Route) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.watches[authority] {
		ch <- r
	}
}

// TestPolicyRoutes: the control plane's route of an authority is known
// before the authority's first request is bounded, a new one takes over
// for the requests after it, and a route of none falls back to the
// routes file's.
func TestPolicyRoutes(t *testing.T) {
	leakcheck.Check(t)
	slow := route.Route{Authority: svcHTTP, Name: "default/echo", Timeouts: timeout.Route{Request: 100 * time.Millisecond}}
	src := &fakePolicy{first: map[string]*route.Route{svcHTTP: &slow}}
	eps := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: stall(t)}}})
	p := startProxy(t, Config{Endpoints: eps, Policy: src})
	url := "http://" + p.Addr("outbound").String() + "/"
	c := h1Client(t)

	// The very first request already has the route's deadline.
	resp, body := do(t, c, "GET", url, svcHTTP, nil, nil)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(resp.Header.Get(ErrorHeader), "timeouts.request 100ms") {
		t.Fatalf("first request: %d %q (%q), want 504 from the control plane's 100ms timeout", resp.StatusCode, body, resp.Header.Get(ErrorHeader))
	}

	// A new route takes over.
	faster := slow
	faster.Timeouts.Request = 50 * time.Millisecond
	src.send(svcHTTP, &faster)
	testwait.For(t, "the new route", func() (bool, error) {
		resp, _ := do(t, c, "GET", url, svcHTTP, nil, nil)
		return strings.Contains(resp.Header.Get(ErrorHeader), "timeouts.request 50ms"), nil
	})
	if v := metric(t, p, `outbound_http_route_timeouts_total{route_name="default/echo",timeout="request"}`); v == "absent" || v == "0" {
		t.Errorf("request timeouts of the control plane's route: %s", v)
	}
}

// TestPolicyWithoutAnswer: a control plane that never sends a policy
// delays only the authority's first requests, by the discovery wait at
// most, and they go without a route.
func TestPolicyWithoutAnswer(t *testing.T) {
	leakcheck.Check(t)
	src := &fakePolicy{} // watches, never sends
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	backend := srv.Listener.Addr().String()
	eps := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: backend}}})
	p := startProxy(t, Config{Endpoints: eps, Policy: src})
	url := "http://" + p.Addr("outbound").String() + "/"
	if resp, body := do(t, h1Client(t), "GET", url, svcHTTP, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("without a policy: %d %q, want 200", resp.StatusCode, body)
	}
}
