package injector_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-mesh/skiff/internal/kubetest"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/control/injector"
	"github.com/skiff-mesh/skiff/mesh/install"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

// TestAPIServerWebhook has a real API server call the injector: the
// install's MutatingWebhookConfiguration (its rules and selectors as
// rendered), pointed through clientConfig.url at the real handler on an
// httptest TLS server on 127.0.0.1. A pod created in a namespace that
// opts in is stored with the sidecar, which the API server's own
// validation accepts; a pod elsewhere is left alone.
func TestAPIServerWebhook(t *testing.T) {
	cp := kubetest.Start(t)
	ctx := t.Context()
	c := cp.Client

	nsCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	namespaces := injector.NewKubeNamespaces(nsCtx, c)
	handler, err := injector.New(injector.Config{Namespaces: namespaces})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(kubemeta.WebhookPath, handler)
	srv := httptest.NewTLSServer(mux) // on 127.0.0.1, a port the kernel chose
	t.Cleanup(srv.Close)
	testwait.For(t, "the injector's namespace cache to sync", func() (bool, error) { return namespaces.HasSynced(), nil })

	objs, err := install.Render(install.Config{Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	var whc *admissionv1.MutatingWebhookConfiguration
	for _, o := range objs {
		if w, ok := o.(*admissionv1.MutatingWebhookConfiguration); ok {
			whc = w.DeepCopy()
		}
	}
	if whc == nil {
		t.Fatal("the install renders no MutatingWebhookConfiguration")
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	fail := admissionv1.Fail // a call that fails shows as an error, not as a pod without its sidecar
	for i := range whc.Webhooks {
		whc.Webhooks[i].ClientConfig = admissionv1.WebhookClientConfig{URL: new(srv.URL + kubemeta.WebhookPath), CABundle: caPEM}
		whc.Webhooks[i].FailurePolicy = &fail
	}
	if _, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, whc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cp.Namespace(t, "shop")
	cp.Namespace(t, "plain")
	annotate := []byte(`{"metadata":{"annotations":{"` + kubemeta.InjectAnnotation + `":"` + kubemeta.InjectEnabled + `"}}}`)
	if _, err := c.CoreV1().Namespaces().Patch(ctx, "shop", types.MergePatchType, annotate, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(ns string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: ns, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "web", Image: "skiff-demo", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}}},
		}
	}

	// The API server learns of the new webhook configuration, and the
	// injector of the namespace's annotation, through their caches: dry
	// runs (the webhook has no side effects) until both have.
	testwait.For(t, "a dry-run pod in shop to come back injected", func() (bool, error) {
		got, err := c.CoreV1().Pods("shop").Create(ctx, pod("shop"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		return injected(got) == nil, injected(got)
	})

	got, err := c.CoreV1().Pods("shop").Create(ctx, pod("shop"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create a pod in shop: %v", err)
	}
	if err := injected(got); err != nil {
		t.Errorf("the pod stored in shop: %v", err)
	}
	if v := got.Annotations[kubemeta.InjectedAnnotation]; v == "" {
		t.Errorf("the injected pod has no %s annotation", kubemeta.InjectedAnnotation)
	}
	if i := slices.IndexFunc(got.Spec.Containers, func(c corev1.Container) bool { return c.Name == "web" }); i < 0 {
		t.Errorf("the workload container is gone: %+v", got.Spec.Containers)
	}

	plain, err := c.CoreV1().Pods("plain").Create(ctx, pod("plain"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create a pod in plain: %v", err)
	}
	if injected(plain) == nil || slices.ContainsFunc(plain.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == kubemeta.ProxyContainer }) {
		t.Errorf("a pod in a namespace that did not opt in was injected: %+v", plain.Spec.InitContainers)
	}
}

// injected says what the pod lacks of the sidecar: skiff-init then
// skiff-proxy as a native sidecar (restartPolicy Always), and the
// projected token for the identity audience.
func injected(pod *corev1.Pod) error {
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	i := slices.Index(names, kubemeta.ProxyContainer)
	switch {
	case i < 0:
		return errors.New("no " + kubemeta.ProxyContainer + " init container")
	case pod.Spec.InitContainers[i].RestartPolicy == nil || *pod.Spec.InitContainers[i].RestartPolicy != corev1.ContainerRestartPolicyAlways:
		return errors.New(kubemeta.ProxyContainer + " is not a native sidecar (restartPolicy Always)")
	case slices.Index(names, kubemeta.InitContainer) < 0 || slices.Index(names, kubemeta.InitContainer) > i:
		return errors.New(kubemeta.InitContainer + " does not run before " + kubemeta.ProxyContainer)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name != kubemeta.TokenVolume || v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil && s.ServiceAccountToken.Audience == kubemeta.TokenAudience {
				return nil
			}
		}
	}
	return errors.New("no projected token for audience " + kubemeta.TokenAudience + " in volume " + kubemeta.TokenVolume)
}
