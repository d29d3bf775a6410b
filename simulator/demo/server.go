package demo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// DefaultName is the replica name used when Config.Name is empty.
const DefaultName = "skiff-demo"

// DefaultShutdownTimeout bounds Close when Config.ShutdownTimeout is zero.
const DefaultShutdownTimeout = 5 * time.Second

// Config configures a Server. The zero value works: HTTP/1.1, h2c and gRPC
// on a random port of 127.0.0.1, no native gRPC, TCP echo, TLS echo or
// banner listener, a healthy backend, a seed from the clock and no
// logging.
type Config struct {
	// Addr is the listen address for HTTP/1.1, h2c, gRPC-over-h2c and the
	// admin endpoints; "" means "127.0.0.1:0".
	Addr string
	// GRPCAddr, if set, adds a listener served by the native grpc.Server
	// (faster than gRPC through net/http on Addr); "" means none.
	GRPCAddr string
	// TCPAddr, if set, adds an opaque TCP echo listener; "" means none.
	TCPAddr string
	// TLSAddr, if set, adds a TLS echo listener: the workload's own TLS,
	// with a self-signed certificate for TLSCommonName made at New, that
	// echoes what the client sends until it closes its side; "" means
	// none.
	TLSAddr string
	// BannerAddr, if set, adds a server-speaks-first listener: an
	// SMTP-like banner, then replies to NOOP and QUIT (banner.go); ""
	// means none.
	BannerAddr string
	// Name identifies the replica in bodies, the Skiff-Demo-Replica header
	// and stats; "" means DefaultName.
	Name string
	// Behaviour is the server-wide fault behaviour at start, and what
	// DELETE /_demo/behaviour restores. The zero value injects nothing.
	Behaviour Behaviour
	// Seed seeds the fault randomness; 0 means one taken from the clock.
	// A fixed seed and sequential requests give a repeatable fault sequence.
	Seed uint64
	// ShutdownTimeout bounds Close; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger receives startup, behaviour-change and error logs; nil
	// discards them.
	Logger *slog.Logger
}

// Server is the skiff-demo backend. Create it with New, then Start it, and
// stop it with Shutdown or Close. Its methods are safe for concurrent use.
type Server struct {
	cfg       Config
	log       *slog.Logger
	behaviour atomic.Pointer[Behaviour]
	rng       randSource
	stats     counters
	gate      gate // Behaviour.MaxConcurrent
	ready     atomic.Bool

	httpSrv   *http.Server
	grpcSrv   *grpc.Server
	health    *health.Server
	tlsConfig *tls.Config // the TLS echo's; nil without Config.TLSAddr

	// ctx ends when shutdown gives up waiting; it bounds the delays of raw
	// (TCP echo and upgraded) connections.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	started  bool
	closing  bool
	httpLn   net.Listener
	grpcLn   net.Listener
	tcpLn    net.Listener
	tlsLn    net.Listener
	bannerLn net.Listener
	// conns maps remote addresses to the connections of the HTTP and native
	// gRPC listeners, so that a gRPC handler can close its own connection.
	conns map[string]net.Conn
	// raw holds hijacked and TCP echo connections, which http.Server and
	// grpc.Server do not track; rawWG counts their goroutines.
	raw   map[net.Conn]struct{}
	rawWG sync.WaitGroup

	serveWG  sync.WaitGroup
	errc     chan error
	stopOnce sync.Once
	stopErr  error
}

// New checks cfg and builds a Server without binding any port.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	if err := cfg.Behaviour.Validate(); err != nil {
		return nil, fmt.Errorf("demo: behaviour: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:   cfg,
		log:   log.With("component", "skiff-demo", "replica", cfg.Name),
		conns: map[string]net.Conn{},
		raw:   map[net.Conn]struct{}{},
		errc:  make(chan error, 5),
	}
	if cfg.TLSAddr != "" {
		cert, err := selfSigned(cfg.Name)
		if err != nil {
			return nil, err
		}
		s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.rng.r = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	b := cfg.Behaviour
	s.behaviour.Store(&b)

	s.grpcSrv = grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	)
	s.grpcSrv.RegisterService(&echoServiceDesc, &echoService{s: s})
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(EchoService, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpcSrv, s.health)

	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	mux := s.routes()
	s.httpSrv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				s.grpcSrv.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnState:         s.connState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Start binds the configured listeners and serves them in the background.
