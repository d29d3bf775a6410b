// Package coalesce runs the delivery loop every discovery source shares:
// one goroutine per watch, woken by a signal that never blocks its sender
// and that folds any number of wake-ups into one, so a slow callback only
// ever sees the latest snapshot and never holds up the source.
package coalesce

import (
	"context"

	"github.com/skiff-mesh/skiff/mesh/discovery"
)

// Signal is a coalescing wake-up. Make it with NewSignal; a nil Signal
// is never ready and ignores Poke.
type Signal chan struct{}

// NewSignal returns a Signal with nothing pending.
func NewSignal() Signal { return make(Signal, 1) }

// Poke marks the signal pending; it never blocks. Pokes made while one
// is pending are folded into it.
func (s Signal) Poke() {
	select {
	case s <- struct{}{}:
	default:
	}
}

// Loop calls fn with current() at once, then again each time sig fires,
// until ctx is done. A snapshot equal to the last one delivered is
// skipped. current reads the source's state at the moment it is called,
// so whatever happened between two wake-ups is seen as one change.
func Loop(ctx context.Context, sig Signal, current func() discovery.Snapshot, fn func(discovery.Snapshot)) {
	last := current()
	fn(last)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
		if ctx.Err() != nil {
			return
		}
		snap := current()
		if snap.Equal(last) {
			continue
		}
		last = snap
		fn(snap)
	}
}
