package spec

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/skiff-mesh/skiff/results/assert"
	"github.com/skiff-mesh/skiff/scenarios"
)

// Metric is a name an assertion can test: a value the runner measures for
// a phase (success_rate) or for the whole run (proxy_vmhwm_mb), or a family
// of values named by an argument (share(POD)).
//
// The list (Metrics) is the one place the names are written down: Parse
// checks every assertion against it, so a misspelt metric fails when the
// scenario is loaded, not after the run; and a test of package runner
// fails when the runner computes a metric the list lacks or the list names
// one the runner never computes.
type Metric struct {
	// Name is the metric's key, or for a family its name and its
	// argument's kind in parentheses: "share(POD)".
	Name string
	// Doc says what the metric is, in its unit.
	Doc string
	// needs says why the metric is never measured in scenario s ("" when
	// it can be): the part of the scenario the runner needs to compute it.
	needs func(s *Scenario) string
}

// Family is the name of a family such as "share(POD)" ("share"), or "" for
// a plain metric.
func (m Metric) Family() string {
	name, _, ok := strings.Cut(m.Name, "(")
	if !ok {
		return ""
	}
	return name
}

// Requirements of metrics that only some scenarios measure.
var (
	needsCompareDirect = func(s *Scenario) string {
		if !s.Load.CompareDirect {
			return "needs load.compare_direct: true (it is the meshed minus the direct latency)"
		}
		return ""
	}
	needsScale = func(s *Scenario) string {
		if s.ControlPlaneScale == nil {
			return "is measured by a control_plane_scale run only"
		}
		return ""
	}
	needsControlPlane = func(s *Scenario) string {
		if !s.Mesh.ControlPlane && s.ControlPlaneScale == nil {
			return "needs mesh.control_plane: true"
		}
		return ""
	}
	needsResources = func(s *Scenario) string {
		if len(s.Resources) == 0 {
			return "needs resources: (the client sidecar's route counters come from its routes)"
		}
		return ""
	}
	needsLoad = func(s *Scenario) string {
		if s.ControlPlaneScale != nil {
			return "is read from the sidecars at the end of the load, and a control_plane_scale run has none"
		}
		return ""
	}
	needsTimedLoad = func(s *Scenario) string {
		if s.Load.CompareDirect || s.ControlPlaneScale != nil {
			return "is read from the sidecars at the start and the end of a timed load, which a compare_direct or control_plane_scale run does not have"
		}
		return ""
	}
	needsMTLSProbes = func(s *Scenario) string {
		if !s.Mesh.ControlPlane || s.ControlPlaneScale != nil {
			return "needs mesh.control_plane: true and traffic (the runner probes the sidecars' mTLS after the load)"
		}
		return ""
	}
)

