// Command skiff-controller is Skiff's control plane: the Destination,
// Identity and Policy gRPC services, one per subcommand or all three on
// one port (`all`), each process with an admin server (/live, /ready,
// /metrics).
//
//	skiff-controller all --registry-file endpoints.txt --identity-dev --trust-anchors-out anchors.pem --token-key-file token.key
//	skiff-controller destination --discovery kube --tls-cert-file /var/run/skiff/tls/tls.crt --tls-key-file /var/run/skiff/tls/tls.key --trust-anchors /var/run/skiff/anchors/ca-bundle.pem
//	skiff-controller identity --identity-issuer-cert issuer.crt --identity-issuer-key issuer.key --trust-anchors anchors.pem --token-key-file token.key
//	skiff-controller all --discovery kube --token-verifier kube --identity-issuer-cert /var/run/skiff/issuer/tls.crt --identity-issuer-key /var/run/skiff/issuer/tls.key --trust-anchors /var/run/skiff/anchors/ca-bundle.pem
//	skiff-controller all --plaintext ...   # for grpcurl -plaintext; proxies then need --control-plane-plaintext
//	skiff-controller policy --resources resources.yaml --tls-cert-file ... --tls-key-file ... --trust-anchors ...
//	skiff-controller inject --tls-cert-file /var/run/skiff/webhook/tls.crt --tls-key-file /var/run/skiff/webhook/tls.key --addr :8443
//
// Inject is the sidecar-injection admission webhook (mesh/control/injector,
// docs/injection.md): HTTPS on --addr, AdmissionReview v1 at /inject.
//
// Policy serves the routes of --resources, a YAML stream of HTTPRoute,
// GRPCRoute, XBackendTrafficPolicy and CircuitBreaker objects
// (mesh/control/gatewayapi), at the authorities name.namespace.svc:port.
// The file is checked every --resources-poll and read again when it
// changes; a change that does not parse or convert is logged, counted
// (skiff_policy_resources_rejected_total on /metrics) and refused, and
// the last valid set stays in force. Without --resources every authority
// gets the default policy.
//
// The issuer and trust-anchor files are re-read every
// --identity-reload-interval: replacing them rotates the issuer or the
// anchors without a restart (docs/identity.md).
//
// The gRPC API is TLS 1.3. With the identity service (identity, all) its
// own CA issues the controller's certificate for --controller-identity
// (default spiffe://<trust-domain>/ns/skiff/sa/skiff-controller, what the
// proxies expect), renewed at 70 % of its lifetime and at once after an
// issuer rotation; destination and policy alone read one from
// --tls-cert-file and --tls-key-file. --plaintext opts out explicitly.
//
// Destination and Policy answer only clients that present a mesh
// certificate verified against the trust anchors (the CA's, or
// --trust-anchors); Identity.Certify is authenticated by its token. Watches
// are capped per connection and per client identity
// (--max-watches-per-connection, --max-watches-per-identity), Certify is
// rate-limited per token (--certify-rate-per-token,
// --certify-burst-per-token). See mesh/control/access and docs/identity.md.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/skiff-mesh/skiff/internal/logging"
	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/control/access"
	"github.com/skiff-mesh/skiff/mesh/control/admin"
	"github.com/skiff-mesh/skiff/mesh/control/destination"
	"github.com/skiff-mesh/skiff/mesh/control/identity"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/control/identity/tokenreview"
	"github.com/skiff-mesh/skiff/mesh/control/policy"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/kube"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "skiff-controller:", err)
		os.Exit(1)
	}
}

// Defaults of the flags.
const (
	defaultGRPCAddr  = "127.0.0.1:8086"
	defaultAdminAddr = "127.0.0.1:9996"
)

// services says which gRPC services a subcommand serves.
type services struct {
	destination, identity, policy bool
}

var subcommands = map[string]services{
	"destination": {destination: true},
	"identity":    {identity: true},
	"policy":      {policy: true},
	"all":         {destination: true, identity: true, policy: true},
}

const usage = `usage: skiff-controller SUBCOMMAND [flags]

subcommands:
  destination  serve skiff.destination.v1 (endpoints from discovery)
  identity     serve skiff.identity.v1 (the certificate authority)
  policy       serve skiff.policy.v1 (outbound routes from --resources, else defaults)
  all          serve the three on one gRPC port
  inject       serve the sidecar-injection admission webhook (HTTPS, docs/injection.md)

Run 'skiff-controller SUBCOMMAND -h' for its flags.
`

