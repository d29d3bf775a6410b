package spec

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/skiff-mesh/skiff/faultinject/httpfault"
	"github.com/skiff-mesh/skiff/results/assert"
)

// Option adjusts Parse, Load and Validate. Options are independent of each
// other and of their order.
type Option func(*options)

type options struct {
	faults   []string // known fault types
	wantName string   // Load: the name the file must declare
}

// WithFaults sets the fault types the timeline may use, typically the
// names of the fault registry. An empty list means DefaultFaults.
func WithFaults(types []string) Option {
	return func(o *options) { o.faults = slices.Clone(types) }
}

func newOptions(opts []Option) *options {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	if len(o.faults) == 0 {
		o.faults = DefaultFaults()
	}
	return o
}

// Validate reports every problem of s, one *Error each, as an Errors; nil
// when there is none. It checks a normalized copy of s (s is not changed),
// then, when s has a quick section, the --quick form too. The errors carry
// paths but no file positions; Parse adds those.
func (s *Scenario) Validate(opts ...Option) error {
	errs := &errorList{}
	validate(s, newOptions(opts), errs, nil)
	return errs.err()
}

// validate checks a copy of s normalized, then its quick form when the
// rest is valid. d, when not nil, is the decoder that produced s: it gives
// positions and explicit zeros.
func validate(s *Scenario, o *options, errs *errorList, d *decoder) {
	n := s.Clone()
	n.Normalize()
	before := len(errs.errs)
	v := &validator{s: n, o: o, errs: errs, d: d, badReplicas: map[string]bool{}}
	v.run()
	if len(errs.errs) > before || n.Quick == nil {
		return
	}
	q := n.Clone()
	q.ApplyQuick()
	qv := &validator{s: q, o: o, errs: errs, d: d, quick: true, badReplicas: map[string]bool{}}
	qv.run()
}

// validator checks one normalized scenario.
type validator struct {
	// durOK and badReplicas keep one mistake from being reported again
	// through the checks that depend on it: times are only compared with a
	// valid duration, pod indexes only with a valid replica count.
	durOK       bool
	badReplicas map[string]bool

	s     *Scenario
	o     *options
	errs  *errorList
	d     *decoder // nil for a scenario built in Go
	quick bool     // checking the --quick form
}

// failedAt reports whether decoding failed at path or inside it.
func (v *validator) failedAt(path string) bool {
	if v.d == nil {
		return false
	}
	for _, f := range v.d.failed {
		if path == f || strings.HasPrefix(path, f+".") || strings.HasPrefix(path, f+"[") {
			return true
		}
	}
	return false
}

// errf reports a problem with path, unless decoding already failed there.
func (v *validator) errf(path, format string, args ...any) {
	if v.failedAt(path) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	if v.quick {
		msg = "with --quick, " + msg
	}
	v.errs.add(v.at(path), path, msg)
}

// at returns the position of path, or of its nearest ancestor that has one.
func (v *validator) at(path string) pos {
	if v.d == nil {
		return pos{}
	}
	for {
		if p, ok := v.d.pos[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return v.d.pos[""]
		}
		path = path[:i]
	}
}

// zero reports whether path was written explicitly as a zero value.
func (v *validator) zero(path string) bool { return v.d != nil && v.d.zeros[path] }

// line returns the line of path for "first at line N" notes.
func (v *validator) line(path string) string {
	if p := v.at(path); p.line > 0 {
		return fmt.Sprintf(" (first at line %d)", p.line)
	}
	return ""
}

// oneOf checks that val is one of allowed.
func (v *validator) oneOf(path, what, val string, allowed []string) bool {
	if slices.Contains(allowed, val) {
		return true
	}
	if val == "" {
		v.errf(path, "%s is required; want %s", what, quoteList(allowed))
		return false
	}
	v.errf(path, "unknown %s %q; want %s%s", what, val, quoteList(allowed), didYouMean(val, allowed))
	return false
}

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	phaseName  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	httpMethod = regexp.MustCompile(`^[A-Z]+$`)
	grpcMethod = regexp.MustCompile(`^/[A-Za-z0-9_.]+/[A-Za-z0-9_]+$`)
)

