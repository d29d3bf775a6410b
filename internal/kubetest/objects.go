package kubetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// callTimeout bounds each helper: a failure bound, far above what a call
// takes.
const callTimeout = time.Minute

// Node creates a Node named name with labels (and the hostname label), as
// a kubelet would register it, with a Ready condition. Pods bound to it
// (Spec.NodeName) are what the EndpointSlice controller lists: it leaves
// out a pod whose node does not exist, and takes an endpoint's zone from
// its node's topology.kubernetes.io/zone label.
func (cp *ControlPlane) Node(t testing.TB, name string, labels map[string]string) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	l := maps.Clone(labels)
	if l == nil {
		l = map[string]string{}
	}
	l[corev1.LabelHostname] = name
	_, err := cp.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
	}, metav1.CreateOptions{})
	if err := ignoreExists(err); err != nil {
		t.Fatalf("kubetest: create node %s: %v", name, err)
	}
	// A patch, not an update: the controller-manager may have written
	// the node since it was created.
	now := metav1.Now()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubetest stands in for the kubelet", LastHeartbeatTime: now, LastTransitionTime: now,
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	node, err := cp.Client.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatalf("kubetest: node %s status: %v", name, err)
	}
	return node
}

// Namespace creates the namespace name and waits until the
// controller-manager has made its default ServiceAccount, without which
// the API server refuses pods that use it. The namespace is not deleted
// at the end: the control plane goes with the test.
func (cp *ControlPlane) Namespace(t testing.TB, name string) *corev1.Namespace {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	ns, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create namespace %s: %v", name, err)
	}
	err = waitFor(ctx, func(ctx context.Context) error {
		_, err := cp.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("kubetest: namespace %s: no default ServiceAccount: %v", name, err)
	}
	return ns
}

// Bind binds the pod to node through the binding subresource, as the
// scheduler (which does not run here) would: for pods a controller
// creates, such as a Deployment's. A test that creates a pod itself can
// set Spec.NodeName instead.
func (cp *ControlPlane) Bind(t testing.TB, namespace, name, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	err := cp.Client.CoreV1().Pods(namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: bind pod %s/%s to node %s: %v", namespace, name, node, err)
	}
}

// SetPodReady does, through the pod's status subresource, what a kubelet
// does once the pod's containers run: phase Running, the pod IP ip, and
// the conditions PodScheduled, Initialized, ContainersReady and Ready,
// the last two as ready says. The pod must already be bound to a node
// (Spec.NodeName, see Node); ip cannot change once set. With ready false
// the pod stays Running with its IP, as a pod whose readiness probe
// fails.
func (cp *ControlPlane) SetPodReady(t testing.TB, namespace, name, ip string, ready bool) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	pod, err := SetPodReady(ctx, cp, namespace, name, ip, ready)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return pod
}

// SetPodReady is ControlPlane.SetPodReady for callers that cannot fail a
// test (a goroutine, a feature step that returns an error).
func SetPodReady(ctx context.Context, cp *ControlPlane, namespace, name, ip string, ready bool) (*corev1.Pod, error) {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	cond := func(typ corev1.PodConditionType, s corev1.ConditionStatus) corev1.PodCondition {
		return corev1.PodCondition{Type: typ, Status: s, LastTransitionTime: now}
	}
	patch := map[string]any{"status": corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		StartTime: &now,
		// A strategic merge patch merges conditions by type.
		Conditions: []corev1.PodCondition{
			cond(corev1.PodScheduled, corev1.ConditionTrue),
			cond(corev1.PodInitialized, corev1.ConditionTrue),
			cond(corev1.ContainersReady, status),
			cond(corev1.PodReady, status),
		},
	}}
	body, err := json.Marshal(patch)
	if err != nil {
		return nil, err
	}
	pod, err := cp.Client.CoreV1().Pods(namespace).Patch(ctx, name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil {
		return nil, fmt.Errorf("patch the status of pod %s/%s: %w", namespace, name, err)
	}
	return pod, nil
}

// waitFor polls cond until it returns nil or ctx ends, returning cond's
// last error then; an error wrapped in permanent ends it at once.
func waitFor(ctx context.Context, cond func(context.Context) error) error {
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last: %w", context.Cause(ctx), err)
		case <-time.After(poll): // polling the API, not timing anything
		}
	}
}
