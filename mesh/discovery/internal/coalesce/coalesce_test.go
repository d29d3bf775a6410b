package coalesce_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/internal/coalesce"
)

func TestPokesFoldAndEqualSnapshotsAreSkipped(t *testing.T) {
	sig := coalesce.NewSignal()
	for range 100 {
		sig.Poke() // never blocks
	}
	if len(sig) != 1 {
		t.Fatalf("%d pokes pending, want 1", len(sig))
	}
	var nilSig coalesce.Signal
	nilSig.Poke() // a nil Signal ignores pokes

	state := make(chan discovery.Snapshot, 1)
	state <- discovery.Snapshot{Authority: "a:1"}
	current := func() discovery.Snapshot { s := <-state; state <- s; return s }
	set := func(s discovery.Snapshot) { <-state; state <- s; sig.Poke() }

	got := make(chan discovery.Snapshot, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { coalesce.Loop(ctx, sig, current, func(s discovery.Snapshot) { got <- s }); close(done) }()
	next := func() discovery.Snapshot {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no snapshot")
		}
		panic("unreachable")
	}
	if s := next(); s.Exists { // the pending poke leads to an equal snapshot: skipped
		t.Fatalf("first: %+v", s)
	}
	set(discovery.Snapshot{Authority: "a:1"})               // equal: skipped
	set(discovery.Snapshot{Authority: "a:1", Exists: true}) // a change
	if s := next(); !s.Exists {
		t.Fatalf("second: %+v", s)
	}
	cancel()
	<-done
	select {
	case s := <-got:
		t.Errorf("extra snapshot %+v", s)
	default:
	}
}