func (v *validator) run() {
	s := v.s
	switch {
	case s.Name == "":
		v.errf("name", "required: the scenario's name on the command line, e.g. %q", "failover")
	case !dnsLabel.MatchString(s.Name):
		v.errf("name", "%q is not a DNS label: lower-case letters, digits and '-', at most 63 characters, starting and ending with a letter or digit", s.Name)
	case v.o.wantName != "" && s.Name != v.o.wantName:
		v.errf("name", "%q does not match the file name; call the scenario %q or rename the file", s.Name, v.o.wantName)
	}
	if strings.ContainsAny(s.Description, "\r\n") {
		v.errf("description", "must be one line; put details in comments")
	}
	if s.ControlPlaneScale != nil {
		v.scale() // which rules out a topology, a load, a timeline and phases
	} else {
		v.topology()
	}
	v.oneOf("mesh.balancer", "balancer", s.Mesh.Balancer, []string{BalancerEWMA, BalancerRoundRobin})
	v.environments()
	if s.Mesh.MTLS != "" {
		v.oneOf("mesh.mtls", "mtls", s.Mesh.MTLS, []string{MTLSPermissive, MTLSStrict})
		if !s.Mesh.ControlPlane {
			v.errf("mesh.mtls", "needs mesh.control_plane: true (certificates come from its Identity API)")
		}
	}
	if d := s.Mesh.DetectTimeout; d != 0 && (d < MinDetectTimeout || d > MaxDetectTimeout) {
		v.errf("mesh.detect_timeout", "%s is outside %s..%s", d, MinDetectTimeout, MaxDetectTimeout)
	}
	if d := s.Mesh.LeafLifetime; d != 0 {
		switch {
		case !s.Mesh.ControlPlane:
			v.errf("mesh.leaf_lifetime", "needs mesh.control_plane: true (certificates come from its Identity API)")
		case d < MinLeafLifetime || d > MaxLeafLifetime:
			v.errf("mesh.leaf_lifetime", "%s is outside %s..%s", d, MinLeafLifetime, MaxLeafLifetime)
		}
	}
	if s.ControlPlaneScale == nil {
		v.load()
		v.timeline()
		v.phases()
	}
	v.assertions()
	if s.ControlPlaneScale == nil {
		v.successCoverage()
	}
	v.resources()
	v.planted()
	v.quickSection()
}

var protocols = []string{ProtocolHTTP1, ProtocolH2C, ProtocolGRPC, ProtocolTCP}

func (v *validator) topology() {
	svcs := v.s.Topology.Services
	if len(svcs) == 0 {
		v.errf("topology.services", "at least one service is required")
		return
	}
	if len(svcs) > MaxServices {
		v.errf("topology.services", "%d services; at most %d run on one machine", len(svcs), MaxServices)
		return
	}
	first := map[string]int{}
	for i := range svcs {
		svc := &svcs[i]
		p := fmt.Sprintf("topology.services[%d]", i)
		switch {
		case svc.Name == "":
			v.errf(p+".name", "required: a DNS label such as %q", "echo")
		case !dnsLabel.MatchString(svc.Name):
			v.errf(p+".name", "%q is not a DNS label: lower-case letters, digits and '-', at most 63 characters, starting and ending with a letter or digit", svc.Name)
		default:
			if j, dup := first[svc.Name]; dup {
				v.errf(p+".name", "duplicate service name %q%s", svc.Name, v.line(fmt.Sprintf("topology.services[%d].name", j)))
			} else {
				first[svc.Name] = i
			}
		}
		if v.zero(p+".port") || svc.Port < 1 || svc.Port > 65535 {
			v.errf(p+".port", "must be a port between 1 and 65535, got %d", raw(v, p+".port", svc.Port))
		}
		switch {
		case v.zero(p+".replicas") || svc.Replicas < 1:
			v.errf(p+".replicas", "must be at least 1, got %d", raw(v, p+".replicas", svc.Replicas))
			v.badReplicas[svc.Name] = true
		case svc.Replicas > MaxReplicas:
			v.errf(p+".replicas", "must be at most %d, got %d", MaxReplicas, svc.Replicas)
			v.badReplicas[svc.Name] = true
		case v.failedAt(p + ".replicas"):
			v.badReplicas[svc.Name] = true
		}
		v.oneOf(p+".protocol", "protocol", svc.Protocol, protocols)
		v.behaviour(p+".behaviour", svc.Behaviour)
		for _, r := range slices.Sorted(maps.Keys(svc.ReplicaBehaviour)) {
			rp := fmt.Sprintf("%s.replica_behaviour[%d]", p, r)
			if r < 0 || r >= svc.Replicas {
				if !v.badReplicas[svc.Name] {
					v.errf(rp, "replica %d does not exist: service %q has %s", r, svc.Name, replicas(svc))
				}
				continue
			}
			// Only the fields the patch sets can be wrong here: the rest are
			// valid defaults, so a bad service behaviour is not reported twice.
			v.behaviour(rp, Behaviour{ErrorStatus: DefaultErrorStatus}.With(svc.ReplicaBehaviour[r]))
		}
	}
	for i := range svcs {
		svc := &svcs[i]
		p := fmt.Sprintf("topology.services[%d]", i)
		if other, r, ok := v.s.pod(svc.Name); ok && r >= 0 {
			v.errf(p+".name", "%q is also the name of replica %d of service %q; rename one so that fault targets are unambiguous", svc.Name, r, other.Name)
		}
		seen := map[string]bool{}
		for k, f := range svc.Failover {
			fp := fmt.Sprintf("%s.failover[%d]", p, k)
			t := v.s.Service(f)
			switch {
			case t == nil:
				v.errf(fp, "unknown service %q%s", f, v.serviceHint(f))
			case f == svc.Name:
				v.errf(fp, "service %q cannot fail over to itself", f)
			case seen[f]:
				v.errf(fp, "service %q is listed twice", f)
			case t.Protocol != svc.Protocol:
				v.errf(fp, "service %q speaks %s but %q speaks %s; failover needs the same protocol", f, t.Protocol, svc.Name, svc.Protocol)
			}
			seen[f] = true
		}
	}
}

