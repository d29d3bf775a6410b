package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/control/gatewayapi"
	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// httpRoute is an HTTPRoute for Service name port 8080 in namespace
// default, whose one rule has the request timeout request.
func httpRoute(name, request string) string {
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %[1]s, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: %[1]s, port: 8080}]
  rules:
  - backendRefs: [{name: %[1]s, port: 8080}]
    timeouts: {request: %[2]s}
`, name, request)
}

// echoPolicy is the policy of echo.default.svc:8080 under httpRoute("echo", request).
func echoPolicy(request time.Duration) *policyv1.OutboundPolicy {
	return Outbound("echo.default.svc:8080", &route.Route{Authority: "echo.default.svc:8080", Name: "default/echo", Timeouts: timeout.Route{Request: request}})
}

// writeFile replaces path with data as editors and kubectl-like tools do:
// a new file renamed into place.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log sink the Run goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gathered is the value of the unlabelled metric name in reg.
func gathered(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// policyEnv is a Policy server fed by a resources file, served by gRPC
// on 127.0.0.1.
type policyEnv struct {
	path    string
	srv     *Server
	file    *ResourceFile
	metrics *prometheus.Registry
	logs    *syncBuffer
	client  policyv1.PolicyClient
}

// newPolicyEnv writes resources to a file and serves it. The file is
// polled every millisecond, so that the test waits on what happens, not
// on the poll.
func newPolicyEnv(t *testing.T, resources string) *policyEnv {
	t.Helper()
	e := &policyEnv{path: filepath.Join(t.TempDir(), "resources.yaml"), metrics: prometheus.NewRegistry(), logs: &syncBuffer{}}
	writeFile(t, e.path, resources)
	e.srv = NewServer(Config{})
	var err error
	e.file, err = NewResourceFile(ResourceFileConfig{
		Server: e.srv, Path: e.path, Interval: time.Millisecond,
		Log: slog.New(slog.NewTextHandler(e.logs, nil)), Registerer: e.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		e.file.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-ran })

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	policyv1.RegisterPolicyServer(gs, e.srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	e.client = policyv1.NewPolicyClient(cc)
	return e
}

// watch opens a WatchOutbound stream that ends with the test, or after
// testwait.Timeout: a message that never comes fails the test then.
func (e *policyEnv) watch(t *testing.T, authority string) policyv1.Policy_WatchOutboundClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testwait.Timeout)
	t.Cleanup(cancel)
	s, err := e.client.WatchOutbound(ctx, &policyv1.WatchOutboundRequest{Authority: authority})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// next receives the stream's next message and checks it is want.
func next(t *testing.T, what string, s policyv1.Policy_WatchOutboundClient, want *policyv1.OutboundPolicy) {
	t.Helper()
	got, err := s.Recv()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, prototext.Format(got), prototext.Format(want))
	}
}

// waitVersion waits until the server took its v-th set.
func (e *policyEnv) waitVersion(t *testing.T, v uint64) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("set %d", v), func() (bool, error) {
		got := e.srv.Version()
		return got == v, fmt.Errorf("version %d", got)
	})
}

// TestWatchOutboundResources follows two streams through the changes of a
// resources file. What a stream must not receive is checked by order:
// each step ends with a change the stream must see, and the message it
// receives next must be that one.
func TestWatchOutboundResources(t *testing.T) {
	leakcheck.Check(t)
	e := newPolicyEnv(t, httpRoute("echo", "2s"))
	echo := e.watch(t, "Echo.Default.svc.:8080")
	next(t, "the route's policy when the stream opens", echo, echoPolicy(2*time.Second))
	other := e.watch(t, "other.default.svc:8080")
	next(t, "an authority without a route", other, DefaultOutbound("other.default.svc:8080"))
	if v := gathered(t, e.metrics, "skiff_policy_resources_version"); v != 1 {
		t.Errorf("skiff_policy_resources_version = %v after the first set, want 1", v)
	}

	// A new timeout: the new policy.
	writeFile(t, e.path, httpRoute("echo", "3s"))
	next(t, "after a rewrite", echo, echoPolicy(3*time.Second))

	// A rewrite that does not parse: refused, counted, logged with the
	// file and the place; the stream hears nothing.
	writeFile(t, e.path, httpRoute("echo", "3 parsecs"))
	testwait.For(t, "the refusal counted", func() (bool, error) {
		v := gathered(t, e.metrics, "skiff_policy_resources_rejected_total")
		return v == 1, fmt.Errorf("skiff_policy_resources_rejected_total = %v", v)
	})
	if logs := e.logs.String(); !strings.Contains(logs, "policy resources refused") || !strings.Contains(logs, e.path) ||
		!strings.Contains(logs, "document 1") || !strings.Contains(logs, "timeouts.request") {
		t.Errorf("the refusal's log does not name the file, document and field:\n%s", logs)
	}
	if v := e.srv.Version(); v != 2 {
		t.Errorf("version %d after a refused rewrite, want 2", v)
	}
	// The refused file, checked again and rewritten as it is: counted once.
	e.file.Check()
	writeFile(t, e.path, httpRoute("echo", "3 parsecs"))
	if _, err := e.file.Check(); err != nil {
		t.Errorf("a refused content rewritten as it was: %v, want it skipped", err)
	}
	if v := gathered(t, e.metrics, "skiff_policy_resources_rejected_total"); v != 1 {
		t.Errorf("skiff_policy_resources_rejected_total = %v after the same refused content, want 1", v)
	}

	// A later valid rewrite is taken.
	writeFile(t, e.path, httpRoute("echo", "4s"))
	next(t, "a valid rewrite after a refused one", echo, echoPolicy(4*time.Second))

	// Rewritten as it is (a new file: a write in place could be read
	// half-way, see TestResourceFileHalfWrite): nothing taken, nothing
	// sent.
	writeFile(t, e.path, httpRoute("echo", "4s"))
	if took, err := e.file.Check(); took || err != nil {
		t.Errorf("unchanged rewrite: took %v, %v; want nothing", took, err)
	}
	// A comment: a new set whose policies are all the same: nothing sent.
	v := e.srv.Version()
	writeFile(t, e.path, "# a comment\n"+httpRoute("echo", "4s"))
	e.waitVersion(t, v+1)

	// The last change routes other too: each stream's next message is its
	// new policy, so none was sent for the rewrites above.
	writeFile(t, e.path, httpRoute("echo", "5s")+"---\n"+httpRoute("other", "1s"))
	next(t, "after the unchanged rewrites", echo, echoPolicy(5*time.Second))
	next(t, "a default authority that gets a route", other, Outbound("other.default.svc:8080",
		&route.Route{Authority: "other.default.svc:8080", Name: "default/other", Timeouts: timeout.Route{Request: time.Second}}))

	// A route removed: back to the default.
	writeFile(t, e.path, httpRoute("echo", "5s"))
	next(t, "its route removed", other, DefaultOutbound("other.default.svc:8080"))

	e.srv.Close()
	if _, err := echo.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("after Close: %v, want Unavailable", err)
	}
}

// TestResourceFileLost: a file that goes away keeps the last set, and is
// counted once however long it stays away.
func TestResourceFileLost(t *testing.T) {
	leakcheck.Check(t)
	e := newPolicyEnv(t, httpRoute("echo", "2s"))
	echo := e.watch(t, "echo.default.svc:8080")
	next(t, "first", echo, echoPolicy(2*time.Second))
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the loss counted", func() (bool, error) {
		v := gathered(t, e.metrics, "skiff_policy_resources_rejected_total")
		return v == 1, fmt.Errorf("skiff_policy_resources_rejected_total = %v", v)
	})
	if _, err := e.file.Check(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Check of a missing file: %v", err)
	}
	if v := gathered(t, e.metrics, "skiff_policy_resources_rejected_total"); v != 1 {
		t.Errorf("skiff_policy_resources_rejected_total = %v, want the loss counted once", v)
	}
	writeFile(t, e.path, httpRoute("echo", "3s"))
	next(t, "the file back", echo, echoPolicy(3*time.Second))
}

func TestNewResourceFileErrors(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("# padding\n", gatewayapi.MaxStreamBytes/10+1)
	twice := httpRoute("echo", "1s") + "---\n" + strings.Replace(httpRoute("echo", "2s"), "name: echo, namespace", "name: echo2, namespace", 1)
	for _, tt := range []struct {
		name, data string
		want       []string
	}{
		{"missing", "", []string{"no such file"}},
		{"invalid.yaml", httpRoute("echo", "soon"), []string{"invalid.yaml", "document 1", "timeouts.request"}},
		{"unknown.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", []string{"unknown.yaml", "Service"}},
		{"conflict.yaml", twice, []string{"conflict.yaml", "already routed"}},
		{"big.yaml", big, []string{"big.yaml", "at most 1048576"}},
	} {
		path := filepath.Join(dir, tt.name)
		if tt.name != "missing" {
			writeFile(t, path, tt.data)
		}
		srv := NewServer(Config{})
		reg := prometheus.NewRegistry()
		_, err := NewResourceFile(ResourceFileConfig{Server: srv, Path: path, Registerer: reg})
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want it to say %q", tt.name, err, w)
			}
		}
		if srv.Version() != 0 {
			t.Errorf("%s: the server took a set", tt.name)
		}
		if mfs, _ := reg.Gather(); len(mfs) != 0 {
			t.Errorf("%s: metrics registered by a ResourceFile that was not made", tt.name)
		}
	}
	for _, cfg := range []ResourceFileConfig{{Path: "x"}, {Server: NewServer(Config{})}} {
		if _, err := NewResourceFile(cfg); err == nil {
			t.Errorf("NewResourceFile(%+v): no error", cfg)
		}
	}
}

func TestResourceFileEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.yaml")
	writeFile(t, path, "# nothing yet\n")
	srv := NewServer(Config{})
	if _, err := NewResourceFile(ResourceFileConfig{Server: srv, Path: path}); err != nil {
		t.Fatal(err)
	}
	if srv.Version() != 1 || len(srv.set.Load().outbound) != 0 {
		t.Fatalf("version %d, %d routes: want one empty set", srv.Version(), len(srv.set.Load().outbound))
	}
}

func TestServiceAuthority(t *testing.T) {
	for _, tt := range []struct {
		namespace, name string
		port            int32
		want            string
	}{
		{"default", "echo", 8080, "echo.default.svc:8080"},
		{"shop", "web", 80, "web.shop.svc:80"},
		{"", "web", 80, ""},
		{"shop", "", 80, ""},
		{"shop", "web", 0, ""},
		{"shop", "web", 65536, ""},
	} {
		got, ok := ServiceAuthority(tt.namespace, tt.name, tt.port)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("ServiceAuthority(%q, %q, %d) = %q, %v; want %q", tt.namespace, tt.name, tt.port, got, ok, tt.want)
		}
	}
}

func TestSetRoutesRefuses(t *testing.T) {
	srv := NewServer(Config{})
	good := route.Route{Authority: "echo.default.svc:8080", Name: "default/echo"}
	if err := srv.SetRoutes([]route.Route{good}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		routes []route.Route
		want   string
	}{
		{"one authority twice, by case and trailing dot", []route.Route{good, {Authority: "ECHO.default.svc.:8080", Name: "default/x"}}, "already has a route"},
		{"no authority", []route.Route{{Name: "default/x"}}, "authority is empty"},
		{"an authority that is not one", []route.Route{{Authority: "a b:80"}}, "route 0"},
		{"an invalid route", []route.Route{{Authority: "a:80", Retry: retry.Policy{Attempts: -1}}}, "negative"},
		{"an invalid breaker", []route.Route{{Authority: "a:80", Breaker: &breaker.Config{MinSuccessRate: 2}}}, "success rate"},
		{"too many", make([]route.Route, route.MaxRoutes+1), "at most"},
	} {
		err := srv.SetRoutes(tt.routes)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
	if v := srv.Version(); v != 1 {
		t.Errorf("version %d after refused sets, want 1", v)
	}
	if p := srv.set.Load().policy("echo.default.svc:8080"); !proto.Equal(p, Outbound("echo.default.svc:8080", &good)) {
		t.Errorf("the refused sets replaced the good one: %v", p)
	}
}

// blockingStream is a WatchOutbound stream whose Send hands each message
// to the test and then waits until the test releases it, as a client that
// reads slowly makes the handler wait.
type blockingStream struct {
	ctx     context.Context
	sent    chan *policyv1.OutboundPolicy
	release chan struct{}
}

func (s *blockingStream) Send(m *policyv1.OutboundPolicy) error {
	select {
	case s.sent <- m:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	select {
	case <-s.release:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}
func (s *blockingStream) Context() context.Context     { return s.ctx }
func (s *blockingStream) SetHeader(metadata.MD) error  { return nil }
func (s *blockingStream) SendHeader(metadata.MD) error { return nil }
func (s *blockingStream) SetTrailer(metadata.MD)       {}
func (s *blockingStream) SendMsg(any) error            { return nil }
func (s *blockingStream) RecvMsg(any) error            { return nil }

var _ policyv1.Policy_WatchOutboundServer = (*blockingStream)(nil)

// TestSlowStreamSkips: sets that arrive while a stream is busy sending are
// not queued for it; it sends the latest policy next.
func TestSlowStreamSkips(t *testing.T) {
	leakcheck.Check(t)
	srv := NewServer(Config{})
	const a = "echo.default.svc:8080"
	set := func(d time.Duration) {
		t.Helper()
		if err := srv.SetRoutes([]route.Route{{Authority: a, Name: "default/echo", Timeouts: timeout.Route{Request: d}}}); err != nil {
			t.Fatal(err)
		}
	}
	want := func(d time.Duration) *policyv1.OutboundPolicy {
		return Outbound(a, &route.Route{Authority: a, Name: "default/echo", Timeouts: timeout.Route{Request: d}})
	}
	set(time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), testwait.Timeout)
	defer cancel()
	s := &blockingStream{ctx: ctx, sent: make(chan *policyv1.OutboundPolicy), release: make(chan struct{})}
	take := func(what string, d time.Duration) {
		t.Helper()
		if got := <-s.sent; !proto.Equal(got, want(d)) {
			t.Fatalf("%s:\n got %v\nwant %v", what, prototext.Format(got), prototext.Format(want(d)))
		}
	}
	done := make(chan error, 1)
	go func() { done <- srv.WatchOutbound(&policyv1.WatchOutboundRequest{Authority: a}, s) }()
	take("first message", time.Second)
	// The handler is in Send: three sets pass meanwhile.
	set(2 * time.Second)
	set(3 * time.Second)
	set(4 * time.Second)
	s.release <- struct{}{}
	take("after three sets during a Send", 4*time.Second)
	srv.Close()
	s.release <- struct{}{}
	if err := <-done; status.Code(err) != codes.Unavailable {
		t.Fatalf("after Close: %v", err)
	}
}

// TestResourceFileHalfWrite: a file rewritten in place is read between
// its truncation and its new content; the empty file must not be taken.
// A new content is taken at the second check that reads it.
func TestResourceFileHalfWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resources.yaml")
	writeFile(t, path, httpRoute("echo", "2s"))
	srv := NewServer(Config{})
	f, err := NewResourceFile(ResourceFileConfig{Server: srv, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, wantTook bool, wantVersion uint64) {
		t.Helper()
		took, err := f.Check()
		if err != nil || took != wantTook || srv.Version() != wantVersion {
			t.Fatalf("%s: took %v, %v, version %d; want took %v, version %d", what, took, err, srv.Version(), wantTook, wantVersion)
		}
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil { // truncated, not yet written
		t.Fatal(err)
	}
	check("the file truncated", false, 1)
	if err := os.WriteFile(path, []byte(httpRoute("echo", "2s")), 0o644); err != nil {
		t.Fatal(err)
	}
	check("written back as it was", false, 1)
	check("and checked again", false, 1)
	writeFile(t, path, httpRoute("echo", "3s"))
	check("a new content, read once", false, 1)
	check("read twice", true, 2)
	check("read thrice", false, 2)
}
