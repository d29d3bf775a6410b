package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Defaults of the Config durations.
const (
	DefaultReadyTimeout  = 10 * time.Second
	DefaultStopTimeout   = 5 * time.Second
	DefaultProbeInterval = 100 * time.Millisecond
	DefaultProbeTimeout  = 250 * time.Millisecond
	DefaultProbeFailures = 2
	DefaultEndpointsPoll = 100 * time.Millisecond
)

// Binaries are the paths of the programs a pod runs.
type Binaries struct {
	// Proxy is the skiff-proxy binary (sidecars).
	Proxy string
	// Demo is the skiff-demo binary (workloads).
	Demo string
	// Controller is skiff-controller; needed with Config.ControlPlane.
	Controller string
}

// Package paths of the binaries, built by BuildBinaries.
const (
	ProxyPackage = "github.com/skiff-mesh/skiff/cmd/skiff-proxy"
	DemoPackage  = "github.com/skiff-mesh/skiff/cmd/skiff-demo"
	// ControllerPackage is skiff-controller, run with Config.ControlPlane.
	ControllerPackage = "github.com/skiff-mesh/skiff/cmd/skiff-controller"
)

// BuildBinaries builds skiff-proxy, skiff-demo and skiff-controller into
// dir (created if needed) with `go build -trimpath` and CGO_ENABLED=0, so
// a run on a fresh clone needs only Go; tags are build tags (plant, for
// the planted defects). It must run inside the Skiff module (any directory
// of the checkout); the build cache makes repeated calls cheap.
func BuildBinaries(ctx context.Context, dir string, tags ...string) (Binaries, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return Binaries{}, fmt.Errorf("build binaries: the go command is not on PATH (%w); install Go or pass Config.Bin", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return Binaries{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("build binaries: %w", err)
	}
	args := []string{"build", "-trimpath"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, "-o", dir+string(filepath.Separator), ProxyPackage, DemoPackage, ControllerPackage)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return Binaries{}, fmt.Errorf("go build %s %s (run it inside the Skiff checkout): %w\n%s",
			ProxyPackage, DemoPackage, err, strings.TrimSpace(out.String()))
	}
	return Binaries{
		Proxy:      filepath.Join(dir, "skiff-proxy"),
		Demo:       filepath.Join(dir, "skiff-demo"),
		Controller: filepath.Join(dir, "skiff-controller"),
	}, nil
}

// Ports are the fixed ports of every pod: each pod has its own loopback
// address, so all pods use the same ones. The zero value of a field means
// its default.
type Ports struct {
	App      int // skiff-demo HTTP/1.1 + h2c + gRPC; default 8080
	AppTCP   int // skiff-demo TCP echo; default 9000
	Inbound  int // sidecar inbound; default 4143
	Outbound int // sidecar outbound; default 4140
	Admin    int // sidecar admin (/ready, /metrics); default 4191
	Chaos    int // the TCP chaos link in front of a pod; default 4150
	Control  int // the controller's gRPC API; default 8086
	CtlAdmin int // the controller's admin (/ready, /metrics); default 9996
	// TCPRouteBase is the first port of the client sidecar's TCP route
	// listeners, one per tcp service in spec order; default 15000.
	TCPRouteBase int
	// AppTLS and AppBanner are skiff-demo's TLS echo and its
	// server-speaks-first banner; defaults 8443 and 2525 (not among the
	// sidecars' default opaque ports: a banner client is detected, which
	// is the point).
	AppTLS, AppBanner int
}

func (p *Ports) normalize() error {
	for _, f := range []struct {
		v   *int
		def int
	}{{&p.App, 8080}, {&p.AppTCP, 9000}, {&p.AppTLS, 8443}, {&p.AppBanner, 2525}, {&p.Inbound, 4143}, {&p.Outbound, 4140}, {&p.Admin, 4191}, {&p.Chaos, 4150}, {&p.Control, 8086}, {&p.CtlAdmin, 9996}, {&p.TCPRouteBase, 15000}} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 1 || *f.v > 65535 {
			return fmt.Errorf("port %d is outside 1..65535", *f.v)
		}
	}
	seen := map[int]bool{}
	for _, v := range []int{p.App, p.AppTCP, p.AppTLS, p.AppBanner, p.Inbound, p.Outbound, p.Admin, p.Chaos} {
		if seen[v] {
			return fmt.Errorf("ports %+v: port %d is used twice", *p, v)
		}
		seen[v] = true
	}
	return nil
}

