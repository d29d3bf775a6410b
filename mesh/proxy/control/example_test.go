package control_test

import (
	"context"
	"log/slog"

	"github.com/skiff-mesh/skiff/mesh/proxy/control"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// The proxy watches an authority's endpoints and gets its certificates
// through one connection to the control plane. (Compiled, not run: it
// needs a control plane.)
func Example() {
	ctx := context.Background()
	conn := control.NewConn("127.0.0.1:8086", control.ConnConfig{}) // h2c; set TLS for the real mesh
	defer conn.Close()

	src := &control.DestinationSource{Conn: conn, Proxy: control.ProxyContext{Pod: "web-0", Namespace: "shop"}, Log: slog.Default()}
	var _ endpoint.Source = src // what the proxy's discovery takes
	go src.Watch(ctx, "api.shop:8080", func(s endpoint.Snapshot) {
		// Hand s.Endpoints to the balancer; the source never delivers an
		// empty snapshot because the control plane went away.
	})

	certifier := &control.Certifier{Conn: conn, OnTrustAnchors: func(der [][]byte) {
		// Parse and install the new trust bundle (certs.Manager.SetBundle).
	}}
	_ = certifier // certs.Config{Certifier: certifier, ...}
}