// options are the flags of every subcommand; each registers those it
// uses.
type options struct {
	grpcAddr, adminAddr string
	shutdownGrace       time.Duration
	log                 logging.Options

	trustDomain string

	discovery    string
	registryFile string
	registryPoll time.Duration
	kubeconfig   string
	namespace    string

	issuerCert, issuerKey, trustAnchors string
	identityDev                         bool
	trustAnchorsOut                     string
	tokenVerifier, tokenAudience        string
	tokenKeyFile                        string
	leafLifetime                        time.Duration
	reloadInterval                      time.Duration

	plaintext               bool
	controllerID            string
	tlsCertFile, tlsKeyFile string

	maxWatchesPerConn, maxWatchesPerIdentity int
	certifyRate                              float64
	certifyBurst                             int

	resources     string
	resourcesPoll time.Duration
}

func (o *options) addFlags(fs *flag.FlagSet, svc services) {
	fs.StringVar(&o.grpcAddr, "grpc-addr", defaultGRPCAddr, "gRPC listen address")
	fs.StringVar(&o.adminAddr, "admin-addr", defaultAdminAddr, "admin listen address: /live /ready /metrics")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM, how long in-flight RPCs may take before they are cut")
	o.log.AddFlags(fs)
	fs.BoolVar(&o.plaintext, "plaintext", false, "serve gRPC without TLS (debugging, e.g. grpcurl -plaintext): Destination and Policy then answer any client, unauthenticated; proxies with an identity need --control-plane-plaintext")
	if svc.identity {
		fs.StringVar(&o.controllerID, "controller-identity", "", "SPIFFE ID of the controller's TLS certificate, issued by its own CA; the proxies' --control-plane-identity (default spiffe://<trust-domain>/ns/skiff/sa/skiff-controller)")
	} else {
		fs.StringVar(&o.tlsCertFile, "tls-cert-file", "", "PEM file: the certificate (then its chain) to serve gRPC over TLS with, re-read when it changes; its SPIFFE ID is what the proxies' --control-plane-identity expects (required unless --plaintext)")
		fs.StringVar(&o.tlsKeyFile, "tls-key-file", "", "PEM file: the key of --tls-cert-file")
		fs.StringVar(&o.trustAnchors, "trust-anchors", "", "PEM file: the mesh's trust anchors, which the proxies' client certificates must chain to, re-read when it changes (required with --tls-cert-file)")
	}
	fs.StringVar(&o.trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of workload identities")
	if svc.destination || svc.identity {
		fs.StringVar(&o.kubeconfig, "kubeconfig", "", "--discovery kube, --token-verifier kube: kubeconfig file (empty: $KUBECONFIG, ~/.kube/config, then in-cluster)")
	}
	if svc.destination || svc.policy {
		fs.IntVar(&o.maxWatchesPerConn, "max-watches-per-connection", access.DefaultMaxWatchesPerConnection, "open watches (Destination and Policy streams) one connection may hold; beyond it RESOURCE_EXHAUSTED. A proxy opens one per authority it sends to")
		fs.IntVar(&o.maxWatchesPerIdentity, "max-watches-per-identity", access.DefaultMaxWatchesPerIdentity, "open watches one client identity (SPIFFE ID) may hold over all its connections; beyond it RESOURCE_EXHAUSTED. Replicas of a workload share its identity: raise it for large deployments")
	}
	if svc.destination {
		fs.StringVar(&o.discovery, "discovery", "local", "where endpoints come from: local (the simulator's registry file) or kube")
		fs.StringVar(&o.registryFile, "registry-file", "", "local: the endpoints file the simulator writes (the proxy's --endpoints-file format), re-read when it changes")
		fs.DurationVar(&o.registryPoll, "registry-poll", 250*time.Millisecond, "local: how often the registry file is checked for changes besides change notifications (inotify on Linux; the only check elsewhere)")
		fs.StringVar(&o.namespace, "namespace", "", "kube: watch only this namespace (empty: all)")
	}
	if svc.policy {
		fs.StringVar(&o.resources, "resources", "", "YAML file of Gateway API objects (HTTPRoute, GRPCRoute, XBackendTrafficPolicy, CircuitBreaker) whose routes the Policy API serves at name.namespace.svc:port, re-read when it changes; a change that does not parse is refused and the last valid set kept (empty: the default policy for every authority)")
		fs.DurationVar(&o.resourcesPoll, "resources-poll", policy.DefaultResourcesPoll, "how often the --resources file is checked for changes")
	}
	if svc.identity {
		fs.StringVar(&o.issuerCert, "identity-issuer-cert", "", "PEM file: the issuer certificate, then its chain up to (not including) the anchor")
		fs.StringVar(&o.issuerKey, "identity-issuer-key", "", "PEM file: the issuer's private key")
		fs.StringVar(&o.trustAnchors, "trust-anchors", "", "PEM file: the trust anchors (root certificates) proxies verify against")
		fs.BoolVar(&o.identityDev, "identity-dev", false, "generate an in-memory trust anchor and issuer (development and the simulator only)")
		fs.StringVar(&o.trustAnchorsOut, "trust-anchors-out", "", "with --identity-dev: write the generated anchor bundle (PEM) here, for the proxies")
		fs.StringVar(&o.tokenVerifier, "token-verifier", "", "how workload tokens are verified: kube (TokenReview of the pods' projected ServiceAccount tokens) or hmac (the simulator's tokens, with --token-key-file); empty: hmac if --token-key-file is set")
		fs.StringVar(&o.tokenAudience, "token-audience", tokenreview.DefaultAudience, "kube: the audience of the projected ServiceAccount tokens the proxies send")
		fs.StringVar(&o.tokenKeyFile, "token-key-file", "", "hmac: the key the simulator signs pod tokens with (hex, or the raw bytes); at least 32 bytes")
		fs.DurationVar(&o.leafLifetime, "leaf-lifetime", 0, "workload certificate lifetime (0: 24h)")
		fs.DurationVar(&o.reloadInterval, "identity-reload-interval", identity.DefaultReloadInterval, "how often the issuer and trust-anchor files are re-read, so they rotate without a restart (0: never)")
		fs.Float64Var(&o.certifyRate, "certify-rate-per-token", identity.DefaultCertifyRate, "Certify requests per second one workload token may make, sustained; beyond it and the burst RESOURCE_EXHAUSTED")
		fs.IntVar(&o.certifyBurst, "certify-burst-per-token", identity.DefaultCertifyBurst, "Certify requests one workload token may make at once")
	}
}

// run is the whole command: args are the subcommand and its flags; logs
// and usage go to stdout. It returns when ctx is done (nil) or a server
// fails.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no subcommand: want destination, identity, policy, all or inject")
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" || name == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if name == "inject" {
		return runInject(ctx, args[1:], stdout)
	}
	svc, ok := subcommands[name]
	if !ok {
		return fmt.Errorf("unknown subcommand %q: want destination, identity, policy, all or inject", name)
	}
	fs := flag.NewFlagSet("skiff-controller "+name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	var o options
	o.addFlags(fs, svc)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	log, err := o.log.New(stdout)
	if err != nil {
		return err
	}
	return o.serve(ctx, name, svc, log)
}

