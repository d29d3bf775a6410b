package kube_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-mesh/skiff/internal/kubetest"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/kube"
)

// apiWait bounds each wait for the controller-manager and the informers
// to catch up with a change: a failure bound, far above the fraction of
// a second they take.
const apiWait = time.Minute

// TestAPIServerDiscovery runs the source against a real API server, whose
// controller-manager makes the EndpointSlices from the Service and its
// pods, and follows pods as they become ready, not ready, terminating and
// deleted. Three pods show the three ways of being meshed or not: web-0
// by annotation, web-1 by its native sidecar skiff-proxy, web-2 not at
// all (no identity); web-1 names its target port differently, so the
// controller gives it a slice of its own.
func TestAPIServerDiscovery(t *testing.T) {
	cp := kubetest.Start(t)
	ctx := t.Context()
	c := cp.Client
	const ns = "shop"
	cp.Node(t, "node-1", map[string]string{corev1.LabelTopologyZone: "zone-a"})
	cp.Namespace(t, ns)
	for _, sa := range []string{"web", "api"} {
		if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), AppProtocol: new("http")},
				{Name: "grpc", Port: 9090, TargetPort: intstr.FromInt32(9090), AppProtocol: new("kubernetes.io/h2c")},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(name, sa string, httpPort int32, annotations map[string]string, sidecar bool) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}, Annotations: annotations},
			Spec: corev1.PodSpec{
				NodeName:           "node-1",
				ServiceAccountName: sa,
				Containers: []corev1.Container{{
					Name: "web", Image: "skiff-demo",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: httpPort}, {Name: "grpc", ContainerPort: 9090}},
				}},
			},
		}
		if sidecar {
			p.Spec.InitContainers = []corev1.Container{{Name: kube.DefaultProxyContainer, Image: "skiff-proxy", RestartPolicy: new(corev1.ContainerRestartPolicyAlways)}}
		}
		if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("web-0", "web", 8080, map[string]string{kube.InjectAnnotation: kube.InjectEnabled}, false)
	pod("web-1", "web", 8081, nil, true)
	pod("web-2", "api", 8080, nil, false)

	src, err := kube.New(kube.Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(apiWait):
			t.Errorf("Run did not return %v after its context ended", apiWait)
		}
	})

	http := watch(t, src, "web.shop.svc.cluster.local:80")
	grpc := watch(t, src, "web.shop.svc.cluster.local:9090")
	http.until(t, "(no endpoints)")

	// The API server copies the node's topology labels to the pods bound
	// to it (the PodTopologyLabels admission plugin).
	const (
		web0 = "10.1.0.10:8080 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=http1 zone=zone-a pod=web-0 app:web topology.kubernetes.io/zone:zone-a\n"
		web1 = "10.1.0.11:8081 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=http1 zone=zone-a pod=web-1 app:web topology.kubernetes.io/zone:zone-a\n"
		web2 = "10.1.0.12:8080 proto=http1 zone=zone-a pod=web-2 app:web topology.kubernetes.io/zone:zone-a\n"
	)
	cp.SetPodReady(t, ns, "web-0", "10.1.0.10", true)
	http.until(t, web0)
	cp.SetPodReady(t, ns, "web-1", "10.1.0.11", true)
	cp.SetPodReady(t, ns, "web-2", "10.1.0.12", true)
	http.until(t, web0+web1+web2)
	grpc.until(t, `10.1.0.10:9090 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=h2c zone=zone-a pod=web-0 app:web topology.kubernetes.io/zone:zone-a
10.1.0.11:9090 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=h2c zone=zone-a pod=web-1 app:web topology.kubernetes.io/zone:zone-a
10.1.0.12:9090 proto=h2c zone=zone-a pod=web-2 app:web topology.kubernetes.io/zone:zone-a
`)

	// Its readiness probe fails: no new traffic.
	cp.SetPodReady(t, ns, "web-0", "10.1.0.10", false)
	http.until(t, web1+web2)

	// Deleted with a grace period, and no kubelet to end it: the pod
	// stays, terminating, and gets no new traffic either.
	if err := c.CoreV1().Pods(ns).Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	http.until(t, web2)
	// Gone for good: out of the slices too.
	forceDelete(t, cp, ns, "web-1")
	testwait.For(t, "10.1.0.11 out of every EndpointSlice", func() (bool, error) {
		return !inSlices(t, cp, ns, "10.1.0.11"), nil
	})
	forceDelete(t, cp, ns, "web-2")
	http.until(t, "(no endpoints)")

	cp.SetPodReady(t, ns, "web-0", "10.1.0.10", true)
	http.until(t, web0)

	if err := c.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	http.until(t, "(unknown)")
}

// until waits until the watch delivers a snapshot that shows as want,
// failing with the last one seen after apiWait.
func (w *watcher) until(t *testing.T, want string) discovery.Snapshot {
	t.Helper()
	deadline := time.After(apiWait)
	last := "(no snapshot)"
	for {
		select {
		case s := <-w.snaps:
			if last = show(s); last == want {
				return s
			}
		case err := <-w.err:
			t.Fatalf("Watch(%s) returned early: %v", w.auth, err)
		case <-deadline:
			t.Fatalf("Watch(%s): no snapshot within %v showing\n%s\nthe last:\n%s", w.auth, apiWait, want, last)
		}
	}
}

func forceDelete(t *testing.T, cp *kubetest.ControlPlane, ns, name string) {
	t.Helper()
	if err := cp.Client.CoreV1().Pods(ns).Delete(t.Context(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatalf("delete pod %s/%s: %v", ns, name, err)
	}
}

// inSlices says whether any EndpointSlice of ns lists addr.
func inSlices(t *testing.T, cp *kubetest.ControlPlane, ns, addr string) bool {
	t.Helper()
	list, err := cp.Client.DiscoveryV1().EndpointSlices(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sl := range list.Items {
		for _, ep := range sl.Endpoints {
			for _, a := range ep.Addresses {
				if a == addr {
					return true
				}
			}
		}
	}
	return false
}
