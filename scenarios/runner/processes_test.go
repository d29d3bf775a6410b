package runner

import (
	"context"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/scenarios/spec"
)

// TestProcessTracking kills and restarts a replica and the controller
// under load and checks what the result says of their processes: each
// restart is followed to its new pid, every pid is listed once with its
// life, and the samples sit on the events' time base. The checks are
// orderings the runner guarantees (a kill is recorded once the process is
// gone; a restarted pid is watched after the restart is recorded), not
// durations.
func TestProcessTracking(t *testing.T) {
	needBins(t)
	sc, err := spec.Parse("processes.yaml", []byte(`
name: processes
description: kill and restart a replica and the controller
seed: 3
topology:
  services:
    - {name: echo, replicas: 2}
mesh: {control_plane: true}
load:
  target: echo
  rate: {rps: 100}
  duration: 4s
  warmup: 1s
timeline:
  # echo-1's sidecar needs the controller to start (its certificate).
  - {at: 1s, fault: kill, target: echo-1}
  - {at: 1.5s, fault: restart, target: echo-1}
  - {at: 2s, fault: kill, target: controller}
  - {at: 2.5s, fault: restart, target: controller}
assertions:
  - {expr: "success_rate >= 0.9"}
`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Scenario: sc, OutDir: t.TempDir(), Bin: bins})
	if err != nil {
		t.Fatal(err)
	}
	event := func(typ, target string) results.Event {
		t.Helper()
		for _, e := range res.Events {
			if e.Type == typ && e.Target == target && e.OK {
				return e
			}
		}
		t.Fatalf("no successful %s %s in %+v", typ, target, res.Events)
		return results.Event{}
	}
	byName := map[string]results.Process{}
	for _, p := range res.Processes {
		if strings.Contains(p.Name, "controller-controller") {
			t.Errorf("process named %q: the controller pod's one process is %q", p.Name, "controller")
		}
		byName[p.Name] = p
		seen := map[int]bool{}
		for _, pid := range p.PIDs {
			if seen[pid] {
				t.Errorf("%s: pid %d listed twice in %v", p.Name, pid, p.PIDs)
			}
			seen[pid] = true
		}
		if len(p.Lives) != len(p.PIDs) {
			t.Errorf("%s: %d lives for pids %v", p.Name, len(p.Lives), p.PIDs)
		}
		// Sampling starts before the warm-up's load, on the time base
		// where 0 is the warm-up's end.
		if len(p.RSS) == 0 || p.RSS[0].OffsetS >= 0 {
			t.Errorf("%s: first sample %+v, want one in the warm-up (before 0)", p.Name, p.RSS)
		}
	}
	for _, c := range []struct{ process, target string }{{"echo-1-app", "echo-1"}, {"echo-1-proxy", "echo-1"}, {"controller", "controller"}} {
		p, ok := byName[c.process]
		if !ok {
			t.Errorf("no process %q among %v", c.process, res.Processes)
			continue
		}
		if len(p.Lives) != 2 {
			t.Errorf("%s: lives %+v, want two (killed, then restarted)", c.process, p.Lives)
			continue
		}
		killed, restarted := event("kill", c.target), event("restart", c.target)
		old, cur := p.Lives[0], p.Lives[1]
		if old.LastS > killed.OffsetS {
			t.Errorf("%s: pid %d sampled at %.3f s, after the kill recorded at %.3f s: the samples are not on the events' time base",
				c.process, old.PID, old.LastS, killed.OffsetS)
		}
		if old.EndS == nil || old.End != "gone" {
			t.Errorf("%s: pid %d ended %v %q, want gone", c.process, old.PID, old.EndS, old.End)
		}
		if cur.FirstS < restarted.OffsetS || cur.EndS != nil {
			t.Errorf("%s: restarted pid %d sampled from %.3f s (restart recorded at %.3f s), end %v: want it followed from the restart to the end",
				c.process, cur.PID, cur.FirstS, restarted.OffsetS, cur.EndS)
		}
		for i := 1; i < len(p.RSS); i++ {
			a, b := p.RSS[i-1], p.RSS[i]
			if a.PID == b.PID {
				continue
			}
			if a.PID != old.PID || b.PID != cur.PID || a.OffsetS > killed.OffsetS || b.OffsetS < restarted.OffsetS {
				t.Errorf("%s: samples go from pid %d at %.3f s to pid %d at %.3f s; want the old pid before the kill, the new one after the restart",
					c.process, a.PID, a.OffsetS, b.PID, b.OffsetS)
			}
		}
	}
}
