package gatewayapi

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// clusterAuthority is the authority of every Service port, as a cluster's
// DNS names it.
func clusterAuthority(ns, name string, port int32) (string, bool) {
	return fmt.Sprintf("%s.%s.svc.cluster.local:%d", name, ns, port), true
}

// knownAuthority knows only the Services of services ("ns/name").
func knownAuthority(services ...string) func(string, string, int32) (string, bool) {
	return func(ns, name string, port int32) (string, bool) {
		for _, s := range services {
			if s == ns+"/"+name {
				return clusterAuthority(ns, name, port)
			}
		}
		return "", false
	}
}

func parseRoutes(t *testing.T, stream string, authority func(string, string, int32) (string, bool)) ([]route.Route, []Warning, error) {
	t.Helper()
	res, err := Parse("routes.yaml", []byte(stream))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return res.Routes(authority)
}

// The full example: an HTTPRoute with timeouts and retry, a GRPCRoute
// with Skiff's retry annotations, a retry budget and a circuit breaker.
func TestRoutesExample(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	routes, warnings, err := parseRoutes(t, string(data), clusterAuthority)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	want := []route.Route{
		{
			Authority: "echo.default.svc.cluster.local:8080",
			Name:      "default/echo",
			Timeouts:  timeout.Route{Request: 300 * time.Millisecond, BackendRequest: 100 * time.Millisecond},
			Retry: retry.Policy{Attempts: 2, Codes: []int{502, 503}, Backoff: 25 * time.Millisecond,
				NonIdempotent: true, MaxBodyBytes: 65536},
			Budget: retry.BudgetConfig{Percent: ptr(25), Interval: 10 * time.Second, MinRetries: ptr(5), MinInterval: time.Second},
		},
		{
			Authority: "greeter.shop.svc.cluster.local:9090",
			Name:      "shop/greeter",
			Timeouts:  timeout.Route{Request: 5 * time.Second, BackendRequest: time.Second},
			Retry:     retry.Policy{Attempts: 3, GRPCCodes: []int{14, 4}, Backoff: 10 * time.Millisecond, NonIdempotent: true},
			Breaker: &breaker.Config{ConsecutiveFailures: 5, MinSuccessRate: 0.9, Window: 10 * time.Second, MinRequests: 20,
				BaseEjection: time.Second, MaxEjection: time.Minute},
		},
	}
	if !reflect.DeepEqual(routes, want) {
		t.Errorf("routes:\n got %s\nwant %s", dump(routes), dump(want))
	}
	// The proxy takes them as they are.
	var table route.Table
	if err := table.Replace(routes); err != nil {
		t.Errorf("route.Table refuses the routes: %v", err)
	}
	// And they survive the proxy's routes file.
	file, err := route.Marshal(routes)
	if err != nil {
		t.Fatal(err)
	}
	back, err := route.Parse(strings.NewReader(string(file)))
	if err != nil || !reflect.DeepEqual(back, routes) {
		t.Errorf("through a routes file: %v\n got %s\nwant %s", err, dump(back), dump(routes))
	}
}

func dump(routes []route.Route) string {
	var b strings.Builder
	for _, r := range routes {
		fmt.Fprintf(&b, "\n  %+v", r)
		if r.Budget.Percent != nil {
			fmt.Fprintf(&b, " percent=%d", *r.Budget.Percent)
		}
		if r.Budget.MinRetries != nil {
			fmt.Fprintf(&b, " minRetries=%d", *r.Budget.MinRetries)
		}
		if r.Breaker != nil {
			fmt.Fprintf(&b, " breaker=%+v", *r.Breaker)
		}
	}
	return b.String()
}

const httpRouteHead = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
`

func TestRoutesConversion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream string
		want   []route.Route
	}{
		{
			name: "a retry without attempts retries once",
			stream: httpRouteHead + `spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules: [{retry: {codes: [503]}}]
`,
			want: []route.Route{{Authority: "echo.default.svc.cluster.local:80", Name: "default/echo",
				Retry: retry.Policy{Attempts: DefaultAttempts, Codes: []int{503}}}},
		},
		{
			name: "request timeout 0s turns it off, so backendRequest may be anything",
			stream: httpRouteHead + `spec:
  parentRefs: [{group: core, kind: Service, name: echo, port: 80}]
  rules: [{timeouts: {request: 0s, backendRequest: 1m30s}}]
