package control

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
)

// TestNoGRPCInTheProxy keeps grpc-go and the protobuf runtime (reflection,
// registries, the generated mesh/api packages) out of this package's
// dependency closure, and so out of the sidecar: the only protobuf package
// allowed is encoding/protowire, with what it needs itself.
func TestNoGRPCInTheProxy(t *testing.T) {
	leakcheck.Check(t)
	// No skip: `go test` puts its own go tool first on PATH, so a failure
	// here is a broken environment or build, which must fail the test.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("listing the dependencies needs the go tool on PATH: %v", err)
	}
	list := func(pkg string) []string {
		out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		return strings.Fields(string(out))
	}
	const protowire = "google.golang.org/protobuf/encoding/protowire"
	allowed := map[string]bool{}
	for _, p := range list(protowire) {
		allowed[p] = true
	}
	const mod = "github.com/skiff-mesh/skiff/"
	deps := list(mod + "mesh/proxy/control")
	if !allowed[protowire] || len(deps) == 0 {
		t.Fatalf("go list gave nothing useful: %q", deps)
	}
	for _, p := range deps {
		switch {
		case allowed[p]:
		case strings.HasPrefix(p, mod+"mesh/proxy/") || p == mod+"internal/leakcheck" || p == mod+"internal/plant":
			// The proxy's own packages, stdlib-only themselves (their
			// dependencies are in this same list); internal/plant is
			// empty in a release build (its own test checks the binary).
		default:
			t.Errorf("mesh/proxy/control depends on %s: the sidecar may link only the standard library, its own packages and %s", p, protowire)
		}
		if strings.HasPrefix(p, "google.golang.org/grpc") || strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, mod+"mesh/api") {
			t.Errorf("mesh/proxy/control depends on %s", p)
		}
	}
	t.Logf("dependency closure outside the standard library: %s", strings.Join(deps, " "))
}