// metrics is the registry; see Metrics.
var metrics = []Metric{
	// Each phase, the meshed path.
	{Name: "success_rate", Doc: "share of the requests due in the phase that succeeded, 0..1"},
	{Name: "error_rate", Doc: "1 - success_rate"},
	{Name: "p50_ms", Doc: "median latency, ms, from the intended send time"},
	{Name: "p90_ms", Doc: "90th percentile latency, ms"},
	{Name: "p99_ms", Doc: "99th percentile latency, ms"},
	{Name: "p999_ms", Doc: "99.9th percentile latency, ms"},
	{Name: "max_ms", Doc: "largest latency, ms"},
	{Name: "mean_ms", Doc: "mean latency, ms"},
	{Name: "rps", Doc: "requests due per second of the phase"},
	// Interleaved trials against the direct path.
	{Name: "p50_added_ms", Doc: "median over trials of meshed minus direct p50, ms", needs: needsCompareDirect},
	{Name: "p99_added_ms", Doc: "median over trials of meshed minus direct p99, ms", needs: needsCompareDirect},
	// Processes, sampled from /proc.
	{Name: "proxy_vmrss_mb", Doc: "largest VmRSS sampled of any proxy, MiB"},
	{Name: "proxy_vmhwm_mb", Doc: "largest VmHWM (the kernel's peak RSS) of any proxy, MiB"},
	{Name: "proxy_cpu_us_per_req", Doc: "the proxies' CPU per request, µs"},
	{Name: "proxy_rss_slope_mb_per_min", Doc: "steepest least-squares slope of any proxy's VmRSS over the phase, MiB a minute, with its 95 % interval"},
	{Name: "proxy_goroutine_growth", Doc: "most goroutines any sidecar gained (go_goroutines) from the end of the warm-up to the end of the load, phase whole", needs: needsTimedLoad},
	{Name: "controller_vmrss_mb", Doc: "largest VmRSS sampled of the controller, MiB", needs: needsControlPlane},
	{Name: "controller_vmhwm_mb", Doc: "VmHWM of the controller, MiB", needs: needsControlPlane},
	// Which pod served what.
	{Name: "share(POD)", Doc: "share of the phase's requests the pod served, 0..1"},
	{Name: "status_share(CODE)", Doc: "share of the run's requests answered with HTTP status CODE, 0..1 (phase whole)"},
	{Name: "sidecar(POD:SERIES)", Doc: "sum of the samples of SERIES (a metric, perhaps with label matchers: name{label=\"value\",…}) in the sidecar /metrics of POD (client, a pod, or a service: its pods summed) at the end of the load, warm-up included (phase whole)", needs: needsLoad},
	{Name: "recovery_s", Doc: "longest time from a restore (restart, resume, end of a kill or pause) until the restored pods served again, s"},
	// Mutual TLS.
	{Name: "plaintext_marker_hits", Doc: "times the payload marker crossed the network between pods in plaintext"},
	{Name: "mtls_share", Doc: "share of inbound requests over mutual TLS with a client identity, 0..1", needs: needsMTLSProbes},
	{Name: "plaintext_refused", Doc: "1 if a pod's inbound refused a plaintext client, else 0", needs: needsMTLSProbes},
	{Name: "foreign_root_refused", Doc: "1 if it refused a certificate from another trust root, else 0", needs: needsMTLSProbes},
	{Name: "expired_cert_refused", Doc: "1 if it refused an expired certificate, else 0", needs: needsMTLSProbes},
	// Certificate rotation, probed from outside the sidecars.
	{Name: "rotation_probes", Doc: "mutual-TLS probes of the server pods made during the run"},
	{Name: "rotation_probe_failures", Doc: "probes that failed"},
	{Name: "served_leaves_min", Doc: "fewest distinct leaf certificates any server pod presented"},
	{Name: "current_issuer_share", Doc: "share of server pods whose last leaf the current issuer signed, 0..1"},
	{Name: "cert_refreshes_min", Doc: "fewest certificates any sidecar obtained, the first included"},
	{Name: "cert_refresh_failures", Doc: "failed certificate requests of all sidecars"},
	// Latency-aware balancing against round robin, same scenario and seed.
	{Name: "p99_vs_round_robin", Doc: "p99 over the round-robin run's p99"},
	{Name: "p50_vs_round_robin", Doc: "p50 over the round-robin run's p50"},
	{Name: "p90_vs_round_robin", Doc: "p90 over the round-robin run's p90"},
	{Name: "round_robin_p99_ms", Doc: "the round-robin run's p99, ms"},
	// The client sidecar's routes (resources), over the whole run.
	{Name: "retries", Doc: "retries the client's sidecar sent (outbound_http_route_retry_requests_total), whole run", needs: needsResources},
	{Name: "retry_ratio", Doc: "retries over the requests due in the run", needs: needsResources},
	{Name: "retry_overflow", Doc: "retries the retry budget refused, whole run", needs: needsResources},
	{Name: "retry_limit_exceeded", Doc: "requests that failed after their last allowed retry, whole run", needs: needsResources},
	{Name: "route_timeouts", Doc: "requests and attempts the client's sidecar timed out, whole run", needs: needsResources},
	// A control-plane scale run.
	{Name: "propagation_p50_ms", Doc: "median time from a registry change to a watcher's snapshot, ms", needs: needsScale},
	{Name: "propagation_p90_ms", Doc: "its 90th percentile, ms", needs: needsScale},
	{Name: "propagation_p99_ms", Doc: "its 99th percentile, ms", needs: needsScale},
	{Name: "propagation_p999_ms", Doc: "its 99.9th percentile, ms", needs: needsScale},
	{Name: "propagation_max_ms", Doc: "its largest value, ms", needs: needsScale},
	{Name: "propagation_mean_ms", Doc: "its mean, ms", needs: needsScale},
	{Name: "propagation_pairs", Doc: "(change, watcher) pairs measured", needs: needsScale},
	{Name: "propagation_missed", Doc: "pairs not seen within the timeout", needs: needsScale},
	{Name: "initial_sync_s", Doc: "time until every watch stream had its first snapshot, s", needs: needsScale},
	{Name: "watchers", Doc: "Destination clients", needs: needsScale},
	{Name: "watch_streams", Doc: "their watch streams", needs: needsScale},
	{Name: "watch_reconnects", Doc: "streams that had to reconnect", needs: needsScale},
	{Name: "services", Doc: "synthetic services at the start", needs: needsScale},
	{Name: "endpoints", Doc: "their endpoints", needs: needsScale},
	{Name: "changes", Doc: "registry changes made", needs: needsScale},
}

// Metrics returns every metric an assertion may name, in a fixed order.
// The slice is new on every call.
func Metrics() []Metric { return slices.Clone(metrics) }

// lookupMetric finds the metric for key ("p99_ms", "share(echo-2)") and
// returns it with the argument in parentheses, if any ("echo-2"): a plain
// metric written with one (p99_ms(x)) is found too, for a precise error.
func lookupMetric(key string) (m Metric, arg string, ok bool) {
	name, rest, call := strings.Cut(key, "(")
	for _, m := range metrics {
		if m.Name == name || (call && m.Family() == name) {
			return m, strings.TrimSuffix(rest, ")"), true
		}
	}
	return Metric{}, "", false
}

