package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInjectCommand runs skiff inject on a file and skiff uninject on its
// output through stdin: the manifest comes back as it was.
func TestInjectCommand(t *testing.T) {
	in := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n        - name: web\n          image: example/web:1\n"
	file := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(file, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if code := Run(context.Background(), []string{"inject", "--version", "v0.9.0", "--registry", "registry.example/mesh", "--trust-domain", "example.org", file}, &out, &errs); code != 0 {
		t.Fatalf("inject: exit %d: %s", code, errs.String())
	}
	for _, want := range []string{"image: registry.example/mesh/skiff-proxy:v0.9.0", "skiff.dev/proxy-version: v0.9.0", "spiffe://example.org/ns/", "restartPolicy: Always"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if errs.String() != "Deployment web: injected\n" {
		t.Errorf("stderr %q", errs.String())
	}

	injected := out.String()
	out.Reset()
	errs.Reset()
	cmd := newUninjectCmd(&Options{Stdout: &out, Stderr: &errs})
	cmd.SetIn(strings.NewReader(injected))
	cmd.SetArgs([]string{"-"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out.String() != in {
		t.Errorf("uninject gives\n%s\nwant\n%s", out.String(), in)
	}
	if errs.String() != "Deployment web: uninjected\n" {
		t.Errorf("stderr %q", errs.String())
	}
}

func TestInjectCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    skiff.dev/proxy-cpu-request: lots\nspec:\n  containers:\n    - name: a\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inject", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"inject", bad}, `bad.yaml: document 2 (Pod p): cannot inject: annotation skiff.dev/proxy-cpu-request: "lots"`},
		{[]string{"inject", "--version", "a b", bad}, `version "a b" is not an image tag`},
		{[]string{"inject"}, "accepts 1 arg(s)"},
		{[]string{"uninject", "a", "b"}, "accepts 1 arg(s)"},
	} {
		var out, errs bytes.Buffer
		code := Run(context.Background(), tc.args, &out, &errs)
		if code == 0 || !strings.Contains(errs.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q, want it to say %q", tc.args, code, errs.String(), tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("%q: wrote %q despite the error", tc.args, out.String())
		}
	}
}

func TestImageTag(t *testing.T) {
	for v, ok := range map[string]bool{"v1.2.3": true, "v1.2.3-rc.1": true, "v0.0.0-20260101000000-abcdef123456": false, "(devel)": false, "v1.2.4-0.20260101000000-abcdef123456": false} {
		if releaseTag.MatchString(v) != ok {
			t.Errorf("%s: release %v", v, !ok)
		}
	}
}
