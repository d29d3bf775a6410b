package kube_test

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/kube"
)

// The control plane runs the source next to its servers (an errgroup in
// practice) and watches authorities through discovery.Source. A fake
// clientset stands in for the cluster here.
func Example() {
	client := fake.NewClientset(
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080))}},
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{"10.0.0.1"},
				Conditions: discoveryv1.EndpointConditions{Ready: new(true)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "web-0"},
			}},
		},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Annotations: map[string]string{kube.InjectAnnotation: kube.InjectEnabled}},
			Spec:       corev1.PodSpec{ServiceAccountName: "web"},
		},
	)
	src, err := kube.New(kube.Config{Client: client})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- src.Run(ctx) }()

	var watcher discovery.Source = src // what the control plane's services hold
	_ = watcher.Watch(ctx, "web.shop.svc.cluster.local:80", func(s discovery.Snapshot) {
		for _, e := range s.Endpoints {
			fmt.Println(e.Addr, e.Identity)
		}
		cancel()
	})
	fmt.Println("Run:", <-done)
	// Output:
	// 10.0.0.1:8080 spiffe://cluster.local/ns/shop/sa/web
	// Run: <nil>
}