// closeMetrics returns up to limit metric names near key, nearest first:
// those within an edit distance of 3 ("succes_rate" for "success_rate"), or when there are
// none, those sharing a word of at least three letters with it ("p99" in
// "p99_latency_ms"). A key written as a call (split_share(v2)) is compared
// with the families first. A family is named with its argument's kind:
// "share(POD)".
func closeMetrics(key string, limit int) []string {
	type cand struct {
		name string
		d    int
	}
	base, _, call := strings.Cut(strings.ToLower(key), "(")
	words := strings.Split(base, "_")
	shares := func(name string) bool {
		return slices.ContainsFunc(words, func(w string) bool { return len(w) >= 3 && slices.Contains(strings.Split(name, "_"), w) })
	}
	var near, related []cand
	for _, family := range []bool{call, false} {
		for _, m := range metrics {
			if call && family != (m.Family() != "") {
				continue
			}
			name := cmp.Or(m.Family(), m.Name)
			switch d := levenshtein(base, name, 4); {
			case d < 4:
				near = append(near, cand{m.Name, d})
			case shares(name):
				related = append(related, cand{m.Name, d})
			}
		}
		if len(near)+len(related) > 0 || !call {
			break
		}
	}
	if len(near) == 0 {
		near = related
	}
	slices.SortStableFunc(near, func(a, b cand) int { return a.d - b.d })
	var out []string
	for _, c := range near[:min(limit, len(near))] {
		out = append(out, c.name)
	}
	return out
}

// metricOf parses an assertion for its metric and checks it: the name is
// in the registry, a family's argument names what it must (share: a pod of
// the topology), and the scenario is one in which the runner measures it.
// p is the assertion's path.
func (v *validator) metricOf(p, expr string) {
	e, err := assert.Parse(expr)
	if err != nil {
		var se *assert.SyntaxError
		msg := err.Error()
		if errors.As(err, &se) {
			msg = fmt.Sprintf("column %d: %s", se.Col, se.Msg)
		}
		v.errf(p, "%s (an assertion reads like %q)", msg, "success_rate >= 0.999")
		return
	}
	m, arg, ok := lookupMetric(e.Metric)
	if !ok {
		hint := ""
		if close := closeMetrics(e.Metric, 3); len(close) > 0 {
			hint = "; did you mean " + quoteList(close) + "?"
		}
		v.errf(p, "unknown metric %q%s (docs/scenarios.md lists them all)", e.Metric, hint)
		return
	}
	if m.Family() == "" && strings.Contains(e.Metric, "(") {
		v.errf(p, "%s takes no argument", m.Name)
		return
	}
	if m.Family() == "share" {
		v.sharePod(p, arg)
	}
	if m.Family() == "sidecar" {
		v.sidecarArg(p, arg)
	}
	if m.Family() == "status_share" {
		if c, err := strconv.Atoi(arg); err != nil || c < 100 || c > 599 || len(arg) != 3 {
			v.errf(p, "status_share(%s): want an HTTP status code such as 503", arg)
		}
	}
	if m.needs != nil {
		if why := m.needs(v.s); why != "" {
			v.errf(p, "%s %s", m.Name, why)
		}
	}
}

// sidecarArg checks the argument of sidecar(): "POD:SERIES", where POD
// is the client, a meshed pod or a meshed service, and SERIES parses.
func (v *validator) sidecarArg(p, arg string) {
	target, series, ok := strings.Cut(arg, ":")
	if !ok {
		v.errf(p, "sidecar(%s): want POD:SERIES, as in sidecar(client:protocol_detect_total)", arg)
		return
	}
	if _, err := scenarios.ParseSeries(series); err != nil {
		v.errf(p, "sidecar(%s): %v", arg, err)
	}
	if target == "client" {
		return
	}
	svc := v.s.Service(target)
	if svc == nil {
		var r int
		if svc, r, ok = v.s.pod(target); !ok || r >= svc.Replicas {
			v.errf(p, "sidecar(%s): %q is neither %q, a service nor a pod of the topology", arg, target, "client")
			return
		}
	}
	if !svc.IsMeshed() {
		v.errf(p, "sidecar(%s): service %q is not meshed: its pods have no sidecar", arg, svc.Name)
	}
}

// sharePod checks the argument of share(): a pod of the topology.
func (v *validator) sharePod(p, arg string) {
	if svc := v.s.Service(arg); svc != nil {
		v.errf(p, "share() takes a pod such as %q, not the service %q", svc.Pod(0), arg)
		return
	}
	svc, r, ok := v.s.pod(arg)
	if !ok {
		var pods []string
		for _, s := range v.s.Topology.Services {
			pods = append(pods, s.Pods()...)
		}
		hint := didYouMean(arg, pods)
		if hint == "" {
			hint = "; pods: " + strings.Join(pods, ", ")
		}
		v.errf(p, "share(%s): no pod %q in the topology%s", arg, arg, hint)
		return
	}
	if r >= svc.Replicas && !v.badReplicas[svc.Name] {
		v.errf(p, "share(%s): pod %q does not exist: service %q has %s", arg, arg, svc.Name, replicas(svc))
	}
}