// serviceHint suggests a close service name or lists them.
func (v *validator) serviceHint(name string) string {
	names := v.s.serviceNames()
	if s := didYouMean(name, names); s != "" {
		return s
	}
	return "; services: " + strings.Join(names, ", ")
}

// serviceNames lists the distinct service names in topology order.
func (s *Scenario) serviceNames() []string {
	var out []string
	for _, svc := range s.Topology.Services {
		if !slices.Contains(out, svc.Name) {
			out = append(out, svc.Name)
		}
	}
	return out
}

func (v *validator) behaviour(p string, b Behaviour) {
	if err := (httpfault.Behaviour{Latency: b.Latency}).Validate(); err != nil {
		v.errf(p+".latency", "%v", err)
	}
	if b.LatencyJitter < 0 || b.LatencyJitter > MaxLatency {
		v.errf(p+".latency_jitter", "%s is outside [0s, %s]", b.LatencyJitter, MaxLatency)
	}
	for _, r := range []struct {
		name string
		val  float64
	}{{"error_rate", b.ErrorRate}, {"reset_rate", b.ResetRate}} {
		if math.IsNaN(r.val) || r.val < 0 || r.val > 1 {
			v.errf(p+"."+r.name, "%v is outside [0, 1]; it is a fraction, e.g. 0.3 for 30 %%", r.val)
		}
	}
	if v.zero(p+".error_status") || b.ErrorStatus < 200 || b.ErrorStatus > 599 {
		v.errf(p+".error_status", "%d is not an HTTP status between 200 and 599", raw(v, p+".error_status", b.ErrorStatus))
	}
	if b.MaxConcurrent < 0 || b.MaxConcurrent > httpfault.MaxConcurrentLimit {
		v.errf(p+".max_concurrent", "%d is outside [0, %d]; 0 means no limit", b.MaxConcurrent, httpfault.MaxConcurrentLimit)
	}
}

var loadProtocols = []string{ProtocolHTTP1, ProtocolH2C, ProtocolGRPC, ProtocolGRPCStream, ProtocolTCP, ProtocolTLS, ProtocolBanner}

// mixProtocols are the kinds of call Load.Mix can share the requests
// between: every load protocol but tcp, whose requests go to the client
// sidecar's TCP route of a tcp service.
var mixProtocols = []string{ProtocolHTTP1, ProtocolH2C, ProtocolGRPC, ProtocolGRPCStream, ProtocolTLS, ProtocolBanner}

// speaks reports whether a service speaking svc takes a load of protocol p.
// Every pod runs skiff-demo's TLS echo and banner, so every service but a
// tcp one (whose load goes to its TCP route) takes tls and banner.
func speaks(svc, p string) bool {
	switch {
	case p == ProtocolTLS || p == ProtocolBanner:
		return svc != ProtocolTCP
	}
	return svc == p || svc == ProtocolGRPC && p == ProtocolGRPCStream
}

