package cli_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-mesh/skiff/internal/kubetest"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/cli"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

// TestAPIServerInstallCheck runs skiff install, check and uninstall
// against a real API server: check --pre passes once the Gateway API CRDs
// are there; the install applies with server-side apply; check passes
// once the controller's pod (bound and made ready by the test, standing in
// for the scheduler and the kubelet) is ready, and fails naming why when
// the pod is not ready or the webhook's CA bundle does not match its
// serving certificate; after the uninstall, check says Skiff is not
// installed.
func TestAPIServerInstallCheck(t *testing.T) {
	cp := kubetest.Start(t)
	ctx := t.Context()
	skiff := func(args ...string) (string, int) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := cli.Run(ctx, args, &stdout, &stderr)
		if stderr.Len() > 0 {
			t.Logf("skiff %s: stderr:\n%s", strings.Join(args, " "), &stderr)
		}
		return stdout.String(), code
	}
	check := func(args ...string) (string, int) {
		return skiff(append([]string{"check", "--kubeconfig", cp.Kubeconfig}, args...)...)
	}
	// checkUntil polls skiff check until it exits with code and its
	// output holds every one of want.
	checkUntil := func(what string, code int, want ...string) {
		t.Helper()
		var out string
		defer func() { t.Logf("%s: skiff check:\n%s", what, failures(out)) }()
		testwait.For(t, what, func() (bool, error) {
			var got int
			out, got = check()
			for _, w := range want {
				if !strings.Contains(out, w) {
					return false, fmt.Errorf("exit %d, no %q in:\n%s", got, w, out)
				}
			}
			if got != code {
				return false, fmt.Errorf("exit %d, want %d:\n%s", got, code, out)
			}
			return true, nil
		})
	}

	if out, code := check("--pre"); code != cli.ExitAssertionFailed || !strings.Contains(out, "✘") {
		t.Errorf("check --pre without the Gateway API CRDs: exit %d, want %d with a ✘:\n%s", code, cli.ExitAssertionFailed, out)
	}
	if _, err := cp.Apply(ctx, gatewayCRDs(t), "gateway-api"); err != nil {
		t.Fatalf("the Gateway API CRDs: %v", err)
	}
	testwait.For(t, "check --pre to pass", func() (bool, error) {
		out, code := check("--pre")
		return code == 0, fmt.Errorf("exit %d:\n%s", code, out)
	})

	manifest, code := skiff("install", "--version", "v0.0.0-test")
	if code != 0 {
		t.Fatalf("skiff install: exit %d:\n%s", code, manifest)
	}
	if _, err := cp.Apply(ctx, []byte(manifest), "skiff"); err != nil {
		t.Fatalf("applying skiff install: %v", err)
	}

	// The scheduler and the kubelet, for the controller's pod.
	cp.Node(t, "node-1", nil)
	var pod string
	testwait.For(t, "the Deployment's pod", func() (bool, error) {
		pods, err := cp.Client.CoreV1().Pods(kubemeta.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) == 0 {
			return false, err
		}
		pod = pods.Items[0].Name
		return true, nil
	})
	cp.Bind(t, kubemeta.Namespace, pod, "node-1")
	cp.SetPodReady(t, kubemeta.Namespace, pod, "10.1.0.50", true)
	checkUntil("skiff check to pass on the install", 0,
		"✔ Deployment skiff-controller is ready (1/1, version v0.0.0-test)",
		"✔ Service skiff-injector has ready endpoints (1)",
		"Status check results are ✔")

	cp.SetPodReady(t, kubemeta.Namespace, pod, "10.1.0.50", false)
	checkUntil("skiff check to fail on a controller that is not ready", cli.ExitAssertionFailed,
		"✘ Deployment skiff-controller is ready", "0 of 1 replicas ready",
		"✘ Service skiff-injector has ready endpoints")
	cp.SetPodReady(t, kubemeta.Namespace, pod, "10.1.0.50", true)
	checkUntil("skiff check to pass again", 0, "Status check results are ✔")

	// Another CA in the webhook configuration: the API server would
	// refuse the injector's certificate.
	otherCA, code := skiff("install", "--version", "v0.0.0-test", "-o", "json")
	if code != 0 {
		t.Fatalf("skiff install: exit %d:\n%s", code, otherCA)
	}
	objs, err := kubetest.Decode([]byte(otherCA))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "MutatingWebhookConfiguration" {
			continue
		}
		hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
		if len(hooks) == 0 {
			t.Fatal("skiff install renders a webhook configuration without webhooks")
		}
		ca, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle")
		patch := fmt.Appendf(nil, `[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":%q}]`, ca)
		if _, err := cp.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, kubemeta.Injector, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	checkUntil("skiff check to fail on a CA bundle that is not the serving certificate's", cli.ExitAssertionFailed,
		"✘ the webhook's CA bundle verifies the injector's serving certificate", "does not verify the certificate of Secret skiff/skiff-injector")

	uninstall, code := skiff("uninstall")
	if code != 0 {
		t.Fatalf("skiff uninstall: exit %d:\n%s", code, uninstall)
	}
	if err := cp.Delete(ctx, []byte(uninstall)); err != nil {
		t.Fatalf("applying skiff uninstall: %v", err)
	}
	checkUntil("skiff check to say Skiff is not installed", cli.ExitAssertionFailed,
		"✘ namespace skiff exists", "Skiff is not installed")
	if _, err := cp.Client.CoreV1().Namespaces().Get(ctx, kubemeta.Namespace, metav1.GetOptions{}); err == nil {
		t.Errorf("namespace %s is left after the uninstall", kubemeta.Namespace)
	}
}

// failures keeps the failed checks of a skiff check table, with their
// reasons, or all of it when none failed.
func failures(table string) string {
	var b strings.Builder
	keep := false
	for l := range strings.SplitSeq(table, "\n") {
		switch {
		case strings.HasPrefix(l, "✘"):
			keep = true
		case !strings.HasPrefix(l, "    "):
			keep = false
		}
		if keep {
			b.WriteString(l + "\n")
		}
	}
	if b.Len() == 0 {
		return table
	}
	return b.String()
}

// gatewayCRDs reads the Gateway API CRDs the mesh reads from the module
// go.mod requires: HTTPRoute and GRPCRoute (standard channel) and
// XBackendTrafficPolicy (experimental).
func gatewayCRDs(t *testing.T) []byte {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("finding the Gateway API module needs the go tool: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("go list -m sigs.k8s.io/gateway-api: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd")
	var b bytes.Buffer
	for _, f := range []string{
		"standard/gateway.networking.k8s.io_httproutes.yaml",
		"standard/gateway.networking.k8s.io_grpcroutes.yaml",
		"experimental/gateway.networking.x-k8s.io_xbackendtrafficpolicies.yaml",
	} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(data)
		b.WriteString("\n")
	}
	return b.Bytes()
}
