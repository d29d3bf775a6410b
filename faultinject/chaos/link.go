package chaos

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultDialTimeout bounds the dial of the upstream when Config.DialTimeout
// is zero.
const DefaultDialTimeout = 5 * time.Second

// bufSize is the size of the pooled read buffers; a chunk is at most this.
const bufSize = 32 << 10

// chunkQueue is how many read chunks may wait for their writer per stream:
// reading ahead is what lets a latency toxic delay a stream without slowing
// it, and the bound keeps a stalled stream's memory small.
const chunkQueue = 4

// ErrNoToxic is returned by Remove for a name the Link does not hold.
var ErrNoToxic = errors.New("no such toxic")

// Config configures a Link. Only Upstream is required.
type Config struct {
	// Listen is the address the Link accepts on; empty means
	// "127.0.0.1:0" (a free port, see Link.Addr).
	Listen string
	// Upstream is the host:port every accepted connection is forwarded to.
	Upstream string
	// Seed seeds every random choice: which connections a toxic's
	// Toxicity selects, latency jitter and slice sizes. Zero is a seed
	// like any other.
	Seed uint64
	// DialTimeout bounds the upstream dial; zero means DefaultDialTimeout.
	// A connection whose upstream cannot be reached is closed.
	DialTimeout time.Duration
	// Logger receives connection and toxic events; nil discards them.
	Logger *slog.Logger
	// Marker, when set, is searched for in every byte the link forwards,
	// both ways; MarkerHits counts the finds. It is how a test sees, from
	// outside the processes, whether a known payload crosses the network
	// in plaintext. Empty disables the search.
	Marker []byte
}

// Link is an in-process TCP proxy from a listen address to an upstream,
// with toxics that can be added and removed while it runs. Its methods are
// safe for concurrent use.
type Link struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	dialer net.Dialer
	set    atomic.Pointer[toxicSet]
	seq    atomic.Uint64
	hits   atomic.Uint64
	bufs   sync.Pool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // serialises toxic changes; guards the fields below
	conns   map[*conn]struct{}
	started bool
	closed  bool
}

// toxicSet is an immutable snapshot of a Link's toxics. changed is closed
// when a newer snapshot replaces it.
type toxicSet struct {
	toxics  []*toxic
	changed chan struct{}
}

// toxic is a Toxic as added, with its derived constants.
type toxic struct {
	Toxic
	stream Stream
	p      float64
	key    uint64 // hash of the name, for the toxicity draw
}

// New validates cfg and binds the listener, so Addr is known before Start.
func New(cfg Config) (*Link, error) {
	if cfg.Upstream == "" {
		return nil, errors.New("chaos: Config.Upstream is empty; name the host:port to forward to")
	}
	if _, _, err := net.SplitHostPort(cfg.Upstream); err != nil {
		return nil, fmt.Errorf("chaos: upstream %q: %w", cfg.Upstream, err)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("chaos: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{
		cfg:    cfg,
		log:    log.With("component", "chaos", "listen", ln.Addr().String(), "upstream", cfg.Upstream),
		ln:     ln,
		dialer: net.Dialer{Timeout: cfg.DialTimeout},
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*conn]struct{}),
	}
	l.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	l.set.Store(&toxicSet{changed: make(chan struct{})})
	return l, nil
}

// MarkerHits is the number of times Config.Marker was seen in forwarded
// bytes.
func (l *Link) MarkerHits() uint64 { return l.hits.Load() }

// Addr is the address the Link accepts on (with the port the OS chose).
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Upstream is the address connections are forwarded to.
func (l *Link) Upstream() string { return l.cfg.Upstream }

// Start begins accepting connections. It fails when called twice or after
// Close.
func (l *Link) Start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return errors.New("chaos: Start after Close")
	case l.started:
		return errors.New("chaos: Start called twice")
	}
	l.started = true
	l.wg.Add(1)
	go l.acceptLoop()
	l.log.Debug("link started")
	return nil
}

// Close stops accepting, closes every connection and waits until all of
// the Link's goroutines are gone. It is idempotent.
func (l *Link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()

	l.cancel()
	err := l.ln.Close()
	for _, c := range conns {
		c.close()
	}
	l.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Add installs a toxic. It applies to open connections at once and to
// every new one. A name already in use, or an invalid toxic, is an error.
func (l *Link) Add(t Toxic) error {
	if err := t.validate(); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("chaos: add toxic %q: link is closed", t.Name)
	}
	old := l.set.Load()
	for _, o := range old.toxics {
		if o.Name == t.Name {
			return fmt.Errorf("chaos: a toxic named %q is already on this link (%s); remove it first or choose another name", t.Name, o.Toxic)
		}
	}
	h := fnv.New64a()
	h.Write([]byte(t.Name))
	nt := &toxic{Toxic: t, stream: t.Stream.normal(), p: t.toxicity(), key: h.Sum64()}
	nt.Toxicity = new(nt.p) // no aliasing of the caller's pointer
	l.publish(old, append(slices.Clone(old.toxics), nt))
	if k, ok := t.Kind.(Timeout); ok && k.Timeout > 0 {
		for c := range l.conns {
			c.startTimer(nt, k.Timeout)
		}
	}
	l.log.Info("toxic added", "toxic", nt.Toxic.String())
	return nil
}

