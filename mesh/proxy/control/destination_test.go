package control

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// stepper replaces the backoff sleep: each wait is reported on sleeps and
// lasts until the test calls resume, so tests follow reconnections step
// by step without any wall-clock timing.
type stepper struct {
	sleeps  chan time.Duration
	proceed chan struct{}
}

func newStepper(src *DestinationSource) *stepper {
	s := &stepper{sleeps: make(chan time.Duration, 1), proceed: make(chan struct{})}
	src.sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case s.sleeps <- d:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-s.proceed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	src.random = func() float64 { return 1 } // waits are exactly the backoff cap
	return s
}

// expect returns the next backoff wait the watcher starts.
func (s *stepper) expect(t *testing.T, want time.Duration) {
	t.Helper()
	select {
	case d := <-s.sleeps:
		if d != want {
			t.Fatalf("backoff wait %v, want %v", d, want)
		}
	case <-time.After(waitLimit):
		t.Fatal("the watcher did not start a backoff wait")
	}
}

func (s *stepper) resume() { s.proceed <- struct{}{} }

func ep(addr string, weight uint32) *destinationv1.Endpoint {
	return &destinationv1.Endpoint{Address: addr, Weight: weight, Meshed: true,
		Identity: "spiffe://cluster.local/ns/shop/sa/web", ProtocolHint: destinationv1.ProtocolHint_PROTOCOL_HINT_H2C}
}

func snapshotOf(exists bool, eps ...*destinationv1.Endpoint) *destinationv1.Update {
	return &destinationv1.Update{Kind: &destinationv1.Update_Snapshot{Snapshot: &destinationv1.Snapshot{Exists: exists, Endpoints: eps}}}
}

func addrs(s endpoint.Snapshot) string {
	var a []string
	for _, e := range s.Endpoints {
		a = append(a, e.Addr)
	}
	return strings.Join(a, ",")
}

