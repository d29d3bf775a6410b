package plant_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseBinariesHaveNoDefects builds skiff-proxy and skiff-controller
// as a release does (no plant tag) and checks that nothing of this package
// is in them: no symbol, no defect name, no environment variable.
func TestReleaseBinariesHaveNoDefects(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the binaries needs the go tool on PATH: %v", err)
	}
	dir := t.TempDir()
	build := exec.Command(goTool, "build", "-trimpath", "-o", dir+string(filepath.Separator),
		"github.com/skiff-mesh/skiff/cmd/skiff-proxy", "github.com/skiff-mesh/skiff/cmd/skiff-controller")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, bin := range []string{"skiff-proxy", "skiff-controller"} {
		path := filepath.Join(dir, bin)
		nm, err := exec.Command(goTool, "tool", "nm", path).CombinedOutput()
		if err != nil {
			t.Fatalf("go tool nm %s: %v\n%s", bin, err, nm)
		}
		for line := range strings.Lines(string(nm)) {
			if strings.Contains(line, "internal/plant") {
				t.Errorf("%s has a symbol of the planted defects: %s", bin, strings.TrimSpace(line))
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"SKIFF_PLANT", string("slow-" + "hop"), "planted defect"} {
			if strings.Contains(string(data), s) {
				t.Errorf("%s holds the string %q of a planted defect", bin, s)
			}
		}
	}
}
