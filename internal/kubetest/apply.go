package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// Decode reads a YAML stream (or one JSON document) of Kubernetes
// objects, as kubectl apply -f reads it: empty documents are skipped and
// a v1 List is its items.
func Decode(manifest []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var u unstructured.Unstructured
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode object %d: %w", len(objs)+1, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("decode object %d: %w", len(objs)+1, err)
			}
			for i := range list.Items {
				objs = append(objs, &list.Items[i])
			}
			continue
		}
		objs = append(objs, &u)
	}
}

// objects maps objects to their API resources, learning new kinds (a
// CRD's) from the API server's discovery as they appear.
type objects struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func (cp *ControlPlane) objects() (*objects, error) {
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return nil, err
	}
	return &objects{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cp.Client.Discovery()))}, nil
}

// resource is the client of obj's resource, in obj's namespace if it is
// namespaced.
func (o *objects) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := o.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		o.mapper.Reset() // a kind just defined by a CRD
		m, err = o.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk, obj.GetName(), err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		return o.dyn.Resource(m.Resource).Namespace(ns), nil
	}
	return o.dyn.Resource(m.Resource), nil
}

// Apply applies every object of manifest (see Decode) in order with
// server-side apply as fieldManager, as kubectl apply --server-side
// does: a conflict with another manager's fields is an error, not
// forced. It returns the objects as the API server stored them, or an
// error after callTimeout if a kind is still not served.
func (cp *ControlPlane) Apply(ctx context.Context, manifest []byte, fieldManager string) ([]*unstructured.Unstructured, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	objs, err := Decode(manifest)
	if err != nil {
		return nil, err
	}
	o, err := cp.objects()
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, obj := range objs {
		// A kind whose CRD was applied just before may take a moment to
		// be served.
		var got *unstructured.Unstructured
		err := waitFor(ctx, func(ctx context.Context) error {
			r, err := o.resource(obj)
			if err != nil {
				return err
			}
			got, err = r.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager})
			if err != nil && !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err) {
				return permanent{err}
			}
			return err
		})
		if err != nil {
			return out, fmt.Errorf("apply %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		out = append(out, got)
	}
	return out, nil
}

// Delete deletes every object of manifest (see Decode; only apiVersion,
// kind, namespace and name are read) in order, as kubectl delete
// --ignore-not-found does, and returns once none of them exists any more,
// or with an error naming what is left after callTimeout.
//
// A namespace is gone once the controller-manager has emptied it. A pod
// bound to a node stays terminating until its kubelet confirms that it
// has stopped; there is none here, so Delete ends the terminating pods of
// the namespaces it deletes (grace period 0), as the kubelet would.
func (cp *ControlPlane) Delete(ctx context.Context, manifest []byte) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	objs, err := Decode(manifest)
	if err != nil {
		return err
	}
	o, err := cp.objects()
	if err != nil {
		return err
	}
	var rs []dynamic.ResourceInterface
	for _, obj := range objs {
		r, err := o.resource(obj)
		if err != nil {
			return err
		}
		policy := metav1.DeletePropagationBackground
		if err := r.Delete(ctx, obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		rs = append(rs, r)
	}
	return waitFor(ctx, func(ctx context.Context) error {
		var left []string
		for _, obj := range objs {
			if obj.GetAPIVersion() == "v1" && obj.GetKind() == "Namespace" {
				if err := cp.endTerminating(ctx, obj.GetName()); err != nil {
					return err
				}
			}
		}
		for i, obj := range objs {
			_, err := rs[i].Get(ctx, obj.GetName(), metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return err
			default:
				left = append(left, obj.GetKind()+" "+obj.GetName())
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("still there: %s", strings.Join(left, ", "))
		}
		return nil
	})
}

// endTerminating deletes, with grace period 0, the pods of namespace that
// are being deleted: the kubelet's confirmation that they have stopped.
func (cp *ControlPlane) endTerminating(ctx context.Context, namespace string) error {
	pods, err := cp.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			continue
		}
		err := cp.Client.CoreV1().Pods(namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("end terminating pod %s/%s: %w", namespace, p.Name, err)
		}
	}
	return nil
}

// permanent marks an error waitFor does not retry.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Get reads obj (only apiVersion, kind, namespace and name are used) as
// the API server holds it; a missing object is an error for which
// apierrors.IsNotFound is true.
func (cp *ControlPlane) Get(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	o, err := cp.objects()
	if err != nil {
		return nil, err
	}
	r, err := o.resource(obj)
	if err != nil {
		return nil, err
	}
	return r.Get(ctx, obj.GetName(), metav1.GetOptions{})
}
