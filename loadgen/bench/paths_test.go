package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixedAddrs hands out 127.0.0.1:40001, :40002, … : planPaths with
// addresses a test can write down.
func fixedAddrs() func() string {
	port := 40000
	return func() string { port++; return fmt.Sprintf("127.0.0.1:%d", port) }
}

// describe prints a path plan, one line per path and process.
func describe(specs []pathSpec) string {
	var b strings.Builder
	for _, s := range specs {
		fmt.Fprintf(&b, "%s (%s) entry %s", s.Name, s.Kind, s.Entry)
		if s.Twin != "" {
			fmt.Fprintf(&b, " twin %s", s.Twin)
		}
		b.WriteString("\n")
		for _, p := range s.Procs {
			fmt.Fprintf(&b, "  %s: %s %s (ready %s", p.Name, p.Bin, strings.Join(p.Args, " "), p.Ready)
			if p.Tree {
				b.WriteString(", process tree")
			}
			if p.Peer {
				b.WriteString(", SIGTERM")
			}
			b.WriteString(")\n")
			for _, f := range p.Files {
				fmt.Fprintf(&b, "    writes %s\n", f.Path)
			}
		}
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("differs from %s (rerun with -update if intended):\n%s", path, got)
	}
}

// The path list of a run with everything: the build under test, a base
// build and both peers, each with the processes that serve it.
func TestPlanPaths(t *testing.T) {
	cfg := Config{ProxyBin: "/new/skiff-proxy", BaselineProxyBin: "/old/skiff-proxy", WorkDir: "/w", runAsRoot: true,
		Peers: []Peer{{Name: PeerNginx, Bin: "/usr/sbin/nginx"}, {Name: PeerHAProxy, Bin: "/usr/sbin/haproxy"}}}
	next := fixedAddrs()
	specs := planPaths(cfg, next(), next)
	golden(t, "paths.golden", describe(specs))

	// Without base and peers: today's three paths, no twins.
	plain := planPaths(Config{ProxyBin: "/new/skiff-proxy"}, "127.0.0.1:1", fixedAddrs())
	if got := strings.Join(pathNames(plain), ","); got != "direct,one-hop,two-hop" {
		t.Errorf("paths %s, want direct,one-hop,two-hop", got)
	}
	for _, s := range plain {
		if s.Twin != "" {
			t.Errorf("%s has twin %s without a base build", s.Name, s.Twin)
		}
	}
	// The counting pass Run makes takes as many ports as the plan uses,
	// and no two paths share an entry.
	n := 1
	planPaths(cfg, "", func() string { n++; return "" })
	next = fixedAddrs()
	used := 1
	seen := map[string]bool{}
	for _, s := range planPaths(cfg, next(), func() string { used++; return next() }) {
		if seen[s.Entry] {
			t.Errorf("entry %s used twice", s.Entry)
		}
		seen[s.Entry] = true
	}
	if used != n {
		t.Errorf("the plan takes %d addresses, the count says %d", used, n)
	}
}

func TestTrialOrder(t *testing.T) {
	cfg := Config{ProxyBin: "p", BaselineProxyBin: "b", Peers: []Peer{{Name: PeerNginx, Bin: "n"}}}
	specs := planPaths(cfg, "127.0.0.1:1", fixedAddrs())
	for trial, want := range map[int]string{
		1: "direct,one-hop,one-hop@base,two-hop,two-hop@base,nginx",
		2: "direct,one-hop@base,one-hop,two-hop@base,two-hop,nginx",
		3: "direct,one-hop,one-hop@base,two-hop,two-hop@base,nginx",
	} {
		if got := strings.Join(trialOrder(specs, trial), ","); got != want {
			t.Errorf("trial %d: %s, want %s", trial, got, want)
		}
	}
	plain := planPaths(Config{ProxyBin: "p"}, "127.0.0.1:1", fixedAddrs())
	for trial := 1; trial <= 2; trial++ {
		if got := strings.Join(trialOrder(plain, trial), ","); got != "direct,one-hop,two-hop" {
			t.Errorf("without a base, trial %d: %s", trial, got)
		}
	}
}

func TestGatedPath(t *testing.T) {
	for name, want := range map[string]bool{PathDirect: true, PathOneHop: true, PathTwoHop: true,
		PathOneHop + BaseSuffix: false, PathTwoHop + BaseSuffix: false, PeerNginx: false, PeerHAProxy: false} {
		if gatedPath(name) != want {
			t.Errorf("gatedPath(%s) = %v", name, !want)
		}
	}
}

func TestStatParent(t *testing.T) {
	for stat, want := range map[string]int{
		"1234 (nginx) S 1200 1234 1234 0 -1":       1200,
		"77 (a) b (c)) R 5 77 77 0 -1 4194560 100": 5,
		"garbage": -1,
		"9 (x)":   -1,
	} {
		got, ok := statParent(stat)
		if want < 0 && ok || want >= 0 && (!ok || got != want) {
			t.Errorf("statParent(%q) = %d, %v; want %d", stat, got, ok, want)
		}
	}
	if kids := childPIDs(os.Getpid()); len(kids) != 0 {
		t.Logf("this test process has children %v (fine, just unusual)", kids)
	}
}
