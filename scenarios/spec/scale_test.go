package spec

import (
	"testing"
	"time"
)

// TestScaleQuick: --quick replaces only the fields its
// control_plane_scale sets, and WallTime is the changes' time.
func TestScaleQuick(t *testing.T) {
	s, err := Parse("scale.yaml", []byte(`
name: scale
mesh: {control_plane: true}
control_plane_scale: {services: 40, changes: 300, change_interval: 20ms}
assertions:
  - {expr: "propagation_missed == 0"}
quick:
  control_plane_scale: {changes: 30, watchers: 5}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.WallTime(); got != 6*time.Second {
		t.Errorf("WallTime = %s, want 300 × 20ms = 6s", got)
	}
	q := s.Clone()
	q.ApplyQuick()
	want := ControlPlaneScale{Services: 40, EndpointsPerService: DefaultScaleEndpointsPerService, Watchers: 5,
		WatchesPerWatcher: DefaultScaleWatchesPerWatcher, Changes: 30, ChangeInterval: 20 * time.Millisecond, Timeout: DefaultScaleTimeout}
	if *q.ControlPlaneScale != want {
		t.Errorf("quick form %+v, want %+v", *q.ControlPlaneScale, want)
	}
	if s.ControlPlaneScale.Changes != 300 || s.Quick.ControlPlaneScale.Changes != 30 {
		t.Error("ApplyQuick on a clone changed the original")
	}
	if got := q.WallTime(); got != 600*time.Millisecond {
		t.Errorf("quick WallTime = %s, want 30 × 20ms", got)
	}
	if err := q.Validate(); err != nil {
		t.Error(err)
	}
	// Fewer services than the default watches per watcher: each watcher
	// watches all of them.
	small := &Scenario{Name: "small", Mesh: Mesh{ControlPlane: true}, ControlPlaneScale: &ControlPlaneScale{Services: 3}}
	if err := small.Validate(); err != nil {
		t.Fatal(err)
	}
	small.Normalize()
	if small.ControlPlaneScale.WatchesPerWatcher != 3 {
		t.Errorf("watches per watcher %d, want 3 (every service)", small.ControlPlaneScale.WatchesPerWatcher)
	}
}
