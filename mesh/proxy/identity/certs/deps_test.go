package certs_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStandardLibraryOnly keeps the identity packages free of gRPC,
// Kubernetes and every other module: they sit in the sidecar (certs,
// spiffe) and under the control plane's service wiring (ca).
func TestStandardLibraryOnly(t *testing.T) {
	// No skip: `go test` puts its own go tool first on PATH, so a failure
	// here is a broken environment or build, which must fail the test.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("listing the dependencies needs the go tool on PATH: %v", err)
	}
	const mod = "github.com/skiff-mesh/skiff/"
	own := map[string]bool{
		mod + "mesh/proxy/identity/certs":  true,
		mod + "mesh/proxy/identity/spiffe": true,
		mod + "mesh/control/identity/ca":   true,
		// Planted defects: stdlib-only, and empty in a release build.
		mod + "internal/plant": true,
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
		mod+"mesh/proxy/identity/certs", mod+"mesh/control/identity/ca").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if !own[p] {
			t.Errorf("identity packages depend on %s; they must use only the standard library", p)
		}
	}
}
