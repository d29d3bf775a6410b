// Package kubetest runs a real Kubernetes control plane for tests, without
// Docker or a kubelet: etcd, kube-apiserver and kube-controller-manager as
// processes on 127.0.0.1, built from source by ci/kube/build.sh into a
// version-keyed cache (docs/kubernetes.md, "The test API server").
//
// [Start] brings one up for a test and tears it down when the test ends:
//
//	func TestSomething(t *testing.T) {
//		cp := kubetest.Start(t) // skips when the binaries are not built
//		cp.Node(t, "node-1", nil)
//		ns := cp.Namespace(t, "shop")
//		pod := ... // created with Spec.NodeName "node-1"
//		cp.SetPodReady(t, pod, "10.1.0.10", true)
//		// the controller-manager now lists 10.1.0.10 in the
//		// Service's EndpointSlices
//	}
//
// # Binaries
//
// Start looks for etcd, kube-apiserver and kube-controller-manager in
// $SKIFF_KUBE_BIN, or else in the cache ci/kube/build.sh fills,
// ${SKIFF_KUBE_CACHE:-$HOME/.cache/skiff}/k8s-<Version>/bin. When they are
// missing the test is skipped with one line saying how to build them;
// with SKIFF_KUBE_REQUIRED=1 (make test-kube) it fails instead.
//
// # What runs
//
// etcd keeps its data in the test's temporary directory. kube-apiserver
// runs with envtest-like flags: a serving certificate and a client CA made
// here, a ServiceAccount signing key pair and issuer (so the TokenRequest
// and TokenReview APIs work), RBAC authorization, and no endpoint
// reconciler. kube-controller-manager runs every controller but the node
// lifecycle controller: with no kubelet to renew them, nodes would turn
// NotReady and their pods unready after the grace period. A test drives
// pods the way a kubelet would, through their status ([ControlPlane.SetPodReady]).
//
// Every port is chosen by the kernel; every process runs in its own
// process group, which is killed when the test ends (and, through the
// parent-death signal, when the test binary dies). On failure the tail of
// each process's log is printed.
package kubetest
