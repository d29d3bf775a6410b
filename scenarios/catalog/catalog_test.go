package catalog

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/skiff-mesh/skiff/scenarios/spec"
)

// maxQuick is the budget of one scenario under --quick, traffic only.
const maxQuick = 60 * time.Second

// longerQuick are the scenarios allowed a longer --quick, each with its
// budget.
var longerQuick = map[string]time.Duration{
	// A leak is a trend, and a trend needs minutes to rise above the
	// garbage collector's sawtooth: the plan gives soak 2 minutes in CI.
	"soak": 2 * time.Minute,
}

func TestList(t *testing.T) {
	names := List()
	for _, want := range []string{"baseline", "failover", "failover-service", "slow-replica", "smoke"} {
		if !slices.Contains(names, want) {
			t.Errorf("catalogue lacks %q: %v", want, names)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("List is not sorted: %v", names)
	}
	files, err := fs.Glob(FS, "*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.HasSuffix(f, ".yaml") {
			t.Errorf("%s: the catalogue holds NAME.yaml files only", f)
		}
	}
}

// TestCatalogue checks every scenario against the catalogue's rules: it
// parses and validates (full and --quick), it is called as its file, it
// has a one-line description and a quick section that keeps it under
// maxQuick, every assertion's bound is justified by a comment, and it
// names the planted defect that makes it fail.
func TestCatalogue(t *testing.T) {
	for _, name := range List() {
		t.Run(name, func(t *testing.T) {
			s, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name != name {
				t.Errorf("name %q, file %s.yaml", s.Name, name)
			}
			if s.Description == "" || len(s.Description) > 140 {
				t.Errorf("description must be one line of at most 140 characters: %q", s.Description)
			}
			if len(s.Assertions) == 0 {
				t.Error("no assertions: a scenario is a promise that can fail")
			}
			if len(s.Planted) == 0 {
				t.Error("no planted defect: every scenario lands with the defect that makes it fail (planted:, docs/scenarios.md)")
			}
			if s.Quick == nil {
				t.Fatal("no quick section: every scenario must run under --quick in CI")
			}
			q := s.Clone()
			q.ApplyQuick()
			if err := q.Validate(); err != nil {
				t.Errorf("--quick form: %v", err)
			}
			budget := maxQuick
			if b, ok := longerQuick[name]; ok {
				budget = b
			}
			if w := q.WallTime(); w > budget {
				t.Errorf("--quick sends traffic for %s, more than %s", w, budget)
			}
			commentedAssertions(t, name)
		})
	}
}

// commentedAssertions checks that each assertion has a comment of its own
// above it or at the end of its line.
func commentedAssertions(t *testing.T, name string) {
	data, err := fs.ReadFile(FS, name+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "assertions" {
			continue
		}
		for _, a := range root.Content[i+1].Content {
			if a.HeadComment == "" && a.LineComment == "" {
				t.Errorf("%s.yaml:%d: assertion without a comment justifying its bound", name, a.Line)
			}
		}
	}
}

func TestLoadUnknown(t *testing.T) {
	_, err := Load("failovr")
	if err == nil {
		t.Fatal("no error for an unknown scenario")
	}
	msg := err.Error()
	for _, name := range List() {
		if !strings.Contains(msg, name) {
			t.Errorf("error does not list %q: %s", name, msg)
		}
	}
	if !strings.Contains(msg, `did you mean "failover"?`) {
		t.Errorf("error does not suggest failover: %s", msg)
	}
}

// TestSlowReplicaRoundRobin: the runner runs slow-replica again with the
// round-robin balancer as the comparison; that variant must be valid.
func TestSlowReplicaRoundRobin(t *testing.T) {
	s, err := Load("slow-replica")
	if err != nil {
		t.Fatal(err)
	}
	if s.Mesh.Balancer != spec.BalancerEWMA {
		t.Errorf("balancer %q, want %q", s.Mesh.Balancer, spec.BalancerEWMA)
	}
	s.Mesh.Balancer = spec.BalancerRoundRobin
	if err := s.Validate(); err != nil {
		t.Error(err)
	}
}

// TestWithFaultRegistry: the catalogue validates against a registry that
// knows exactly the fault types it uses, as the runner's will.
func TestWithFaultRegistry(t *testing.T) {
	used := map[string]bool{}
	for _, name := range List() {
		s, err := Load(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range s.Timeline {
			used[e.Fault] = true
		}
	}
	var registry []string
	for f := range used {
		registry = append(registry, f)
	}
	for _, name := range List() {
		if _, err := Load(name, spec.WithFaults(registry)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
