package idleconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/skiff-mesh/skiff/internal/procfs"
	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/simulator/demo"
)

// Kind is the kind of client connection measured.
type Kind string

// Kinds.
const (
	// KindHTTP1 is plaintext HTTP/1.1 with keep-alive: an unmeshed client.
	KindHTTP1 Kind = "http1"
	// KindH2MTLS is mutual TLS 1.3 with ALPN h2: a peer sidecar.
	KindH2MTLS Kind = "h2-mtls"
)

// Kinds lists every kind, in the order reports give them.
var Kinds = []Kind{KindHTTP1, KindH2MTLS}

// ParseKind reads a kind by its name.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("connection kind %q: want http1 or h2-mtls", s)
}

// DefaultTargetKiB is issue 12's target for one idle connection.
const DefaultTargetKiB = 12

// Defaults of Config's zero fields.
const (
	DefaultSettleInterval  = time.Second
	DefaultSettleTolerance = 0.01
	DefaultMaxSettle       = 15 * time.Second
	DefaultConcurrency     = 32
	DefaultWarmUp          = 16
	// DefaultConnTimeout bounds one connection's set-up: dial, handshake,
	// request and response.
	DefaultConnTimeout = 10 * time.Second
)

// DefaultSourceAddrs are the client addresses, 127.0.0.10 to 127.0.0.40:
// the proxy refuses an address more than a quarter of its connection cap
// once it is half full, so the connections come from many.
func DefaultSourceAddrs() []netip.Addr {
	var out []netip.Addr
	for i := 10; i <= 40; i++ {
		out = append(out, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
	}
	return out
}

// Config is a measurement. ProxyBin is required; every other zero field
// takes the default stated on it.
type Config struct {
	// ProxyBin is the skiff-proxy binary, built as the Makefile builds it
	// (static, CGO_ENABLED=0, -trimpath): its memory is the point.
	ProxyBin string
	// Conns are the connection counts, each measured on a fresh proxy.
	// Nil means {1000}.
	Conns []int
	// Kinds are the kinds measured, each at every count. Nil means
	// {KindHTTP1}.
	Kinds []Kind
	// SourceAddrs are the loopback addresses connections come from, in
	// turn. Nil means DefaultSourceAddrs.
	SourceAddrs []netip.Addr
	// TargetKiB is the most one connection may cost (ΔVmRSS/N) to pass.
	// Zero means DefaultTargetKiB.
	TargetKiB float64
	// SettleInterval, SettleTolerance and MaxSettle define "settled": two
	// VmRSS readings SettleInterval apart that differ by less than
	// SettleTolerance (a fraction), waiting at most MaxSettle. Zero means
	// 1 s, 1 % and 15 s.
	SettleInterval  time.Duration
	SettleTolerance float64
	MaxSettle       time.Duration
	// MinSettle is a wait before the forced collections (ForceGC) and
	// the settling, for what the proxy does only after a connection has
	// been idle a while. Zero means none.
	MinSettle time.Duration
	// Concurrency is how many connections are set up at once. Zero means
	// DefaultConcurrency.
	Concurrency int
	// WarmUp is how many connections are opened and closed before the
	// first reading. Zero means DefaultWarmUp; negative means none.
	WarmUp int
	// ConnTimeout bounds one connection's set-up. Zero means
	// DefaultConnTimeout.
	ConnTimeout time.Duration
	// ProxyArgs are appended to the proxy's command line (they win over
	// the measurement's own flags), and ProxyEnv to its environment.
	ProxyArgs, ProxyEnv []string
	// ProfileDir, when set, runs the proxy with --pprof (its binary must
	// be built with -tags pprof) and saves its heap and goroutine
	// profiles before and after the connections there; the report then
	// gives the Go runtime's own figures (heap, stacks, goroutines).
	ProfileDir string
	// ForceGC, with ProfileDir, has the proxy run that many full garbage
	// collections (through /debug/pprof/heap?gc=1) before each reading:
	// each shrinks the goroutine stacks that use under a quarter of
	// theirs by half, as the runtime's forced collection every two
	// minutes would in an idle sidecar. Zero forces none.
	ForceGC int
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Normalize fills the defaults and checks the configuration.
func (c *Config) Normalize() error {
	if c.ProxyBin == "" {
		return errors.New("idleconn: the skiff-proxy binary is not set")
	}
	if _, err := os.Stat(c.ProxyBin); err != nil {
		return fmt.Errorf("idleconn: the skiff-proxy binary: %w", err)
	}
	if c.Conns == nil {
		c.Conns = []int{1000}
	}
	for _, n := range c.Conns {
		if n <= 0 {
			return fmt.Errorf("idleconn: connection count %d: want at least 1", n)
		}
	}
	if c.Kinds == nil {
		c.Kinds = []Kind{KindHTTP1}
	}
	for _, k := range c.Kinds {
		if _, err := ParseKind(string(k)); err != nil {
			return fmt.Errorf("idleconn: %w", err)
		}
	}
	if c.SourceAddrs == nil {
		c.SourceAddrs = DefaultSourceAddrs()
	}
	if len(c.SourceAddrs) == 0 {
		return errors.New("idleconn: no source addresses")
	}
	for _, a := range c.SourceAddrs {
		if !a.IsLoopback() {
			return fmt.Errorf("idleconn: source address %s is not a loopback address", a)
		}
	}
	if c.TargetKiB == 0 {
		c.TargetKiB = DefaultTargetKiB
	}
	if c.SettleInterval == 0 {
		c.SettleInterval = DefaultSettleInterval
	}
	if c.SettleTolerance == 0 {
		c.SettleTolerance = DefaultSettleTolerance
	}
	if c.MaxSettle == 0 {
		c.MaxSettle = DefaultMaxSettle
	}
	if c.TargetKiB < 0 || c.MinSettle < 0 || c.SettleInterval < 0 || c.SettleTolerance < 0 || c.MaxSettle < c.SettleInterval {
		return errors.New("idleconn: TargetKiB, MinSettle, SettleInterval and SettleTolerance must not be negative, MaxSettle at least SettleInterval")
	}
	if c.ForceGC < 0 || (c.ForceGC > 0 && c.ProfileDir == "") {
		return errors.New("idleconn: ForceGC needs ProfileDir (a proxy built with -tags pprof)")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.WarmUp == 0 {
		c.WarmUp = DefaultWarmUp
	}
	c.WarmUp = max(c.WarmUp, 0)
	if c.ConnTimeout <= 0 {
		c.ConnTimeout = DefaultConnTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run measures every kind at every count, in that order, each on a fresh
// proxy, and reports. An error means a measurement could not be made; a
// measurement that was made but is not valid (the proxy dropped
// connections) is in the report with the verdict results.Error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	backend, err := demo.New(demo.Config{Name: "idle-backend", Seed: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("idleconn: backend: %w", err)
	}
	if err := backend.Start(); err != nil {
		return nil, fmt.Errorf("idleconn: backend: %w", err)
	}
	defer backend.Close()
	var td *trustDomain
	if slices.Contains(cfg.Kinds, KindH2MTLS) {
		if td, err = newTrustDomain(ctx); err != nil {
			return nil, err
		}
		defer td.close()
	}
	rep := &Report{
		Machine:         procfs.CurrentMachine(),
		ProxyBin:        cfg.ProxyBin,
		TargetKiB:       cfg.TargetKiB,
		SettleInterval:  cfg.SettleInterval.String(),
		SettleTolerance: cfg.SettleTolerance,
		MaxSettle:       cfg.MaxSettle.String(),
		MinSettle:       cfg.MinSettle.String(),
		ForceGC:         cfg.ForceGC,
		Start:           time.Now().UTC(),
	}
	for _, k := range cfg.Kinds {
		for _, n := range cfg.Conns {
			cfg.Logger.Info("measuring", "kind", k, "conns", n)
			r, err := measure(ctx, cfg, backend.Addr(), td, k, n)
			if err != nil {
				return nil, fmt.Errorf("idleconn: %s × %d: %w", k, n, err)
			}
			cfg.Logger.Info("measured", "kind", k, "conns", n, "rss_kib_per_conn", r.RSSKiBPerConn, "verdict", r.Verdict)
			rep.Results = append(rep.Results, r)
		}
	}
	rep.Verdict = results.Pass
	for _, r := range rep.Results {
		switch {
		case r.Verdict == results.Error:
			rep.Verdict = results.Error
		case r.Verdict == results.Fail && rep.Verdict == results.Pass:
			rep.Verdict = results.Fail
		}
	}
	return rep, nil
}

// Authority is the Host (:authority) of the requests.
const Authority = "idle.skiff.test"

// measure is one kind at one count, on a fresh proxy.
func measure(ctx context.Context, cfg Config, backend string, td *trustDomain, k Kind, n int) (Result, error) {
	res := Result{Kind: k, Conns: n}
	workDir, err := os.MkdirTemp("", "skiff-idleconn-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(workDir)
	args := proxyArgs(backend, n)
	var open opener
	switch k {
	case KindHTTP1:
		open = openHTTP1
	case KindH2MTLS:
		more, err := td.proxyArgs(workDir)
		if err != nil {
			return res, err
		}
		args = append(args, more...)
		tlsCfg := td.clientTLS()
		open = func(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
			return openH2MTLS(ctx, d, addr, tlsCfg)
		}
	}
	if cfg.ProfileDir != "" {
		args = append(args, "--pprof")
	}
	args = append(args, cfg.ProxyArgs...)
	p, err := startProxy(ctx, cfg.ProxyBin, args, cfg.ProxyEnv)
	if err != nil {
		return res, err
	}
	defer p.stop()
	res.ProxyArgs = args

	cl := &clients{cfg: cfg, addr: p.Inbound, open: open}
	if cfg.WarmUp > 0 {
		warm, err := cl.openN(ctx, cfg.WarmUp)
		closeAll(warm)
		if err != nil {
			return res, fmt.Errorf("warm-up: %w (proxy log:\n%s)", err, p.Logs)
		}
		if err := p.waitOpen(ctx, 0, cfg.MaxSettle); err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
	}
	if res.Before, err = p.settledReading(ctx, cfg, fmt.Sprintf("%s-%d-before", k, n)); err != nil {
		return res, err
	}
	before, err := p.scrape(ctx)
	if err != nil {
		return res, err
	}
	res.UpstreamBefore = int(before.upstream)

	start := time.Now()
	conns, err := cl.openN(ctx, n)
	defer closeAll(conns)
	res.OpenSeconds = time.Since(start).Seconds()
	res.Opened = len(conns)
	if err != nil {
		return res, fmt.Errorf("opening %d connections: %w (proxy log:\n%s)", n, err, p.Logs)
	}
	if res.After, err = p.settledReading(ctx, cfg, fmt.Sprintf("%s-%d-after", k, n)); err != nil {
		return res, err
	}
	after, err := p.scrape(ctx)
	if err != nil {
		return res, err
	}
	res.ProxyOpen = int(after.open)
	res.UpstreamAfter = int(after.upstream)
	res.Evicted = int64(after.evicted - before.evicted)
	res.Rejected = int64(after.rejected - before.rejected)
	res.Shed = int64(after.shed - before.shed)
	res.judge(cfg.TargetKiB)
	return res, nil
}

// proxyArgs are the proxy's flags for n connections: the connection cap
// and the memory budget raised well past what n idle connections need, so
// that the proxy neither evicts, refuses nor sheds them. The budget allows
// 64 KiB a connection (four times the target of slow-header connections
// the defaults are derived from) on top of 64 MiB, so that the shedding
// threshold (70 % of it) stays far off.
func proxyArgs(backend string, n int) []string {
	maxConns := n + n/4 + 64
	budgetMiB := 64 + (n*64+1023)/1024
	return []string{
		"--inbound-addr", "127.0.0.1:0", "--outbound-addr", "-", "--admin-addr", "127.0.0.1:0",
		"--inbound-forward", backend, "--log-format", "json",
		"--max-connections", fmt.Sprint(maxConns), "--memory-budget-mib", fmt.Sprint(budgetMiB),
	}
}

// clients opens connections of one kind to the proxy.
type clients struct {
	cfg  Config
	addr string
	open opener
}

// opener sets up one connection with d to addr and makes its request; it
// returns the socket, idle, with no deadline.
type opener func(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error)

// openN opens n connections, Concurrency at a time, the i-th from source
// address i mod len(SourceAddrs). It returns those that were opened and
// the first error; on error the caller still closes what was opened.
func (cl *clients) openN(ctx context.Context, n int) ([]net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		conns    = make([]net.Conn, 0, n)
		firstErr error
		failed   int
	)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(cl.cfg.Concurrency, n) {
		wg.Go(func() {
			for i := range next {
				src := cl.cfg.SourceAddrs[i%len(cl.cfg.SourceAddrs)]
				d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: cl.cfg.ConnTimeout}
				cctx, ccancel := context.WithTimeout(ctx, cl.cfg.ConnTimeout)
				c, err := cl.open(cctx, d, cl.addr)
				ccancel()
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d from %s: %w", i, src, err)
						cancel() // a broken set-up fails the same way N times
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil && len(conns) < n {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return conns, fmt.Errorf("%d of %d failed; first: %w", failed, n, firstErr)
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// judge sets the per-connection figures and the verdict.
func (r *Result) judge(targetKiB float64) {
	if r.Opened > 0 {
		per := func(after, before float64) float64 {
			return math.Round((after-before)*1024/float64(r.Opened)*100) / 100
		}
		r.RSSKiBPerConn = per(r.After.VmRSSMB, r.Before.VmRSSMB)
		r.AnonKiBPerConn = per(r.After.RssAnonMB, r.Before.RssAnonMB)
		r.PSSKiBPerConn = per(r.After.PssMB, r.Before.PssMB)
	}
	switch {
	case r.Evicted != 0 || r.Rejected != 0 || r.Shed != 0:
		r.Verdict = results.Error
		r.Why = fmt.Sprintf("the proxy dropped connections (evicted %d, rejected %d, shed %d): the figure is not of %d idle connections", r.Evicted, r.Rejected, r.Shed, r.Conns)
	case r.Opened != r.Conns || r.ProxyOpen != r.Conns:
		r.Verdict = results.Error
		r.Why = fmt.Sprintf("%d connections asked for, %d opened, the proxy counted %d open", r.Conns, r.Opened, r.ProxyOpen)
	case r.RSSKiBPerConn > targetKiB:
		r.Verdict = results.Fail
		r.Why = fmt.Sprintf("%.2f KiB per connection, over the target of %g KiB", r.RSSKiBPerConn, targetKiB)
	default:
		r.Verdict = results.Pass
	}
}
