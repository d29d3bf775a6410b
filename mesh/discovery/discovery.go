package discovery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
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

// Limits of an authority, from DNS (RFC 1035 §2.3.4: a label is at most 63
// bytes, a name at most 253 written without its trailing dot). An
// authority longer than maxAuthorityLen (host, port, brackets and white
// space) is refused before it is looked at, and is not quoted back.
const (
	maxLabelLen     = 63
	maxHostLen      = 253
	maxAuthorityLen = 1024
)

// NormalizeAuthority returns authority in the one form sources key it by,
// or an error that wraps ErrInvalidAuthority and says what is wrong. The
// form is host or host:port:
//
//   - white space around it is dropped and letters are lower-cased;
//   - the port, when there is one, is a number from 1 to 65535 and loses
//     its leading zeros;
//   - a host name is labels separated by single dots. The one trailing dot
//     of a fully qualified name ("web.shop.svc.cluster.local.") is
//     dropped: it names the same host. An empty label (a leading dot, two
//     dots in a row, or more than one trailing dot) is an error, as are a
//     label over 63 bytes, a name over 253, and white space, control or
//     non-ASCII bytes or any of "/;#@[]";
//   - an IPv6 address is written in brackets with a port
//     ("[fd00::1]:8080"), without a zone; brackets around anything else
//     are an error.
//
// The result is its own normal form: NormalizeAuthority(result) returns
// result, and it is never longer than authority.
func NormalizeAuthority(authority string) (string, error) {
	if len(authority) > maxAuthorityLen {
		return "", fmt.Errorf("%w: %d bytes, more than the %d an authority may have", ErrInvalidAuthority, len(authority), maxAuthorityLen)
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: "+format, append([]any{ErrInvalidAuthority, authority}, args...)...)
	}
	a := strings.TrimSpace(authority)
	for _, r := range a {
		// Checked before lower-casing, which maps some non-ASCII letters
		// (the Kelvin sign) to ASCII ones.
		if r <= ' ' || r >= 0x7f {
			return "", invalid("it holds %q; want a DNS name or an IP address, and a port", r)
		}
	}
	a = strings.ToLower(a)
	host, port := a, ""
	if strings.Contains(a, ":") {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			if ip, err := netip.ParseAddr(strings.Trim(a, "[]")); err == nil && ip.Is6() {
				return "", invalid("an IPv6 address goes in brackets with a port, as in [fd00::1]:8080")
			}
			return "", invalid("want host:port, e.g. name.namespace.svc.cluster.local:8080")
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return "", invalid("port %q is not a number from 1 to 65535", p)
		}
		host, port = h, strconv.FormatUint(n, 10)
	}
	if i := strings.IndexAny(host, "/;#@[]"); i >= 0 {
		return "", invalid("host %q holds %q; want a DNS name or an IP address", host, host[i:i+1])
	}
	if strings.HasPrefix(a, "[") {
		// SplitHostPort took the brackets off: what they held must be an
		// IPv6 address, the only thing a URI puts in brackets.
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return "", invalid("%q is in brackets but is not an IPv6 address; only IPv6 addresses are, as in [fd00::1]:8080", host)
		}
		if ip.Zone() != "" {
			return "", invalid("IPv6 zone %q: a zone names an interface of one host, not a destination in the mesh", ip.Zone())
		}
		return net.JoinHostPort(host, port), nil
	}
	written := host
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", invalid("no host; want host:port, e.g. name.namespace.svc.cluster.local:8080")
	}
	if len(host) > maxHostLen {
		return "", invalid("host name of %d bytes; DNS allows at most %d", len(host), maxHostLen)
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" {
			return "", invalid("empty label in host %q (a leading dot or two dots in a row); only a fully qualified name's one trailing dot may be written", written)
		}
		if len(label) > maxLabelLen {
			return "", invalid("label %q of %d bytes; DNS allows at most %d", label, len(label), maxLabelLen)
		}
	}
	if port == "" {
		return host, nil
	}
	return net.JoinHostPort(host, port), nil
}
