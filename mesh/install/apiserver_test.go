package install_test

import (
	"bytes"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-mesh/skiff/internal/kubetest"
	"github.com/skiff-mesh/skiff/mesh/install"
)

// TestAPIServerInstall applies the rendered install to a real API server
// with server-side apply, as `skiff install | kubectl apply
// --server-side -f -` does: every object is accepted (the API server
// validates each against its schema, the CRD included); applying it
// again, as JSON this time, changes nothing; and what skiff uninstall
// renders removes every object the install made.
func TestAPIServerInstall(t *testing.T) {
	cp := kubetest.Start(t)
	ctx := t.Context()
	objs, err := install.Render(install.Config{Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	render := func(objs []runtime.Object, format string) []byte {
		t.Helper()
		var b bytes.Buffer
		if err := install.Write(&b, objs, format); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}

	applied, err := cp.Apply(ctx, render(objs, install.FormatYAML), "skiff")
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(objs) {
		t.Fatalf("applied %d objects, rendered %d", len(applied), len(objs))
	}

	again, err := cp.Apply(ctx, render(objs, install.FormatJSON), "skiff")
	if err != nil {
		t.Fatalf("applying the same install again, as JSON: %v", err)
	}
	for i, obj := range again {
		// Controllers write the status of a CRD and of a Deployment, which
		// moves their resourceVersion; their generation moves only with
		// their spec. Nothing writes the other objects.
		if g, first := obj.GetGeneration(), applied[i].GetGeneration(); first > 0 {
			if g != first {
				t.Errorf("%s: applying the same install again changed its spec (generation %d, then %d)", name(obj), first, g)
			}
			continue
		}
		if rv, first := obj.GetResourceVersion(), applied[i].GetResourceVersion(); rv != first {
			t.Errorf("%s: applying the same install again changed it (resourceVersion %s, then %s)", name(obj), first, rv)
		}
	}

	if err := cp.Delete(ctx, render(install.Uninstall(), install.FormatYAML)); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	for _, obj := range applied {
		_, err := cp.Get(ctx, obj)
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s is left after the uninstall: %v", name(obj), err)
		}
	}
}

func name(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", obj.GetKind(), ns, obj.GetName())
	}
	return obj.GetKind() + " " + obj.GetName()
}
