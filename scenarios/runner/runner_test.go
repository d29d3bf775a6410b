package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/scenarios/catalog"
	"github.com/skiff-mesh/skiff/scenarios/spec"
	"github.com/skiff-mesh/skiff/simulator/local"
)

// bins are built once for every test; binErr says why they could not be.
var (
	bins   local.Binaries
	binErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-runner-test-")
	if err == nil {
		bins, err = local.BuildBinaries(context.Background(), dir)
	}
	if err != nil {
		binErr = err
		os.Stderr.WriteString("runner tests that run scenarios will fail: cannot build the binaries: " + err.Error() + "\n")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needBins fails the test when the binaries could not be built: a broken
// build must fail `make test`, not skip the tests that would show it.
func needBins(t *testing.T) {
	t.Helper()
	if binErr != nil {
		first, _, _ := strings.Cut(binErr.Error(), "\n")
		t.Fatalf("needs skiff-proxy, skiff-demo and skiff-controller from go build, which failed (full output above the tests): %s", first)
	}
}

// TestSmoke runs the smallest catalogue scenario end to end and checks the
// results folder.
func TestSmoke(t *testing.T) {
	needBins(t)
	sc, err := catalog.Load("smoke")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := Run(context.Background(), Options{Scenario: sc, OutDir: out, Bin: bins})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != results.Pass {
		t.Fatalf("smoke: verdict %s: %v", res.Verdict, res.Failures())
	}
	for _, f := range []string{results.ResultFile, results.SummaryFile, results.ReportFile, results.TimeSeriesFile, "pods.csv", "logs/client-proxy.log", "logs/echo-0-app.log"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("results folder lacks %s", f)
		}
	}
	back, err := results.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if back.Scenario != "smoke" || back.Phase(spec.PhaseWhole).Path(results.PathMeshed).Count == 0 {
		t.Errorf("result.json does not read back: %+v", back)
	}
}

// TestBrokenExpectation: an assertion that cannot hold fails the run with
// a message naming the phase, threshold and measured value.
func TestBrokenExpectation(t *testing.T) {
	needBins(t)
	sc, err := catalog.Load("smoke")
	if err != nil {
		t.Fatal(err)
	}
	// A rate, not a latency: on a machine measured as busy (make test runs
	// packages side by side) a latency miss is inconclusive by design.
	sc.Assertions = []spec.Assertion{{Phase: spec.PhaseWhole, Expr: "rps >= 1000000"}}
	res, err := Run(context.Background(), Options{Scenario: sc, OutDir: t.TempDir(), Bin: bins})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != results.Fail || results.ExitCode(res.Verdict) != results.ExitAssertionFailed {
		t.Fatalf("verdict %s, want fail (exit 99)", res.Verdict)
	}
	msg := res.Failures().Error()
	if !strings.Contains(msg, "FAIL [whole] rps >= 1000000: measured") {
		t.Fatalf("message %q does not name the assertion and the measured value", msg)
	}
}

// TestTimeline kills and restarts a replica mid-run: the events happen at
// their offsets, traffic survives, and the restored pod serves again.
func TestTimeline(t *testing.T) {
	needBins(t)
	sc, err := spec.Parse("timeline.yaml", []byte(`
name: timeline
description: kill and restart one of two replicas
seed: 5
topology:
  services:
    - {name: echo, replicas: 2}
load:
  target: echo
  rate: {rps: 200}
  duration: 4s
  warmup: 1s
timeline:
  - {at: 1s, fault: kill, target: echo-1}
  - {at: 2s, fault: restart, target: echo-1}
phases:
  after: {from: 2s, to: end}
assertions:
  - {expr: "success_rate >= 0.99"}
  - {expr: "recovery_s < 1.5"}
  # From the restart on, not from a second later: with two replicas P2C
  # compares both on every pick, and one slow answer of the fresh process
  # keeps it out until its peak decays (about 2 s · ln(peak/normal)); the
  # window [3 s, 4 s] saw no request in 1 run of 8.
  - {phase: after, expr: "share(echo-1) > 0"}
`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Scenario: sc, OutDir: t.TempDir(), Bin: bins})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 2 || !res.Events[0].OK || !res.Events[1].OK {
		t.Fatalf("events: %+v", res.Events)
	}
	if res.Events[0].OffsetS < 0.9 || res.Events[1].OffsetS < res.Events[0].OffsetS {
		t.Errorf("events out of order or early: %+v", res.Events)
	}
	if res.Verdict != results.Pass {
		t.Fatalf("verdict %s: %v", res.Verdict, res.Failures())
	}
}

// TestUnsupportedEnvironment: environments that cannot run here say so.
func TestUnsupportedEnvironment(t *testing.T) {
	sc, _ := catalog.Load("smoke")
	for env, want := range map[string]string{EnvKind: "Docker", EnvKube: "KUBECONFIG", "mars": "want local"} {
		_, err := Run(context.Background(), Options{Scenario: sc, OutDir: t.TempDir(), Env: env})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("env %s: %v, want an error mentioning %q", env, err, want)
		}
	}
}

// TestChaosTimeline adds latency on the network in front of a pod for one
// second (the TCP chaos layer), and checks requests in that window carry
// it: a lower bound, which a slow machine cannot break.
func TestChaosTimeline(t *testing.T) {
	needBins(t)
	sc, err := spec.Parse("chaos.yaml", []byte(`
name: chaos
description: 60 ms of network latency in front of the only replica for a second
seed: 9
topology:
  services:
    - {name: echo, replicas: 1}
load:
  target: echo
  rate: {rps: 100}
  duration: 3s
  warmup: 1s
timeline:
  - {at: 1s, fault: chaos, target: echo-0, for: 1s, params: {toxic: latency, latency: 60ms}}
phases:
  slowed: {from: 1.3s, to: 1.8s}
assertions:
  - {expr: "success_rate >= 0.99"}
  - {phase: slowed, expr: "p50_ms >= 60"}
`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Scenario: sc, OutDir: t.TempDir(), Bin: bins})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 2 || res.Events[1].Type != "undo chaos" {
		t.Fatalf("events: %+v", res.Events)
	}
	if res.Verdict != results.Pass {
		t.Fatalf("verdict %s: %v", res.Verdict, res.Failures())
	}
}

// TestMTLSScenario runs the mtls scenario (quick) and, as a control, the
// same traffic without a control plane: the marker must then be seen on
// the wire, or the check proves nothing.
func TestMTLSScenario(t *testing.T) {
	needBins(t)
	sc, err := catalog.Load("mtls")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Scenario: sc, Quick: true, OutDir: t.TempDir(), Bin: bins})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != results.Pass {
		t.Fatalf("mtls: verdict %s: %v", res.Verdict, res.Failures())
	}
	plain := sc.Clone()
	plain.Mesh.ControlPlane, plain.Mesh.MTLS = false, ""
	plain.Assertions = []spec.Assertion{{Phase: spec.PhaseWhole, Expr: "plaintext_marker_hits > 100"}}
	res, err = Run(context.Background(), Options{Scenario: plain, Quick: true, OutDir: t.TempDir(), Bin: bins})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != results.Pass {
		t.Fatalf("without mTLS the marker was not seen on the wire: %v", res.Failures())
	}
}
