package gatewayapi

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/proxy/route"
)

// FuzzParse: no input makes Parse panic, every error it returns is an
// *Error, and whatever it accepts Routes converts without panicking, to
// routes the proxy takes, sorted, the same every time.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/example.yaml"); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		preamble + httpRouteHead + "spec:\n  rules:\n  - retires: {}\n",
		httpRouteHead + "spec:\n  parentRefs: [{group: \"\", kind: Service, name: echo, port: 80}]\n  rules: [{matches: [{path: {value: /a}}]}, {retry: {attempts: 2, codes: [503], backoff: 1ms}, timeouts: {request: 1s, backendRequest: 500ms}}]\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, annotations: {retry.skiff.dev/grpc-codes: \"14\", retry.skiff.dev/attempts: \"2\"}}\nspec: {parentRefs: [{group: \"\", kind: Service, name: g, port: 9}]}\n",
		"apiVersion: policy.skiff.dev/v1alpha1\nkind: CircuitBreaker\nmetadata: {name: b}\nspec: {targetRef: {group: \"\", kind: Service, name: echo}, minSuccessRate: \"0.5\", window: 1s}\n",
		"a: &a [1, 2]\nb: [*a, *a]\n---\n--- {x: 1}\n",
		"- [[[[[[[[[[]]]]]]]]]]\n",
		"kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: x, annotations: {a: 1}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Parse("fuzz.yaml", data)
		if err != nil {
			if e := (*Error)(nil); !errors.As(err, &e) {
				t.Fatalf("%v: not an *Error", err)
			}
			return
		}
		routes, warnings, err := res.Routes(clusterAuthority)
		again, warningsAgain, errAgain := res.Routes(clusterAuthority)
		if !reflect.DeepEqual(routes, again) || !reflect.DeepEqual(warnings, warningsAgain) || (err == nil) != (errAgain == nil) {
			t.Fatal("Routes differs from one call to the next")
		}
		if err != nil {
			return
		}
		for i := range routes {
			if err := routes[i].Validate(); err != nil {
				t.Fatalf("route %d: %v", i, err)
			}
		}
		if !slices.IsSortedFunc(routes, func(a, b route.Route) int { return strings.Compare(a.Authority, b.Authority) }) {
			t.Fatal("routes not sorted by authority")
		}
		var table route.Table
		if err := table.Replace(routes); err != nil {
			t.Fatalf("the proxy refuses the routes: %v", err)
		}
	})
}
