// Package endpoint defines what the proxy knows about the backends of an
// authority, and the Source seam through which it learns them.
//
// This issue supplies a static Source (a flag or a file the proxy re-reads
// when it changes); the control plane supplies a streaming one later. Both
// deliver full snapshots, so a listener never has to merge deltas.
package endpoint

import "context"

// Protocol is a hint about what an endpoint speaks. The zero value means
// "unknown: detect".
type Protocol string

// Protocol hints.
const (
	ProtocolUnknown Protocol = ""
	ProtocolHTTP1   Protocol = "http1"
	ProtocolH2C     Protocol = "h2c"
	ProtocolOpaque  Protocol = "opaque"
)

// Endpoint is one backend of an authority.
type Endpoint struct {
	// Addr is host:port. For a meshed endpoint it is the peer proxy's
	// inbound address; otherwise the workload itself.
	Addr string
	// Weight scales the endpoint's share; zero means 1.
	Weight uint32
	// Meshed says a Skiff proxy receives on Addr, so HTTP/1.1 may be
	// carried to it over a multiplexed HTTP/2 connection.
	Meshed bool
	// Identity is the SPIFFE ID expected on TLS; empty when unknown.
	Identity string
	// Protocol is the workload's protocol hint.
	Protocol Protocol
	// Labels are free-form (zone, pod, version); nil is empty.
	Labels map[string]string
}

// Snapshot is the complete, current state of one authority.
type Snapshot struct {
	// Exists is false when the source knows no such authority.
	Exists bool
	// Endpoints is every ready endpoint; empty with Exists true means
	// the authority is known but has no ready endpoint right now.
	Endpoints []Endpoint
}

// Source yields endpoint snapshots for authorities.
type Source interface {
	// Watch calls fn with the current snapshot of authority (at once if
	// known) and again on every change, until ctx is done. fn must not
	// block for long: it runs on the source's goroutine.
	Watch(ctx context.Context, authority string, fn func(Snapshot))
}
