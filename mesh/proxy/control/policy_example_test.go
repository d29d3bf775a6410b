package control_test

import (
	"context"
	"log/slog"

	"github.com/skiff-mesh/skiff/mesh/proxy/control"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
)

// The proxy takes each outbound authority's route from the control plane
// and keeps the last one while the control plane is away. (Compiled, not
// run: it needs a control plane.)
func ExamplePolicySource() {
	ctx := context.Background()
	conn := control.NewConn("127.0.0.1:8086", control.ConnConfig{})
	defer conn.Close()

	src := &control.PolicySource{Conn: conn, Proxy: control.ProxyContext{Pod: "web-0", Namespace: "shop"}, Log: slog.Default()}
	go src.Watch(ctx, "api.shop:8080", func(r *route.Route) {
		// r is checked (r.Validate passed); nil means the authority has
		// no timeout, retry or breaker: drop its route.
	})
	_ = src.Rejected() // policies refused, for a metric
}
