// Command skiff-proxy is Skiff's sidecar proxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-mesh/skiff/internal/logging"
	"github.com/skiff-mesh/skiff/internal/memtrim"
	"github.com/skiff-mesh/skiff/mesh/proxy"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
)

func main() {
	if !proxy.PprofAvailable {
		// Nothing can read a heap profile from this build: don't pay for
		// sampling stacks and keeping the profile's buckets.
		runtime.MemProfileRate = 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "skiff-proxy:", err)
		os.Exit(1)
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func parsePorts(flagName, s string) ([]uint16, error) {
	if s == "" {
		return []uint16{}, nil
	}
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil {
			return nil, fmt.Errorf("--%s: %q is not a port number", flagName, f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "init" {
		return runInit(ctx, args[1:], os.Stdout, stderr, nil)
	}
	fs := flag.NewFlagSet("skiff-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg            proxy.Config
		logOpts        logging.Options
		endpointsFile  string
		endpointsPoll  time.Duration
		routesFile     string
		routesPoll     time.Duration
		endpointFlags  multiFlag
		tcpRoutes      multiFlag
		failovers      multiFlag
		opaquePorts    string
		httpPorts      string
		memoryLimitMiB int
		budgetMiB      int
		cores          int
		gcPercent      int
		releasePages   bool
		exactPages     bool
	)
	fs.StringVar(&cfg.OutboundAddr, "outbound-addr", proxy.DefaultOutboundAddr, "outbound listener address (\"-\" disables)")
	fs.StringVar(&cfg.InboundAddr, "inbound-addr", proxy.DefaultInboundAddr, "inbound listener address (\"-\" disables)")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", proxy.DefaultAdminAddr, "admin server address: /live /ready /metrics (\"-\" disables)")
	fs.StringVar(&cfg.InboundForward, "inbound-forward", "", "the application's address for inbound traffic (empty: each connection's original destination)")
	fs.BoolVar(&cfg.Transparent, "transparent", false, "read SO_ORIGINAL_DST of connections redirected by iptables")
	var mark uint
	var balancer string
	var ident identityFlags
	fs.StringVar(&ident.destinationAddr, "destination-addr", "", "the control plane's Destination API (host:port): endpoints come from it instead of a file")
	fs.StringVar(&ident.identityAddr, "identity-addr", "", "the control plane's Identity API (host:port; default: --destination-addr)")
	fs.StringVar(&ident.controlPlaneID, "control-plane-identity", "", "with --identity-id: the SPIFFE ID the controller must prove over TLS (default: spiffe://<trust domain of --identity-id>/ns/skiff/sa/skiff-controller)")
	fs.BoolVar(&ident.policy, "policy", true, "with --destination-addr: take each authority's timeouts, retries, budget and breaker from the control plane's Policy API (they win over --routes for that authority); a controller without it is left alone")
	fs.BoolVar(&ident.controlPlanePlaintext, "control-plane-plaintext", false, "talk to a controller that serves plaintext (its --plaintext): no TLS, nothing verified")
	fs.StringVar(&ident.id, "identity-id", "", "this workload's SPIFFE ID: enables mutual TLS with a certificate from the Identity API")
	fs.StringVar(&ident.tokenFile, "identity-token-file", "", "file holding the token that proves --identity-id (re-read at every renewal)")
	fs.StringVar(&ident.anchorsFile, "trust-anchors", "", "PEM file of the trust anchors peers' certificates must chain to, re-read when it changes (anchor rotation)")
	fs.DurationVar(&ident.anchorsPoll, "trust-anchors-poll", 2*time.Second, "how often the --trust-anchors file is checked for changes")
	fs.BoolVar(&cfg.RequireMTLS, "require-mtls", false, "refuse inbound connections that are not mutual TLS (strict mode)")
	fs.BoolVar(&cfg.ForwardClientID, "forward-client-id", false, "pass the verified client SPIFFE ID to the application in "+proxy.ClientIDHeader)
	fs.StringVar(&balancer, "balancer", "ewma", "load balancing: ewma (P2C over peak-EWMA latency) or round-robin (for comparison)")
	fs.UintVar(&mark, "socket-mark", 0, "SO_MARK for upstream sockets, so iptables can exempt the proxy's own traffic (0: none)")
	fs.StringVar(&endpointsFile, "endpoints-file", "", "file mapping authorities to endpoints, re-read when it changes")
	fs.DurationVar(&endpointsPoll, "endpoints-poll", 250*time.Millisecond, "how often the endpoints file is checked for changes")
	fs.Var(&endpointFlags, "endpoint", "AUTHORITY=ADDR[;meshed][;weight=N],ADDR... (repeatable)")
	fs.StringVar(&routesFile, "routes", "", "JSON file of outbound routes' timeouts, retries, retry budgets and breakers (docs/proxy.md), re-read when it changes; a version that fails its check is refused and the last valid one kept")
	fs.DurationVar(&routesPoll, "routes-poll", 2*time.Second, "how often the --routes file is checked for changes")
	fs.Var(&failovers, "failover", "PRIMARY=FALLBACK[,FALLBACK...]: authorities to use when PRIMARY has no endpoint that accepts a connection (repeatable)")
	fs.Var(&tcpRoutes, "tcp-route", "LISTEN_ADDR=AUTHORITY: an extra outbound listener forwarding opaque TCP (repeatable)")
	fs.StringVar(&opaquePorts, "opaque-ports", "25,587,3306,4444,5432,6379,9300,11211", "ports forwarded as TCP without protocol detection")
	fs.StringVar(&httpPorts, "http-ports", "", "ports declared HTTP: detection skipped")
	fs.DurationVar(&cfg.DetectTimeout, "detect-timeout", proxy.DefaultDetectTimeout, "how long to wait for a client's first bytes before treating it as opaque TCP")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", proxy.DefaultConnectTimeout, "upstream connect timeout")
	fs.IntVar(&budgetMiB, "memory-budget-mib", proxy.DefaultMemoryBudget>>20, "peak resident memory in MiB that the connection and in-flight caps are derived for (docs/proxy.md)")
	fs.IntVar(&cfg.MaxConnections, "max-connections", 0, "open client connections per listener (0: derived from --memory-budget-mib); at the cap the longest-idle connection is closed")
	fs.IntVar(&cfg.MaxInFlight, "max-in-flight", 0, "concurrent requests per listener (0: derived from --memory-budget-mib); beyond it 503 / RESOURCE_EXHAUSTED")
	fs.DurationVar(&cfg.HeaderTimeout, "header-timeout", proxy.DefaultHeaderTimeout, "how long a client may take to send a request's headers")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", proxy.DefaultBodyTimeout, "how long a request body may stall before any response (then 408)")
	fs.DurationVar(&cfg.StreamIdleTimeout, "stream-idle-timeout", proxy.DefaultStreamIdleTimeout, "how long a request body may stall once its response has begun (streams)")
	fs.DurationVar(&cfg.AuthorityIdleTimeout, "authority-idle-timeout", proxy.DefaultAuthorityIdleTimeout, "how long an outbound authority no request asks for keeps its discovery watch")
	fs.IntVar(&cfg.MaxAuthorities, "max-authorities", proxy.DefaultMaxAuthorities, "outbound authorities watched at once; beyond it the least recently used are forgotten")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", proxy.DefaultDrainTimeout, "graceful shutdown deadline")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof on the admin address")
	fs.IntVar(&memoryLimitMiB, "memory-limit-mib", 0, "soft Go memory limit in MiB (0: GOMEMLIMIT, or 5/8 of --memory-budget-mib); keep it well above the steady state")
	fs.IntVar(&cores, "cores", 1, "OS threads running Go code (GOMAXPROCS); one keeps the sidecar's memory and scheduling small. 0: GOMAXPROCS or all cores")
	fs.BoolVar(&releasePages, "release-startup-pages", true, "once started, unmap the code and read-only data pages only start-up used (about 1 MB of RSS); they are mapped again from the page cache if ever needed")
	fs.BoolVar(&exactPages, "page-exact-code", true, "map the binary's code and read-only data a page at a time as they are used, not 64 KiB around each page touched (Linux 6.7+, through userfaultfd; about 3 MB less RSS with mutual TLS). Where the kernel or a seccomp profile refuses it, a log line says so and the proxy runs as without it")
	fs.IntVar(&gcPercent, "gc-percent", 25, "GOGC for the sidecar: a small heap target keeps RSS low at little CPU cost (0: GOGC or 100)")
	logOpts.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	cfg.SocketMark = uint32(mark)
	switch balancer {
	case "ewma":
	case "round-robin":
		cfg.Balance.RoundRobin = true
	default:
		return fmt.Errorf("--balancer %q: want ewma or round-robin", balancer)
	}
	log, err := logOpts.New(stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log.With("component", "proxy")
	// Runtime sizing: measured in docs/proxy.md. Environment variables win
	// when set, so an operator can always override.
	if budgetMiB <= 0 {
		return fmt.Errorf("--memory-budget-mib %d: want a positive number of MiB", budgetMiB)
	}
	cfg.MemoryBudget = int64(budgetMiB) << 20
	cfg.ShedOnMemory = true // this process is the proxy's alone
	switch {
	case memoryLimitMiB > 0:
		debug.SetMemoryLimit(int64(memoryLimitMiB) << 20)
	case os.Getenv("GOMEMLIMIT") == "":
		// The Go runtime's share of the budget (docs/proxy.md). A soft
		// limit makes the collector work harder only near it.
		debug.SetMemoryLimit(proxy.RuntimeMemoryLimit(cfg.MemoryBudget))
	}
	if cores > 0 && os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(cores)
	}
	if gcPercent > 0 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if cfg.OpaquePorts, err = parsePorts("opaque-ports", opaquePorts); err != nil {
		return err
	}
	if cfg.HTTPPorts, err = parsePorts("http-ports", httpPorts); err != nil {
		return err
	}
	for _, f := range failovers {
		primary, fbs, ok := strings.Cut(f, "=")
		if !ok || primary == "" || fbs == "" {
			return fmt.Errorf("--failover %q: want PRIMARY=FALLBACK[,FALLBACK...]", f)
		}
		if cfg.Failover == nil {
			cfg.Failover = map[string][]string{}
		}
		cfg.Failover[strings.ToLower(primary)] = append(cfg.Failover[strings.ToLower(primary)], strings.Split(strings.ToLower(fbs), ",")...)
	}
	for _, r := range tcpRoutes {
		addr, auth, ok := strings.Cut(r, "=")
		if !ok {
			return fmt.Errorf("--tcp-route %q: want LISTEN_ADDR=AUTHORITY", r)
		}
		cfg.TCPRoutes = append(cfg.TCPRoutes, proxy.TCPRoute{Addr: addr, Authority: auth})
	}
	if routesFile != "" {
		cfg.Routes = new(route.Table)
		if err := route.WatchFile(ctx, routesFile, routesPoll, cfg.Routes, cfg.Logger); err != nil {
			return err
		}
	}
	if err := ident.apply(ctx, &cfg, log); err != nil {
		return err
	}
	switch {
	case ident.destinationAddr != "" && (endpointsFile != "" || len(endpointFlags) > 0):
		return fmt.Errorf("--destination-addr replaces --endpoints-file and --endpoint: use one source")
	case ident.destinationAddr != "":
	case endpointsFile != "" && len(endpointFlags) > 0:
		return fmt.Errorf("--endpoints-file and --endpoint cannot be combined")
	case endpointsFile != "":
		src, err := endpoint.WatchFile(ctx, endpointsFile, endpointsPoll, cfg.Logger)
		if err != nil {
			return err
		}
		cfg.Endpoints = src
	case len(endpointFlags) > 0:
		var b strings.Builder
		for _, e := range endpointFlags {
			auth, eps, ok := strings.Cut(e, "=")
			if !ok {
				return fmt.Errorf("--endpoint %q: want AUTHORITY=ADDR[,ADDR...]", e)
			}
			b.WriteString(auth + " " + strings.ReplaceAll(eps, ",", " ") + "\n")
		}
		table, err := endpoint.ParseStatic("--endpoint", []byte(b.String()))
		if err != nil {
			return err
		}
		cfg.Endpoints = endpoint.NewStatic(table)
	}
	p, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	ident.registerMetrics(p)
	pageByPage := 0.0
	if exactPages {
		// Before the release: what the serving path maps again is then
		// only the pages it runs, not their 64 KiB neighbourhoods.
		if err := memtrim.MapExecutablePageByPage(); err != nil {
			log.Info("code pages are mapped 64 KiB at a time (fault-around)", "why", err)
		} else {
			pageByPage = 1
		}
	}
	p.Metrics().Gauge("memory_code_page_by_page", func() float64 { return pageByPage })
	if releasePages {
		// Start-up is over: the listeners are bound and the first
		// certificate is in. Run only starts the serving goroutines.
		n, err := memtrim.ReleaseExecutablePages()
		if err != nil {
			log.Warn("start-up pages not released", "err", err)
		} else {
			log.Debug("start-up pages released", "advised_bytes", n)
		}
	}
	return p.Run(ctx)
}
