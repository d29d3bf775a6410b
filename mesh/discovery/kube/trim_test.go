package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestTrimKeepsWhatSnapshotsRead checks the cache's diet: no managed
// fields, annotations, status or container specs.
func TestTrimKeepsWhatSnapshotsRead(t *testing.T) {
	s := &Source{cfg: Config{ProxyContainer: DefaultProxyContainer}}
	meta := metav1.ObjectMeta{
		Name: "p", Namespace: "ns", ResourceVersion: "7",
		Labels:        map[string]string{"app": "web"},
		Annotations:   map[string]string{InjectAnnotation: InjectEnabled, "big": "blob"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
	}
	pod := &corev1.Pod{
		ObjectMeta: meta,
		Spec: corev1.PodSpec{
			ServiceAccountName: "web",
			Containers:         []corev1.Container{{Name: "app", Image: "x"}, {Name: DefaultProxyContainer, Image: "y"}},
		},
		Status: corev1.PodStatus{PodIP: "10.0.0.1"},
	}
	obj, err := s.trim(pod)
	if err != nil {
		t.Fatal(err)
	}
	p := obj.(*corev1.Pod)
	if p.ManagedFields != nil || len(p.Annotations) != 1 || p.Status.PodIP != "" ||
		len(p.Spec.Containers) != 1 || p.Spec.Containers[0].Image != "" ||
		p.Spec.ServiceAccountName != "web" || p.Labels["app"] != "web" || p.ResourceVersion != "7" {
		t.Errorf("trimmed pod: %+v", p)
	}
	again, _ := s.trim(p)
	if !samePodView(p, again.(*corev1.Pod)) {
		t.Error("trim is not idempotent")
	}

	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "web", "other": "x"}, Annotations: map[string]string{"a": "b"}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{"10.0.0.1", "10.0.0.2"},
			Hostname:  new("h"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "p", UID: "u", ResourceVersion: "9"},
		}},
	}
	obj, _ = s.trim(slice)
	sl := obj.(*discoveryv1.EndpointSlice)
	if len(sl.Labels) != 1 || sl.Annotations != nil || len(sl.Endpoints[0].Addresses) != 1 ||
		sl.Endpoints[0].Hostname != nil || sl.Endpoints[0].TargetRef.UID != "" || sl.Endpoints[0].TargetRef.Name != "p" {
		t.Errorf("trimmed slice: %+v", sl)
	}

	svc := &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}, Selector: map[string]string{"a": "b"}}}
	obj, _ = s.trim(svc)
	sv := obj.(*corev1.Service)
	if sv.Annotations != nil || sv.ManagedFields != nil || sv.Spec.Selector != nil || len(sv.Spec.Ports) != 1 {
		t.Errorf("trimmed service: %+v", sv)
	}
}
