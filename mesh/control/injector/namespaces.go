package injector

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-mesh/skiff/mesh/inject"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

// KubeNamespaces reads namespaces from an informer's cache, and from the
// API when the cache does not hold the namespace yet: one created just
// before its first pod may reach the webhook before the watch event
// reaches the cache. Make it with NewKubeNamespaces.
//
// Why an informer and not the AdmissionRequest: a Pod's review carries the
// Pod only, and the webhook configuration's namespaceSelector selects on
// labels, not on the skiff.dev/inject annotation; an informer answers from
// memory, inside the API server's webhook timeout, at every pod creation.
type KubeNamespaces struct {
	lister corelisters.NamespaceLister
	client kubernetes.Interface
	synced cache.InformerSynced
}

var (
	_ NamespaceGetter   = (*KubeNamespaces)(nil)
	_ EnabledNamespaces = (*KubeNamespaces)(nil)
)

// NewKubeNamespaces starts an informer on Namespaces under ctx. Its
// HasSynced says when the cache holds them all.
func NewKubeNamespaces(ctx context.Context, client kubernetes.Interface) *KubeNamespaces {
	f := informers.NewSharedInformerFactory(client, 0)
	inf := f.Core().V1().Namespaces()
	n := &KubeNamespaces{lister: inf.Lister(), client: client, synced: inf.Informer().HasSynced}
	f.Start(ctx.Done())
	return n
}

// HasSynced reports whether the cache holds every namespace.
func (n *KubeNamespaces) HasSynced() bool { return n.synced() }

// NamespaceAnnotations implements NamespaceGetter.
func (n *KubeNamespaces) NamespaceAnnotations(ctx context.Context, name string) (map[string]string, error) {
	ns, err := n.lister.Get(name)
	if apierrors.IsNotFound(err) {
		ns, err = n.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("namespace %q: %w", name, err)
	}
	return ns.Annotations, nil
}

// EnabledNamespaces implements EnabledNamespaces from the cache: the
// namespaces annotated skiff.dev/inject: enabled, except those never
// injected (kube-system, the control plane's).
func (n *KubeNamespaces) EnabledNamespaces() ([]string, error) {
	all, err := n.lister.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("namespaces: %w", err)
	}
	var out []string
	for _, ns := range all {
		if ns.Annotations[kubemeta.InjectAnnotation] == kubemeta.InjectEnabled && !inject.NeverInjected(ns.Name) {
			out = append(out, ns.Name)
		}
	}
	return out, nil
}