`,
			want: []route.Route{{Authority: "echo.default.svc.cluster.local:80", Name: "default/echo",
				Timeouts: timeout.Route{BackendRequest: 90 * time.Second}}},
		},
		{
			name: "one route per Service port, sorted by authority",
			stream: httpRouteHead + `spec:
  parentRefs:
  - {group: "", kind: Service, name: echo, port: 8080}
  - {group: "", kind: Service, name: echo, port: 80}
  - {group: "", kind: Service, name: admin, port: 9000}
  rules: [{timeouts: {request: 1s}}]
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: echo}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
  retryConstraint: {budget: {percent: 0}}
`,
			want: []route.Route{
				{Authority: "admin.default.svc.cluster.local:9000", Name: "default/echo", Timeouts: timeout.Route{Request: time.Second}},
				{Authority: "echo.default.svc.cluster.local:80", Name: "default/echo", Timeouts: timeout.Route{Request: time.Second},
					Budget: retry.BudgetConfig{Percent: ptr(0)}},
				{Authority: "echo.default.svc.cluster.local:8080", Name: "default/echo", Timeouts: timeout.Route{Request: time.Second},
					Budget: retry.BudgetConfig{Percent: ptr(0)}},
			},
		},
		{
			name: "consecutiveFailures 0 turns consecutive-failure accrual off",
			stream: httpRouteHead + `spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
---
apiVersion: policy.skiff.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: echo}
spec:
  targetRef: {group: "", kind: Service, name: echo}
  consecutiveFailures: 0
  minSuccessRate: "0.75"
`,
			want: []route.Route{{Authority: "echo.default.svc.cluster.local:80", Name: "default/echo",
				Breaker: &breaker.Config{ConsecutiveFailures: -1, MinSuccessRate: 0.75}}},
		},
		{
			name: "the older of two routes of one authority wins",
			stream: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: new, creationTimestamp: "2026-02-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules: [{timeouts: {request: 2s}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: old, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules: [{timeouts: {request: 1s}}]
`,
			want: []route.Route{{Authority: "echo.default.svc.cluster.local:80", Name: "default/old", Timeouts: timeout.Route{Request: time.Second}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			routes, _, err := parseRoutes(t, tc.stream, clusterAuthority)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(routes, tc.want) {
				t.Errorf("\n got %s\nwant %s", dump(routes), dump(tc.want))
			}
		})
	}
}

