package faultinject

import (
	"context"
	"strings"
	"testing"
)

type drainPod struct {
	fakePod
	drained bool
}

func (p *drainPod) Drain() error   { p.drained = true; p.log = append(p.log, "drain"); return nil }
func (p *drainPod) Undrain() error { p.drained = false; p.log = append(p.log, "undrain"); return nil }

// Drain takes a pod out of discovery and its undo puts it back; a pod of
// an environment that cannot drain is an error naming it, and the others
// are still drained.
func TestDrainAndUndo(t *testing.T) {
	ctx := context.Background()
	r := Default()
	f, err := r.Get("drain")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(map[string]any{"grace": 1}); err == nil || !strings.Contains(err.Error(), "takes no params") {
		t.Errorf("params: %v", err)
	}
	a := &drainPod{fakePod: fakePod{name: "echo-1"}}
	plain := &fakePod{name: "echo-2"}
	undo, err := f.Apply(ctx, []Pod{a, plain}, nil)
	if err == nil || !strings.Contains(err.Error(), "drain echo-2: this environment cannot take a pod out of discovery") {
		t.Errorf("a pod that cannot drain: %v", err)
	}
	if !a.drained {
		t.Fatal("echo-1 not drained")
	}
	if undo == nil {
		t.Fatal("no undo for the pods drained")
	}
	if err := undo(ctx); err != nil || a.drained {
		t.Errorf("undo: %v, drained %v", err, a.drained)
	}
	u, err := r.Get("undrain")
	if err != nil {
		t.Fatal(err)
	}
	a.drained = true
	if undo, err := u.Apply(ctx, []Pod{a}, nil); err != nil || undo != nil || a.drained {
		t.Errorf("undrain: undo %v, err %v, drained %v", undo != nil, err, a.drained)
	}
}
