package local

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/faultinject/chaos"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/scenarios"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// Protocols a service speaks (ServiceSpec.Protocol).
const (
	ProtocolHTTP1 = "http1"
	ProtocolH2C   = "h2c"
	ProtocolGRPC  = "grpc"
	ProtocolTCP   = "tcp"
)

// Roles of a pod's processes (Process.Role).
const (
	RoleApp        = scenarios.RoleApp        // skiff-demo
	RoleProxy      = scenarios.RoleProxy      // skiff-proxy
	RoleController = scenarios.RoleController // skiff-controller
)

// Namespace is the namespace part of every authority.
const Namespace = "default"

// ClientPod is the name of the client pod: a sidecar without workload,
// through which load generators send meshed traffic.
const ClientPod = "client"

// ControllerPod is the name of the control plane's pod (Config.ControlPlane).
const ControllerPod = "controller"

// TrustDomain is the SPIFFE trust domain of the local environment; a pod's
// identity is spiffe://TrustDomain/ns/Namespace/sa/<service> (the client
// pod's service account is "client").
const TrustDomain = "cluster.local"

// Limits of a topology: the third and fourth bytes of pod addresses.
const (
	MaxServices = 254
	MaxReplicas = 254
)

// ServiceSpec describes one service of the topology: the environment
// contract's scenarios.Service, whose fields say what each one does here
// (a Meshed pod's registry entry is its sidecar's inbound address, a
// tcp service's client sidecar gets a TCP route, Env.TCPAddr; Chaos puts
// the link at the pod's IP and Ports.Chaos, and the registry lists it).
type ServiceSpec = scenarios.Service

// Process is one running process of a pod.
type Process = scenarios.Process

