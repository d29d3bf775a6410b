// Package control is the proxy's client of the control plane (contract 2
// of the architecture): [DestinationSource] streams endpoints from
// Destination.Watch, [PolicySource] streams each outbound authority's
// route (timeouts, retries and their budget, circuit breaker) from
// Policy.WatchOutbound, and [Certifier] obtains workload certificates from
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
//	conn := control.NewConn("127.0.0.1:8086", control.ConnConfig{TLS: tlsConfig})
//	defer conn.Close()
//	src := &control.DestinationSource{Conn: conn, Proxy: control.ProxyContext{Pod: pod}}
//	go src.Watch(ctx, "web.shop:8080", func(s endpoint.Snapshot) { ... })
//	pol := &control.PolicySource{Conn: conn, Proxy: control.ProxyContext{Pod: pod}}
//	go pol.Watch(ctx, "web.shop:8080", func(r *route.Route) { ... }) // nil: no route
//	cert := &control.Certifier{Conn: conn, OnTrustAnchors: func(der [][]byte) { ... }}
//
// The control plane serves Destination (and Policy) only to a client that
// presents a mesh certificate on its TLS connection, checked at the
// handshake; Identity.Certify is authenticated by the token alone, which is
// how the first certificate is obtained. A call without one fails with
// Unauthenticated, a watch beyond the controller's caps with
// ResourceExhausted; both sources retry them with backoff. A controller
// older than the Policy API answers Unimplemented, and [PolicySource]
// stops watching: the proxy then runs without routes from the control
// plane.
// Connections are pooled and keep what they presented at their handshake,
// so a proxy should not let a Destination connection be made before it has
// a certificate: cmd/skiff-proxy fails such handshakes (TLS.GetClientCertificate
// returns an error), so that the watch retries on a new connection once a
// certificate is there.
//
// Errors returned by calls are *[Status] values carrying the gRPC code.
package control
