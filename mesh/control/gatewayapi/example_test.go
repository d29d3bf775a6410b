package gatewayapi_test

import (
	"fmt"
	"log"

	"github.com/skiff-mesh/skiff/mesh/control/gatewayapi"
)

func Example() {
	stream := `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: shop}
spec:
  parentRefs:
  - {group: "", kind: Service, name: echo, port: 8080}
  - {name: public-gateway}
  rules:
  - backendRefs: [{name: echo, port: 8080}]
    timeouts: {request: 2s, backendRequest: 500ms}
    retry: {attempts: 2, codes: [503], backoff: 50ms}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: echo, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
  retryConstraint:
    budget: {percent: 10, interval: 10s}
`
	res, err := gatewayapi.Parse("routes.yaml", []byte(stream))
	if err != nil {
		log.Fatal(err)
	}
	// The authority requests name a Service port by: a cluster's DNS name
	// here; a harness maps its own Services.
	authority := func(namespace, name string, port int32) (string, bool) {
		return fmt.Sprintf("%s.%s.svc.cluster.local:%d", name, namespace, port), true
	}
	routes, warnings, err := res.Routes(authority)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range routes {
		fmt.Printf("%s (%s): request %v, attempt %v, %d retries on %v after %v, budget %d%%\n",
			r.Authority, r.Name, r.Timeouts.Request, r.Timeouts.BackendRequest,
			r.Retry.Attempts, r.Retry.Codes, r.Retry.Backoff, *r.Budget.Percent)
	}
	for _, w := range warnings {
		fmt.Println("warning:", w)
	}
	// Output:
	// echo.shop.svc.cluster.local:8080 (shop/echo): request 2s, attempt 500ms, 2 retries on [503] after 50ms, budget 10%
	// warning: HTTPRoute shop/echo: spec.parentRefs[1]: a Gateway parent is not supported by a mesh sidecar: this parentRef is ignored
}