// Env is a local environment: pods as real processes on loopback
// addresses of one 127.X.0.0/16 subnet claimed for this Env alone. Build it
// with New, start the topology with Up, stop everything with Close. Its
// methods are safe for concurrent use.
type Env struct {
	cfg       Config
	log       *slog.Logger
	seed      uint64
	lock      *subnetLock
	runDir    string
	ownRunDir bool
	file      *FileRegistry
	httpc     *http.Client

	// ctx is the processes' lifetime: cancelling it stops them gracefully.
	ctx    context.Context
	cancel context.CancelFunc
	// Starting a process or a prober holds lifeMu for reading and checks
	// stopped, which Close sets: nothing starts after that.
	lifeMu    sync.RWMutex
	stopped   bool
	spawn     chan func()
	spawnDone chan struct{}
	procWG    sync.WaitGroup // one per process: its cmd.Wait
	bgWG      sync.WaitGroup // probers

	mu        sync.Mutex // guards the topology fields below
	services  []*service
	byName    map[string]*service
	pods      map[string]*Pod
	client    *Pod
	ctl       *Pod           // the controller pod, with Config.ControlPlane
	tokens    *ca.HMACTokens // issues each pod's identity token
	idDir     string         // token key, tokens, trust anchors
	pki       pki            // the trust anchors and the issuer, for rotations
	direct    PodNetwork     // with Config.Network: the unmeshed client's network (Entry direct)
	wireHits  func() uint64  // with Config.Network and Marker: frames on the wire carrying it
	wireStop  func()
	upCalled  bool
	stopAfter func() bool

	pubMu     sync.Mutex
	published map[string][]endpoint.Endpoint
	pubKey    map[string]string
	pubDone   bool // set by Close: the registry is no longer written

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// service is a ServiceSpec with what the Env derived from it.
type service struct {
	spec      ServiceSpec
	index     int
	authority string
	pods      []*Pod
	tcpAddr   string // the client sidecar's TCP route, for tcp services
}

// New claims a subnet, prepares RunDir and the endpoints file, and returns
// an environment with nothing running yet. Close releases it.
func New(cfg Config) (*Env, error) {
	if err := cfg.normalize(); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()) | 1
	}
	lock, err := allocSubnet(cfg.Ports.Outbound)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	e := &Env{
		cfg: cfg, seed: seed, lock: lock,
		byName: map[string]*service{}, pods: map[string]*Pod{},
		published: map[string][]endpoint.Endpoint{}, pubKey: map[string]string{},
		spawn: make(chan func()), spawnDone: make(chan struct{}),
	}
	e.log = cfg.Logger.With("component", "simulator", "env", "local", "subnet", lock.prefix().String())
	if cfg.Network != nil {
		// The pods' addresses come from the Network; the loopback
		// subnet only names the run's listeners the harness keeps there.
		e.log = cfg.Logger.With("component", "simulator", "env", "netns")
	}
	fail := func(err error) (*Env, error) {
		lock.release()
		if e.ownRunDir {
			os.RemoveAll(e.runDir)
		}
		return nil, fmt.Errorf("local: %w", err)
	}
	if cfg.RunDir == "" {
		if e.runDir, err = os.MkdirTemp("", "skiff-local-"); err != nil {
			return fail(err)
		}
		e.ownRunDir = true
	} else if e.runDir, err = filepath.Abs(cfg.RunDir); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(filepath.Join(e.runDir, "logs"), 0o755); err != nil {
		return fail(err)
	}
	if e.file, err = NewFileRegistry(filepath.Join(e.runDir, "endpoints.txt")); err != nil {
		return fail(err)
	}
	e.httpc = &http.Client{Transport: &http.Transport{
		Proxy:               nil, // never an HTTP_PROXY from the environment
		DialContext:         e.Dial,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	go e.spawner()
	e.log.Info("environment created", "run_dir", e.runDir, "seed", seed)
	return e, nil
}

// spawner starts every child process from one OS thread that lives until
// Close has stopped them all: the kernel's parent-death signal (Linux)
// follows the thread that started a child, and Go may end threads.
func (e *Env) spawner() {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	defer close(e.spawnDone)
	for f := range e.spawn {
		f()
	}
}

// Seed is the seed in use (Config.Seed, or the one drawn for zero).
func (e *Env) Seed() uint64 { return e.seed }

// Subnet is the loopback subnet claimed for this Env.
func (e *Env) Subnet() netip.Prefix { return e.lock.prefix() }

// RunDir holds the endpoints file and the logs.
func (e *Env) RunDir() string { return e.runDir }

// LogPath is the log file of a pod's process (role RoleApp or RoleProxy).
func (e *Env) LogPath(pod, role string) string {
	return filepath.Join(e.runDir, "logs", pod+"-"+role+".log")
}

// RegistryPath is the endpoints file every sidecar reads.
func (e *Env) RegistryPath() string { return e.file.Path() }

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// build validates specs and lays out services and pods; e.mu is held.
func (e *Env) build(specs []ServiceSpec) error {
	if len(specs) == 0 && !e.cfg.ControlPlane {
		// With a control plane, no services is the control plane alone,
		// fed with synthetic endpoints (SetEndpoints).
		return errors.New("no services: give Up at least one ServiceSpec (or set Config.ControlPlane to run the control plane alone)")
	}
	if len(specs) > MaxServices {
		return fmt.Errorf("%d services; the local environment holds at most %d", len(specs), MaxServices)
	}
	ports := e.cfg.Ports
	base := e.lock.prefix().Addr().As4()
	var errs []error
	tcpRoutes := 0
	for k, sp := range specs {
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("service %q: "+format, append([]any{sp.Name}, a...)...))
		}
		if !dnsLabel.MatchString(sp.Name) {
			bad("the name must be a DNS label: lowercase letters, digits and '-', at most 63")
			continue
		}
		if _, dup := e.byName[sp.Name]; dup {
			bad("listed twice")
			continue
		}
		if sp.Protocol == "" {
			sp.Protocol = ProtocolHTTP1
		}
		switch sp.Protocol {
		case ProtocolHTTP1, ProtocolH2C, ProtocolGRPC, ProtocolTCP:
		default:
			bad("protocol %q is not one of http1, h2c, grpc, tcp", sp.Protocol)
		}
		if sp.Port == 0 {
			sp.Port = ports.App
			if sp.Protocol == ProtocolTCP {
				sp.Port = ports.AppTCP
			}
		}
		if sp.Port < 1 || sp.Port > 65535 {
			bad("port %d is outside 1..65535", sp.Port)
		}
		if sp.Replicas < 0 || sp.Replicas > MaxReplicas {
			bad("%d replicas; want 0..%d", sp.Replicas, MaxReplicas)
			sp.Replicas = 0
		}
		if len(sp.Behaviour) > sp.Replicas {
			bad("%d behaviours for %d replicas", len(sp.Behaviour), sp.Replicas)
		}
		for i, b := range sp.Behaviour {
			if err := b.Validate(); err != nil {
				bad("behaviour of replica %d: %s", i, err.Error())
			}
		}
		sp.Behaviour = slices.Clone(sp.Behaviour)
		sp.Failover = slices.Clone(sp.Failover)
		s := &service{spec: sp, index: k, authority: sp.Name + "." + Namespace + ".svc:" + strconv.Itoa(sp.Port)}
		if sp.Protocol == ProtocolTCP {
			port := ports.TCPRouteBase + tcpRoutes
			tcpRoutes++
			s.tcpAddr = net.JoinHostPort(netip.AddrFrom4([4]byte{base[0], base[1], 0, 1}).String(), strconv.Itoa(port))
		}
		for i := range sp.Replicas {
			p := e.newPod(sp.Name+"-"+strconv.Itoa(i), netip.AddrFrom4([4]byte{base[0], base[1], byte(k + 1), byte(i + 1)}))
			p.svc, p.replica = s, i
			s.pods = append(s.pods, p)
		}
		e.byName[sp.Name] = s
		e.services = append(e.services, s)
	}
	for _, s := range e.services {
		seen := map[string]bool{}
		for _, f := range s.spec.Failover {
			switch {
			case f == s.spec.Name:
				errs = append(errs, fmt.Errorf("service %q: fails over to itself", f))
			case seen[f]:
				errs = append(errs, fmt.Errorf("service %q: failover %q listed twice", s.spec.Name, f))
			case e.byName[f] == nil:
				errs = append(errs, fmt.Errorf("service %q: failover %q is not a service of the topology", s.spec.Name, f))
			}
			seen[f] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		e.services, e.byName = nil, map[string]*service{}
		return err
	}
	for _, s := range e.services {
		for _, p := range s.pods {
			e.pods[p.name] = p
		}
	}
	e.client = e.newPod(ClientPod, netip.AddrFrom4([4]byte{base[0], base[1], 0, 1}))
	e.pods[ClientPod] = e.client
	if e.cfg.ControlPlane {
		if err := e.setUpIdentity(); err != nil {
			return err
		}
		e.ctl = e.newPod(ControllerPod, netip.AddrFrom4([4]byte{base[0], base[1], 0, 2}))
		e.ctl.controller = true
		e.pods[ControllerPod] = e.ctl
		if len(e.cfg.Resources) > 0 {
			if err := e.ctl.ApplyResources(e.cfg.Resources); err != nil {
				return err
			}
		}
	}
	if e.cfg.Network != nil {
		if err := e.placePods(); err != nil {
			return err
		}
	}
	for _, s := range e.services {
		if !s.spec.Chaos {
			continue
		}
		for _, p := range s.pods {
			upstream := p.endpointAddr()
			l, err := chaos.New(chaos.Config{
				Listen: net.JoinHostPort(p.ip.String(), strconv.Itoa(e.cfg.Ports.Chaos)), Upstream: upstream,
				Seed: podSeed(e.seed, p.name+"/chaos"), Logger: p.log.With("component", "chaos"),
				Marker: e.cfg.Marker,
			})
			if err == nil {
				err = l.Start()
			}
			if err != nil {
				e.closeLinks()
				return fmt.Errorf("chaos link for %s: %w", p.name, err)
			}
			p.link = l
		}
	}
	return nil
}