func (v *validator) load() {
	s, l := v.s, &v.s.Load
	var target *Service
	switch {
	case l.Target == "":
		if len(s.Topology.Services) > 1 {
			v.errf("load.target", "required when the topology has more than one service; one of %s", strings.Join(s.serviceNames(), ", "))
		}
	default:
		if target = s.Service(l.Target); target == nil && len(s.Topology.Services) > 0 {
			v.errf("load.target", "unknown service %q%s", l.Target, v.serviceHint(l.Target))
		}
	}
	switch {
	case l.Protocol == "" && target == nil:
		// Nothing to take the protocol from: load.target is reported.
	case target != nil && !slices.Contains(protocols, target.Protocol) && l.Protocol == target.Protocol:
		// Taken from a service whose protocol is reported.
	case !v.oneOf("load.protocol", "protocol", l.Protocol, loadProtocols):
	case target != nil && !speaks(target.Protocol, l.Protocol):
		v.errf("load.protocol", "%s does not match service %q, which speaks %s", l.Protocol, target.Name, target.Protocol)
	case len(l.Mix) > 0 && target != nil && l.Protocol != target.Protocol:
		v.errf("load.protocol", "leave it out with load.mix, whose shares name the kinds of call")
	}
	switch {
	case len(l.Mix) > 0:
		v.mix(target)
	case l.Protocol == ProtocolHTTP1, l.Protocol == ProtocolH2C:
		if !strings.HasPrefix(l.Path, "/") {
			v.errf("load.path", "%q must start with /", l.Path)
		}
		if !httpMethod.MatchString(l.Method) {
			v.errf("load.method", "%q is not an HTTP method like GET or POST", l.Method)
		}
	case l.Protocol == ProtocolGRPC, l.Protocol == ProtocolGRPCStream:
		if l.Path != "" {
			v.errf("load.path", "only for HTTP; a gRPC load calls load.method")
		}
		if !grpcMethod.MatchString(l.Method) {
			v.errf("load.method", "%q is not a full gRPC method like %s", l.Method, DefaultGRPCMethod)
		}
	}
	switch {
	case l.Messages == 0 && !v.zero("load.messages"):
	case !l.Streams():
		v.errf("load.messages", "only for grpc-stream calls (load.protocol or load.mix)")
	case v.zero("load.messages") || l.Messages < 1 || l.Messages > MaxStreamMessages:
		v.errf("load.messages", "must be between 1 and %d messages per call, got %d", MaxStreamMessages, raw(v, "load.messages", l.Messages))
	}
	if l.PayloadBytes < 0 || l.PayloadBytes > MaxPayloadBytes {
		v.errf("load.payload_bytes", "must be between 0 and %d (16 MiB), got %d", MaxPayloadBytes, l.PayloadBytes)
	}
	for _, f := range []struct {
		field string
		on    bool
	}{{"load.digest", l.Digest}, {"load.chunked", l.Chunked}} {
		if f.on && (l.PayloadBytes <= 0 || l.Protocol == ProtocolGRPC || l.Protocol == ProtocolGRPCStream || len(l.Mix) > 0) {
			v.errf(f.field, "needs an HTTP load with a body (load.payload_bytes > 0)")
		}
	}
	switch {
	case v.zero("load.connections") || l.Connections < 1:
		v.errf("load.connections", "must be at least 1, got %d", raw(v, "load.connections", l.Connections))
	case l.Connections > MaxConnections:
		v.errf("load.connections", "must be at most %d, got %d", MaxConnections, l.Connections)
	}
	switch {
	case l.RequestsPerConnection == 0:
	case l.RequestsPerConnection < 0 || l.RequestsPerConnection > MaxRequestsPerConnection:
		v.errf("load.requests_per_connection", "must be between 1 and %d requests, got %d (0 keeps the connections open)", MaxRequestsPerConnection, l.RequestsPerConnection)
	case len(l.Mix) > 0 || l.Protocol != ProtocolHTTP1 && slices.Contains(loadProtocols, l.Protocol):
		v.errf("load.requests_per_connection", "only for an http1 load: h2c and gRPC multiplex their requests over a few long-lived connections")
	}
	v.durOK = v.positive("load.duration", l.Duration)
	if l.Warmup < 0 || l.Warmup > MaxDuration {
		v.errf("load.warmup", "%s is outside [0s, %s]", l.Warmup, MaxDuration)
	}
	switch {
	case v.zero("load.trials") || l.Trials < 1:
		v.errf("load.trials", "must be at least 1, got %d", raw(v, "load.trials", l.Trials))
	case l.Trials > MaxTrials:
		v.errf("load.trials", "must be at most %d, got %d", MaxTrials, l.Trials)
	}
	if v.rate("load.rate", &l.Rate) && l.Rate.Shape == ShapeSteps && v.durOK {
		if total, need := l.Rate.StepsTotal(), l.Warmup+l.Duration; total < need {
			v.errf("load.rate.steps", "the steps last %s but a trial lasts %s (warmup %s + duration %s); the load would stop early", total, need, l.Warmup, l.Duration)
		}
	}
}