// Remove uninstalls the named toxic; the bytes that follow flow as if it
// had never been there. An unknown name is ErrNoToxic.
func (l *Link) Remove(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.set.Load()
	i := slices.IndexFunc(old.toxics, func(t *toxic) bool { return t.Name == name })
	if i < 0 {
		return fmt.Errorf("chaos: remove %q: %w", name, ErrNoToxic)
	}
	t := old.toxics[i]
	l.publish(old, slices.Delete(slices.Clone(old.toxics), i, i+1))
	for c := range l.conns {
		c.stopTimer(t)
	}
	l.log.Info("toxic removed", "toxic", name)
	return nil
}

// Toxics returns the installed toxics in the order they were added.
func (l *Link) Toxics() []Toxic {
	set := l.set.Load()
	out := make([]Toxic, len(set.toxics))
	for i, t := range set.toxics {
		out[i] = t.Toxic
		out[i].Toxicity = new(t.p)
	}
	return out
}

// publish replaces the snapshot; l.mu is held.
func (l *Link) publish(old *toxicSet, toxics []*toxic) {
	l.set.Store(&toxicSet{toxics: toxics, changed: make(chan struct{})})
	close(old.changed)
}

// has reports whether t is still installed.
func (l *Link) has(t *toxic) bool {
	return slices.Contains(l.set.Load().toxics, t)
}

// affects reports whether t applies to the connection accepted seq-th:
// a pure function of the seed, the toxic's name and seq, so it is the same
// every time it is asked and in every run with the same seed.
func (l *Link) affects(t *toxic, seq uint64) bool {
	switch {
	case t.p >= 1:
		return true
	case t.p <= 0:
		return false
	}
	h := mix(mix(l.cfg.Seed^t.key) ^ seq)
	return float64(h>>11)/(1<<53) < t.p
}

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (l *Link) getBuf() *[]byte  { return l.bufs.Get().(*[]byte) }
func (l *Link) putBuf(b *[]byte) { l.bufs.Put(b) }

func (l *Link) acceptLoop() {
	defer l.wg.Done()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			l.log.Warn("accept failed; retrying", "err", err)
			select {
			case <-time.After(10 * time.Millisecond):
			case <-l.ctx.Done():
				return
			}
			continue
		}
		seq := l.seq.Add(1) - 1
		l.wg.Add(1)
		go l.serve(nc.(*net.TCPConn), seq)
	}
}

// serve dials the upstream for one accepted connection and forwards both
// streams until they end.
func (l *Link) serve(client *net.TCPConn, seq uint64) {
	defer l.wg.Done()
	nc, err := l.dialer.DialContext(l.ctx, "tcp", l.cfg.Upstream)
	if err != nil {
		l.log.Debug("upstream unreachable; closing the client connection", "conn", seq, "err", err)
		client.Close()
		return
	}
	client.SetNoDelay(true)
	up := nc.(*net.TCPConn)
	up.SetNoDelay(true)
	ctx, cancel := context.WithCancel(l.ctx)
	c := &conn{l: l, seq: seq, client: client, upstream: up, ctx: ctx, cancel: cancel}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.close()
		return
	}
	l.conns[c] = struct{}{}
	for _, t := range l.set.Load().toxics {
		if k, ok := t.Kind.(Timeout); ok && k.Timeout > 0 {
			c.startTimer(t, k.Timeout)
		}
	}
	l.mu.Unlock()
	l.log.Debug("connection opened", "conn", seq, "client", client.RemoteAddr().String())

	l.wg.Add(1)
	upDone := make(chan struct{})
	go func() {
		defer l.wg.Done()
		defer close(upDone)
		c.pipe(Upstream, client, up)
	}()
	c.pipe(Downstream, up, client)
	<-upDone
	c.close()

	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.log.Debug("connection closed", "conn", seq)
}

// conn is one proxied connection.
type conn struct {
	l                *Link
	seq              uint64
	client, upstream *net.TCPConn
	ctx              context.Context
	cancel           context.CancelFunc

	mu     sync.Mutex
	timers map[*toxic]*time.Timer
	closed bool
}

// close ends the connection: both sockets closed, every wait released.
// It is idempotent.
func (c *conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for t, tm := range c.timers {
		tm.Stop()
		delete(c.timers, t)
	}
	c.mu.Unlock()
	c.cancel()
	c.client.Close()
	c.upstream.Close()
}

// reset ends the connection with a TCP RST to dst and a close to the other
// side.
func (c *conn) reset(dst *net.TCPConn) {
	dst.SetLinger(0)
	c.close()
}

// startTimer arms t's close timer if t affects the connection. l.mu is held.
func (c *conn) startTimer(t *toxic, d time.Duration) {
	if !c.l.affects(t, c.seq) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.timers == nil {
		c.timers = make(map[*toxic]*time.Timer)
	}
	c.timers[t] = time.AfterFunc(d, func() {
		if c.l.has(t) {
			c.l.log.Debug("timeout toxic closes the connection", "conn", c.seq, "toxic", t.Name)
			c.close()
		}
	})
}

func (c *conn) stopTimer(t *toxic) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tm := c.timers[t]; tm != nil {
		tm.Stop()
		delete(c.timers, t)
	}
}

// clamp returns d as a Duration, saturating instead of overflowing.
func clamp(d float64) time.Duration {
	if d >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}
