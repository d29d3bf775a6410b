package control

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// fakePolicy is a Policy server the test drives, as fakeDestination is a
// Destination server: each WatchOutbound call appears on streams.
type fakePolicy struct {
	policyv1.UnimplementedPolicyServer
	fakeStreams[policyv1.WatchOutboundRequest, policyv1.OutboundPolicy]
}

func newFakePolicy() *fakePolicy {
	return &fakePolicy{fakeStreams: newFakeStreams[policyv1.WatchOutboundRequest, policyv1.OutboundPolicy]()}
}

func (f *fakePolicy) WatchOutbound(req *policyv1.WatchOutboundRequest, s grpc.ServerStreamingServer[policyv1.OutboundPolicy]) error {
	return f.serve(req, s)
}

// newPolicyStepper is newStepper for a PolicySource.
func newPolicyStepper(src *PolicySource) *stepper {
	var d DestinationSource
	s := newStepper(&d)
	src.sleep, src.random = d.sleep, d.random
	return s
}

// logBuffer collects a source's log lines, at every level.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the lines that hold every one of parts.
func (b *logBuffer) lines(parts ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
next:
	for l := range strings.Lines(b.buf.String()) {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// policyWatching runs src.Watch(authority) until the test ends. It returns
// the routes delivered and a channel closed when Watch returns.
func policyWatching(t *testing.T, src *PolicySource, authority string) (<-chan *route.Route, <-chan struct{}) {
	ch := make(chan *route.Route, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Watch(ctx, authority, func(r *route.Route) { ch <- r })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch, done
}

func nextRoute(t *testing.T, ch <-chan *route.Route) *route.Route {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit):
		t.Fatal("no route delivered")
		return nil
	}
}

func noRoute(t *testing.T, ch <-chan *route.Route) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("unexpected route %s", show(r))
	default:
	}
}

func returned(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Watch did not return")
	}
}

// withTimeout is a policy whose route has a request timeout of d.
func withTimeout(d time.Duration) *policyv1.OutboundPolicy {
	return policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
		r.Timeouts = &policyv1.Timeouts{Request: dur(d)}
	})
}

func TestPolicyWatchDeliversPolicies(t *testing.T) {
	leakcheck.Check(t)
	fake := newFakePolicy()
	srv := startGRPC(t, func(s *grpc.Server) { policyv1.RegisterPolicyServer(s, fake) })
	var logs logBuffer
	src := &PolicySource{Conn: newConn(t, srv.addr), Proxy: ProxyContext{ID: "uid-1", Pod: "client-0", Namespace: "shop"}, Log: logs.logger()}
	got, _ := policyWatching(t, src, testAuthority)

	w := fake.next(t)
	wantReq := &policyv1.WatchOutboundRequest{Authority: testAuthority,
		Proxy: &policyv1.ProxyContext{ProxyId: "uid-1", Pod: "client-0", Namespace: "shop"}}
	if !proto.Equal(w.req, wantReq) {
		t.Fatalf("server got %v, want %v", w.req, wantReq)
	}

	// The controller's default asks for nothing a route holds.
	w.push(t, defaultPolicy())
	if r := nextRoute(t, got); r != nil {
		t.Fatalf("default policy gave %s, want nil", show(r))
	}
	// A second policy replaces it.
	w.push(t, withTimeout(3*time.Second))
	if r := nextRoute(t, got); r == nil || r.Authority != testAuthority || r.Timeouts != (timeout.Route{Request: 3 * time.Second}) {
		t.Fatalf("second policy gave %s", show(r))
	}
	// One the proxy cannot apply is refused: counted, logged with where,
	// not delivered; the stream goes on.
	w.push(t, policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
		r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{Min: 503}, {Min: 700}}}
	}))
	testwait.For(t, "the refused policy to be counted", func() (bool, error) { return src.Rejected() == 1, nil })
	noRoute(t, got)
	if l := logs.lines("level=WARN", "policy refused", "routes[0].rules[0].retry.http_statuses[1]: min 700 is not 100..599", "authority="+testAuthority); len(l) != 1 {
		t.Errorf("want one warning naming the field, got %q", logs.lines("level=WARN"))
	}
	w.push(t, withTimeout(4*time.Second))
	if r := nextRoute(t, got); r == nil || r.Timeouts.Request != 4*time.Second {
		t.Fatalf("policy after a refused one gave %s", show(r))
	}
	// What the proxy ignores is logged at Debug, once.
	if l := logs.lines("level=DEBUG", "balancer is ignored"); len(l) != 1 {
		t.Errorf("balancer notes %q, want one", l)
	}
	if c, d, u, rej, f := src.Connects(), src.Disconnects(), src.Updates(), src.Rejected(), src.ConnectFailures(); c != 1 || d != 0 || u != 4 || rej != 1 || f != 0 {
		t.Errorf("connects %d disconnects %d updates %d rejected %d failures %d, want 1 0 4 1 0", c, d, u, rej, f)
	}
}