// It logs the bound addresses as one line. It fails if a port cannot be
// bound or if the Server was already started or shut down.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closing {
		return errors.New("demo: Start called twice or after Shutdown")
	}
	var lc net.ListenConfig
	listen := func(addr, what string) (net.Listener, error) {
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("demo: listen for %s on %s: %w", what, addr, err)
		}
		return ln, nil
	}
	var lns []net.Listener
	fail := func(err error) error {
		for _, ln := range lns {
			_ = ln.Close()
		}
		return err
	}
	httpLn, err := listen(s.cfg.Addr, "HTTP")
	if err != nil {
		return err
	}
	lns = append(lns, httpLn)
	var grpcLn, tcpLn, tlsLn, bannerLn net.Listener
	for _, l := range []struct {
		addr, what string
		ln         *net.Listener
	}{{s.cfg.GRPCAddr, "gRPC", &grpcLn}, {s.cfg.TCPAddr, "TCP echo", &tcpLn}, {s.cfg.TLSAddr, "TLS echo", &tlsLn}, {s.cfg.BannerAddr, "banner", &bannerLn}} {
		if l.addr == "" {
			continue
		}
		if *l.ln, err = listen(l.addr, l.what); err != nil {
			return fail(err)
		}
		lns = append(lns, *l.ln)
	}
	s.started = true
	s.httpLn, s.grpcLn, s.tcpLn, s.tlsLn, s.bannerLn = httpLn, grpcLn, tcpLn, tlsLn, bannerLn
	s.ready.Store(true)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(EchoService, healthpb.HealthCheckResponse_SERVING)

	s.serveWG.Go(func() {
		if err := s.httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			s.fail(fmt.Errorf("demo: serve HTTP: %w", err))
		}
	})
	if grpcLn != nil {
		s.serveWG.Go(func() {
			if err := s.grpcSrv.Serve(trackedListener{Listener: grpcLn, s: s}); err != nil {
				s.fail(fmt.Errorf("demo: serve gRPC: %w", err))
			}
		})
	}
	for _, l := range []struct {
		ln    net.Listener
		what  string
		serve func(net.Conn)
	}{{tcpLn, "tcp echo", s.echoTCP}, {tlsLn, "tls echo", s.echoTLS}, {bannerLn, "banner", s.serveBanner}} {
		if l.ln == nil {
			continue
		}
		s.serveWG.Go(func() {
			if err := s.serveRaw(l.ln, l.what, l.serve); err != nil {
				s.fail(err)
			}
		})
	}
	s.log.Info("skiff-demo listening",
		"addr", httpLn.Addr().String(),
		"grpc_addr", addrOf(grpcLn),
		"tcp_addr", addrOf(tcpLn),
		"tls_addr", addrOf(tlsLn),
		"banner_addr", addrOf(bannerLn),
		"seed", s.cfg.Seed)
	return nil
}

// fail reports a serving error to Serve, and logs it.
func (s *Server) fail(err error) {
	s.log.Error("listener failed", "err", err)
	select {
	case s.errc <- err:
	default:
	}
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Addr returns the bound HTTP/h2c/gRPC address, "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return addrOf(s.httpLn)
}

// GRPCAddr returns the bound native gRPC address, "" if none.
func (s *Server) GRPCAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return addrOf(s.grpcLn)
}

// TCPAddr returns the bound TCP echo address, "" if none.
func (s *Server) TCPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return addrOf(s.tcpLn)
}

// TLSAddr returns the bound TLS echo address, "" if none.
func (s *Server) TLSAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return addrOf(s.tlsLn)
}

// BannerAddr returns the bound banner address, "" if none.
func (s *Server) BannerAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return addrOf(s.bannerLn)
}

// Name returns the replica name.
func (s *Server) Name() string { return s.cfg.Name }

// Behaviour returns the current server-wide behaviour.
func (s *Server) Behaviour() Behaviour { return *s.behaviour.Load() }

// SetBehaviour validates b and makes it the server-wide behaviour.
func (s *Server) SetBehaviour(b Behaviour) error {
	if err := b.Validate(); err != nil {
		return err
	}
	s.behaviour.Store(&b)
	s.log.Info("behaviour changed", "behaviour", summary(b))
	return nil
}

