package registry_test

import (
	"context"
	"testing"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
)

// TestMemoryHoldsKnownOrWatched: an authority neither set nor watched
// leaves nothing behind.
func TestMemoryHoldsKnownOrWatched(t *testing.T) {
	leakcheck.Check(t)
	r := &registry.Registry{}
	ctx, cancel := context.WithCancel(t.Context())
	called := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- r.Watch(ctx, "gone.x:80", func(discovery.Snapshot) { close(called) })
	}()
	<-called
	if n := r.Entries(); n != 1 {
		t.Errorf("while watched: %d entries, want 1", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := r.Set("a.x:80", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete("a.x:80"); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete("never.x:80"); err != nil {
		t.Fatal(err)
	}
	if n := r.Entries(); n != 0 {
		t.Errorf("after the watch ended and the authority was deleted: %d entries, want 0", n)
	}
}
