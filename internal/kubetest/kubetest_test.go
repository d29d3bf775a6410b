package kubetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-mesh/skiff/internal/testwait"
)

// TestVersionMatchesBuild: the cache directory Start reads is the one
// ci/kube/build.sh writes.
func TestVersionMatchesBuild(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "ci", "kube", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "k8s.io/kubernetes" && strings.HasPrefix(f[1], "v") {
			if f[1] != Version {
				t.Fatalf("ci/kube/go.mod builds k8s.io/kubernetes %s; kubetest.Version is %s: change both", f[1], Version)
			}
			return
		}
	}
	t.Fatal("ci/kube/go.mod requires no k8s.io/kubernetes version")
}

// TestAPIServerControlPlane starts a control plane, checks what the
// other tests rely on — the version the server reports, the kubeconfig,
// an EndpointSlice made by the controller-manager for a pod made ready
// through its status — and that the processes and files are gone after
// the test.
func TestAPIServerControlPlane(t *testing.T) {
	Require(t)
	var cp *ControlPlane
	t.Run("up", func(t *testing.T) {
		cp = Start(t)

		v, err := cp.Client.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != Version {
			t.Errorf("the API server reports %s, want %s (the -X ldflags of ci/kube/build.sh)", v.GitVersion, Version)
		}

		cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
		if err != nil {
			t.Fatalf("kubeconfig: %v", err)
		}
		fromFile, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fromFile.CoreV1().Namespaces().Get(t.Context(), metav1.NamespaceSystem, metav1.GetOptions{}); err != nil {
			t.Fatalf("through the kubeconfig: %v", err)
		}

		cp.Node(t, "node-1", nil)
		const ns = "kubetest"
		cp.Namespace(t, ns)
		ctx := t.Context()
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "web"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		if _, err := cp.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: ns, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{
				NodeName:   "node-1",
				Containers: []corev1.Container{{Name: "web", Image: "skiff-demo"}},
			},
		}
		if _, err := cp.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cp.SetPodReady(t, ns, "web-0", "10.1.0.10", true)
		testwait.For(t, "an EndpointSlice endpoint 10.1.0.10, ready, for web-0", func() (bool, error) {
			list, err := cp.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
			if err != nil {
				return false, err
			}
			for _, sl := range list.Items {
				for _, ep := range sl.Endpoints {
					if len(ep.Addresses) > 0 && ep.Addresses[0] == "10.1.0.10" && ep.Conditions.Ready != nil && *ep.Conditions.Ready &&
						ep.TargetRef != nil && ep.TargetRef.Name == "web-0" {
						return true, nil
					}
				}
			}
			return false, errors.New("not yet")
		})
	})
	if cp == nil {
		return // skipped, or failed before it started
	}
	for _, p := range cp.procs {
		if err := syscall.Kill(-p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s's process group %d outlived the test: %v", p.name, p.cmd.Process.Pid, err)
		}
	}
	if _, err := os.Stat(cp.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s outlived the test: %v", cp.Dir, err)
	}
}

// TestSkipOrFail: without the binaries a test is skipped, or failed when
// they are required.
func TestSkipOrFail(t *testing.T) {
	t.Setenv(EnvBin, t.TempDir())
	for _, required := range []string{"", "1"} {
		t.Setenv(EnvRequired, required)
		ft := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() { // Skip and Fatal end the goroutine that calls them
			defer close(done)
			Require(ft)
		}()
		<-done
		if required == "1" && (!ft.failed || ft.skipped) || required == "" && (!ft.skipped || ft.failed) {
			t.Errorf("%s=%q: skipped %v, failed %v", EnvRequired, required, ft.skipped, ft.failed)
		}
		if !strings.Contains(ft.msg, "ci/kube/build.sh") {
			t.Errorf("the message does not say how to build the binaries: %s", ft.msg)
		}
	}
}

type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
