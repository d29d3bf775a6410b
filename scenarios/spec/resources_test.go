package spec

import (
	"strings"
	"testing"
	"time"
)

const withResources = `name: routed
topology:
  services:
    - name: echo
      port: 8080
      replicas: 2
load:
  target: echo
  rate: {shape: constant, rps: 10}
  duration: 2s
assertions:
  - {expr: "success_rate >= 0.99"}
resources:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: echo, namespace: default}
    spec:
      parentRefs:
        - {group: "", kind: Service, name: echo, port: 8080}
      rules:
        - timeouts: {request: 300ms}
          retry: {attempts: 2, codes: [503]}
`

// TestResourcesToRoutes: a scenario's HTTPRoute becomes the proxies' route
// for the topology's service.
func TestResourcesToRoutes(t *testing.T) {
	s, err := Parse("routed.yaml", []byte(withResources))
	if err != nil {
		t.Fatal(err)
	}
	routes, warnings, err := s.Routes("routed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 || routes[0].Authority != "echo.default.svc:8080" || routes[0].Timeouts.Request != 300*time.Millisecond ||
		routes[0].Retry.Attempts != 2 || len(routes[0].Retry.Codes) != 1 {
		t.Fatalf("routes %+v (warnings %v)", routes, warnings)
	}
}

// TestResourcesErrors: a bad object is refused at load with the scenario
// file's line and the resource, object and field.
func TestResourcesErrors(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"unknown field", "retry: {attempts: 2, codes: [503]}", "retry: {atempts: 2, codes: [503]}", `routed.yaml:22: resources[0] (HTTPRoute default/echo) spec.rules[0].retry.atempts: unknown field`},
		{"bad code", "codes: [503]", "codes: [200]", "routed.yaml:22: resources[0] (HTTPRoute default/echo) spec.rules[0].retry.codes[0]: 200 is not"},
		{"unknown service", "name: echo, port: 8080}", "name: other, port: 8080}", "routed.yaml:14: resources[0] (HTTPRoute default/echo) spec.parentRefs[0]: Service default/other port 8080 is not known"},
		{"not an object", "  - apiVersion: gateway.networking.k8s.io/v1\n    kind: HTTPRoute\n    metadata: {name: echo, namespace: default}\n    spec:\n      parentRefs:\n        - {group: \"\", kind: Service, name: echo, port: 8080}\n      rules:\n        - timeouts: {request: 300ms}\n          retry: {attempts: 2, codes: [503]}\n", "  - 42\n", "routed.yaml:14:5: resources[0]: want a Kubernetes object"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := strings.Replace(withResources, c.from, c.to, 1)
			if in == withResources {
				t.Fatal("the test's replacement did not apply")
			}
			_, err := Parse("routed.yaml", []byte(in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v\nwant one containing %q", err, c.want)
			}
		})
	}
}
