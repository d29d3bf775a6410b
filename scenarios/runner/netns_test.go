package runner

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/scenarios/catalog"
	"github.com/skiff-mesh/skiff/simulator/netns"
)

// TestUnavailableEnvironments: kind and kube (no Docker, no cluster here)
// fail at once with ErrUnavailable, which the command line turns into
// exit 2 and one line.
func TestUnavailableEnvironments(t *testing.T) {
	sc, err := catalog.Load("smoke")
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{EnvKind, EnvKube} {
		_, err := Run(context.Background(), Options{Scenario: sc, OutDir: t.TempDir(), Env: env})
		if !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "\n") {
			t.Errorf("env %s: %v, want one line wrapping ErrUnavailable", env, err)
		}
	}
}

// TestNetnsSmoke runs the smoke scenario on the netns environment, where
// the machine can (root, iproute2, iptables): every pod in its own network
// namespace, intercepted by skiff-proxy init's rules. It must pass, record
// its environment, and leave no namespace behind.
func TestNetnsSmoke(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("netns environment unavailable here: %v", err)
	}
	if testing.Short() {
		t.Skip("-short: the netns smoke run builds the binaries and starts real processes")
	}
	needBins(t)
	before := namespaces(t)
	sc, err := catalog.Load("smoke")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Scenario: sc, OutDir: t.TempDir(), Env: EnvNetns, Quick: true, Bin: bins})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != results.Pass || res.Environment != EnvNetns {
		t.Errorf("verdict %s on %q, want pass on netns; failures: %v; error: %s", res.Verdict, res.Environment, res.Failures(), res.Err)
	}
	if left := slices.DeleteFunc(namespaces(t), func(ns string) bool { return slices.Contains(before, ns) }); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

// namespaces lists the named network namespaces.
func namespaces(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}