func TestWatchDeliversSnapshotAndDeltas(t *testing.T) {
	leakcheck.Check(t)
	fake := newFakeDestination()
	srv := startGRPC(t, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, fake) })
	src := &DestinationSource{Conn: newConn(t, srv.addr), Proxy: ProxyContext{ID: "uid-1", Pod: "client-0", Namespace: "shop"}}
	got := watching(t, src, "web.shop:8080")

	w := fake.next(t)
	wantReq := &destinationv1.WatchRequest{Authority: "web.shop:8080",
		Proxy: &destinationv1.ProxyContext{ProxyId: "uid-1", Pod: "client-0", Namespace: "shop"}}
	if !proto.Equal(w.req, wantReq) {
		t.Fatalf("server got %v, want %v", w.req, wantReq)
	}

	full := &destinationv1.Endpoint{Address: "10.0.0.2:8080", Weight: 3, Meshed: true,
		Identity: "spiffe://cluster.local/ns/shop/sa/web", ProtocolHint: destinationv1.ProtocolHint_PROTOCOL_HINT_GRPC,
		Zone: "z1", Pod: "web-1", Labels: map[string]string{"version": "v2"}}
	w.push(t, snapshotOf(true, full, ep("10.0.0.1:8080", 1)))
	s := nextSnapshot(t, got)
	want := endpoint.Snapshot{Exists: true, Endpoints: []endpoint.Endpoint{
		{Addr: "10.0.0.1:8080", Weight: 1, Meshed: true, Identity: "spiffe://cluster.local/ns/shop/sa/web", Protocol: endpoint.ProtocolH2C},
		{Addr: "10.0.0.2:8080", Weight: 3, Meshed: true, Identity: "spiffe://cluster.local/ns/shop/sa/web", Protocol: endpoint.ProtocolH2C,
			Labels: map[string]string{"version": "v2", "zone": "z1", "pod": "web-1"}},
	}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("snapshot\n %+v\nwant\n %+v", s, want)
	}

	// Add: a new endpoint, and a new weight for an existing one.
	w.push(t, &destinationv1.Update{Kind: &destinationv1.Update_Add{Add: &destinationv1.Add{
		Endpoints: []*destinationv1.Endpoint{ep("10.0.0.3:8080", 1), ep("10.0.0.1:8080", 5)}}}})
	s = nextSnapshot(t, got)
	if addrs(s) != "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080" || s.Endpoints[0].Weight != 5 || !s.Exists {
		t.Fatalf("after add: %+v", s)
	}
	// Remove, including an address not in the set.
	w.push(t, &destinationv1.Update{Kind: &destinationv1.Update_Remove{Remove: &destinationv1.Remove{
		Addresses: []string{"10.0.0.2:8080", "10.9.9.9:1"}}}})
	if s = nextSnapshot(t, got); addrs(s) != "10.0.0.1:8080,10.0.0.3:8080" {
		t.Fatalf("after remove: %+v", s)
	}
	// NoEndpoints: known but empty, then gone.
	w.push(t, &destinationv1.Update{Kind: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: true}}})
	if s = nextSnapshot(t, got); !s.Exists || len(s.Endpoints) != 0 {
		t.Fatalf("after no-endpoints (exists): %+v", s)
	}
	w.push(t, &destinationv1.Update{Kind: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{}}})
	if s = nextSnapshot(t, got); s.Exists || len(s.Endpoints) != 0 {
		t.Fatalf("after no-endpoints (gone): %+v", s)
	}
	// An Add brings the authority back.
	w.push(t, &destinationv1.Update{Kind: &destinationv1.Update_Add{Add: &destinationv1.Add{Endpoints: []*destinationv1.Endpoint{ep("10.0.0.4:8080", 0)}}}})
	if s = nextSnapshot(t, got); !s.Exists || addrs(s) != "10.0.0.4:8080" {
		t.Fatalf("after add to an empty set: %+v", s)
	}
	// An update of a kind this client does not know (a newer server's) is
	// counted and ignored; the stream goes on.
	w.push(t, &destinationv1.Update{})
	w.push(t, &destinationv1.Update{Kind: &destinationv1.Update_Remove{Remove: &destinationv1.Remove{Addresses: []string{"10.0.0.4:8080"}}}})
	if s = nextSnapshot(t, got); !s.Exists || len(s.Endpoints) != 0 {
		t.Fatalf("after removing the last endpoint: %+v", s)
	}
	if c, d, u := src.Connects(), src.Disconnects(), src.Updates(); c != 1 || d != 0 || u != 8 {
		t.Errorf("connects %d disconnects %d updates %d, want 1 0 8", c, d, u)
	}
}

func TestWatchKeepsStateWhileControlPlaneIsDown(t *testing.T) {
	leakcheck.Check(t)
	fake := newFakeDestination()
	srv := startGRPC(t, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, fake) })
	src := &DestinationSource{Conn: newConn(t, srv.addr)}
	step := newStepper(src)
	got := watching(t, src, "web:80")

	fake.next(t).push(t, snapshotOf(true, ep("10.0.0.1:80", 1), ep("10.0.0.2:80", 1)))
	if s := nextSnapshot(t, got); addrs(s) != "10.0.0.1:80,10.0.0.2:80" {
		t.Fatalf("first snapshot: %+v", s)
	}

	// The control plane goes away: the watcher backs off, doubling, and
	// delivers nothing (an empty snapshot would drop all traffic).
	srv.stop()
	step.expect(t, 100*time.Millisecond)
	step.resume() // connection refused
	step.expect(t, 200*time.Millisecond)
	step.resume()
	step.expect(t, 400*time.Millisecond)
	noSnapshot(t, got)
	if src.Disconnects() != 1 || src.ConnectFailures() != 2 {
		t.Fatalf("disconnects %d, failures %d; want 1, 2", src.Disconnects(), src.ConnectFailures())
	}

	// It returns on the same port with a different state: the first
	// message of the new stream replaces the old state, not merges.
	srv.start()
	step.resume()
	w := fake.next(t)
	w.push(t, snapshotOf(true, ep("10.0.0.3:80", 1)))
	if s := nextSnapshot(t, got); addrs(s) != "10.0.0.3:80" {
		t.Fatalf("snapshot after reconnect: %+v", s)
	}
	if src.Connects() != 2 {
		t.Fatalf("connects %d, want 2", src.Connects())
	}

	// A successful stream resets the backoff. An UNAVAILABLE status (the
	// server shutting down) is a disconnect like any other.
	w.end <- status.Error(codes.Unavailable, "shutting down")
	step.expect(t, 100*time.Millisecond)
	noSnapshot(t, got)
	step.resume()

	// The same state again after a reconnection is not re-delivered.
	w = fake.next(t)
	w.push(t, snapshotOf(true, ep("10.0.0.3:80", 1)))
	w.push(t, &destinationv1.Update{Kind: &destinationv1.Update_Add{Add: &destinationv1.Add{Endpoints: []*destinationv1.Endpoint{ep("10.0.0.4:80", 1)}}}})
	if s := nextSnapshot(t, got); addrs(s) != "10.0.0.3:80,10.0.0.4:80" {
		t.Fatalf("after an unchanged snapshot and an add: %+v", s)
	}
}