func TestRoutesWarnings(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stream    string
		authority func(string, string, int32) (string, bool)
		routes    int
		want      []Warning
	}{
		{
			name: "Gateway parentRef",
			stream: httpRouteHead + `spec:
  parentRefs:
  - name: gw
  - {group: "", kind: Service, name: echo, port: 80}
`,
			routes: 1,
			want: []Warning{{Object: "HTTPRoute default/echo", Field: "spec.parentRefs[0]",
				Message: "a Gateway parent is not supported by a mesh sidecar: this parentRef is ignored"}},
		},
		{
			name: "rules with matches",
			stream: httpRouteHead + `spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    retry: {attempts: 3}
  - matches: [{headers: [{name: x-canary, value: "1"}]}, {path: {value: /}}]
    timeouts: {request: 1s}
  - timeouts: {request: 2s}
`,
			routes: 1,
			want: []Warning{
				{Object: "HTTPRoute default/echo", Field: "spec.rules[0]", Message: "rules with matches are not yet supported: rule 0 ignored"},
				{Object: "HTTPRoute default/echo", Field: "spec.rules[2]", Message: "rule 2 ignored: rule 1 already takes every request"},
			},
		},
		{
			name: "backendRefs to another Service",
			stream: httpRouteHead + `spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - backendRefs:
    - {name: echo-v2, port: 80, weight: 10}
    - {name: echo, port: 80, weight: 90}
    - {name: echo, port: 81}
    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: echo, port: 80}
`,
			routes: 1,
			want: []Warning{
				{Object: "HTTPRoute default/echo", Field: "spec.rules[0].backendRefs[0]",
					Message: "backendRef Service default/echo-v2 port 80 is not the parent Service default/echo port 80: traffic splitting is not yet supported, so requests keep going to the parent"},
				{Object: "HTTPRoute default/echo", Field: "spec.rules[0].backendRefs[2]",
					Message: "backendRef Service default/echo port 81 is not the parent Service default/echo port 80: traffic splitting is not yet supported, so requests keep going to the parent"},
				{Object: "HTTPRoute default/echo", Field: "spec.rules[0].backendRefs[3]",
					Message: "backendRef multicluster.x-k8s.io/ServiceImport default/echo is not the parent Service default/echo port 80: traffic splitting is not yet supported, so requests keep going to the parent"},
			},
		},
		{
			name: "parentRefs Skiff cannot place",
			stream: httpRouteHead + `spec:
  hostnames: [echo.example.com]
  parentRefs:
  - {group: "", kind: Service, name: echo, sectionName: http}
  - {group: "", kind: Service, name: gone, port: 80}
  - {group: "", kind: Service, name: echo, namespace: shop, port: 80}
`,
			authority: knownAuthority("shop/echo"),
			routes:    1,
			want: []Warning{
				{Object: "HTTPRoute default/echo", Field: "spec.hostnames", Message: "hostnames do not apply to a route whose parent is a Service: ignored"},
				{Object: "HTTPRoute default/echo", Field: "spec.parentRefs[0]",
					Message: "no port: Skiff needs the Service port to know the authority the route applies to (it does not read sectionName): this parentRef is ignored"},
				{Object: "HTTPRoute default/echo", Field: "spec.parentRefs[1]", Message: "Service default/gone port 80 is not known: this parentRef is ignored"},
				{Object: "HTTPRoute default/echo", Field: "spec.parentRefs[2]",
					Message: "a consumer route (the Service is in namespace shop, the route in default) applies to every client of the Service, not only to those in default"},
			},
		},
		{
			name: "filters, session persistence and annotations without a retry",
			stream: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo
  annotations: {retry.skiff.dev/non-idempotent: "true"}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x, value: v}]}}]
    sessionPersistence: {sessionName: s}
    backendRefs:
    - name: echo
      port: 80
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [x]}}]
`,
			routes: 1,
			want: []Warning{
				{Object: "HTTPRoute default/echo", Field: "spec.rules[0].filters", Message: "filters are not yet supported: ignored"},
				{Object: "HTTPRoute default/echo", Field: "spec.rules[0].sessionPersistence", Message: "session persistence is not yet supported: ignored"},
				{Object: "HTTPRoute default/echo", Field: `metadata.annotations["retry.skiff.dev/non-idempotent"]`, Message: "has no effect: the route does not retry"},
				{Object: "HTTPRoute default/echo", Field: "spec.rules[0].backendRefs[0].filters", Message: "backendRef filters are not yet supported: ignored"},
			},
		},
		{
			name: "gRPC codes without non-idempotent",
			stream: `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: greeter
  annotations: {retry.skiff.dev/grpc-codes: "14"}
spec:
  parentRefs: [{group: "", kind: Service, name: greeter, port: 9090}]
  rules:
  - matches: [{method: {service: helloworld.Greeter}}]
`,
			routes: 1,
			want: []Warning{
				{Object: "GRPCRoute default/greeter", Field: "spec.rules[0]", Message: "rules with matches are not yet supported: rule 0 ignored"},
				{Object: "GRPCRoute default/greeter", Field: `metadata.annotations["retry.skiff.dev/grpc-codes"]`,
					Message: `a gRPC call is a POST, which Skiff retries on a status only with retry.skiff.dev/non-idempotent: "true"; without it only calls that failed to connect are retried`},
			},
		},
		{
			name: "policies without a route, or with what Skiff ignores",
			stream: httpRouteHead + `spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: lonely}
spec:
  targetRefs:
  - {group: "", kind: Service, name: nobody}
  - {group: multicluster.x-k8s.io, kind: ServiceImport, name: echo}
  retryConstraint: {budget: {percent: 10}}
  sessionPersistence: {sessionName: s}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: empty}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
---
apiVersion: policy.skiff.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: lonely}
spec:
  targetRef: {group: "", kind: Service, name: nobody}
