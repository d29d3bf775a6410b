package demo

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// serveRaw accepts connections on ln until it is closed and serves each
// with serve in a goroutine of its own, tracked for shutdown: the TCP
// echo, the TLS echo and the banner listeners. what names the listener
// in errors.
func (s *Server) serveRaw(ln net.Listener, what string, serve func(net.Conn)) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) || isTemporary(err) {
				// Like net/http: back off on EMFILE and friends instead of
				// spinning or giving up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn(what+" accept failed; retrying", "err", err, "backoff", backoff)
				if !sleep(s.ctx, backoff) {
					return nil
				}
				continue
			}
			return fmt.Errorf("demo: %s accept: %w", what, err)
		}
		backoff = 0
		if !s.trackRaw(c) {
			_ = c.Close()
			continue
		}
		go func() {
			defer s.untrackRaw(c)
			serve(c)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// echoTCP serves one TCP echo connection. With the behaviour's ResetRate it
// is reset (RST) at once instead.
func (s *Server) echoTCP(c net.Conn) {
	s.stats.tcpConns.Add(1)
	rnd := s.rng.derive()
	if s.resetAtAccept(c, rnd) {
		return
	}
	s.echo(c, c, rnd)
}

// resetAtAccept resets c (RST) and reports true for the behaviour's
// ResetRate share of connections, counted in the resets stat.
func (s *Server) resetAtAccept(c net.Conn, rnd *rand.Rand) bool {
	if b := s.behaviour.Load(); b.ResetRate == 0 || rnd.Float64() >= b.ResetRate {
		return false
	}
	s.stats.resets.Add(1)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	return true
}

// echo copies what it reads from r (c's data, possibly buffered) back to c.
// Each chunk read is held for the behaviour's latency first. When the peer
// half-closes, the rest is echoed and then c is closed, write side first.
func (s *Server) echo(c net.Conn, r io.Reader, rnd *rand.Rand) {
	defer func() { _ = c.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if d := s.behaviour.Load().PickLatency(rnd); d > 0 && !sleep(s.ctx, d) {
				return
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
			s.stats.echoedBytes.Add(int64(n))
		}
		if err != nil {
			break
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