func TestPolicyWatchKeepsLastPolicyWhileControlPlaneIsDown(t *testing.T) {
	leakcheck.Check(t)
	fake := newFakePolicy()
	srv := startGRPC(t, func(s *grpc.Server) { policyv1.RegisterPolicyServer(s, fake) })
	src := &PolicySource{Conn: newConn(t, srv.addr)}
	step := newPolicyStepper(src)
	got, _ := policyWatching(t, src, testAuthority)

	fake.next(t).push(t, withTimeout(time.Second))
	if r := nextRoute(t, got); r == nil || r.Timeouts.Request != time.Second {
		t.Fatalf("first policy gave %s", show(r))
	}

	// The control plane goes away: the watcher backs off and delivers
	// nothing, so the proxy keeps the last route.
	srv.stop()
	step.expect(t, 100*time.Millisecond)
	step.resume() // connection refused
	step.expect(t, 200*time.Millisecond)
	noRoute(t, got)
	if src.Disconnects() != 1 || src.ConnectFailures() != 1 {
		t.Fatalf("disconnects %d, failures %d; want 1, 1", src.Disconnects(), src.ConnectFailures())
	}

	// It comes back: the new stream's first policy is delivered.
	srv.start()
	step.resume()
	w := fake.next(t)
	w.push(t, withTimeout(2*time.Second))
	if r := nextRoute(t, got); r == nil || r.Timeouts.Request != 2*time.Second {
		t.Fatalf("policy after reconnecting gave %s", show(r))
	}

	// A stream that delivered resets the backoff; an error status is a
	// disconnect like any other.
	w.end <- status.Error(codes.Unavailable, "shutting down")
	step.expect(t, 100*time.Millisecond)
	noRoute(t, got)
	step.resume()
	fake.next(t).push(t, defaultPolicy())
	if r := nextRoute(t, got); r != nil {
		t.Fatalf("default policy gave %s, want nil", show(r))
	}
	if src.Connects() != 3 || src.Disconnects() != 2 {
		t.Fatalf("connects %d disconnects %d, want 3 2", src.Connects(), src.Disconnects())
	}
}

// TestPolicyWatchUnimplemented: a controller without the Policy API (it
// serves Destination only) ends the watch at once, logged at Info once
// per source.
func TestPolicyWatchUnimplemented(t *testing.T) {
	leakcheck.Check(t)
	srv := startGRPC(t, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, newFakeDestination()) })
	var logs logBuffer
	src := &PolicySource{Conn: newConn(t, srv.addr), Log: logs.logger()}
	step := newPolicyStepper(src)
	for _, authority := range []string{"web:80", "api:80"} {
		got, done := policyWatching(t, src, authority)
		returned(t, done)
		noRoute(t, got)
	}
	select {
	case d := <-step.sleeps:
		t.Fatalf("an older controller is retried (backoff %v)", d)
	default:
	}
	if l := logs.lines("level=INFO", "no Policy API"); len(l) != 1 || !strings.Contains(l[0], "Unimplemented") {
		t.Errorf("info lines %q, want one naming Unimplemented", logs.lines("level=INFO"))
	}
	if src.ConnectFailures() != 2 || src.Connects() != 0 {
		t.Errorf("failures %d connects %d, want 2 0", src.ConnectFailures(), src.Connects())
	}
}

// TestPolicyWatchInvalidArgument: an authority the controller will never
// serve ends the watch without a call to fn and without a retry.
func TestPolicyWatchInvalidArgument(t *testing.T) {
	leakcheck.Check(t)
	fake := newFakePolicy()
	fake.fail = status.Error(codes.InvalidArgument, `authority "a b" is not host or host:port`)
	srv := startGRPC(t, func(s *grpc.Server) { policyv1.RegisterPolicyServer(s, fake) })
	src := &PolicySource{Conn: newConn(t, srv.addr)}
	step := newPolicyStepper(src)
	got, done := policyWatching(t, src, "a b")
	returned(t, done)
	noRoute(t, got)
	select {
	case d := <-step.sleeps:
		t.Fatalf("a refused authority is retried (backoff %v)", d)
	default:
	}
}