`,
			routes: 1,
			want: []Warning{
				{Object: "XBackendTrafficPolicy default/lonely", Field: "spec.sessionPersistence", Message: "session persistence is not yet supported: ignored"},
				{Object: "XBackendTrafficPolicy default/lonely", Field: "spec.targetRefs[1]",
					Message: `group "multicluster.x-k8s.io" kind "ServiceImport" is not a Service: Skiff applies backend policies to Services only, this targetRef is ignored`},
				{Object: "XBackendTrafficPolicy default/empty", Field: "spec", Message: "no retryConstraint: the policy sets nothing Skiff applies"},
				{Object: "XBackendTrafficPolicy default/lonely", Field: "spec.targetRefs[0]",
					Message: "retryConstraint applies only to Services with a route: Service default/nobody has none, so this targetRef is ignored"},
				{Object: "CircuitBreaker default/lonely", Field: "spec.targetRef",
					Message: "a CircuitBreaker applies only to Services with a route: Service default/nobody has none, so it is ignored"},
			},
		},
		{
			name: "the younger of two routes of one authority",
			stream: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: new, creationTimestamp: "2026-02-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: old, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
`,
			routes: 1,
			want: []Warning{{Object: "HTTPRoute default/new", Field: "spec.parentRefs[0]",
				Message: "authority echo.default.svc.cluster.local:80 is also routed by GRPCRoute default/old, which is older: this parentRef is ignored"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authority := tc.authority
			if authority == nil {
				authority = clusterAuthority
			}
			routes, warnings, err := parseRoutes(t, tc.stream, authority)
			if err != nil {
				t.Fatal(err)
			}
			if len(routes) != tc.routes {
				t.Errorf("%d routes, want %d:%s", len(routes), tc.routes, dump(routes))
			}
			if !reflect.DeepEqual(warnings, tc.want) {
				t.Errorf("warnings:\n got %s\nwant %s", warningList(warnings), warningList(tc.want))
			}
		})
	}
}

func warningList(ws []Warning) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "\n  %s", w)
	}
	return b.String()
}

func TestRoutesErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream string
		want   []string // in the error
	}{
		{
			name: "duplicate authority",
			stream: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo-grpc}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
`,
			want: []string{"routes.yaml: document 2 (GRPCRoute default/echo-grpc), line 11: spec.parentRefs[0]: ",
				"authority echo.default.svc.cluster.local:80 (Service default/echo port 80) is already routed by HTTPRoute default/echo (document 1, line 1)",
				"without creationTimestamps Skiff cannot tell which"},
		},
		{
			name: "two budgets for one Service",
			stream: httpRouteHead + `spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: a}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
  retryConstraint: {budget: {percent: 10}}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: b}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
  retryConstraint: {budget: {percent: 30}}
`,
			want: []string{"document 3 (XBackendTrafficPolicy default/b), line 18: spec.targetRefs[0]: Service default/echo is already targeted by XBackendTrafficPolicy default/a (document 2, line 7)"},
		},
		{
			name: "two breakers for one Service",
			stream: httpRouteHead + `spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
---
apiVersion: policy.skiff.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: a}
spec: {targetRef: {group: "", kind: Service, name: echo}}
---
apiVersion: policy.skiff.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: b}
spec: {targetRef: {group: "", kind: Service, name: echo}}
`,
			want: []string{"(CircuitBreaker default/b)", "Service default/echo is already targeted by CircuitBreaker default/a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			routes, _, err := parseRoutes(t, tc.stream, clusterAuthority)
			if err == nil {
				t.Fatalf("accepted:%s", dump(routes))
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A caller that fills Resources itself gets the checks Parse makes, with
// the objects named.
func TestRoutesValidatesWhatParseDidNot(t *testing.T) {
	bad := gatewayv1.Duration("soon")
	res := &Resources{HTTPRoutes: []gatewayv1.HTTPRoute{{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "shop"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: ptr[gatewayv1.Group](""), Kind: ptr[gatewayv1.Kind]("Service"), Name: "echo", Port: ptr[int32](80)}}},
			Rules: []gatewayv1.HTTPRouteRule{{Timeouts: &gatewayv1.HTTPRouteTimeouts{Request: &bad}}},
		},
	}}}
	_, _, err := res.Routes(clusterAuthority)
	var e *Error
	if !errors.As(err, &e) || e.Object != "HTTPRoute shop/echo" || e.Field != "spec.rules[0].timeouts.request" || e.Document != 0 {
		t.Errorf("got %v", err)
	}
	if _, _, err := (&Resources{}).Routes(nil); err == nil {
		t.Error("a nil authority function accepted")
	}
	if routes, warnings, err := (&Resources{}).Routes(clusterAuthority); routes != nil || warnings != nil || err != nil {
		t.Errorf("no resources: %v, %v, %v", routes, warnings, err)
	}
}
