package spec

import (
	"reflect"
	"time"
)

// ControlPlaneScale is the control_plane_scale section: a run that
// measures the control plane alone, at a size no local topology of real
// pods reaches. The runner writes Services synthetic services of
// EndpointsPerService endpoints each into the registry file skiff-controller
// reads (addresses in the run's own loopback subnet; nothing connects to
// them), starts the controller, connects Watchers light clients of its
// Destination API (the proxy's own client, one connection each), each
// watching WatchesPerWatcher services, waits for their initial snapshots,
// then makes Changes changes, one every ChangeInterval, and times each
// change's arrival at every watcher of its service.
//
// A scenario with this section has no topology, no load, no timeline and
// no phases: its one phase is PhaseWhole, and it needs
// Mesh.ControlPlane. Zero fields take the defaults below, which are the
// scale the control plane promises to handle.
type ControlPlaneScale struct {
	// Services is the number of synthetic services, 1..MaxScaleServices;
	// zero means DefaultScaleServices (500).
	Services int `yaml:"services,omitempty" json:"services,omitempty"`
	// EndpointsPerService is each service's endpoints at the start,
	// 1..MaxScaleEndpointsPerService; zero means
	// DefaultScaleEndpointsPerService (10). Services × EndpointsPerService
	// is at most MaxScaleEndpoints.
	EndpointsPerService int `yaml:"endpoints_per_service,omitempty" json:"endpoints_per_service,omitempty"`
	// Watchers is the number of Destination clients, each its own
	// connection as a proxy's, 1..MaxScaleWatchers; zero means
	// DefaultScaleWatchers (200).
	Watchers int `yaml:"watchers,omitempty" json:"watchers,omitempty"`
	// WatchesPerWatcher is how many services each watcher watches,
	// 1..Services; zero means DefaultScaleWatchesPerWatcher (10), or
	// Services when there are fewer. The seed deals the services out so
	// that each is watched by as many watchers as any other, give or take
	// one.
	WatchesPerWatcher int `yaml:"watches_per_watcher,omitempty" json:"watches_per_watcher,omitempty"`
	// Changes is the number of changes made, 1..MaxScaleChanges; zero
	// means DefaultScaleChanges (100). Each adds an endpoint to, removes
	// one from, or changes the weight of one in a service drawn with the
	// seed, and rewrites the registry file atomically.
	Changes int `yaml:"changes,omitempty" json:"changes,omitempty"`
	// ChangeInterval is the time between two changes, made on schedule
	// whatever the watchers have seen (open model), in
	// [1ms, MaxScaleChangeInterval]; zero means
	// DefaultScaleChangeInterval (100ms).
	ChangeInterval time.Duration `yaml:"change_interval,omitempty" json:"change_interval,omitempty"`
	// Timeout is how long a watcher may take to see a change before the
	// pair counts as missed, in (0, MaxScaleTimeout]; zero means
	// DefaultScaleTimeout (5s). It also bounds the initial sync, ×10.
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Defaults and limits of ControlPlaneScale. The limits keep the synthetic
// endpoints, and the endpoints changes add, inside the run's 127.X.0.0/16
// subnet (MaxScaleEndpoints + MaxScaleChanges < 254 × 254), and one
// machine's harness within its means.
const (
	DefaultScaleServices            = 500
	DefaultScaleEndpointsPerService = 10
	DefaultScaleWatchers            = 200
	DefaultScaleWatchesPerWatcher   = 10
	DefaultScaleChanges             = 100
	DefaultScaleChangeInterval      = 100 * time.Millisecond
	DefaultScaleTimeout             = 5 * time.Second

	MaxScaleServices            = 10_000
	MaxScaleEndpointsPerService = 1_000
	MaxScaleEndpoints           = 50_000
	MaxScaleWatchers            = 1_000
	MaxScaleChanges             = 10_000
	MaxScaleChangeInterval      = time.Minute
	MaxScaleTimeout             = 5 * time.Minute
)

// normalize fills the zero fields with their defaults.
func (c *ControlPlaneScale) normalize() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Services, DefaultScaleServices)
	def(&c.EndpointsPerService, DefaultScaleEndpointsPerService)
	def(&c.Watchers, DefaultScaleWatchers)
	def(&c.WatchesPerWatcher, min(DefaultScaleWatchesPerWatcher, max(c.Services, 1)))
	def(&c.Changes, DefaultScaleChanges)
	if c.ChangeInterval == 0 {
		c.ChangeInterval = DefaultScaleChangeInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultScaleTimeout
	}
}