func TestWatchBackoffGrowsWhileFirstConnectFails(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every attempt is refused

	src := &DestinationSource{Conn: newConn(t, addr)}
	step := newStepper(src)
	got := watching(t, src, "web:80") // must not block the test
	for _, want := range []time.Duration{100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000} {
		step.expect(t, want*time.Millisecond)
		step.resume()
	}
	step.expect(t, 10*time.Second)
	noSnapshot(t, got)
	if src.ConnectFailures() != 10 || src.Connects() != 0 {
		t.Fatalf("failures %d connects %d, want 10 0", src.ConnectFailures(), src.Connects())
	}

	// The control plane appears: the next attempt succeeds.
	fake := newFakeDestination()
	srv := &grpcServer{t: t, addr: addr, reg: func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, fake) }}
	srv.start()
	t.Cleanup(srv.stop)
	step.resume()
	fake.next(t).push(t, snapshotOf(false))
	if s := nextSnapshot(t, got); s.Exists || len(s.Endpoints) != 0 {
		t.Fatalf("snapshot of an unknown authority: %+v", s)
	}
}

func TestBackoffJitter(t *testing.T) {
	leakcheck.Check(t)
	src := &DestinationSource{MinBackoff: time.Second, MaxBackoff: 5 * time.Second}
	for _, tc := range []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{0, 0, 500 * time.Millisecond}, {0, 1, time.Second}, {0, 0.5, 750 * time.Millisecond},
		{2, 0, 2 * time.Second}, {2, 1, 4 * time.Second},
		{3, 0, 2500 * time.Millisecond}, {3, 1, 5 * time.Second}, {1000, 1, 5 * time.Second},
	} {
		src.random = func() float64 { return tc.r }
		if got := src.backoff(tc.attempt); got != tc.want {
			t.Errorf("backoff(%d) with r=%v = %v, want %v", tc.attempt, tc.r, got, tc.want)
		}
	}
}

// TestBackoffWaitIsCancellable runs the real wait in a synctest bubble:
// it lasts exactly its duration in the bubble's clock, and a cancelled
// watcher stops waiting at once.
func TestBackoffWaitIsCancellable(t *testing.T) {
	leakcheck.Check(t)
	synctest.Test(t, func(t *testing.T) {
		src := &DestinationSource{}
		start := time.Now()
		if err := src.wait(t.Context(), 3*time.Second); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el != 3*time.Second {
			t.Fatalf("waited %v, want 3s", el)
		}
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		start = time.Now()
		if err := src.wait(ctx, time.Hour); !errors.Is(err, context.Canceled) {
			t.Fatalf("wait = %v, want context.Canceled", err)
		}
		if el := time.Since(start); el != time.Second {
			t.Fatalf("cancelled after %v, want 1s", el)
		}
	})
}