// mix checks load.mix, the kinds of call sharing the requests.
func (v *validator) mix(target *Service) {
	l := &v.s.Load
	if target != nil && target.Protocol == ProtocolTCP {
		v.errf("load.mix", "service %q speaks tcp, whose load goes to the client sidecar's TCP route alone; the mix takes %s", target.Name, quoteList(mixProtocols))
		return
	}
	grpcOnly := !slices.ContainsFunc(l.Mix, func(m MixShare) bool { return m.Protocol != ProtocolGRPC && m.Protocol != ProtocolGRPCStream })
	if target != nil && grpcOnly && target.Protocol != ProtocolGRPC {
		v.errf("load.mix", "gRPC calls alone mix to a service that speaks grpc, and service %q speaks %s", target.Name, target.Protocol)
		return
	}
	if len(l.Mix) < 2 {
		v.errf("load.mix", "has %d kind of call; a mix needs two (%s): for one, set load.protocol", len(l.Mix), quoteList(mixProtocols))
	}
	if l.Path != "" {
		v.errf("load.path", "leave it out with load.mix: its HTTP requests GET %s, its gRPC calls call their method", DefaultPath)
	}
	if l.Method != "" {
		v.errf("load.method", "leave it out with load.mix: each kind of call has its method (%s for grpc, %s for grpc-stream)", DefaultGRPCMethod, DefaultGRPCStreamMethod)
	}
	for i, m := range l.Mix {
		p := fmt.Sprintf("load.mix[%d]", i)
		if v.oneOf(p+".protocol", "protocol", m.Protocol, mixProtocols) {
			for j := range i {
				if l.Mix[j].Protocol == m.Protocol {
					v.errf(p+".protocol", "%s is already in the mix%s; give it one share with the summed weight", m.Protocol, v.line(fmt.Sprintf("load.mix[%d]", j)))
					break
				}
			}
		}
		if v.zero(p+".weight") || m.Weight < 1 || m.Weight > MaxMixWeight {
			v.errf(p+".weight", "must be between 1 and %d, got %d", MaxMixWeight, raw(v, p+".weight", m.Weight))
		}
	}
}

// positive checks a duration that must be in (0, MaxDuration].
func (v *validator) positive(path string, d time.Duration) bool {
	if v.zero(path) || d <= 0 || d > MaxDuration {
		v.errf(path, "%s is outside (0s, %s]", raw(v, path, d), MaxDuration)
		return false
	}
	return !v.failedAt(path)
}

// rate checks one schedule and reports whether it is valid.
func (v *validator) rate(p string, r *Rate) bool {
	before := len(v.errs.errs)
	if !v.oneOf(p+".shape", "shape", r.Shape, []string{ShapeConstant, ShapeRamp, ShapeSteps}) {
		return false
	}
	rps := func(path string, n int, zeroOK bool) {
		if (!zeroOK && (n < 1 || v.zero(path))) || n < 0 || n > MaxRPS {
			lo := 1
			if zeroOK {
				lo = 0
			}
			v.errf(path, "must be between %d and %d requests per second, got %d", lo, MaxRPS, raw(v, path, n))
		}
	}
	only := func(field, shape string, set bool) {
		if set {
			v.errf(p+"."+field, "only for shape %s; this rate's shape is %s", shape, r.Shape)
		}
	}
	switch r.Shape {
	case ShapeConstant:
		rps(p+".rps", r.RPS, false)
		only("from", ShapeRamp, r.From != 0)
		only("to", ShapeRamp, r.To != 0)
		only("steps", ShapeSteps, len(r.Steps) > 0)
	case ShapeRamp:
		rps(p+".from", r.From, false)
		rps(p+".to", r.To, false)
		only("rps", ShapeConstant, r.RPS != 0)
		only("steps", ShapeSteps, len(r.Steps) > 0)
	case ShapeSteps:
		only("rps", ShapeConstant, r.RPS != 0)
		only("from", ShapeRamp, r.From != 0)
		only("to", ShapeRamp, r.To != 0)
		if len(r.Steps) == 0 {
			v.errf(p+".steps", "shape steps needs at least one step {rps, for}")
		}
		sending := false
		for i, st := range r.Steps {
			sp := fmt.Sprintf("%s.steps[%d]", p, i)
			rps(sp+".rps", st.RPS, true)
			v.positive(sp+".for", st.For)
			sending = sending || st.RPS > 0
		}
		if len(r.Steps) > 0 && !sending {
			v.errf(p+".steps", "every step has rps 0; nothing would be sent")
		}
	}
	return len(v.errs.errs) == before
}

