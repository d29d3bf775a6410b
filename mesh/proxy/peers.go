package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// Why a meshed endpoint's identity cannot be used. Each is a label value of
// outbound_identity_errors_total and fails the connection: the proxy never
// reaches a meshed endpoint in plaintext because its identity is unusable.
var (
	errIdentityInvalid  = errors.New("discovery gave this meshed endpoint an identity that is not a SPIFFE ID")
	errIdentityConflict = errors.New("authorities disagree about the identity of this meshed endpoint")
	errIdentityUnknown  = errors.New("no identity is known for this meshed endpoint")
)

// peerIdentities is the identity every meshed endpoint must prove, keyed by
// address, for the endpoints some watched authority lists now. Entries are
// counted per authority that vouches for them and go when the last one
// stops (the endpoint left its service, or the authority was forgotten), so
// the table never outlives discovery's state.
type peerIdentities struct {
	log *slog.Logger

	mu sync.RWMutex
	m  map[string]*peerIdentity
}

type peerIdentity struct {
	// by counts, per identity string, the authorities listing the address
	// with it: more than one key is a conflict.
	by  map[string]int
	id  spiffe.ID
	err error
}

func newPeerIdentities(log *slog.Logger) *peerIdentities {
	return &peerIdentities{log: log, m: make(map[string]*peerIdentity)}
}

// lookup returns the identity the endpoint at addr must prove, or why it
// has none that can be used.
func (t *peerIdentities) lookup(addr string) (spiffe.ID, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e := t.m[addr]
	if e == nil {
		return spiffe.ID{}, errIdentityUnknown
	}
	return e.id, e.err
}

// replace moves authority's vouching from old to next (address -> identity
// string); either may be nil.
func (t *peerIdentities) replace(authority string, old, next map[string]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, raw := range old {
		if next[addr] == raw {
			continue
		}
		e := t.m[addr]
		if e == nil {
			continue
		}
		if e.by[raw]--; e.by[raw] <= 0 {
			delete(e.by, raw)
		}
		if len(e.by) == 0 {
			delete(t.m, addr)
			continue
		}
		t.resolve(addr, e, authority)
	}
	for addr, raw := range next {
		if old[addr] == raw {
			continue
		}
		e := t.m[addr]
		if e == nil {
			e = &peerIdentity{by: make(map[string]int, 1)}
			t.m[addr] = e
		}
		e.by[raw]++
		t.resolve(addr, e, authority)
	}
}

// resolve recomputes e's identity from its vouchers, logging once when it
// becomes unusable.
func (t *peerIdentities) resolve(addr string, e *peerIdentity, authority string) {
	wasErr := e.err
	e.id, e.err = spiffe.ID{}, nil
	if len(e.by) > 1 {
		e.err = errIdentityConflict
	} else {
		for raw := range e.by {
			id, err := spiffe.Parse(raw)
			if err != nil {
				e.err = fmt.Errorf("%w: %q: %w", errIdentityInvalid, raw, err)
			} else {
				e.id = id
			}
		}
	}
	if e.err != nil && wasErr == nil {
		t.log.Warn("meshed endpoint has no usable identity: connections to it will fail until discovery fixes it",
			"addr", addr, "authority", authority, "err", e.err)
	}
}

func (t *peerIdentities) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

// identityErrorLabel is the reason label of outbound_identity_errors_total.
func identityErrorLabel(err error) string {
	switch {
	case errors.Is(err, errIdentityInvalid):
		return "invalid"
	case errors.Is(err, errIdentityConflict):
		return "conflict"
	default:
		return "unknown"
	}
}
