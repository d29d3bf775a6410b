package spec

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestGolden parses every testdata/*.yaml and compares the outcome with
// testdata/*.golden: the error output, or "ok" and the normalized scenario.
// Run with -update to rewrite the golden files, then review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := outcome(t, filepath.Base(file), data)
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (run with -update and review the diff):\n%s", file, golden, got)
			}
		})
	}
}

func outcome(t *testing.T, name string, data []byte) string {
	s, err := Parse(name, data)
	if err != nil {
		return err.Error() + "\n"
	}
	out, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return "ok\n" + string(out)
}