// Config configures an Env. The zero value works when skiff-proxy and
// skiff-demo are on PATH.
type Config struct {
	// Bin locates the binaries; an empty path is looked up on PATH. See
	// BuildBinaries.
	Bin Binaries
	// RunDir holds the endpoints file and the logs of every process, in
	// RunDir/logs/<pod>-<proc>.log (proc is "app" or "proxy"; a restarted
	// process appends). Empty means a new temporary directory that Close
	// removes.
	RunDir string
	// Seed seeds the workloads' fault randomness: each skiff-demo gets a
	// seed derived from it and its pod name. Zero means a seed drawn from
	// the clock; Env.Seed reports the one in use, for the result.
	Seed uint64
	// Logger receives the environment's events; nil discards them.
	Logger *slog.Logger
	// Ports overrides the per-pod port convention.
	Ports Ports
	// ReadyTimeout bounds the wait for a pod to become ready, in Up and
	// Restart; zero means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// StopTimeout is how long processes may drain after SIGTERM before
	// SIGKILL; zero means DefaultStopTimeout. Sidecars and workloads are
	// told to drain within half of it.
	StopTimeout time.Duration
	// ProbeInterval is the pause between readiness probes of a pod; zero
	// means DefaultProbeInterval.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe; zero means DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// ProbeFailures is how many probes in a row must fail before a pod is
	// taken out of the registry (Kubernetes' failureThreshold); zero means
	// DefaultProbeFailures. One success puts it back.
	ProbeFailures int
	// EndpointsPoll is how often sidecars check the endpoints file; zero
	// means DefaultEndpointsPoll. A registry change reaches every sidecar
	// within about this long.
	EndpointsPoll time.Duration
	// ControlPlane runs skiff-controller (Destination, Identity, Policy) in
	// a pod of its own, named ControllerPod, and gives the sidecars their
	// endpoints and certificates through it: every hop between sidecars
	// is then mutual TLS. Without it sidecars read the endpoints file.
	ControlPlane bool
	// Marker is searched for in every byte the chaos links forward
	// (ServiceSpec.Chaos): Env.MarkerHits counts it. Nil disables it.
	Marker []byte
	// StrictMTLS makes sidecars refuse plaintext inbound (--require-mtls).
	// It needs ControlPlane.
	StrictMTLS bool
	// LeafLifetime is the lifetime of the workload certificates the
	// controller issues (--leaf-lifetime); zero means its default (24h).
	// It needs ControlPlane.
	LeafLifetime time.Duration
	// Resources are Kubernetes objects (a YAML stream: HTTPRoute,
	// GRPCRoute, XBackendTrafficPolicy, CircuitBreaker) the controller
	// serves to the sidecars as policy (its --resources file, which
	// ControllerPod's ApplyResources replaces while it runs). It needs
	// ControlPlane.
	Resources []byte
	// ProxyArgs and DemoArgs are appended to every sidecar's and
	// workload's command line (tuning flags, --log-level debug).
	ProxyArgs, DemoArgs []string
	// Network, when set, gives every pod a network of its own (the netns
	// environment) instead of a loopback address: see Network. Chaos
	// links (ServiceSpec.Chaos) need loopback and are refused with it.
	Network Network
	// Registry, when set, receives every registry change too, after the
	// endpoints file the sidecars read: a seam for a control plane's
	// discovery (mesh/discovery/local).
	Registry Registry
}

func (c *Config) normalize() error {
	var errs []error
	if c.StrictMTLS && !c.ControlPlane {
		errs = append(errs, errors.New("StrictMTLS needs ControlPlane (certificates come from its Identity API)"))
	}
	if c.LeafLifetime != 0 && !c.ControlPlane {
		errs = append(errs, errors.New("LeafLifetime needs ControlPlane (certificates come from its Identity API)"))
	}
	if len(c.Resources) > 0 && !c.ControlPlane {
		errs = append(errs, errors.New("resources need ControlPlane (the controller serves them as policy)"))
	}
	if c.LeafLifetime < 0 {
		errs = append(errs, fmt.Errorf("LeafLifetime %s is negative", c.LeafLifetime))
	}
	if c.ControlPlane && c.Bin.Controller == "" {
		errs = append(errs, errors.New("ControlPlane needs Bin.Controller (skiff-controller)"))
	}
	for _, b := range []struct {
		path *string
		name string
	}{{&c.Bin.Proxy, "skiff-proxy"}, {&c.Bin.Demo, "skiff-demo"}} {
		if *b.path == "" {
			p, err := exec.LookPath(b.name)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s is not on PATH; set Config.Bin or build it with local.BuildBinaries", b.name))
				continue
			}
			*b.path = p
		}
		if fi, err := os.Stat(*b.path); err != nil {
			errs = append(errs, fmt.Errorf("binary %s: %w; build it with local.BuildBinaries", *b.path, err))
		} else if fi.IsDir() {
			errs = append(errs, fmt.Errorf("binary %s is a directory; build the binary with local.BuildBinaries", *b.path))
		}
	}
	if err := c.Ports.normalize(); err != nil {
		errs = append(errs, err)
	}
	dur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	dur(&c.ReadyTimeout, DefaultReadyTimeout)
	dur(&c.StopTimeout, DefaultStopTimeout)
	dur(&c.ProbeInterval, DefaultProbeInterval)
	dur(&c.ProbeTimeout, DefaultProbeTimeout)
	dur(&c.EndpointsPoll, DefaultEndpointsPoll)
	if c.ProbeFailures <= 0 {
		c.ProbeFailures = DefaultProbeFailures
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}
