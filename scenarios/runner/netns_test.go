package runner

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/scenarios/catalog"
)

// TestNetnsMessage: --env netns says the environment is not built, and
// lists exactly the prerequisites the machine lacks, none it has.
func TestNetnsMessage(t *testing.T) {
	all := func(string) (string, error) { return "/usr/sbin/x", nil }
	noIptables := func(bin string) (string, error) {
		if bin == "iptables" {
			return "", exec.ErrNotFound
		}
		return "/usr/sbin/" + bin, nil
	}
	none := func(string) (string, error) { return "", exec.ErrNotFound }
	for _, tc := range []struct {
		name     string
		goos     string
		euid     int
		look     func(string) (string, error)
		want     []string
		wantNot  []string
		complete bool
	}{
		{name: "everything", goos: "linux", euid: 0, look: all, complete: true,
			wantNot: []string{"lacks", "root (", "iptables (no"}},
		{name: "no iptables", goos: "linux", euid: 0, look: noIptables,
			want: []string{"lacks: iptables (no iptables on PATH)"}, wantNot: []string{"root (", "Linux (", "iproute2 ("}},
		{name: "nothing", goos: "darwin", euid: 501, look: none,
			want: []string{"Linux (this is darwin)", "root (running as uid 501)", "iproute2 (no ip on PATH)", "iptables (no iptables on PATH)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := netnsError(netnsMissing(tc.goos, tc.euid, tc.look)).Error()
			if !strings.Contains(msg, "not implemented yet (issue 13") || !strings.Contains(msg, "use --env local") {
				t.Errorf("%q does not say the environment is not built yet", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(msg, w) {
					t.Errorf("%q names %q, which the machine has", msg, w)
				}
			}
			if got := strings.Contains(msg, "nothing to install"); got != tc.complete {
				t.Errorf("%q: says nothing to install: %v, want %v", msg, got, tc.complete)
			}
		})
	}
}

// TestNetnsEnvironment: the runner returns that message.
func TestNetnsEnvironment(t *testing.T) {
	sc, err := catalog.Load("smoke")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Options{Scenario: sc, OutDir: t.TempDir(), Env: EnvNetns})
	if want := netnsUnavailable(); err == nil || err.Error() != want.Error() {
		t.Errorf("env netns: %v, want %v", err, want)
	}
}