// ResetBehaviour restores Config.Behaviour.
func (s *Server) ResetBehaviour() {
	b := s.cfg.Behaviour
	s.behaviour.Store(&b)
	s.log.Info("behaviour reset", "behaviour", summary(b))
}

func summary(b Behaviour) string {
	j, _ := b.MarshalJSON()
	return string(j)
}

// Stats returns a snapshot of the request counters.
func (s *Server) Stats() Stats {
	st := s.stats.snapshot(s.cfg.Name)
	st.Waiting = int64(s.gate.waiters())
	return st
}

// ResetStats zeroes the request counters.
func (s *Server) ResetStats() { s.stats.reset() }

// Close shuts the Server down gracefully within Config.ShutdownTimeout.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	return s.Shutdown(ctx)
}

// Shutdown stops the Server: readiness and gRPC health turn NOT_SERVING,
// listeners close, in-flight requests, streams and echo connections may
// finish until ctx ends, then everything left is closed. Later calls return
// the first result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.shutdown(ctx) })
	return s.stopErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.ready.Store(false)
	s.health.Shutdown()
	s.mu.Lock()
	s.closing = true
	raw := []net.Listener{s.tcpLn, s.tlsLn, s.bannerLn}
	s.mu.Unlock()
	for _, ln := range raw {
		if ln != nil {
			_ = ln.Close()
		}
	}

	var errs []error
	var wg sync.WaitGroup
	wg.Go(func() {
		// gRPC over h2c runs inside HTTP handlers, so the HTTP server drains
		// first and the gRPC server then only holds native connections.
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			_ = s.httpSrv.Close()
		}
		done := make(chan struct{})
		go func() { s.grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.grpcSrv.Stop()
			<-done
		}
	})
	wg.Go(func() {
		done := make(chan struct{})
		go func() { s.rawWG.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel()
			s.mu.Lock()
			for c := range s.raw {
				_ = c.Close()
			}
			s.mu.Unlock()
			<-done
		}
	})
	wg.Wait()
	s.cancel()
	s.serveWG.Wait()
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("demo: shutdown deadline passed, remaining connections were closed: %w", ctx.Err()))
	}
	s.log.Info("skiff-demo stopped")
	return errors.Join(errs...)
}

// Serve runs a Server for cfg until ctx ends or a listener fails, then shuts
// it down within cfg.ShutdownTimeout. It returns nil after a clean shutdown
// caused by ctx.
func Serve(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-s.errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	return errors.Join(runErr, s.Shutdown(sctx))
}

// connState keeps s.conns in step with the HTTP listener's connections.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.register(c)
	case http.StateHijacked, http.StateClosed:
		s.unregister(c)
	}
}

func (s *Server) register(c net.Conn) {
	s.mu.Lock()
	s.conns[c.RemoteAddr().String()] = c
	s.mu.Unlock()
}

func (s *Server) unregister(c net.Conn) {
	key := c.RemoteAddr().String()
	s.mu.Lock()
	if s.conns[key] == c {
		delete(s.conns, key)
	}
	s.mu.Unlock()
}

// closePeer closes the connection that carries the gRPC call of ctx.
func (s *Server) closePeer(ctx context.Context) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return
	}
	s.mu.Lock()
	c := s.conns[p.Addr.String()]
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// trackRaw registers a hijacked or TCP echo connection; false means the
// Server is shutting down and the caller must close c.
func (s *Server) trackRaw(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.raw[c] = struct{}{}
	s.rawWG.Add(1)
	return true
}

func (s *Server) untrackRaw(c net.Conn) {
	s.mu.Lock()
	delete(s.raw, c)
	s.mu.Unlock()
	s.rawWG.Done()
}

// trackedListener registers the native gRPC listener's connections in
// s.conns, which grpc.Server does not expose.
type trackedListener struct {
	net.Listener
	s *Server
}

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: l.s}
	l.s.register(tc)
	return tc, nil
}

type trackedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.unregister(c) })
	return c.Conn.Close()
}

// randSource hands out per-request generators derived from one seeded PCG,
// so the lock is held once per request rather than once per draw.
type randSource struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (s *randSource) derive() *rand.Rand {
	s.mu.Lock()
	a, b := s.r.Uint64(), s.r.Uint64()
	s.mu.Unlock()
	return rand.New(rand.NewPCG(a, b))
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