func (v *validator) timeline() {
	dur := v.s.Load.Duration
	for i, e := range v.s.Timeline {
		p := fmt.Sprintf("timeline[%d]", i)
		switch {
		case e.At < 0:
			v.errf(p+".at", "%s is negative; times count from the end of the warm-up", e.At)
		case e.At >= dur && v.durOK:
			v.errf(p+".at", "%s is not before the end of the run (load.duration %s)", e.At, dur)
		}
		v.oneOf(p+".fault", "fault type", e.Fault, v.o.faults)
		if IdentityFault(e.Fault) && e.Target != ControllerTarget {
			v.errf(p+".target", "fault %q acts on the certificate authority: its target is %q, not %q", e.Fault, ControllerTarget, e.Target)
		} else {
			v.target(p+".target", e.Target)
		}
		if e.Fault == FaultApply {
			v.apply(p, e)
		}
		if IdentityFault(e.Fault) && e.For != 0 {
			v.errf(p+".for", "fault %q cannot be undone: a rotation only goes forward; leave for out", e.Fault)
		}
		switch {
		case e.For < 0 || v.zero(p+".for"):
			v.errf(p+".for", "must be positive, got %s; leave it out to keep the fault until an event undoes it", e.For)
		case e.For > 0 && v.durOK && e.At >= 0 && e.At < dur && e.At+e.For > dur:
			v.errf(p+".for", "the fault would be undone at %s, after the end of the run (load.duration %s)", e.At+e.For, dur)
		}
	}
}

// environments checks Scenario.Environments, and that a scenario with
// network faults names environments that have a network per pod.
func (v *validator) environments() {
	for i, env := range v.s.Environments {
		v.oneOf(fmt.Sprintf("environments[%d]", i), "environment", env, Environments)
	}
	for i, e := range v.s.Timeline {
		if !NetworkFault(e.Fault) {
			continue
		}
		if len(v.s.Environments) == 0 || slices.Contains(v.s.Environments, "local") {
			v.errf(fmt.Sprintf("timeline[%d].fault", i), "fault %q acts on a pod's own network link, which the local environment does not have: list the environments the scenario runs on, e.g. environments: [netns]", e.Fault)
		}
		if e.Fault == FaultPartition {
			from, _ := e.Params["from"].(string)
			if from != "client" {
				v.target(fmt.Sprintf("timeline[%d].params.from", i), from)
			}
		}
	}
}

// apply checks an apply event: it replaces the resources the controller
// serves, so its objects must pass what the scenario's own do.
func (v *validator) apply(p string, e Event) {
	switch {
	case e.Target != ControllerTarget:
		v.errf(p+".target", "fault %q replaces the controller's policy objects: its target is %q", e.Fault, ControllerTarget)
	case len(v.s.Resources) == 0:
		v.errf(p+".fault", "fault %q needs resources: the controller serves objects only in a scenario that starts with some", e.Fault)
	case e.For != 0:
		v.errf(p+".for", "fault %q is undone by another apply, not by a duration; leave for out", e.Fault)
	}
	list, _ := e.Params["resources"].([]any)
	if len(list) == 0 || len(e.Params) != 1 {
		v.errf(p+".params", "want exactly resources: a non-empty list of Kubernetes objects")
		return
	}
	rs := make([]Resource, len(list))
	for i, o := range list {
		doc, err := yaml.Marshal(o)
		if err != nil {
			v.errf(fmt.Sprintf("%s.params.resources[%d]", p, i), "%v", err)
			return
		}
		rs[i] = Resource{YAML: doc}
	}
	c := &Scenario{Topology: v.s.Topology, Resources: rs}
	errs := &errorList{}
	c.routes(errs)
	for _, err := range errs.errs {
		v.errf(p+".params", "%s", err.Error())
	}
}

// target checks a fault or share() target: a pod or a service.
func (v *validator) target(p, name string) {
	if name == "" {
		v.errf(p, "required: a pod %q or a service", "<service>-<index>")
		return
	}
	if v.s.Service(name) != nil {
		return
	}
	if name == ControllerTarget {
		if !v.s.Mesh.ControlPlane {
			v.errf(p, "target %q needs mesh.control_plane: true", name)
		}
		return
	}
	if svc, r, ok := v.s.pod(name); ok {
		if r >= svc.Replicas && !v.badReplicas[svc.Name] {
			v.errf(p, "pod %q does not exist: service %q has %s", name, svc.Name, replicas(svc))
		}
		return
	}
	hint := didYouMean(name, v.s.targetNames())
	if hint == "" {
		hint = "; services: " + strings.Join(v.s.serviceNames(), ", ")
	}
	v.errf(p, "unknown target %q: want a pod %q or a service%s", name, "<service>-<index>", hint)
}

