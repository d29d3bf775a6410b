package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/cli"
	"github.com/skiff-mesh/skiff/mesh/install"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestInstallJSON(t *testing.T) {
	code, out, errs := run(t, "install", "--version", "v0.1.0", "--registry", "reg.example/x", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var list struct {
		Kind  string `json:"kind"`
		Items []struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct{ Image string } `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "List" || len(list.Items) != 12 {
		t.Fatalf("kind %q with %d items", list.Kind, len(list.Items))
	}
	for _, it := range list.Items {
		if it.Kind == "Deployment" && it.Spec.Template.Spec.Containers[0].Image != "reg.example/x/skiff-controller:v0.1.0" {
			t.Errorf("image %s", it.Spec.Template.Spec.Containers[0].Image)
		}
	}
}

func TestInstallCRDsAndUninstall(t *testing.T) {
	var want bytes.Buffer
	if err := install.Write(&want, install.CRDs(), install.FormatYAML); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "install", "--crds")
	if code != 0 || !strings.HasSuffix(out, want.String()) || !strings.HasPrefix(out, "# ") {
		t.Errorf("skiff install --crds: exit %d, %s\n%s", code, errs, out)
	}
	want.Reset()
	if err := install.Write(&want, install.Uninstall(), install.FormatYAML); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run(t, "uninstall")
	if code != 0 || !strings.HasSuffix(out, want.String()) || !strings.Contains(out, "kubectl delete --ignore-not-found -f -") {
		t.Errorf("skiff uninstall: exit %d, %s\n%s", code, errs, out)
	}
}

func TestInstallRefuses(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "anchors.pem")
	if err := os.WriteFile(notPEM, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"install", "-o", "xml"}, `-o "xml": want yaml or json`},
		{[]string{"uninstall", "-o", "table"}, `-o "table": want yaml or json`},
		{[]string{"install", "--version", "v1", "--webhook-failure-policy", "Retry"}, `failure policy "Retry": want Fail or Ignore`},
		{[]string{"install", "--version", "a/b"}, `version "a/b" is not an image tag`},
		{[]string{"install", "--identity-trust-anchors-file", notPEM}, "--identity-issuer-certificate-file"},
		{[]string{"install", "--identity-trust-anchors-file", notPEM, "--identity-issuer-certificate-file", notPEM, "--identity-issuer-key-file", notPEM}, "--identity-trust-anchors-file " + notPEM + ": no PEM block"},
		{[]string{"check", "-o", "yaml"}, `-o "yaml": want table or json`},
		{[]string{"check", "--pre", "--proxy"}, "--pre and --proxy"},
	}
	for _, c := range cases {
		code, out, errs := run(t, c.args...)
		if code != cli.ExitFailure || out != "" || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 saying %q", c.args, code, out, errs, c.want)
		}
	}
}

// Without a cluster, skiff check fails to run and says how to point it
// at one.
func TestCheckNoCluster(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	code, _, errs := run(t, "check")
	if code != cli.ExitFailure || !strings.Contains(errs, "--kubeconfig") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}
