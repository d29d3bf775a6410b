package layout

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/skiff-mesh/skiff/"

// deps lists the module's own packages in the dependency closure of pkgs.
func deps(t *testing.T, pkgs ...string) map[string][]string {
	t.Helper()
	// No skip: `go test` puts its own go tool first on PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("listing the dependencies needs the go tool on PATH: %v", err)
	}
	out := map[string][]string{}
	for _, p := range pkgs {
		b, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", mod+p).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", p, err, b)
		}
		for _, d := range strings.Fields(string(b)) {
			if strings.HasPrefix(d, mod) {
				out[p] = append(out[p], strings.TrimPrefix(d, mod))
			}
		}
		if len(out[p]) == 0 {
			t.Fatalf("go list -deps %s gave nothing of the module", p)
		}
	}
	return out
}

// TestArrows checks who may depend on whom: the faults do not know the
// environments or the workload that implement them; the environments do
// not know the runner; the mesh (its command line included) links nothing
// of the harness.
func TestArrows(t *testing.T) {
	rules := []struct {
		from      string
		forbidden []string
		why       string
	}{
		{"faultinject/...", []string{"simulator/", "scenarios/"}, "faults act on pods through interfaces; environments implement them"},
		{"simulator/...", []string{"scenarios/runner", "scenarios/cli", "scenarios/catalog"}, "environments implement the contract in package scenarios; the runner uses them, not the reverse"},
		{"scenarios", []string{"simulator/", "scenarios/runner", "loadgen"}, "the environment contract is types only"},
		{"mesh/...", []string{"scenarios", "simulator/", "loadgen", "faultinject", "results"}, "the product does not link the harness (cmd/skiff joins mesh/cli and scenarios/cli)"},
	}
	for _, r := range rules {
		pkgs := expand(t, r.from)
		for p, ds := range deps(t, pkgs...) {
			for _, d := range ds {
				for _, f := range r.forbidden {
					if d == strings.TrimSuffix(f, "/") || strings.HasPrefix(d, f) && strings.HasSuffix(f, "/") || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s depends on %s: %s", p, d, r.why)
					}
				}
			}
		}
	}
}

// expand lists the packages a pattern names, relative to the module.
func expand(t *testing.T, pattern string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(goTool, "list", mod+pattern).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pattern, err, b)
	}
	var out []string
	for _, p := range strings.Fields(string(b)) {
		out = append(out, strings.TrimPrefix(p, mod))
	}
	return out
}