// closeLinks stops every chaos link.
func (e *Env) closeLinks() {
	for _, s := range e.services {
		for _, p := range s.pods {
			if p.link != nil {
				p.link.Close()
			}
		}
	}
}

// Up starts the topology: every pod of every service (workload, and
// sidecar when meshed), then the client pod, each waited for until its
// processes answer their health checks (skiff-demo GET /healthz,
// skiff-proxy GET /ready). The registry lists each pod as soon as it is
// ready, so the client sidecar starts with the complete table. Then a
// prober per pod keeps readiness current.
//
// ctx bounds the environment's life, not only the start: when it is done,
// the environment closes itself (as Close). On any failure Up closes the
// environment and says which pod failed, with the tail of its log. Up may
// be called once per Env.
func (e *Env) Up(ctx context.Context, specs []ServiceSpec) (err error) {
	e.mu.Lock()
	switch {
	case e.closed.Load():
		e.mu.Unlock()
		return errors.New("local: Up on a closed environment")
	case e.upCalled:
		e.mu.Unlock()
		return errors.New("local: Up called twice; make a new Env for another topology")
	}
	e.upCalled = true
	if err := e.build(specs); err != nil {
		e.mu.Unlock()
		e.Close()
		return fmt.Errorf("local: invalid topology: %w", err)
	}
	e.stopAfter = context.AfterFunc(ctx, func() {
		e.log.Info("context done; closing the environment")
		e.Close()
	})
	services, client := e.services, e.client
	e.mu.Unlock()
	defer func() {
		if err != nil {
			e.Close()
		}
	}()

	start := time.Now()
	e.publish() // every authority known, none ready yet
	if ctl := e.ctl; ctl != nil {
		ctl.opMu.Lock()
		err := ctl.start(ctx)
		ctl.opMu.Unlock()
		if err != nil {
			return fmt.Errorf("local: up: %w", err)
		}
	}
	var pods []*Pod
	for _, s := range services {
		pods = append(pods, s.pods...)
	}
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Go(func() {
			p.opMu.Lock()
			defer p.opMu.Unlock()
			errs[i] = p.start(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local: up: %w", err)
	}
	if e.ctl != nil {
		// The controller re-reads the registry every EndpointsPoll; the
		// client's first snapshot must list the pods just published.
		select {
		case <-time.After(3 * e.cfg.EndpointsPoll):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	client.opMu.Lock()
	err = client.start(ctx)
	client.opMu.Unlock()
	if err != nil {
		return fmt.Errorf("local: up: %w", err)
	}
	all := append(pods, client)
	if e.ctl != nil {
		all = append(all, e.ctl)
	}
	for _, p := range all {
		if err := e.goBackground(p.probeLoop); err != nil {
			return fmt.Errorf("local: up: %w", err)
		}
	}
	e.log.Info("environment up", "services", len(services), "pods", len(pods), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// goBackground runs f in a goroutine Close waits for, unless closing.
func (e *Env) goBackground(f func()) error {
	e.lifeMu.RLock()
	defer e.lifeMu.RUnlock()
	if e.stopped {
		return errors.New("the environment is closed")
	}
	e.bgWG.Go(f)
	return nil
}

// Close stops every process (SIGTERM to its process group, SIGKILL after
// StopTimeout), waits until all are gone, releases the subnet and removes
// RunDir if New created it. It is idempotent and safe to call at any time,
// also concurrently with other methods.
func (e *Env) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		e.mu.Lock()
		stop := e.stopAfter
		e.mu.Unlock()
		if stop != nil {
			stop()
		}
		start := time.Now()
		e.cancel()      // exec's Cancel sends SIGTERM; WaitDelay escalates
		e.lifeMu.Lock() // waits for starts in flight
		e.stopped = true
		e.lifeMu.Unlock()
		e.procWG.Wait()
		e.bgWG.Wait()
		close(e.spawn)
		<-e.spawnDone
		e.httpc.CloseIdleConnections()
		e.closeLinks()
		if e.wireStop != nil {
			e.wireStop()
		}
		if e.cfg.Network != nil {
			if err := e.cfg.Network.Close(); err != nil {
				e.closeErr = fmt.Errorf("local: removing the pods' networks: %w", err)
			}
		}
		e.pubMu.Lock() // waits for a registry write in flight
		e.pubDone = true
		e.pubMu.Unlock()
		e.lock.release()
		if e.ownRunDir {
			e.closeErr = os.RemoveAll(e.runDir)
		}
		e.log.Info("environment closed", "took", time.Since(start).Round(time.Millisecond))
	})
	return e.closeErr
}

// Client is the client pod: a sidecar only. Send meshed load to
// Client().OutboundAddr() with Host (or :authority) set to
// Authority(service); for tcp services connect to TCPAddr(service). Nil
// before Up.
func (e *Env) Client() *Pod {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.client
}

func (e *Env) service(name string) *service {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byName[name]
}

// Authority is the service's authority, "<name>.default.svc:<port>", or ""
// for an unknown service.
func (e *Env) Authority(service string) string {
	if s := e.service(service); s != nil {
		return s.authority
	}
	return ""
}

// TCPAddr is where the client sidecar accepts opaque TCP for a tcp
// service (its --tcp-route listener), or "" for other services.
func (e *Env) TCPAddr(service string) string {
	if s := e.service(service); s != nil {
		return s.tcpAddr
	}
	return ""
}

// DirectAddr is the workload address of replica i of service, bypassing
// every sidecar: the unmeshed baseline path. It is the TCP echo address
// for tcp services and the HTTP/gRPC address otherwise; "" if there is no
// such replica.
func (e *Env) DirectAddr(service string, i int) string {
	s := e.service(service)
	if s == nil || i < 0 || i >= len(s.pods) {
		return ""
	}
	if s.spec.Protocol == ProtocolTCP {
		return s.pods[i].AppTCPAddr()
	}
	return s.pods[i].AppAddr()
}

// Services returns the topology as Up normalised it (defaults filled in).
func (e *Env) Services() []ServiceSpec {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ServiceSpec, len(e.services))
	for i, s := range e.services {
		out[i] = s.spec
	}
	return out
}

// Pods returns the pods of service in replica order; nil for an unknown
// service.
func (e *Env) Pods(service string) []*Pod {
	if s := e.service(service); s != nil {
		return slices.Clone(s.pods)
	}
	return nil
}

// Pod returns a pod by name: "<service>-<i>" or ClientPod.
func (e *Env) Pod(name string) (*Pod, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pods[name]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("local: no pod %q; pods are named <service>-<i> from 0, plus %q", name, ClientPod)
}

// Processes lists every running process, for RSS and CPU sampling from
// /proc/<pid>. A killed or exited process is not listed; a paused one is.
func (e *Env) Processes() []Process {
	e.mu.Lock()
	var pods []*Pod
	for _, s := range e.services {
		pods = append(pods, s.pods...)
	}
	if e.client != nil {
		pods = append(pods, e.client)
	}
	if e.ctl != nil {
		pods = append(pods, e.ctl)
	}
	e.mu.Unlock()
	var out []Process
	for _, p := range pods {
		out = append(out, p.Processes()...)
	}
	return out
}

// Endpoints returns what the registry lists now for service: its ready
// pods. Sidecars see a change within about Config.EndpointsPoll.
func (e *Env) Endpoints(service string) []endpoint.Endpoint {
	s := e.service(service)
	if s == nil {
		return nil
	}
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	return slices.Clone(e.published[s.authority])
}

// publish recomputes every authority's endpoints from pod readiness and
// writes those that changed. Callers must not hold a pod's mu. Calls are
// serialised and each reads the current state, so the last write always
// reflects the last change.
func (e *Env) publish() {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	if e.pubDone || e.closed.Load() {
		return
	}
	e.mu.Lock()
	services := e.services
	e.mu.Unlock()
	for _, s := range services {
		eps := e.resolve(s)
		var b strings.Builder
		for _, ep := range eps {
			b.WriteString(formatEndpoint(ep) + " ")
		}
		key := b.String()
		if old, ok := e.pubKey[s.authority]; ok && old == key {
			continue
		}
		if err := e.file.Set(s.authority, eps); err != nil {
			e.log.Error("registry update failed", "authority", s.authority, "err", err)
			continue
		}
		if e.cfg.Registry != nil {
			if err := e.cfg.Registry.Set(s.authority, eps); err != nil {
				e.log.Error("registry update failed", "registry", "Config.Registry", "authority", s.authority, "err", err)
			}
		}
		e.pubKey[s.authority], e.published[s.authority] = key, eps
		addrs := make([]string, len(eps))
		for i, ep := range eps {
			addrs[i] = ep.Labels["pod"] + "=" + ep.Addr
		}
		e.log.Info("registry updated", "authority", s.authority, "endpoints", addrs)
	}
}

// resolve lists a service's ready endpoints. Failover is the proxy's job
// (failoverFlags), not the registry's.
func (e *Env) resolve(s *service) []endpoint.Endpoint { return s.readyEndpoints() }

// failoverFlags renders every service's failover rule as skiff-proxy
// flags.
func (e *Env) failoverFlags() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var args []string
	for _, s := range e.services {
		if len(s.spec.Failover) == 0 {
			continue
		}
		var fbs []string
		for _, name := range s.spec.Failover {
			for _, f := range e.services {
				if f.spec.Name == name {
					fbs = append(fbs, f.authority)
				}
			}
		}
		args = append(args, "--failover", s.authority+"="+strings.Join(fbs, ","))
	}
	return args
}

func (s *service) readyEndpoints() []endpoint.Endpoint {
	eps := []endpoint.Endpoint{}
	for _, p := range s.pods {
		if p.Ready() {
			eps = append(eps, p.endpoint())
		}
	}
	return eps
}

// protocolHint maps a service protocol to the endpoint hint.
func protocolHint(proto string) endpoint.Protocol {
	switch proto {
	case ProtocolH2C, ProtocolGRPC:
		return endpoint.ProtocolH2C
	case ProtocolTCP:
		return endpoint.ProtocolOpaque
	default:
		return endpoint.ProtocolHTTP1
	}
}

// podSeed derives a workload's seed from the Env's and the pod name; never
// zero (skiff-demo takes zero as "from the clock").
func podSeed(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	x := seed ^ h.Sum64()
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	if x == 0 {
		x = 1
	}
	return x
}

func (e *Env) tokenPath(pod string) string { return filepath.Join(e.idDir, pod+".token") }

// TrustAnchorsPath is the PEM bundle the controller writes and sidecars
// trust; "" without Config.ControlPlane.
func (e *Env) TrustAnchorsPath() string {
	if e.idDir == "" {
		return ""
	}
	return filepath.Join(e.idDir, "trust-anchors.pem")
}

// resourcesPath is the controller's --resources file; "" without
// Config.Resources.
func (e *Env) resourcesPath() string {
	if len(e.cfg.Resources) == 0 {
		return ""
	}
	return filepath.Join(e.runDir, "resources.yaml")
}

// ApplyResources replaces the Kubernetes objects the controller serves as
// policy, as `kubectl apply` of the whole set would: the controller
// notices the new file within its poll and sends the sidecars what
// changed. Only the controller pod of an environment started with
// Config.Resources has them.
func (p *Pod) ApplyResources(data []byte) error {
	path := p.env.resourcesPath()
	if !p.controller || path == "" {
		return fmt.Errorf("%s: only the controller of an environment with resources serves them", p.name)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing the controller's resources: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the controller's resources: %w", err)
	}
	return nil
}

// ControlAddr is the controller's gRPC address; "" without a control plane.
func (e *Env) ControlAddr() string {
	if e.ctl == nil {
		return ""
	}
	return net.JoinHostPort(e.ctl.ip.String(), strconv.Itoa(e.cfg.Ports.Control))
}

// MarkerHits is how often Config.Marker crossed a chaos link, in either
// direction, or on a Network the switch between the pods (frames carrying
// it): bytes between sidecars, seen from outside their processes.
func (e *Env) MarkerHits() uint64 {
	var n uint64
	if e.wireHits != nil {
		n += e.wireHits()
	}
	for _, s := range e.services {
		for _, p := range s.pods {
			if p.link != nil {
				n += p.link.MarkerHits()
			}
		}
	}
	return n
}

// IdentityDir holds the trust anchors, the issuer's certificate and key,
// the token key and the pods' tokens; "" without Config.ControlPlane.
func (e *Env) IdentityDir() string { return e.idDir }
