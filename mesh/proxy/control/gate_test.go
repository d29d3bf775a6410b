package control

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// snapshotDestination answers every Watch with an empty snapshot at once,
// except authority "slow:80", which it never answers (and reports on
// slow).
type snapshotDestination struct {
	destinationv1.UnimplementedDestinationServer
	slow chan struct{}
}

func (d *snapshotDestination) Watch(req *destinationv1.WatchRequest, s grpc.ServerStreamingServer[destinationv1.Update]) error {
	if req.GetAuthority() == "slow:80" {
		d.slow <- struct{}{}
	} else if err := s.Send(&destinationv1.Update{Kind: &destinationv1.Update_Snapshot{Snapshot: &destinationv1.Snapshot{}}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return s.Context().Err()
}

// TestOneDialForConcurrentCalls: calls made at once on a new Conn share
// one connection. Before the gate, 50 concurrent watches made 50 TLS
// handshakes (each call dialled its own connection while none was up),
// and a proxy starting with many authorities, or every proxy after a
// controller restart, paid a handshake per watch. And a call whose answer
// is slow to come does not hold the others.
func TestOneDialForConcurrentCalls(t *testing.T) {
	leakcheck.Check(t)
	cert, pool := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &countingListener{Listener: ln}
	dst := &snapshotDestination{slow: make(chan struct{}, 1)}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})))
	destinationv1.RegisterDestinationServer(gs, dst)
	served := make(chan struct{})
	go func() { gs.Serve(lis); close(served) }()
	t.Cleanup(func() { gs.Stop(); <-served })

	conn := NewConn(ln.Addr().String(), ConnConfig{TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}})
	t.Cleanup(conn.Close)
	ctx := t.Context()

	// From cold: calls at once, none of them with a connection yet.
	run := func(calls int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, calls)
		for range calls {
			wg.Go(func() {
				s, err := conn.NewStream(ctx, methodWatch, appendWatchRequest(nil, "web:80", ProxyContext{}))
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				if _, err := s.Recv(); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	const calls = 50
	run(calls)
	if n := lis.accepted.Load(); n != 1 {
		t.Errorf("%d connections for %d concurrent calls, want 1", n, calls)
	}

	// After the connection failed (the server closed it), a call whose
	// answer never comes opens the next; it does not hold the others.
	conn.Close()
	gs.Stop()
	<-served
	ln2, err := net.Listen("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	lis = &countingListener{Listener: ln2}
	gs = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})))
	destinationv1.RegisterDestinationServer(gs, dst)
	served = make(chan struct{})
	go func() { gs.Serve(lis); close(served) }()
	conn.down() // what a broken stream does
	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		if s, err := conn.NewStream(ctx, methodWatch, appendWatchRequest(nil, "slow:80", ProxyContext{})); err == nil {
			s.Close()
		}
	}()
	<-dst.slow
	t.Cleanup(func() { <-slowDone })
	run(calls)
	if n := lis.accepted.Load(); n != 1 {
		t.Errorf("after a failure, %d connections for %d concurrent calls, want 1", n, calls+1)
	}
}

// TestGateFailsWaitersWithTheOpenersError: when the connection cannot be
// opened, the calls that waited fail at once with the same error (they
// retry with their own backoff), not one after the other.
func TestGateFailsWaitersWithTheOpenersError(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	conn := NewConn(addr, ConnConfig{})
	t.Cleanup(conn.Close)
	var wg sync.WaitGroup
	var unavailable atomic.Int64
	for range 20 {
		wg.Go(func() {
			_, err := conn.NewStream(t.Context(), methodWatch, appendWatchRequest(nil, "web:80", ProxyContext{}))
			if StatusCode(err) == CodeUnavailable {
				unavailable.Add(1)
			}
		})
	}
	wg.Wait()
	if n := unavailable.Load(); n != 20 {
		t.Errorf("%d of 20 calls failed as Unavailable", n)
	}
}
