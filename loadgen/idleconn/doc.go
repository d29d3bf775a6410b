// Package idleconn measures what an idle keep-alive connection costs the
// proxy: the resident memory the real skiff-proxy binary holds for each
// client connection on its inbound listener that made one request and then
// went quiet (issue 12's target: at most 12 KiB each; Linkerd users
// reported about 27 KB at 30,000 sockets).
//
// # Method
//
// For each kind of connection and each count N, [Run] starts a fresh
// skiff-proxy in front of an in-process skiff-demo backend, with its
// connection cap and memory budget raised so that it neither evicts nor
// refuses the connections. It opens a few connections of the kind, closes
// them (the serving path's code is then mapped, and the upstream pool
// filled), and reads the proxy's memory once it has settled: VmRSS,
// RssAnon and VmHWM from /proc/<pid>/status, PSS from smaps_rollup. Then
// it opens N connections, each from one of several loopback source
// addresses (the proxy bounds connections per client address), each making
// one request and reading the whole response before it goes idle, and
// reads the memory again once it has settled. The cost of one connection
// is the difference divided by N.
//
// "Settled" is a bounded wait: readings of VmRSS one Config.SettleInterval
// apart until two differ by less than Config.SettleTolerance, for at most
// Config.MaxSettle. No collection is forced (the proxy offers no way to
// without its pprof build): the figure is what an idle sidecar holds
// seconds after its clients went quiet, goroutine stacks and freed heap
// not yet returned included. Each reading says whether it settled.
//
// A measurement is valid only if the proxy kept every connection: its
// tcp_evicted_total, tcp_rejected_total and memory_shed_connections_total
// must not move, and its tcp_open_connections must count all N. The report
// says so, and a measurement that fails the check has the verdict
// "error", not "pass".
//
// # Kinds
//
//   - [KindHTTP1]: plaintext HTTP/1.1, as from an unmeshed client: GET /
//     with keep-alive.
//   - [KindH2MTLS]: as a peer sidecar connects: TLS 1.3 with a client
//     certificate of the mesh's trust domain and ALPN h2, one GET on
//     stream 1. The proxy gets its own certificate from an Identity API
//     served in this process (plaintext gRPC on loopback, the proxy's
//     --control-plane-plaintext) from a throwaway CA.
//
// The client keeps only each connection's socket once its request is
// answered; the TLS and HTTP/2 state of the client side are dropped, so
// that the measuring process stays small at 10,000 connections.
package idleconn
