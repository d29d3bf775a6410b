package proxy

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
)

// The memory budget. Everything a client on the network can make the
// proxy hold is bounded by caps derived from one figure, the budget, so
// that no attack (slow headers, stalled bodies, floods of connections,
// streams or requests) takes the sidecar's peak resident memory past it.
// The arithmetic, with costs measured as VmHWM growth of the real binary
// under the hostile-client suite (mesh/proxy/hostile, docs/proxy.md):
//
//	traffic     = budget − reserve                 (32 − 10 = 22 MiB by default)
//	connections = traffic/2 ÷ connCost             (11 MiB ÷ 17 KiB ≈ 662)
//	in flight   = traffic/2 ÷ requestCost          (11 MiB ÷ 48 KiB ≈ 234)
//
// each then split evenly between the inbound and outbound listeners. The
// reserve is what the proxy holds without hostile traffic: the binary's
// resident pages, the runtime, TLS state, and a steady load (VmHWM 8.5 to
// 10.9 MB measured with mutual TLS at 500 req/s).
const (
	// DefaultMemoryBudget is the peak resident memory the caps are
	// derived for.
	DefaultMemoryBudget = 32 << 20
	// memoryReserve is held back from the budget for the proxy itself.
	memoryReserve = 10 << 20
	// connCost is what an accepted client connection costs while it
	// sends a request's headers or waits between requests: its serving
	// goroutine's stack, net/http's 4 KiB read and write buffers, the
	// socket's state (17 KB per slowloris connection, measured).
	connCost = 17 << 10
	// requestCost is what a request in flight adds to its connection, at
	// worst: forwarded over HTTP/1.1, it holds an upstream connection of
	// its own (two goroutines, two 4 KiB buffers) and a deeper stack
	// (about 50 KB per stalled request, measured).
	requestCost = 48 << 10
	// minConnections and minInFlight keep a tiny budget usable.
	minConnections = 32
	minInFlight    = 16
)

// Every request being handled, a refused one included, costs a goroutine
// and, over HTTP/2, the stream's state (about 14 KB in all): a client that
// opens streams faster than it reads their answers makes them pile up,
// across connections, whatever the in-flight cap admits. So the proxy
// handles at most maxActive requests at once, activeFactor times its
// in-flight caps; beyond it, a request on a connection holding more than
// activeShare of them closes that connection, which frees them all.
const (
	activeFactor = 2
	activeShare  = 16
)

// limits are the caps derived from a memory budget, per listener.
type limits struct {
	connections, inFlight int
}

// limitsFor derives the caps of each of the two listeners from budget.
func limitsFor(budget int64) limits {
	traffic := max(budget-memoryReserve, 0)
	return limits{
		connections: max(int(traffic/2/connCost/2), minConnections),
		inFlight:    max(int(traffic/2/requestCost/2), minInFlight),
	}
}

// Shares of a listener's in-flight cap, applied once half of it is in use:
// below that anyone may use the rest; above it a connection or a client
// already holding its share gets 503, so that a few clients, stalling or
// flooding, cannot take every slot from the others.
const (
	connShareDiv   = 8 // a connection may hold 1/8 of the cap
	clientShareDiv = 4 // a client (identity, or address) 1/4
)

// clientShare counts the requests in flight of one client across its
// connections.
type clientShare struct {
	key   string
	n     atomic.Int64
	conns int // guarded by clients.mu
}

// clients tracks the clients of a listener with a connection open.
type clients struct {
	mu sync.Mutex
	m  map[string]*clientShare
}

// get returns key's share, counting one more connection.
func (cs *clients) get(key string) *clientShare {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = make(map[string]*clientShare)
	}
	s := cs.m[key]
	if s == nil {
		s = &clientShare{key: key}
		cs.m[key] = s
	}
	s.conns++
	return s
}

// put releases one connection's hold on s.
func (cs *clients) put(s *clientShare) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if s.conns--; s.conns == 0 {
		delete(cs.m, s.key)
	}
}

// clientKey names the client of c: its verified identity when it has one,
// else its address (a pod, on the inbound side).
func clientKey(c *conn) string {
	if c.peerID != "" {
		return c.peerID
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().String()
	}
	return c.RemoteAddr().String()
}

// connTable holds a listener's open client connections, to find the one
// to close when the cap is reached.
type connTable struct {
	mu sync.Mutex
	m  map[*conn]struct{}
}

func (t *connTable) add(c *conn) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[*conn]struct{})
	}
	t.m[c] = struct{}{}
	t.mu.Unlock()
}

func (t *connTable) remove(c *conn) {
	t.mu.Lock()
	delete(t.m, c)
	t.mu.Unlock()
}

// shedAddrConns is how many connections an address may hold while memory
// is short: enough for a client with a kept-alive and a new connection,
// not for a flood of them.
const shedAddrConns = 4

