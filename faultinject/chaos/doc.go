// Package chaos is Skiff's TCP chaos layer: Link, an in-process TCP proxy
// from a listen address to an upstream whose connections suffer "toxics"
// that are added and removed while it runs. It speaks Toxiproxy's
// vocabulary (latency with jitter, bandwidth, reset_peer, timeout,
// slicer, limit_data, slow_close; upstream and downstream streams; a
// per-connection toxicity) without its HTTP API or server: scenarios and
// tests embed a Link where they need a faulty network path, for example
// between a client sidecar and a replica.
//
// # Semantics
//
// A toxic acts on one stream: Upstream is the client's bytes on their way
// to the upstream server, Downstream (the default) the server's answer.
// Toxicity is drawn per connection (like Toxiproxy, not per request) from
// the Link's Seed, so a repeated run picks the same connections; nil
// Toxicity means every connection and new(0.0) none. Toxics apply to open
// connections as soon as they are added and stop with Remove. See Toxic
// for how several toxics of one stream compose, and each kind's type for
// its exact effect.
//
// Every wait a toxic injects ends when the connection does; Close closes
// every connection and returns when all goroutines are gone. Read buffers
// are pooled, and each stream reads at most a few chunks ahead, so a Link
// carries many connections in bounded memory.
package chaos
