// Package control is the proxy's client of the control plane (contract 2
// of the architecture): [DestinationSource] streams endpoints from
// Destination.Watch and [Certifier] obtains workload certificates from
// Identity.Certify.
//
// It speaks gRPC without grpc-go: [Conn] is a minimal gRPC client over the
// standard library's HTTP/2 (h2c by default, TLS when configured) with
// unary and server-streaming calls, and the few messages the proxy needs
// are encoded and decoded by hand with protowire, which uses no
// reflection. grpc-go and the generated mesh/api packages would add
// megabytes of resident code pages to the sidecar; a test keeps them out
// of this package's dependency closure.
//
// A typical proxy wiring:
//
//	conn := control.NewConn("127.0.0.1:8086", control.ConnConfig{})
//	defer conn.Close()
//	src := &control.DestinationSource{Conn: conn, Proxy: control.ProxyContext{Pod: pod}}
//	go src.Watch(ctx, "web.shop:8080", func(s endpoint.Snapshot) { ... })
//	cert := &control.Certifier{Conn: conn, OnTrustAnchors: func(der [][]byte) { ... }}
//
// Errors returned by calls are *[Status] values carrying the gRPC code.
package control
