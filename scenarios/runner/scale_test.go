package runner

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/scenarios/spec"
)

// TestPlanScale: the plan is the seed's, deals the services out evenly,
// and every change leads to a state no earlier change had (what lets a
// watcher's snapshot say which changes it reflects).
func TestPlanScale(t *testing.T) {
	cfg := spec.ControlPlaneScale{Services: 30, EndpointsPerService: 3, Watchers: 16, WatchesPerWatcher: 5, Changes: 400}
	subnet := netip.MustParsePrefix("127.42.0.0/16")
	p := planScale(cfg, subnet, 7)
	if again := planScale(cfg, subnet, 7); !reflect.DeepEqual(p.changes, again.changes) || !reflect.DeepEqual(p.watches, again.watches) {
		t.Error("the same seed gave another plan")
	}
	if other := planScale(cfg, subnet, 8); reflect.DeepEqual(p.changes, other.changes) {
		t.Error("another seed gave the same changes")
	}
	for w, svcs := range p.watches {
		seen := map[int]bool{}
		for _, s := range svcs {
			if seen[s] {
				t.Errorf("watcher %d watches service %d twice", w, s)
			}
			seen[s] = true
		}
	}
	// 16 × 5 = 80 watches over 30 services: 2 or 3 each.
	for s, ws := range p.watchersOf {
		if n := len(ws); n < 2 || n > 3 {
			t.Errorf("service %d has %d watchers, want 2 or 3", s, n)
		}
	}
	kinds := map[string]int{}
	for k, c := range p.changes {
		kinds[c.kind]++
		if len(p.watchersOf[c.service]) == 0 {
			t.Errorf("change %d is to an unwatched service", k)
		}
		if v := p.version[c.service][stateKey(c.after)]; p.changeOf[c.service][v-1] != k {
			t.Errorf("change %d: its state is version %d, which belongs to change %d", k, v, p.changeOf[c.service][v-1])
		}
		for _, ep := range c.after {
			if a := netip.MustParseAddrPort(ep.Addr).Addr(); !subnet.Contains(a) {
				t.Errorf("change %d: endpoint %s outside the run's subnet", k, ep.Addr)
			}
		}
	}
	for _, kind := range []string{changeAdd, changeRemove, changeWeight} {
		if kinds[kind] == 0 {
			t.Errorf("400 changes and none of kind %s: %v", kind, kinds)
		}
	}
}

// TestScaleScenario runs a small control-plane scale scenario end to end:
// the metrics are there and every watcher saw every change. It asserts no
// time: the catalogue's scale scenario holds the SLO.
func TestScaleScenario(t *testing.T) {
	needBins(t)
	sc, err := spec.Parse("scale-small.yaml", []byte(`
name: scale-small
description: a small control-plane scale run
seed: 4
mesh: {control_plane: true}
control_plane_scale: {services: 20, endpoints_per_service: 5, watchers: 20, watches_per_watcher: 3, changes: 10, change_interval: 50ms}
assertions:
  - {expr: "propagation_missed == 0"}
  - {expr: "watch_reconnects == 0"}
`))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := Run(context.Background(), Options{Scenario: sc, OutDir: out, Bin: bins})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != results.Pass {
		t.Fatalf("verdict %s: %v", res.Verdict, res.Failures())
	}
	p := res.Propagation
	if p == nil || p.Changes != 10 || p.Streams != 60 || p.Endpoints != 100 || len(p.PerChange) != 10 {
		t.Fatalf("propagation: %+v", p)
	}
	// 20 × 3 watches over 20 services: 3 watchers each, 3 pairs a change.
	if p.Pairs != 30 || p.Missed != 0 || p.Histogram.TotalCount() != 30 {
		t.Errorf("pairs %d, missed %d, histogram %d; want 30, 0, 30", p.Pairs, p.Missed, p.Histogram.TotalCount())
	}
	if p.InitialSyncS <= 0 || p.Latency.P99 <= 0 || p.Latency.Max < p.Latency.P50 {
		t.Errorf("implausible figures: initial sync %v s, latency %+v", p.InitialSyncS, p.Latency)
	}
	metrics := (&run{sc: sc}).metrics(res, spec.PhaseWhole)
	for _, name := range []string{"propagation_p50_ms", "propagation_p99_ms", "propagation_max_ms", "propagation_missed", "initial_sync_s", "controller_vmrss_mb", "controller_vmhwm_mb", "watchers", "endpoints"} {
		if _, ok := metrics[name]; !ok {
			t.Errorf("no metric %s", name)
		}
	}
	if metrics["controller_vmhwm_mb"].Value <= 0 {
		t.Error("the controller's memory was not sampled")
	}
	for _, f := range []string{results.ResultFile, results.SummaryFile, results.ReportFile, "hist/propagation.hdr", "logs/controller-controller.log", "endpoints.txt"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("results folder lacks %s", f)
		}
	}
	if back, err := results.Read(out); err != nil || back.Propagation == nil || back.Propagation.Pairs != 30 {
		t.Errorf("result.json does not read back: %v", err)
	}
}
