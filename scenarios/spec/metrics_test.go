package spec

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestMetricErrors: an assertion naming a metric the runner does not
// measure is found when the scenario is loaded, with the file, the line,
// the bad name and the names it was probably meant to be.
func TestMetricErrors(t *testing.T) {
	const head = "topology: {services: [{name: echo, replicas: 2}, {name: api}]}\nload: {target: echo}\n"
	for _, tc := range []struct{ name, assertion, want string }{
		{"misspelt", `{expr: "suxcess_rate >= 0.999"}`,
			`t.yaml:3:21: assertions[0].expr: unknown metric "suxcess_rate"; did you mean "success_rate"? (docs/scenarios.md lists them all)`},
		{"several close", `{expr: "p9_ms < 5"}`,
			`t.yaml:3:21: assertions[0].expr: unknown metric "p9_ms"; did you mean "p90_ms", "p99_ms" or "p50_ms"? (docs/scenarios.md lists them all)`},
		{"a word in common", `{expr: "p99_latency_ms < 5"}`,
			`t.yaml:3:21: assertions[0].expr: unknown metric "p99_latency_ms"; did you mean "p99_ms", "p99_added_ms" or "p99_vs_round_robin"? (docs/scenarios.md lists them all)`},
		{"unknown function", `{expr: "split_share(v2) within 0.1±0.02"}`,
			`t.yaml:3:21: assertions[0].expr: unknown metric "split_share(v2)"; did you mean "share(POD)" or "status_share(CODE)"? (docs/scenarios.md lists them all)`},
		{"nothing close", `{expr: "banana > 1"}`,
			`t.yaml:3:21: assertions[0].expr: unknown metric "banana" (docs/scenarios.md lists them all)`},
		{"no argument taken", `{expr: "p99_ms(echo-0) < 5"}`,
			`t.yaml:3:21: assertions[0].expr: p99_ms takes no argument`},
		{"share of a misspelt pod", `{expr: "share(ecoh-1) > 0.1"}`,
			`t.yaml:3:21: assertions[0].expr: share(ecoh-1): no pod "ecoh-1" in the topology; did you mean "echo-1"?`},
		{"share of the controller", `{expr: "share(controller) == 0"}`,
			`t.yaml:3:21: assertions[0].expr: share(controller): no pod "controller" in the topology; pods: echo-0, echo-1, api-0`},
		{"share of a service", `{expr: "share(api) == 0"}`,
			`t.yaml:3:21: assertions[0].expr: share() takes a pod such as "api-0", not the service "api"`},
		{"syntax", `{expr: "success_rate >> 0.9"}`,
			`t.yaml:3:21: assertions[0].expr: column 15: expected a number, found '>' (an assertion reads like "success_rate >= 0.999")`},
		{"measured by a scale run only", `{expr: "propagation_p99_ms < 100"}`,
			`t.yaml:3:21: assertions[0].expr: propagation_p99_ms is measured by a control_plane_scale run only`},
		{"sidecar without a series", `{expr: "sidecar(client) > 0"}`,
			`t.yaml:3:21: assertions[0].expr: sidecar(client): want POD:SERIES, as in sidecar(client:protocol_detect_total)`},
		{"sidecar of nobody", `{expr: "sidecar(echo-2:tcp_open_total) > 0"}`,
			`t.yaml:3:21: assertions[0].expr: sidecar(echo-2:tcp_open_total): "echo-2" is neither "client", a service nor a pod of the topology`},
		{"sidecar series", `{expr: 'sidecar(api:tcp_open_total{tls=true}) > 0'}`,
			`t.yaml:3:21: assertions[0].expr: sidecar(api:tcp_open_total{tls=true}): series "tcp_open_total{tls=true}": label tls: the value is not double-quoted`},
		{"needs a control plane", `{expr: "mtls_share == 1"}`,
			`t.yaml:3:21: assertions[0].expr: mtls_share needs mesh.control_plane: true and traffic (the runner probes the sidecars' mTLS after the load)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(head+"assertions: ["+tc.assertion+"]\n"))
			if err == nil {
				t.Fatalf("no error, want:\n%s", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestMetricsValid: every metric of the registry is accepted in a scenario
// that can measure it, and the registry is well formed.
func TestMetricsValid(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Metrics() {
		if seen[m.Name] {
			t.Errorf("%s listed twice", m.Name)
		}
		seen[m.Name] = true
		if m.Doc == "" || strings.ContainsAny(m.Doc, "\n") {
			t.Errorf("%s: want a one-line doc, got %q", m.Name, m.Doc)
		}
		expr := m.Name + " >= 0"
		switch m.Family() {
		case "share":
			expr = "share(echo-1) >= 0"
		case "status_share":
			expr = "status_share(503) >= 0"
		case "sidecar":
			expr = `sidecar(client:protocol_detect_total{protocol="tls"}) >= 0`
		}
		sc := &Scenario{Name: "t", Topology: Topology{Services: []Service{{Name: "echo", Replicas: 2}}},
			Load:       Traffic{CompareDirect: true, Trials: 3},
			Mesh:       Mesh{ControlPlane: true},
			Assertions: []Assertion{{Expr: expr}}}
		if m.needs != nil && strings.Contains(m.needs(sc), "resources") {
			sc.Resources = []Resource{{YAML: []byte(`{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: echo},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, port: 8080}], rules: [{retry: {attempts: 1, codes: [503]}}]}}`)}}
		}
		if m.needs != nil && strings.Contains(m.needs(sc), "timed load") {
			sc.Load.CompareDirect = false
		}
		if m.needs != nil && m.needs(sc) != "" {
			sc = &Scenario{Name: "t", Mesh: Mesh{ControlPlane: true},
				ControlPlaneScale: &ControlPlaneScale{Services: 2, EndpointsPerService: 2, Watchers: 2, WatchesPerWatcher: 1, Changes: 2},
				Assertions:        []Assertion{{Expr: expr}}}
		}
		if err := sc.Validate(); err != nil {
			var es Errors
			if errors.As(err, &es) && slices.ContainsFunc(es, func(e *Error) bool { return strings.HasPrefix(e.Path, "assertions") }) {
				t.Errorf("%s: %v", expr, err)
			}
		}
	}
}
