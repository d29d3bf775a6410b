package kube

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trim is the informers' transform: it keeps of each object only what a
// snapshot reads, before the object is cached. It must be idempotent
// (client-go may apply it to an object already trimmed).
func (s *Source) trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return &corev1.Service{
			ObjectMeta: trimMeta(o.ObjectMeta, "", nil),
			Spec:       corev1.ServiceSpec{Type: o.Spec.Type, Ports: o.Spec.Ports},
		}, nil
	case *discoveryv1.EndpointSlice:
		out := &discoveryv1.EndpointSlice{
			ObjectMeta:  trimMeta(o.ObjectMeta, o.Labels[discoveryv1.LabelServiceName], nil),
			AddressType: o.AddressType,
			Ports:       o.Ports,
			Endpoints:   make([]discoveryv1.Endpoint, len(o.Endpoints)),
		}
		for i, ep := range o.Endpoints {
			out.Endpoints[i] = discoveryv1.Endpoint{
				Addresses:  ep.Addresses[:min(len(ep.Addresses), 1)],
				Conditions: ep.Conditions,
				TargetRef:  ep.TargetRef,
				Zone:       ep.Zone,
			}
			if r := ep.TargetRef; r != nil {
				out.Endpoints[i].TargetRef = &corev1.ObjectReference{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
			}
		}
		return out, nil
	case *corev1.Pod:
		var ann map[string]string
		if v, ok := o.Annotations[InjectAnnotation]; ok {
			ann = map[string]string{InjectAnnotation: v}
		}
		out := &corev1.Pod{
			ObjectMeta: trimMeta(o.ObjectMeta, "", ann),
			Spec: corev1.PodSpec{
				ServiceAccountName: o.Spec.ServiceAccountName,
				Containers:         s.proxyOnly(o.Spec.Containers),
				InitContainers:     s.proxyOnly(o.Spec.InitContainers),
			},
		}
		out.Labels = maps.Clone(o.Labels)
		return out, nil
	}
	return obj, nil // a tombstone, or a type this source does not cache
}

// trimMeta keeps identity and version; of labels only the Service name
// label when serviceName is set; annotations as given.
func trimMeta(m metav1.ObjectMeta, serviceName string, annotations map[string]string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp,
		Annotations:       annotations,
	}
	if serviceName != "" {
		out.Labels = map[string]string{discoveryv1.LabelServiceName: serviceName}
	}
	return out
}

// proxyOnly keeps the proxy container, by name only.
func (s *Source) proxyOnly(cs []corev1.Container) []corev1.Container {
	if i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == s.cfg.ProxyContainer }); i >= 0 {
		return []corev1.Container{{Name: cs[i].Name}}
	}
	return nil
}

// samePodView says two trimmed pods look the same to a snapshot.
func samePodView(a, b *corev1.Pod) bool {
	return a.Spec.ServiceAccountName == b.Spec.ServiceAccountName &&
		maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		len(a.Spec.Containers) == len(b.Spec.Containers) &&
		len(a.Spec.InitContainers) == len(b.Spec.InitContainers)
}
