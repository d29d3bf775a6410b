package inject

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var goldenConfig = Config{Version: "v0.9.0"}

func injectManual(p Pod) (Result, error) { return goldenConfig.Inject(p, Manual) }
func uninject(p Pod) (Result, error)     { return Uninject(p), nil }

// run applies f to in, returning the output and the reports as text.
func run(t *testing.T, in []byte, f Transform) ([]byte, string) {
	t.Helper()
	var out bytes.Buffer
	reports, err := Manifests(bytes.NewReader(in), &out, f)
	if err != nil {
		t.Fatal(err)
	}
	var rep strings.Builder
	for _, r := range reports {
		fmt.Fprintln(&rep, r)
	}
	return out.Bytes(), rep.String()
}

// TestGolden injects each testdata input (one per kind), compares the
// output and the reports with the golden files, then checks that
// injecting the output changes nothing and that uninjecting it gives the
// input back, byte for byte.
func TestGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.yaml")
	js, _ := filepath.Glob("testdata/*.json")
	inputs = append(inputs, js...)
	if len(inputs) < 9 {
		t.Fatalf("%d inputs in testdata", len(inputs))
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			out, reports := run(t, src, injectManual)
			golden(t, in+".injected.golden", out)
			golden(t, in+".reports.golden", []byte(reports))

			again, _ := run(t, out, injectManual)
			if !bytes.Equal(again, out) {
				t.Errorf("injecting the injected output changed it:\n%s", again)
			}
			back, _ := run(t, out, uninject)
			if strings.HasSuffix(in, ".json") {
				// JSON comes back indented, its keys sorted: compare
				// documents as values.
				backAgain, _ := run(t, back, injectManual)
				if !bytes.Equal(backAgain, out) {
					t.Errorf("injecting the uninjected JSON does not give the injected one:\n%s", backAgain)
				}
				return
			}
			if !bytes.Equal(back, src) {
				t.Errorf("uninject does not restore the input:\n%s", back)
			}
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./mesh/inject -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./mesh/inject -update rewrites it); got:\n%s", path, got)
	}
}

// TestReinjectNewVersion: a manifest injected with one version and
// injected again with another has the other's images, and nothing else
// moved.
func TestReinjectNewVersion(t *testing.T) {
	src, _ := os.ReadFile("testdata/statefulset.yaml")
	v1, _ := run(t, src, injectManual)
	cfg := Config{Version: "v1.0.0", Registry: "registry.example/mesh"}
	v2, reports := run(t, v1, func(p Pod) (Result, error) { return cfg.Inject(p, Manual) })
	if !strings.Contains(reports, "changed") {
		t.Errorf("reports: %s", reports)
	}
	direct, _ := run(t, src, func(p Pod) (Result, error) { return cfg.Inject(p, Manual) })
	if !bytes.Equal(v2, direct) {
		t.Errorf("re-injected:\n%s\nwant, as injected directly:\n%s", v2, direct)
	}
}

func TestManifestErrors(t *testing.T) {
	deploy := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      annotations:\n        %s\n    spec:\n      containers:\n        - name: web\n          image: x\n"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"too many documents", strings.Repeat("apiVersion: v1\nkind: ConfigMap\n---\n", MaxDocuments+1), "document 2001: more than 2000 objects"},
		{"not a mapping", "apiVersion: v1\nkind: ConfigMap\n---\n- a\n- b\n", "document 2: not a Kubernetes object"},
		{"bad YAML", "apiVersion: v1\nkind: [\n", "document 1:"},
		{"no template", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec: {}\n", "document 1 (Deployment web): no spec.template"},
		{"bad opaque ports", "---\n" + fmt.Sprintf(deploy, "skiff.dev/opaque-ports: 3306,x"), `document 1 (Deployment web): cannot inject: annotation skiff.dev/opaque-ports: "3306,x"`},
		{"bad memory", fmt.Sprintf(deploy, "skiff.dev/proxy-memory-limit: lots"), "skiff.dev/proxy-memory-limit"},
		{"port taken", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: app\n      image: x\n      ports:\n        - containerPort: 4191\n", "container app declares port 4191"},
		{"bad field", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: 3\n", "document 1 (Pod p): its pod template"},
		{"list item", "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Pod\n    metadata:\n      name: p\n    spec:\n      containers: 3\n", "document 1 (item 1 of List: Pod p)"},
		{"second document", "apiVersion: v1\nkind: ConfigMap\n--- x\n", "a second YAML document"},
		{"bad JSON", `{"apiVersion": "v1", "kind": "ConfigMap"} {"kind": `, "document 2:"},
		{"pod without spec", `{"apiVersion": "v1", "kind": "Pod"}`, "document 1 (Pod): no spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := Manifests(strings.NewReader(tc.in), &out, injectManual)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			if out.Len() > 0 {
				t.Errorf("wrote %d bytes despite the error", out.Len())
			}
		})
	}
	big := strings.NewReader(strings.Repeat("#", MaxManifestBytes+1))
	if _, err := Manifests(big, &bytes.Buffer{}, injectManual); err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Errorf("oversized input: %v", err)
	}
}

// TestPassThrough: documents without pod templates, blank documents and
// separators with comments are written byte for byte.
func TestPassThrough(t *testing.T) {
	in := "# leading comment\n---\napiVersion: v1\nkind: ConfigMap   # odd spacing kept\ndata: {a: 1}\n--- # separator comment\n\n---\napiVersion: example.com/v1\nkind: Deployment\nspec:\n  template: {}\n"
	out, reports := run(t, []byte(in), injectManual)
	if string(out) != in {
		t.Errorf("got:\n%s\nwant:\n%s", out, in)
	}
	if reports != "" {
		t.Errorf("reports: %q", reports)
	}
}

// FuzzManifests: no input panics; what injects, injects again to itself
// and uninjects to something that injects the same.
func FuzzManifests(f *testing.F) {
	for _, p := range []string{"testdata/pod.yaml", "testdata/list.yaml", "testdata/deployment.json", "testdata/cronjob.yaml"} {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		if _, err := Manifests(bytes.NewReader(in), &out, injectManual); err != nil {
			return
		}
		var again bytes.Buffer
		if _, err := Manifests(bytes.NewReader(out.Bytes()), &again, injectManual); err != nil {
			t.Fatalf("injected output does not inject again: %v\n%s", err, out.Bytes())
		}
		if !bytes.Equal(again.Bytes(), out.Bytes()) {
			t.Fatalf("not idempotent:\n%s\nthen:\n%s", out.Bytes(), again.Bytes())
		}
	})
}