func TestErrorStatusesSurfaceWithTheirCode(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		code codes.Code
		msg  string
	}{
		{codes.InvalidArgument, `authority "a b" is not host or host:port`},
		{codes.NotFound, "no such authority: 100% sure — ü"}, // percent-encoded on the wire
		{codes.Unavailable, "shutting down"},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			fake := newFakeDestination()
			fake.fail = status.Error(tc.code, tc.msg)
			srv := startGRPC(t, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, fake) })
			conn := newConn(t, srv.addr)
			_, err := conn.NewStream(t.Context(), methodWatch, appendWatchRequest(nil, "a b", ProxyContext{}))
			var st *Status
			if !errors.As(err, &st) || st.Code != int(tc.code) || st.Message != tc.msg {
				t.Fatalf("error %#v, want code %d message %q", err, tc.code, tc.msg)
			}
			if StatusCode(err) != int(tc.code) || !strings.Contains(err.Error(), "code = "+tc.code.String()) {
				t.Fatalf("StatusCode/Error disagree with grpc-go: %d %q", StatusCode(err), err)
			}

			src := &DestinationSource{Conn: conn}
			step := newStepper(src)
			got := watching(t, src, "a b")
			if tc.code == codes.InvalidArgument {
				// The controller will never serve it: unknown at once,
				// and no retry.
				if s := nextSnapshot(t, got); s.Exists || len(s.Endpoints) > 0 {
					t.Fatalf("snapshot %+v, want an unknown authority", s)
				}
				select {
				case d := <-step.sleeps:
					t.Fatalf("a refused authority is retried (backoff %v)", d)
				default:
				}
				return
			}
			// Through the source: a failed attempt, no snapshot, a retry.
			step.expect(t, 100*time.Millisecond)
			noSnapshot(t, got)
			if src.ConnectFailures() != 1 || src.Connects() != 0 {
				t.Fatalf("failures %d connects %d, want 1 0", src.ConnectFailures(), src.Connects())
			}
		})
	}

	t.Run("status in trailers after messages", func(t *testing.T) {
		fake := newFakeDestination()
		srv := startGRPC(t, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, fake) })
		conn := newConn(t, srv.addr)
		opened := make(chan *Stream, 1)
		go func() { // NewStream returns with the server's headers, sent with its first message
			st, err := conn.NewStream(t.Context(), methodWatch, appendWatchRequest(nil, "web:80", ProxyContext{}))
			if err != nil {
				t.Error(err)
			}
			opened <- st
		}()
		w := fake.next(t)
		w.push(t, snapshotOf(true, ep("10.0.0.1:80", 1)))
		w.end <- status.Error(codes.NotFound, "authority removed")
		st := <-opened
		if st == nil {
			return
		}
		defer st.Close()
		if msg, err := st.Recv(); err != nil || len(msg) == 0 {
			t.Fatalf("first Recv: %v", err)
		}
		if _, err := st.Recv(); StatusCode(err) != CodeNotFound || err.(*Status).Message != "authority removed" {
			t.Fatalf("second Recv: %v, want NotFound from the trailers", err)
		}
	})
	t.Run("OK end of stream is io.EOF", func(t *testing.T) {
		fake := newFakeDestination()
		srv := startGRPC(t, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, fake) })
		conn := newConn(t, srv.addr)
		type result struct {
			st  *Stream
			err error
		}
		opened := make(chan result, 1)
		go func() {
			st, err := conn.NewStream(t.Context(), methodWatch, appendWatchRequest(nil, "web:80", ProxyContext{}))
			opened <- result{st, err}
		}()
		fake.next(t).end <- nil // trailers-only, grpc-status 0
		r := <-opened
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.st.Close()
		if _, err := r.st.Recv(); err != io.EOF {
			t.Fatalf("Recv: %v, want io.EOF", err)
		}
	})
	t.Run("Unimplemented", func(t *testing.T) {
		srv := startGRPC(t, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, newFakeDestination()) })
		_, err := newConn(t, srv.addr).Invoke(t.Context(), "/skiff.destination.v1.Destination/Nope", nil)
		if StatusCode(err) != CodeUnimplemented {
			t.Fatalf("error %v, want Unimplemented", err)
		}
	})
	t.Run("Unavailable when nothing listens", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		_, err := newConn(t, addr).Invoke(t.Context(), methodCertify, nil)
		if StatusCode(err) != CodeUnavailable || errors.Unwrap(err) == nil {
			t.Fatalf("error %v, want Unavailable wrapping the dial error", err)
		}
	})
	t.Run("DeadlineExceeded", func(t *testing.T) {
		fake := newFakeDestination()
		srv := startGRPC(t, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, fake) })
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		// The fake holds the stream without sending: the server's
		// deadline (from grpc-timeout) or the client's ends it.
		_, err := newConn(t, srv.addr).NewStream(ctx, methodWatch, appendWatchRequest(nil, "web:80", ProxyContext{}))
		if StatusCode(err) != CodeDeadlineExceeded {
			t.Fatalf("error %v, want DeadlineExceeded", err)
		}
	})
}