// override replaces the fields of c that o sets (non-zero).
func (c *ControlPlaneScale) override(o *ControlPlaneScale) {
	if o == nil {
		return
	}
	for _, f := range []struct{ dst, src *int }{
		{&c.Services, &o.Services}, {&c.EndpointsPerService, &o.EndpointsPerService},
		{&c.Watchers, &o.Watchers}, {&c.WatchesPerWatcher, &o.WatchesPerWatcher}, {&c.Changes, &o.Changes},
	} {
		if *f.src != 0 {
			*f.dst = *f.src
		}
	}
	if o.ChangeInterval != 0 {
		c.ChangeInterval = o.ChangeInterval
	}
	if o.Timeout != 0 {
		c.Timeout = o.Timeout
	}
}

// Endpoints is the number of synthetic endpoints at the start.
func (c *ControlPlaneScale) Endpoints() int { return c.Services * c.EndpointsPerService }

// clone copies c; nil stays nil.
func (c *ControlPlaneScale) clone() *ControlPlaneScale {
	if c == nil {
		return nil
	}
	v := *c
	return &v
}

// scale checks the control_plane_scale section and what it rules out:
// a topology, a load, a timeline and phases.
func (v *validator) scale() {
	s, c := v.s, v.s.ControlPlaneScale
	const p = "control_plane_scale"
	if !s.Mesh.ControlPlane {
		v.errf(p, "needs mesh.control_plane: true (it measures skiff-controller)")
	}
	if len(s.Topology.Services) > 0 {
		v.errf("topology.services", "a control_plane_scale run starts no workloads: its services are synthetic (control_plane_scale.services); drop the topology")
	}
	if !reflect.ValueOf(s.Load).IsZero() {
		v.errf("load", "a control_plane_scale run sends no traffic; drop the load (its pace is control_plane_scale.change_interval)")
	}
	if len(s.Timeline) > 0 {
		v.errf("timeline", "a control_plane_scale run has no fault timeline; drop it")
	}
	if len(s.Phases) > 0 {
		v.errf("phases", "a control_plane_scale run has one phase, %s; drop the phases", PhaseWhole)
	}
	count := func(field string, n, hi int) bool {
		path := p + "." + field
		switch {
		case v.zero(path) || n < 1:
			v.errf(path, "must be at least 1, got %d", raw(v, path, n))
		case n > hi:
			v.errf(path, "must be at most %d, got %d", hi, n)
		default:
			return !v.failedAt(path)
		}
		return false
	}
	svcOK := count("services", c.Services, MaxScaleServices)
	epsOK := count("endpoints_per_service", c.EndpointsPerService, MaxScaleEndpointsPerService)
	if svcOK && epsOK && c.Endpoints() > MaxScaleEndpoints {
		v.errf(p+".endpoints_per_service", "%d services × %d endpoints = %d endpoints; at most %d fit the run's loopback subnet", c.Services, c.EndpointsPerService, c.Endpoints(), MaxScaleEndpoints)
	}
	count("watchers", c.Watchers, MaxScaleWatchers)
	// A watcher watches distinct services: at most all of them.
	if path := p + ".watches_per_watcher"; svcOK && c.WatchesPerWatcher > c.Services {
		v.errf(path, "%d services per watcher, but there are %d services (control_plane_scale.services)", c.WatchesPerWatcher, c.Services)
	} else {
		count("watches_per_watcher", c.WatchesPerWatcher, MaxScaleServices)
	}
	count("changes", c.Changes, MaxScaleChanges)
	if path := p + ".change_interval"; v.zero(path) || c.ChangeInterval < time.Millisecond || c.ChangeInterval > MaxScaleChangeInterval {
		v.errf(path, "%s is outside [1ms, %s]", raw(v, path, c.ChangeInterval), MaxScaleChangeInterval)
	}
	if path := p + ".timeout"; v.zero(path) || c.Timeout <= 0 || c.Timeout > MaxScaleTimeout {
		v.errf(path, "%s is outside (0s, %s]", raw(v, path, c.Timeout), MaxScaleTimeout)
	}
}