// replicas describes the pods of svc: "3 replicas (echo-0..echo-2)".
func replicas(svc *Service) string {
	if svc.Replicas == 1 {
		return fmt.Sprintf("1 replica (%s)", svc.Pod(0))
	}
	return fmt.Sprintf("%d replicas (%s..%s)", svc.Replicas, svc.Pod(0), svc.Pod(svc.Replicas-1))
}

// targetNames lists services and pods, for suggestions (bounded).
func (s *Scenario) targetNames() []string {
	var out []string
	for _, svc := range s.Topology.Services {
		out = append(out, svc.Name)
		for i := range min(svc.Replicas, MaxReplicas) {
			out = append(out, svc.Pod(i))
		}
	}
	return out
}

// pod splits "<service>-<index>" for an existing service. The index may be
// out of range; it is -1 when name is not of that form.
func (s *Scenario) pod(name string) (*Service, int, bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return nil, -1, false
	}
	idx := name[i+1:]
	if idx == "" || len(idx) > 9 || (len(idx) > 1 && idx[0] == '0') || strings.Trim(idx, "0123456789") != "" {
		return nil, -1, false
	}
	svc := s.Service(name[:i])
	if svc == nil {
		return nil, -1, false
	}
	r, _ := strconv.Atoi(idx)
	return svc, r, true
}

// ResolveTarget returns what a fault target names: the service and the
// replica index of a pod "<service>-<index>", or the service and -1 for a
// service name (all its pods). ok is false when nothing matches.
func (s *Scenario) ResolveTarget(target string) (svc *Service, replica int, ok bool) {
	if svc := s.Service(target); svc != nil {
		return svc, -1, true
	}
	svc, r, ok := s.pod(target)
	if !ok || r >= max(svc.Replicas, DefaultReplicas) {
		return nil, 0, false
	}
	return svc, r, true
}

func (v *validator) phases() {
	dur := v.s.Load.Duration
	seen := map[string]bool{}
	for _, ph := range v.s.Phases {
		p := join("phases", ph.Name)
		switch {
		case ph.Name == PhaseWhole || ph.Name == PhaseWarmup:
			v.errf(p, "%q is implicit (%s) and cannot be redefined; pick another name", ph.Name, map[string]string{PhaseWhole: "the whole measured run", PhaseWarmup: "the warm-up"}[ph.Name])
		case !phaseName.MatchString(ph.Name):
			v.errf(p, "phase name %q: use lower-case letters, digits and underscores, starting with a letter", ph.Name)
		case seen[ph.Name]:
			v.errf(p, "duplicate phase %q", ph.Name)
		}
		seen[ph.Name] = true
		from, to := ph.From.Resolve(dur), ph.To.Resolve(dur)
		fromOK := false
		switch {
		case ph.From.End:
			v.errf(p+".from", "end would start the phase when the run ends; give an offset like 10s")
		case from < 0:
			v.errf(p+".from", "%s is negative; times count from the end of the warm-up (use phase warmup for the warm-up)", from)
		case from >= dur && v.durOK:
			v.errf(p+".from", "%s is not before the end of the run (load.duration %s)", from, dur)
		default:
			fromOK = true
		}
		switch {
		case v.zero(p + ".to"):
			v.errf(p+".to", "0s is not after from; leave to out or write end to mean the end of the run")
		case !ph.To.End && to > dur && v.durOK:
			v.errf(p+".to", "%s is after the end of the run (load.duration %s); write end to mean the end", to, dur)
		case fromOK && to <= from && (v.durOK || !ph.To.End):
			v.errf(p+".to", "%s is not after from (%s)", ph.To, ph.From)
		}
	}
}

func (v *validator) assertions() {
	for i, a := range v.s.Assertions {
		p := fmt.Sprintf("assertions[%d]", i)
		expr := strings.TrimSpace(a.Expr)
		switch {
		case expr == "":
			v.errf(p+".expr", "required: a condition like %q", "success_rate >= 0.999")
		case strings.ContainsAny(expr, "\r\n"):
			v.errf(p+".expr", "must be one line")
		}
		if _, _, ok := v.s.Phase(a.Phase); !ok {
			names := []string{PhaseWhole, PhaseWarmup}
			for _, ph := range v.s.Phases {
				names = append(names, ph.Name)
			}
			hint := didYouMean(a.Phase, names)
			if hint == "" {
				hint = "; phases: " + strings.Join(names, ", ")
			}
			v.errf(p+".phase", "unknown phase %q%s", a.Phase, hint)
		}
		if expr != "" && !strings.ContainsAny(expr, "\r\n") {
			v.metricOf(p+".expr", expr)
		}
		v.knownFailure(p, a)
	}
}