// TestMisbehavingServer plays servers that break the protocol: each must
// give a clear error, never a panic, and a watcher treats it as a broken
// stream (disconnect, retry, state kept).
func TestMisbehavingServer(t *testing.T) {
	leakcheck.Check(t)
	grpcHeaders := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
	}
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		code    int
		errText string
		atOpen  bool // the error comes from NewStream, not Recv
	}{
		{"garbage frame", func(w http.ResponseWriter, r *http.Request) {
			grpcHeaders(w)
			w.Write([]byte("<html>\n<body>hello</body></html>"))
		}, CodeInternal, "compressed flag is 0x3c", false},
		{"oversized frame", func(w http.ResponseWriter, r *http.Request) {
			grpcHeaders(w)
			w.Write([]byte{0, 0x7f, 0xff, 0xff, 0xff})
		}, CodeResourceExhausted, "larger than max", false},
		{"truncated frame", func(w http.ResponseWriter, r *http.Request) {
			grpcHeaders(w)
			w.Write([]byte{0, 0, 0, 0, 50, 1, 2, 3})
		}, CodeInternal, "ends inside a 50-byte message", false},
		{"no grpc-status", func(w http.ResponseWriter, r *http.Request) {
			grpcHeaders(w)
		}, CodeInternal, "without a grpc-status", false},
		{"malformed grpc-status", func(w http.ResponseWriter, r *http.Request) {
			grpcHeaders(w)
			w.Header().Set("Grpc-Status", "bogus")
		}, CodeUnknown, `malformed grpc-status "bogus"`, false},
		{"not gRPC", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>"))
		}, CodeUnknown, `content-type "text/html"`, true},
		{"HTTP 503", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		}, CodeUnavailable, "503", true},
		{"undecodable message", func(w http.ResponseWriter, r *http.Request) {
			grpcHeaders(w)
			w.Write(appendFrame(nil, []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, CodeInternal, "destination: decoding skiff.destination.v1.Update", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := h2cServer(t, tc.h)
			conn := newConn(t, addr)
			src := &DestinationSource{Conn: conn}
			var (
				err error
				st  *Stream
			)
			if tc.name == "undecodable message" {
				// Only the source decodes; see what it makes of it.
				ws := &watch{src: src, log: discard(), fn: func(endpoint.Snapshot) { t.Error("snapshot delivered") }, set: map[string]endpoint.Endpoint{}}
				_, err = ws.stream(t.Context(), appendWatchRequest(nil, "web:80", ProxyContext{}))
				if src.Disconnects() != 1 {
					t.Errorf("disconnects %d, want 1", src.Disconnects())
				}
			} else {
				st, err = conn.NewStream(t.Context(), methodWatch, nil)
				if (err != nil) != tc.atOpen {
					t.Fatalf("NewStream error %v, want one: %v", err, tc.atOpen)
				}
				if err == nil {
					_, err = st.Recv()
					if _, again := st.Recv(); again != err {
						t.Errorf("second Recv gave %v, not the same error", again)
					}
					st.Close()
				}
			}
			if StatusCode(err) != tc.code || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("error %v, want code %s with %q", err, CodeName(tc.code), tc.errText)
			}
		})
	}
}
