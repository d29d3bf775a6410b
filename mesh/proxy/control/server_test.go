package control

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"

	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// waitLimit bounds how long a test waits for something that should
// happen promptly; it only turns a hang into a failure, never measures.
const waitLimit = 10 * time.Second

// fakeStreams serves one server-streaming method for a test: each call
// appears on streams, and the test sends its messages and ends it.
type fakeStreams[Req, Msg any] struct {
	streams chan *fakeStream[Req, Msg]
	// fail, when set, ends every call at once with its error.
	fail error
}

// fakeStream is one call a fakeStreams accepted.
type fakeStream[Req, Msg any] struct {
	req  *Req
	send chan *Msg
	end  chan error
}

func newFakeStreams[Req, Msg any]() fakeStreams[Req, Msg] {
	return fakeStreams[Req, Msg]{streams: make(chan *fakeStream[Req, Msg], 16)}
}

// serve runs one call until the test ends it or the client leaves.
func (f *fakeStreams[Req, Msg]) serve(req *Req, s grpc.ServerStreamingServer[Msg]) error {
	if f.fail != nil {
		return f.fail
	}
	w := &fakeStream[Req, Msg]{req: req, send: make(chan *Msg), end: make(chan error, 1)}
	select {
	case f.streams <- w:
	case <-s.Context().Done():
		return s.Context().Err()
	}
	for {
		select {
		case m := <-w.send:
			if err := s.Send(m); err != nil {
				return err
			}
		case err := <-w.end:
			return err
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
}

// next returns the next call the server accepted.
func (f *fakeStreams[Req, Msg]) next(t *testing.T) *fakeStream[Req, Msg] {
	t.Helper()
	select {
	case w := <-f.streams:
		return w
	case <-time.After(waitLimit):
		t.Fatal("no stream reached the server")
		return nil
	}
}

func (w *fakeStream[Req, Msg]) push(t *testing.T, m *Msg) {
	t.Helper()
	select {
	case w.send <- m:
	case <-time.After(waitLimit):
		t.Fatal("the server's stream is gone")
	}
}

// fakeDestination is a Destination server the test drives.
type fakeDestination struct {
	destinationv1.UnimplementedDestinationServer
	fakeStreams[destinationv1.WatchRequest, destinationv1.Update]
}

func newFakeDestination() *fakeDestination {
	return &fakeDestination{fakeStreams: newFakeStreams[destinationv1.WatchRequest, destinationv1.Update]()}
}

func (f *fakeDestination) Watch(req *destinationv1.WatchRequest, s grpc.ServerStreamingServer[destinationv1.Update]) error {
	return f.serve(req, s)
}

type fakeIdentity struct {
	identityv1.UnimplementedIdentityServer
	certify func(context.Context, *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error)
}

func (f *fakeIdentity) Certify(ctx context.Context, r *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	return f.certify(ctx, r)
}

// grpcServer is a real grpc-go server on 127.0.0.1 that can be stopped
// and started again on the same port.
type grpcServer struct {
	t    *testing.T
	addr string
	reg  func(*grpc.Server)
	opts []grpc.ServerOption
	srv  *grpc.Server
	done chan struct{}
}

// startGRPC starts a server with the services reg registers; the test's
// cleanup stops it.
func startGRPC(t *testing.T, reg func(*grpc.Server)) *grpcServer {
	s := &grpcServer{t: t, addr: "127.0.0.1:0", reg: reg}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *grpcServer) start() {
	s.t.Helper()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("listen %s: %v", s.addr, err)
	}
	s.addr = ln.Addr().String()
	s.srv = grpc.NewServer(s.opts...)
	s.reg(s.srv)
	s.done = make(chan struct{})
	go func(srv *grpc.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(s.srv, s.done)
}

// stop stops the server hard, as a crash would (Stop, not GracefulStop:
// watch streams never end by themselves).
func (s *grpcServer) stop() {
	if s.srv == nil {
		return
	}
	s.srv.Stop()
	<-s.done
	s.srv = nil
}

// newConn returns a Conn to addr that the test's cleanup closes.
func newConn(t *testing.T, addr string) *Conn {
	c := NewConn(addr, ConnConfig{})
	t.Cleanup(c.Close)
	return c
}

// watching runs src.Watch(authority) until the test ends and returns the
// snapshots it delivers.
func watching(t *testing.T, src *DestinationSource, authority string) <-chan endpoint.Snapshot {
	ch := make(chan endpoint.Snapshot, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Watch(ctx, authority, func(s endpoint.Snapshot) { ch <- s })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch
}

func nextSnapshot(t *testing.T, ch <-chan endpoint.Snapshot) endpoint.Snapshot {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(waitLimit):
		t.Fatal("no snapshot delivered")
		return endpoint.Snapshot{}
	}
}

func noSnapshot(t *testing.T, ch <-chan endpoint.Snapshot) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("unexpected snapshot %+v", s)
	default:
	}
}

// h2cServer serves h with a net/http HTTP/2 cleartext server, to play a
// misbehaving gRPC server.
func h2cServer(t *testing.T, h http.HandlerFunc) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: p}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