// knownFailure checks a known failure's reason and ceiling: the ceiling is
// the assertion's metric and operator with a looser threshold.
func (v *validator) knownFailure(p string, a Assertion) {
	if a.KnownFailure == "" {
		if a.Ceiling != "" {
			v.errf(p+".ceiling", "only with known_failure: a ceiling bounds an assertion known to fail")
		}
		return
	}
	if strings.TrimSpace(a.KnownFailure) == "" || strings.ContainsAny(a.KnownFailure, "\r\n") {
		v.errf(p+".known_failure", "must be one line saying why it fails and what is to fix it")
	}
	if strings.TrimSpace(a.Ceiling) == "" {
		v.errf(p+".ceiling", "required with known_failure: the same metric with a looser threshold (today's level and a margin), so that a known failure cannot get worse unnoticed")
		return
	}
	want, err1 := assert.Parse(a.Expr)
	c, err2 := assert.Parse(a.Ceiling)
	if err1 != nil {
		return // reported for expr
	}
	if err2 != nil {
		v.errf(p+".ceiling", "%v", err2)
		return
	}
	var looser bool
	switch want.Op {
	case assert.LT, assert.LE:
		looser = c.Threshold > want.Threshold
	case assert.GT, assert.GE:
		looser = c.Threshold < want.Threshold
	default:
		v.errf(p+".known_failure", "%s cannot be a known failure: only <, <=, > and >= have a looser ceiling", want.Op)
		return
	}
	if c.Metric != want.Metric || c.Op != want.Op || !looser {
		v.errf(p+".ceiling", "%q must test %s with %s and a looser threshold than %s", a.Ceiling, want.Metric, want.Op, strconv.FormatFloat(want.Threshold, 'g', -1, 64))
	}
}

// quickSection checks the fields of the quick section itself; the effect
// of applying it is checked by running the validator on the quick form.
func (v *validator) quickSection() {
	q := v.s.Quick
	if q == nil {
		return
	}
	if v.zero("quick.duration") || q.Duration < 0 || q.Duration > MaxDuration {
		v.errf("quick.duration", "%s is outside (0s, %s]; leave it out to scale load.duration by timeline_scale", q.Duration, MaxDuration)
	}
	if q.Warmup != nil && (*q.Warmup < 0 || *q.Warmup > MaxDuration) {
		v.errf("quick.warmup", "%s is outside [0s, %s]", *q.Warmup, MaxDuration)
	}
	if v.zero("quick.trials") || q.Trials < 0 || q.Trials > MaxTrials {
		v.errf("quick.trials", "must be between 1 and %d, got %d", MaxTrials, q.Trials)
	}
	if v.zero("quick.timeline_scale") || !(q.TimelineScale > 0 && q.TimelineScale <= 1) {
		v.errf("quick.timeline_scale", "must be in (0, 1], got %v", q.TimelineScale)
	}
	if q.Rate != nil {
		v.rate("quick.rate", q.Rate)
	}
	// Its bounds and its need of a control plane are checked on the quick
	// form, as mesh.leaf_lifetime.
	if v.zero("quick.leaf_lifetime") || q.LeafLifetime < 0 {
		v.errf("quick.leaf_lifetime", "must be above 0s, got %s; leave it out to keep mesh.leaf_lifetime", q.LeafLifetime)
	}
	if q.ControlPlaneScale != nil && v.s.ControlPlaneScale == nil {
		v.errf("quick.control_plane_scale", "only for a scenario with a control_plane_scale section")
	}
	for _, f := range []string{"services", "endpoints_per_service", "watchers", "watches_per_watcher", "changes", "change_interval", "timeout"} {
		if path := "quick.control_plane_scale." + f; v.zero(path) {
			v.errf(path, "0 overrides nothing; leave it out")
		}
	}
	if v.s.ControlPlaneScale != nil {
		for _, f := range []struct {
			name string
			set  bool
		}{{"duration", q.Duration != 0}, {"warmup", q.Warmup != nil}, {"trials", q.Trials != 0}, {"rate", q.Rate != nil}} {
			if f.set {
				v.errf("quick."+f.name, "a control_plane_scale run has no load to shorten; use quick.control_plane_scale (e.g. fewer changes)")
			}
		}
	}
}

// raw returns the value as written: zero when the file said zero and
// Normalize replaced it with a default.
func raw[T int | time.Duration](v *validator, path string, x T) T {
	if v.zero(path) {
		return 0
	}
	return x
}
