// Package registry is the discovery source of the local environment: an
// in-memory table of authorities and their endpoints that the simulator
// (or a test, or a file) fills, and that the control plane reads through
// discovery.Source like any other source.
package registry

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"

	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/internal/coalesce"
)

// Registry is an in-memory discovery.Source. Set, Delete and Replace
// change it; every Watch of a changed authority is woken, each on its own
// goroutine with a one-slot coalescing signal, so a slow watcher never
// blocks Set nor other watchers and later sees only the latest snapshot.
//
// The zero value is an empty registry, ready to use. Its methods are safe
// for concurrent use. Memory holds the authorities that exist plus those
// being watched.
type Registry struct {
	mu      sync.Mutex
	entries map[string]*entry // by normalised authority
}

type entry struct {
	snap     discovery.Snapshot // shared with watchers: never modified, only replaced
	watchers map[coalesce.Signal]struct{}
}

var _ discovery.Source = (*Registry)(nil)

// Set makes authority exist with exactly eps (none: it exists with no
// ready endpoint) and notifies its watchers if that changes anything.
// Set copies eps. It fails, changing nothing, on an invalid authority,
// an address that is not host:port, or an address listed twice.
func (r *Registry) Set(authority string, eps []discovery.Endpoint) error {
	auth, err := discovery.NormalizeAuthority(authority)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	snap, err := newSnapshot(auth, eps)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.store(snap)
	return nil
}

// Delete makes authority unknown (Exists false) and notifies its
// watchers if it existed. Deleting an unknown authority does nothing.
func (r *Registry) Delete(authority string) error {
	auth, err := discovery.NormalizeAuthority(authority)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.store(discovery.Snapshot{Authority: auth})
	return nil
}

// Replace makes the registry hold exactly table: authorities missing from
// it are deleted, the others set as by Set. Only watchers of authorities
// that change are notified. On any invalid entry Replace fails and
// changes nothing; two keys that normalise to the same authority are
// invalid.
func (r *Registry) Replace(table map[string][]discovery.Endpoint) error {
	snaps := make(map[string]discovery.Snapshot, len(table))
	for authority, eps := range table {
		auth, err := discovery.NormalizeAuthority(authority)
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		if _, dup := snaps[auth]; dup {
			return fmt.Errorf("registry: authority %q is listed twice", auth)
		}
		if snaps[auth], err = newSnapshot(auth, eps); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for auth, e := range r.entries {
		if _, keep := snaps[auth]; !keep && e.snap.Exists {
			r.store(discovery.Snapshot{Authority: auth})
		}
	}
	for _, snap := range snaps {
		r.store(snap)
	}
	return nil
}

// Snapshot returns the current state of authority. Like a watcher's, it
// must not be modified.
func (r *Registry) Snapshot(authority string) (discovery.Snapshot, error) {
	auth, err := discovery.NormalizeAuthority(authority)
	if err != nil {
		return discovery.Snapshot{}, fmt.Errorf("registry: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[auth]; e != nil {
		return e.snap, nil
	}
	return discovery.Snapshot{Authority: auth}, nil
}

// Watch implements discovery.Source. The registry needs no initial sync:
// fn is called at once.
func (r *Registry) Watch(ctx context.Context, authority string, fn func(discovery.Snapshot)) error {
	auth, err := discovery.NormalizeAuthority(authority)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	sig := coalesce.NewSignal()
	r.mu.Lock()
	e := r.entry(auth)
	e.watchers[sig] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(e.watchers, sig)
		r.gc(auth, e)
		r.mu.Unlock()
	}()
	coalesce.Loop(ctx, sig, func() discovery.Snapshot {
		r.mu.Lock()
		defer r.mu.Unlock()
		return e.snap
	}, fn)
	return nil
}

// entry returns auth's entry, creating it; r.mu is held.
func (r *Registry) entry(auth string) *entry {
	if r.entries == nil {
		r.entries = make(map[string]*entry)
	}
	e := r.entries[auth]
	if e == nil {
		e = &entry{snap: discovery.Snapshot{Authority: auth}, watchers: make(map[coalesce.Signal]struct{})}
		r.entries[auth] = e
	}
	return e
}

// gc drops e when it is neither known nor watched; r.mu is held.
func (r *Registry) gc(auth string, e *entry) {
	if !e.snap.Exists && len(e.watchers) == 0 && r.entries[auth] == e {
		delete(r.entries, auth)
	}
}

// store installs snap and wakes the watchers if it changed; r.mu is held.
func (r *Registry) store(snap discovery.Snapshot) {
	e := r.entry(snap.Authority)
	if e.snap.Equal(snap) {
		r.gc(snap.Authority, e)
		return
	}
	e.snap = snap
	for sig := range e.watchers {
		sig.Poke()
	}
	r.gc(snap.Authority, e)
}

// newSnapshot checks eps and returns them as an existing authority's
// snapshot: copied (labels too), sorted by address.
func newSnapshot(auth string, eps []discovery.Endpoint) (discovery.Snapshot, error) {
	out := make([]discovery.Endpoint, len(eps))
	seen := make(map[string]bool, len(eps))
	for i, ep := range eps {
		if _, port, err := net.SplitHostPort(ep.Addr); err != nil || port == "" {
			return discovery.Snapshot{}, fmt.Errorf("registry: authority %s: endpoint address %q: want host:port", auth, ep.Addr)
		}
		if seen[ep.Addr] {
			return discovery.Snapshot{}, fmt.Errorf("registry: authority %s: endpoint address %s is listed twice", auth, ep.Addr)
		}
		seen[ep.Addr] = true
		ep.Labels = maps.Clone(ep.Labels)
		out[i] = ep
	}
	slices.SortFunc(out, func(a, b discovery.Endpoint) int { return cmp.Compare(a.Addr, b.Addr) })
	return discovery.Snapshot{Authority: auth, Exists: true, Endpoints: out}, nil
}
