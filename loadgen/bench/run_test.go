package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildBinaries builds skiff-proxy and skiff-demo as the Makefile does.
func buildBinaries(t *testing.T) (proxy, demo string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", dir+"/", "github.com/skiff-mesh/skiff/cmd/skiff-proxy", "github.com/skiff-mesh/skiff/cmd/skiff-demo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out := &boundedBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "skiff-proxy"), filepath.Join(dir, "skiff-demo")
}

// Two short trials along every kind of path: the build under test, a base
// build (the same binary) and the peers that are installed. Every path
// serves, every process is measured (once, though a base build has the
// processes started afresh for the second trial), and none outlives the
// run.
func TestRunAllPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs two bench trials (about 20 s)")
	}
	proxy, demo := buildBinaries(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var peers []Peer
	for _, name := range []string{PeerNginx, PeerHAProxy} {
		p, err := FindPeer(ctx, name)
		if err != nil {
			t.Logf("without %s: %v (make bench-peers installs it as root)", name, err)
			continue
		}
		peers = append(peers, p)
	}
	work := t.TempDir()
	cfg := Config{ProxyBin: proxy, DemoBin: demo, BaselineProxyBin: proxy, Peers: peers, Rate: 200, Trials: 2,
		Duration: 1200 * time.Millisecond, WarmUp: 400 * time.Millisecond, WorkDir: work}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{PathDirect, PathOneHop, PathTwoHop, PathOneHop + BaseSuffix, PathTwoHop + BaseSuffix}
	for _, p := range peers {
		want = append(want, p.Name)
	}
	var got []string
	for _, p := range rep.Paths {
		got = append(got, p.Name)
		if p.Requests == 0 || p.SuccessRate < 0.99 {
			t.Errorf("%s: %d requests, success %v", p.Name, p.Requests, p.SuccessRate)
		}
		if p.Kind != KindDirect && (p.ProxyCPUUsPerReq.Median <= 0 || p.MaxVmRSSMB <= 0 || p.MaxPssMB <= 0 || p.Processes == 0) {
			t.Errorf("%s not measured: CPU %v µs/req, RSS %v, PSS %v, %d processes", p.Name, p.ProxyCPUUsPerReq.Median, p.MaxVmRSSMB, p.MaxPssMB, p.Processes)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("paths %v, want %v", got, want)
	}
	wantProcs := 6
	for _, p := range peers {
		wantProcs += map[string]int{PeerNginx: 2, PeerHAProxy: 1}[p.Name]
	}
	if len(rep.Procs) != wantProcs {
		t.Errorf("%d processes reported, want %d (one line per process, whatever its instances)", len(rep.Procs), wantProcs)
	}
	for _, p := range rep.Procs {
		if p.VmHWMMB <= 0 || p.MaxPssMB <= 0 {
			t.Errorf("process %s (%s) not measured: %+v", p.Name, p.Path, p)
		}
	}
	if len(peers) > 0 && (rep.Peers == nil || len(rep.Peers.Rows) != len(want)-1) {
		t.Errorf("peers table: %+v", rep.Peers)
	}
	for _, p := range peers {
		if p.Name == PeerNginx {
			roles := map[string]int{}
			for _, pr := range rep.Procs {
				if pr.Path == PeerNginx {
					roles[pr.Role]++
				}
			}
			if roles["master"] != 1 || roles["worker"] != 1 {
				t.Errorf("nginx processes by role: %v, want one master and one worker", roles)
			}
		}
	}
	// Nothing the bench started still runs: no child of this process,
	// and no process whose command line names the bench's work dir (the
	// peers' configuration) or that is a worker of it.
	if kids := childPIDs(os.Getpid()); len(kids) > 0 {
		t.Errorf("children still running: %v", kids)
	}
	if left := processesMentioning(work); len(left) > 0 {
		t.Errorf("processes of the run still running: %v", left)
	}
}

// processesMentioning lists the PIDs whose command line contains s.
func processesMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, pid)
		}
	}
	return out
}