// minEvictIdle is how long a connection must have gone without a request
// in flight before it may be closed to make room: a client that sends a
// request at least this often keeps its connection, and a new one is
// never closed before it could send its first.
const minEvictIdle = time.Second

// idlest returns the connection that has gone longest with no request in
// flight, at least minEvictIdle (a slowloris connection still sending its
// first headers, or a kept-alive one between requests), or nil.
func (t *connTable) idlest(now time.Time) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	var best *conn
	since := now.Add(-minEvictIdle).UnixNano()
	for c := range t.m {
		if c.inflight.Load() > 0 || c.closed.Load() {
			continue
		}
		if s := c.idleSince.Load(); s <= since {
			best, since = c, s
		}
	}
	return best
}

// idle returns the HTTP/2 connections with no request in flight since
// before cutoff (Unix ns).
func (t *connTable) idle(cutoff int64) []*conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*conn
	for c := range t.m {
		if c.h2.Load() && c.inflight.Load() == 0 && c.idleSince.Load() < cutoff {
			out = append(out, c)
		}
	}
	return out
}

// addrConns counts a listener's open connections per client address, for
// the connection share.
type addrConns struct {
	mu sync.Mutex
	m  map[netip.Addr]int
}

// take counts one more connection from a, unless a already holds share
// and the listener is past half its cap; it reports whether it counted.
func (ac *addrConns) take(a netip.Addr, share int, pressed bool) bool {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.m == nil {
		ac.m = make(map[netip.Addr]int)
	}
	if pressed && ac.m[a] >= share {
		return false
	}
	ac.m[a]++
	return true
}

func (ac *addrConns) give(a netip.Addr) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.m[a]--; ac.m[a] <= 0 {
		delete(ac.m, a)
	}
}

// admitConn decides whether to serve a new connection from addr: at the
// cap it first closes the idlest connection to make room; inbound, past
// half the cap, an address already holding a quarter of it is refused,
// and while memory is short (overload) one already holding a connection.
// It returns whether addr's count was taken (to give back at close), and
// the reason label of a refusal, or "".
func (l *listener) admitConn(addr netip.Addr) (counted bool, reason string) {
	shedding := l.p.overload.shedding.Load()
	if l.clientShares || shedding {
		pressed := l.conns.n.Load() > l.conns.max/2
		share := int(max(l.conns.max/clientShareDiv, 1))
		if shedding {
			pressed, share = true, shedAddrConns
		}
		if !l.byAddr.take(addr, share, pressed) {
			if shedding {
				return false, "memory"
			}
			return false, "client_share"
		}
		counted = true
	}
	if !l.conns.acquire() {
		// At the cap, the connection that has gone longest without a
		// request in flight (a slowloris one, or an idle keep-alive)
		// makes room: a new client is served, an attacker's pile of
		// silent connections is not kept.
		if v := l.table.idlest(time.Now()); v != nil {
			v.Close()
			l.evicted.Add(1)
		}
		if !l.conns.acquire() {
			if counted {
				l.byAddr.give(addr)
			}
			return false, "connection_limit"
		}
	}
	return counted, ""
}

// admit takes a request slot for a request on c, or says which bound
// refused it. It returns the client share it counted the request in, to
// give back to done.
func (l *listener) admit(c *conn) (*clientShare, error) {
	share, err := l.admitNow(c)
	// Planted: a request a bound refuses waits for a slot, checking every
	// millisecond until its connection closes, instead of getting its 503
	// at once (its refusals are counted at each check).
	for err != nil && plant.On(plant.SheddingOff) && (c == nil || !c.closed.Load()) {
		time.Sleep(time.Millisecond)
		share, err = l.admitNow(c)
	}
	return share, err
}

// admitNow is admit without waiting.
func (l *listener) admitNow(c *conn) (*clientShare, error) {
	n := l.inflight.n.Add(1)
	if n > l.inflight.max {
		l.inflight.n.Add(-1)
		l.rejected.Add(1)
		return nil, errInFlight
	}
	if c == nil {
		return nil, nil
	}
	share := c.client.Load()
	if n > l.inflight.max/2 || l.p.overload.shedding.Load() {
		switch {
		case int64(c.inflight.Load()) >= max(l.inflight.max/connShareDiv, 1):
			l.inflight.n.Add(-1)
			l.rejectedConn.Add(1)
			return nil, errConnShare
		case share != nil && share.n.Load() >= max(l.inflight.max/clientShareDiv, 1):
			l.inflight.n.Add(-1)
			l.rejectedClient.Add(1)
			return nil, errClientShare
		}
	}
	c.inflight.Add(1)
	if share != nil {
		share.n.Add(1)
	}
	return share, nil
}

// done gives back the slot admit took.
func (l *listener) done(c *conn, share *clientShare) {
	l.inflight.n.Add(-1)
	if c == nil {
		return
	}
	if share != nil {
		share.n.Add(-1)
	}
	if c.inflight.Add(-1) == 0 {
		c.idleSince.Store(time.Now().UnixNano())
	}
}
