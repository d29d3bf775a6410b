package kind

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The configuration make kind-up creates the cluster from, as the YAML
// kind create cluster --config reads: golden, and read back by kind's own
// type.
func TestRenderConfig(t *testing.T) {
	for _, tc := range []struct {
		golden string
		o      Options
	}{
		{"cluster.golden.yaml", Options{}},
		{"cluster-workers.golden.yaml", Options{Name: "skiff-ci", Workers: 2, NodeImage: "kindest/node:v1.35.0"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got, err := RenderConfig(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("rendered config differs from %s (go test ./scenarios/kind -update):\n%s", path, got)
			}
			var back v1alpha4.Cluster
			if err := yaml.UnmarshalStrict(got, &back); err != nil {
				t.Fatalf("kind's type does not read it back: %v", err)
			}
			if back.Name != tc.o.name() || len(back.Nodes) != 1+tc.o.Workers || back.Nodes[0].Role != v1alpha4.ControlPlaneRole {
				t.Errorf("read back: %+v", back)
			}
		})
	}
}

func TestContext(t *testing.T) {
	if got := (Options{}).Context(); got != "kind-skiff" {
		t.Errorf("Context() = %q", got)
	}
}

// Without a Docker engine (CI, this machine) every call that needs one
// says so in one line, naming what failed; with one, Available is quiet.
func TestWithoutDocker(t *testing.T) {
	ctx := context.Background()
	err := Available(ctx)
	if err == nil {
		t.Skip("a Docker engine answers here: the messages for its absence are not reachable")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "needs a Docker engine: ") || strings.Contains(msg, "\n") {
		t.Errorf("Available: %q, want one line starting with what is needed", msg)
	}
	if _, err := Up(ctx, Options{}); err == nil || err.Error() != msg {
		t.Errorf("Up: %v, want %q", err, msg)
	}
	if err := Down(ctx, Options{}); err == nil || err.Error() != msg {
		t.Errorf("Down: %v, want %q", err, msg)
	}
}
