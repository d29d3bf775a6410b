package discovery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Protocol is a hint about what an endpoint speaks. The zero value means
// "unknown: detect". The values are the proxy's (mesh/proxy/endpoint), so a
// conversion between the two is a plain type conversion.
type Protocol string

// Protocol hints.
const (
	ProtocolUnknown Protocol = ""
	ProtocolHTTP1   Protocol = "http1"
	ProtocolH2C     Protocol = "h2c"
	ProtocolOpaque  Protocol = "opaque"
)

// Endpoint is one backend of an authority that may receive traffic now:
// sources list only ready endpoints (not terminating, not merely serving).
type Endpoint struct {
	// Addr is ip:port (host:port in the local source). For a meshed
	// endpoint it is where the peer's proxy receives: the pod address in
	// Kubernetes (redirected by iptables), the sidecar's inbound address
	// in the local environment.
	Addr string
	// Weight scales the endpoint's share; zero means 1.
	Weight uint32
	// Identity is the SPIFFE ID the endpoint's proxy presents on TLS,
	// spiffe://<trust-domain>/ns/<ns>/sa/<sa>; empty when unknown or when
	// the endpoint is not meshed (there is no proxy to present it).
	Identity string
	// Protocol is the workload's protocol hint.
	Protocol Protocol
	// Meshed says a Skiff proxy receives on Addr.
	Meshed bool
	// Zone is the endpoint's topology zone; empty when unknown.
	Zone string
	// Pod names the pod behind the endpoint; empty when there is none.
	Pod string
	// Labels are free-form workload labels (version, service, ...); nil
	// is empty.
	Labels map[string]string
}

// Equal reports whether e and o are the same in every field; a nil and
// an empty Labels are equal.
func (e Endpoint) Equal(o Endpoint) bool {
	return e.Addr == o.Addr && e.Weight == o.Weight && e.Identity == o.Identity &&
		e.Protocol == o.Protocol && e.Meshed == o.Meshed && e.Zone == o.Zone &&
		e.Pod == o.Pod && maps.Equal(e.Labels, o.Labels)
}

// Snapshot is the complete, current state of one authority.
//
// Snapshots given to a Watch callback may be shared with other watchers:
// read them, never modify them (copy Endpoints and Labels first).
type Snapshot struct {
	// Authority is the authority watched, as the source normalised it
	// (lower case).
	Authority string
	// Exists is false when the source knows no such authority (or no
	// such port on a known service).
	Exists bool
	// Endpoints is every ready endpoint, sorted by Addr; empty with
	// Exists true means the authority is known but has no ready endpoint
	// right now.
	Endpoints []Endpoint
}

// Equal reports whether s and o describe the same state: the same
// authority, existence and endpoints in the same order.
func (s Snapshot) Equal(o Snapshot) bool {
	return s.Authority == o.Authority && s.Exists == o.Exists &&
		slices.EqualFunc(s.Endpoints, o.Endpoints, Endpoint.Equal)
}

// Source yields endpoint snapshots for authorities. It is the one
// interface the control plane reads; mesh/discovery/kube and
// mesh/discovery/registry implement it.
type Source interface {
	// Watch calls fn with the full snapshot of authority at once (once
	// the source has its initial state) and again after every change
	// that affects it, until ctx is done; then it returns nil.
	//
	// Calls to fn for one Watch are serial and run on that Watch's
	// goroutine, so a slow fn delays only its own watch: changes that
	// happen meanwhile are coalesced, and fn next sees only the latest
	// snapshot. fn is not called twice in a row with equal snapshots.
	//
	// An authority the source cannot parse is an error wrapping
	// ErrInvalidAuthority, returned at once without calling fn. A
	// well-formed authority the source does not know is a snapshot with
	// Exists false, followed by more snapshots if it starts to exist.
	Watch(ctx context.Context, authority string, fn func(Snapshot)) error
}

// ErrInvalidAuthority is wrapped by the error Watch returns for an
// authority that is not host:port or host (a gRPC boundary maps it to
// InvalidArgument).
var ErrInvalidAuthority = errors.New("invalid authority")

// NormalizeAuthority lower-cases authority, drops a trailing dot from
// its host and checks that it is host or host:port (an IPv6 host in
// brackets), with a port from 1 to 65535. The error wraps
// ErrInvalidAuthority and says what is wrong.
func NormalizeAuthority(authority string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(authority))
	host, port := a, ""
	if strings.Contains(a, ":") {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			return "", fmt.Errorf("%w %q: want host:port, e.g. name.namespace.svc.cluster.local:8080", ErrInvalidAuthority, authority)
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return "", fmt.Errorf("%w %q: port %q is not a number from 1 to 65535", ErrInvalidAuthority, authority, p)
		}
		host, port = h, strconv.FormatUint(n, 10)
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || strings.ContainsAny(host, " \t\r\n/;#@[]") {
		return "", fmt.Errorf("%w %q: want host:port, e.g. name.namespace.svc.cluster.local:8080", ErrInvalidAuthority, authority)
	}
	if port == "" {
		return host, nil
	}
	return net.JoinHostPort(host, port), nil
}