// closer ends a service's streams at shutdown.
type closer interface{ Close() }

func (o *options) serve(ctx context.Context, name string, svc services, log *slog.Logger) error {
	log = log.With("component", "controller", "subcommand", name)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	fail := func(err error) error { // before the servers run: stop the sources
		cancel()
		g.Wait()
		return err
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var (
		closers  []closer
		synced   []<-chan struct{} // ready once all are closed
		names    []string
		register []func(*grpc.Server) // once the server exists: its TLS comes from the CA
	)

	// Build everything before listening, so that a configuration error
	// fails at once. The sources start under gctx.
	if svc.destination {
		src, sync, err := o.source(gctx, g, log)
		if err != nil {
			return fail(err)
		}
		srv, err := destination.NewServer(destination.Config{Source: src, Log: log, Registerer: metrics})
		if err != nil {
			return fail(err)
		}
		register = append(register, func(gs *grpc.Server) { destinationv1.RegisterDestinationServer(gs, srv) })
		closers = append(closers, srv)
		if sync != nil {
			synced = append(synced, sync)
		}
		names = append(names, "destination")
	}
	var authority *ca.CA
	if svc.identity {
		var err error
		if authority, err = o.newCA(log); err != nil {
			return fail(err)
		}
		if !o.identityDev && o.reloadInterval > 0 {
			rl, err := identity.NewReloader(identity.ReloaderConfig{
				CA: authority, IssuerCert: o.issuerCert, IssuerKey: o.issuerKey, TrustAnchors: o.trustAnchors,
				Interval: o.reloadInterval, Log: log, Registerer: metrics,
			})
			if err != nil {
				return fail(err)
			}
			g.Go(func() error { return rl.Run(gctx) })
		}
		if o.certifyRate <= 0 || o.certifyBurst < 1 {
			return fail(fmt.Errorf("--certify-rate-per-token %v, --certify-burst-per-token %d: want a positive rate and a burst of at least 1", o.certifyRate, o.certifyBurst))
		}
		srv, err := identity.NewServer(identity.Config{CA: authority, Log: log, Registerer: metrics, CertifyRate: o.certifyRate, CertifyBurst: o.certifyBurst})
		if err != nil {
			return fail(err)
		}
		register = append(register, func(gs *grpc.Server) { identityv1.RegisterIdentityServer(gs, srv) })
		names = append(names, "identity")
	}
	if svc.policy {
		srv := policy.NewServer(policy.Config{Log: log})
		if o.resources != "" {
			if o.resourcesPoll <= 0 {
				return fail(fmt.Errorf("--resources-poll %v: want a positive interval, e.g. 250ms", o.resourcesPoll))
			}
			rf, err := policy.NewResourceFile(policy.ResourceFileConfig{
				Server: srv, Path: o.resources, Interval: o.resourcesPoll, Log: log, Registerer: metrics,
			})
			if errors.Is(err, os.ErrNotExist) {
				return fail(fmt.Errorf("--resources: %w: give an existing YAML file of HTTPRoute, GRPCRoute, XBackendTrafficPolicy and CircuitBreaker objects (an empty file serves the defaults)", err))
			}
			if err != nil {
				return fail(fmt.Errorf("--resources: %w", err))
			}
			g.Go(func() error { return rf.Run(gctx) })
		}
		register = append(register, func(gs *grpc.Server) { policyv1.RegisterPolicyServer(gs, srv) })
		closers = append(closers, srv)
		names = append(names, "policy")
	}
	serverTLS, bundle, err := o.serverTLS(authority, log)
	if err != nil {
		return fail(err)
	}
	guard, err := o.guard(svc, bundle, serverTLS == nil, log, metrics)
	if err != nil {
		return fail(err)
	}
	opts := []grpc.ServerOption{
		// Watch streams live as long as the proxies: find dead peers, and
		// let live proxies keep idle connections open through NATs.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	gs := grpc.NewServer(append(opts, guard.ServerOptions(serverTLS)...)...)
	for _, r := range register {
		r(gs)
	}

	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", o.grpcAddr)
	if err != nil {
		return fail(fmt.Errorf("--grpc-addr: %w", err))
	}
	adminLis, err := lc.Listen(ctx, "tcp", o.adminAddr)
	if err != nil {
		grpcLis.Close()
		return fail(fmt.Errorf("--admin-addr: %w", err))
	}
	adm := admin.New(metrics)
	httpSrv := &http.Server{Handler: adm, ReadHeaderTimeout: 10 * time.Second}
	log.Info("listening", "grpc_addr", grpcLis.Addr().String(), "admin_addr", adminLis.Addr().String(), "services", strings.Join(names, ","), "tls", serverTLS != nil)

	g.Go(func() error {
		if err := gs.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("gRPC server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := httpSrv.Serve(adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		for _, c := range synced {
			select {
			case <-c:
			case <-gctx.Done():
				return nil
			}
		}
		adm.SetReady(true)
		log.Info("ready")
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		// Readiness off first, then end the watch streams (they never end
		// on their own, so GracefulStop would wait for them in vain), then
		// let unary calls finish within the grace period.
		adm.SetReady(false)
		log.Info("shutting down", "grace", o.shutdownGrace)
		for _, c := range closers {
			c.Close()
		}
		stopped := make(chan struct{})
		go func() {
			gs.GracefulStop()
			close(stopped)
		}()
		t := time.NewTimer(o.shutdownGrace)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			log.Warn("graceful stop timed out; closing connections")
			gs.Stop()
			<-stopped
		}
		sctx, scancel := context.WithTimeout(context.Background(), o.shutdownGrace)
		defer scancel()
		return httpSrv.Shutdown(sctx)
	})
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}

// guard authenticates the gRPC clients and caps their watches
// (mesh/control/access): Certify is public (a proxy's token authenticates
// it), every other method needs a mesh client certificate verified
// against bundle, except in plaintext.
func (o *options) guard(svc services, bundle func() *spiffe.Bundle, plaintext bool, log *slog.Logger, reg prometheus.Registerer) (*access.Guard, error) {
	if svc.destination || svc.policy {
		if o.maxWatchesPerConn < 1 || o.maxWatchesPerIdentity < 1 {
			return nil, fmt.Errorf("--max-watches-per-connection %d, --max-watches-per-identity %d: want at least 1", o.maxWatchesPerConn, o.maxWatchesPerIdentity)
		}
		if o.maxWatchesPerIdentity < o.maxWatchesPerConn {
			log.Warn("--max-watches-per-identity is below --max-watches-per-connection: an identity's connection is capped by the former",
				"max_watches_per_identity", o.maxWatchesPerIdentity, "max_watches_per_connection", o.maxWatchesPerConn)
		}
	}
	var public []string
	if svc.identity {
		public = append(public, identityv1.Identity_Certify_FullMethodName)
	}
	switch {
	case plaintext && (svc.destination || svc.policy):
		log.Warn(msgUnauthenticated)
	case svc.destination || svc.policy:
		log.Info("Destination and Policy serve only clients with a verified mesh certificate",
			"max_watches_per_connection", o.maxWatchesPerConn, "max_watches_per_identity", o.maxWatchesPerIdentity)
	}
	return access.New(access.Config{
		Bundle: bundle, Public: public, AllowPlaintext: plaintext,
		MaxWatchesPerConnection: o.maxWatchesPerConn, MaxWatchesPerIdentity: o.maxWatchesPerIdentity,
		// Watches that end leave their memory with the runtime until a
		// collection it has no reason to start: hand it back.
		Release: debug.FreeOSMemory,
		Log:     log, Registerer: reg,
	})
}

// source starts the discovery source under ctx (in g, when it needs a
// goroutine). sync is closed once the source has its initial state; nil
// means it has it already.
func (o *options) source(ctx context.Context, g *errgroup.Group, log *slog.Logger) (src discovery.Source, sync <-chan struct{}, err error) {
	switch o.discovery {
	case "local":
		if o.registryFile == "" {
			return nil, nil, errors.New("--discovery local needs --registry-file: the endpoints file the simulator writes")
		}
		reg, err := registry.WatchFile(ctx, o.registryFile, o.registryPoll, log.With("component", "discovery", "source", "local"))
		if err != nil {
			return nil, nil, fmt.Errorf("--registry-file: %w", err)
		}
		return reg, nil, nil
	case "kube":
		client, err := kubeClient(o.kubeconfig, log)
		if err != nil {
			return nil, nil, fmt.Errorf("--discovery kube: %w", err)
		}
		ks, err := kube.New(kube.Config{Client: client, Namespace: o.namespace, TrustDomain: o.trustDomain, Log: log})
		if err != nil {
			return nil, nil, err
		}
		g.Go(func() error { return ks.Run(ctx) })
		return ks, ks.Synced(), nil
	}
	return nil, nil, fmt.Errorf("--discovery %q: want local or kube", o.discovery)
}

// newCA builds the certificate authority from the identity flags.
func (o *options) newCA(log *slog.Logger) (*ca.CA, error) {
	var (
		issuer *ca.KeyPair
		bundle *spiffe.Bundle
		err    error
	)
	switch {
	case o.identityDev:
		if o.issuerCert != "" || o.issuerKey != "" || o.trustAnchors != "" {
			return nil, errors.New("--identity-dev generates the anchor and issuer: drop --identity-issuer-cert, --identity-issuer-key and --trust-anchors")
		}
		anchor, err := ca.NewAnchor(o.trustDomain, ca.Options{})
		if err != nil {
			return nil, fmt.Errorf("--identity-dev: %w", err)
		}
		if issuer, err = ca.NewIssuer(anchor, ca.Options{}); err != nil {
			return nil, fmt.Errorf("--identity-dev: %w", err)
		}
		if bundle, err = spiffe.NewBundle(o.trustDomain, anchor.Cert); err != nil {
			return nil, fmt.Errorf("--identity-dev: %w", err)
		}
		if o.trustAnchorsOut != "" {
			if err := writeFileAtomic(o.trustAnchorsOut, bundle.MarshalPEM()); err != nil {
				return nil, fmt.Errorf("--trust-anchors-out: %w", err)
			}
		}
		log.Warn("identity: in-memory development trust anchor; proxies must trust --trust-anchors-out", "trust_anchors_out", o.trustAnchorsOut)
	default:
		if o.trustAnchorsOut != "" {
			return nil, errors.New("--trust-anchors-out is for --identity-dev; the anchors are already in --trust-anchors")
		}
		if o.issuerCert == "" || o.issuerKey == "" || o.trustAnchors == "" {
			return nil, errors.New("identity needs --identity-issuer-cert, --identity-issuer-key and --trust-anchors (or --identity-dev)")
		}
		if issuer, err = ca.LoadKeyPair(o.issuerCert, o.issuerKey); err != nil {
			return nil, fmt.Errorf("--identity-issuer-cert/--identity-issuer-key: %w", err)
		}
		data, err := os.ReadFile(o.trustAnchors)
		if err != nil {
			return nil, fmt.Errorf("--trust-anchors: %w", err)
		}
		if bundle, err = spiffe.ParseBundlePEM(o.trustDomain, data); err != nil {
			return nil, fmt.Errorf("--trust-anchors %s: %w", o.trustAnchors, err)
		}
	}
	// Workload tokens: projected ServiceAccount tokens checked with the
	// TokenReview API in Kubernetes, the simulator's HMAC tokens elsewhere.
	var tokens ca.TokenVerifier
	switch mode := o.tokenVerifier; {
	case mode == "kube":
		if o.tokenKeyFile != "" {
			return nil, errors.New("--token-key-file is for --token-verifier hmac; --token-verifier kube asks the Kubernetes API")
		}
		if strings.TrimSpace(o.tokenAudience) == "" {
			return nil, errors.New("--token-audience is empty: give the audience of the proxies' projected ServiceAccount tokens")
		}
		client, err := kubeClient(o.kubeconfig, log)
		if err != nil {
			return nil, fmt.Errorf("--token-verifier kube: %w", err)
		}
		if tokens, err = tokenreview.New(tokenreview.Config{Client: client, TrustDomain: o.trustDomain, Audiences: []string{o.tokenAudience}}); err != nil {
			return nil, fmt.Errorf("--token-verifier kube: %w", err)
		}
		log.Info("identity: workload tokens verified with TokenReview", "audience", o.tokenAudience)
	case mode == "hmac" || mode == "" && o.tokenKeyFile != "":
		if o.tokenKeyFile == "" {
			return nil, errors.New("--token-verifier hmac needs --token-key-file: the HMAC key pod tokens are signed with")
		}
		key, err := readTokenKey(o.tokenKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--token-key-file: %w", err)
		}
		if tokens, err = ca.NewHMACTokens(key, nil); err != nil {
			return nil, fmt.Errorf("--token-key-file %s: %w", o.tokenKeyFile, err)
		}
	case mode == "":
		return nil, errors.New("identity needs --token-verifier: kube (TokenReview of the pods' projected ServiceAccount tokens) or hmac (the simulator's tokens, with --token-key-file)")
	default:
		return nil, fmt.Errorf("--token-verifier %q: want kube or hmac", mode)
	}
	authority, err := ca.New(ca.Config{TrustDomain: o.trustDomain, Issuer: issuer, Bundle: bundle, Tokens: tokens, LeafLifetime: o.leafLifetime})
	if err != nil {
		return nil, err
	}
	log.Info("identity: issuer loaded", "trust_domain", authority.TrustDomain(), "issuer_not_after", authority.IssuerNotAfter())
	return authority, nil
}

// readTokenKey reads an HMAC key file: hex text (surrounding white space
// ignored) when the whole file is hex, its raw bytes otherwise.
func readTokenKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if key, err := hex.DecodeString(strings.TrimSpace(string(data))); err == nil && len(key) > 0 {
		return key, nil
	}
	return data, nil
}

// writeFileAtomic writes data to a temporary file next to name and renames
// it into place, so a proxy never reads half a bundle.
func writeFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
