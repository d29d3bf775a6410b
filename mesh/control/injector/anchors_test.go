package injector

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

// anchorsPEM is a bundle as the file holds it; the copies do not parse
// the certificates, so any bytes do.
func anchorsPEM(name string) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte(name)}))
}

// writeFile replaces name atomically, as kubelet swaps a ConfigMap volume.
func writeFile(t *testing.T, name, content string) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// anchorsFixture is a fake cluster, the namespace informer on it, an
// anchors file and the Anchors copying it.
type anchorsFixture struct {
	client  *fake.Clientset
	ns      *KubeNamespaces
	file    string
	anchors *Anchors
}

func newAnchorsFixture(t *testing.T, objects ...runtime.Object) *anchorsFixture {
	t.Helper()
	f := &anchorsFixture{client: fake.NewClientset(objects...), file: filepath.Join(t.TempDir(), kubemeta.TrustAnchorsKey)}
	writeFile(t, f.file, anchorsPEM("anchor-1"))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f.ns = NewKubeNamespaces(ctx, f.client)
	testwait.For(t, "the namespace cache", func() (bool, error) { return f.ns.HasSynced(), nil })
	var err error
	f.anchors, err = NewAnchors(AnchorsConfig{Client: f.client, File: f.file, Namespaces: f.ns, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// server is the webhook publishing f's anchors.
func (f *anchorsFixture) server(t *testing.T) (*httptest.Server, *Handler) {
	t.Helper()
	h, err := New(Config{Inject: injectConfig, Namespaces: f.ns, Anchors: f.anchors, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

// configMapVerbs are the verbs of the calls made on ConfigMaps since the
// last ClearActions.
func (f *anchorsFixture) configMapVerbs() []string {
	var verbs []string
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource == "configmaps" {
			verbs = append(verbs, a.GetVerb()+" "+a.GetNamespace())
		}
	}
	return verbs
}

// copyIn reads the anchors copy in ns (nil when missing).
func (f *anchorsFixture) copyIn(t *testing.T, ns string) *corev1.ConfigMap {
	t.Helper()
	cm, err := f.client.CoreV1().ConfigMaps(ns).Get(context.Background(), kubemeta.ConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

func (f *anchorsFixture) count(result string) float64 {
	return testutil.ToFloat64(f.anchors.copies.WithLabelValues(result))
}

func configMap(ns string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: kubemeta.ConfigMap, Namespace: ns}, Data: data}
}

func TestEnsureCreatesWhenMissing(t *testing.T) {
	f := newAnchorsFixture(t, namespace("shop", nil))
	if err := f.anchors.Ensure(t.Context(), "shop"); err != nil {
		t.Fatal(err)
	}
	cm := f.copyIn(t, "shop")
	if cm == nil || cm.Data[kubemeta.TrustAnchorsKey] != anchorsPEM("anchor-1") {
		t.Fatalf("copy %+v", cm)
	}
	if cm.Labels[kubemeta.PartOfLabel] != kubemeta.PartOf || cm.Labels[kubemeta.ManagedByLabel] != kubemeta.Injector {
		t.Errorf("labels %v", cm.Labels)
	}
	if f.count(copyCreated) != 1 || f.count(copyUpdated) != 0 || f.count(copyFailed) != 0 {
		t.Errorf("created %v updated %v failed %v", f.count(copyCreated), f.count(copyUpdated), f.count(copyFailed))
	}
}

func TestEnsureUpdatesWhenDifferent(t *testing.T) {
	f := newAnchorsFixture(t, configMap("shop", map[string]string{kubemeta.TrustAnchorsKey: anchorsPEM("old"), "other": "kept"}))
	if err := f.anchors.Ensure(t.Context(), "shop"); err != nil {
		t.Fatal(err)
	}
	cm := f.copyIn(t, "shop")
	if cm.Data[kubemeta.TrustAnchorsKey] != anchorsPEM("anchor-1") || cm.Data["other"] != "kept" {
		t.Errorf("data %v: want the anchors replaced and the other key kept", cm.Data)
	}
	if f.count(copyUpdated) != 1 || f.count(copyCreated) != 0 {
		t.Errorf("updated %v created %v", f.count(copyUpdated), f.count(copyCreated))
	}
}

func TestEnsureUntouchedWhenEqual(t *testing.T) {
	f := newAnchorsFixture(t, configMap("shop", map[string]string{kubemeta.TrustAnchorsKey: anchorsPEM("anchor-1")}))
	f.client.ClearActions()
	if err := f.anchors.Ensure(t.Context(), "shop"); err != nil {
		t.Fatal(err)
	}
	if got := f.configMapVerbs(); len(got) != 1 || got[0] != "get shop" {
		t.Errorf("calls %q: want one get and no write", got)
	}
	// The original, in the control plane's namespace, is never written.
	f.client.ClearActions()
	if err := f.anchors.Ensure(t.Context(), kubemeta.Namespace); err != nil {
		t.Fatal(err)
	}
	if got := f.configMapVerbs(); len(got) != 0 {
		t.Errorf("calls %q in %s", got, kubemeta.Namespace)
	}
}

// TestWebhookEnsuresBeforeAnswering: the copy is in the namespace when the
// patch comes back, and a dry run writes nothing.
func TestWebhookEnsuresBeforeAnswering(t *testing.T) {
	f := newAnchorsFixture(t, namespace("shop", enabled), namespace("test", enabled))
	srv, _ := f.server(t)

	f.client.ClearActions()
	dry := review(t, webPod("test"), "test", admissionv1.Create)
	dry = []byte(strings.Replace(string(dry), `"operation":"CREATE"`, `"operation":"CREATE","dryRun":true`, 1))
	_, _, resp := post(t, srv, dry)
	if !resp.Allowed || resp.Patch == nil {
		t.Fatalf("dry run: %+v, want the patch", resp)
	}
	if got := f.configMapVerbs(); len(got) != 0 {
		t.Errorf("dry run: calls %q, want none", got)
	}

	_, _, resp = post(t, srv, review(t, webPod("shop"), "shop", admissionv1.Create))
	if !resp.Allowed || resp.Patch == nil {
		t.Fatalf("response %+v, want the patch", resp)
	}
	if cm := f.copyIn(t, "shop"); cm == nil || cm.Data[kubemeta.TrustAnchorsKey] != anchorsPEM("anchor-1") {
		t.Errorf("copy %+v", cm)
	}
	// A pod left alone needs no copy.
	f.client.ClearActions()
	plain := webPod("shop")
	plain.Annotations = map[string]string{kubemeta.InjectAnnotation: kubemeta.InjectDisabled}
	post(t, srv, review(t, plain, "shop", admissionv1.Create))
	if got := f.configMapVerbs(); len(got) != 0 {
		t.Errorf("a pod left alone: calls %q", got)
	}
}

// TestAnchorsChangePropagates: Run ensures the enabled namespaces at
// start, and a new anchors file reaches every copy: those of enabled
// namespaces and those ensured for a pod (opted in itself) elsewhere.
func TestAnchorsChangePropagates(t *testing.T) {
	f := newAnchorsFixture(t, namespace("shop", enabled), namespace("cart", enabled), namespace("plain", nil),
		namespace(kubemeta.Namespace, enabled), configMap(kubemeta.Namespace, map[string]string{kubemeta.TrustAnchorsKey: "the original"}))
	f.anchors.cfg.Interval = interval
	if err := f.anchors.Ensure(t.Context(), "plain"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.anchors.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	holds := func(want string) func() (bool, error) {
		return func() (bool, error) {
			for _, ns := range []string{"shop", "cart", "plain"} {
				if cm := f.copyIn(t, ns); cm == nil || cm.Data[kubemeta.TrustAnchorsKey] != want {
					return false, errors.New("namespace " + ns + " not yet")
				}
			}
			return true, nil
		}
	}
	testwait.For(t, "the copies at start", holds(anchorsPEM("anchor-1")))
	writeFile(t, f.file, anchorsPEM("anchor-1")+anchorsPEM("anchor-2"))
	testwait.For(t, "the rotated anchors in every copy", holds(anchorsPEM("anchor-1")+anchorsPEM("anchor-2")))
	if cm := f.copyIn(t, kubemeta.Namespace); cm.Data[kubemeta.TrustAnchorsKey] != "the original" {
		t.Errorf("the original was written: %v", cm.Data)
	}
	// A copy is counted once its write returned: after the test saw it.
	testwait.For(t, "three updates counted", func() (bool, error) { return f.count(copyUpdated) == 3, nil })
	if f.count(copyCreated) != 3 || f.count(copyUpdated) != 3 {
		t.Errorf("created %v updated %v, want 3 and 3", f.count(copyCreated), f.count(copyUpdated))
	}

	// A file that is not PEM certificates is not copied.
	writeFile(t, f.file, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	if changed, err := f.anchors.Check(t.Context()); changed || err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("Check of a key: %v, %v", changed, err)
	}
}

// interval is the tests' poll period.
const interval = 5 * time.Millisecond

func forbid(verb string) k8stesting.ReactionFunc {
	return func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("configmaps"), kubemeta.ConfigMap, errors.New(verb+" denied by this test"))
	}
}

// TestCreateFailureRefuses: a copy that is missing and cannot be created
// refuses the pod (it could never start); one that is there but cannot be
// updated lets it be injected. Both are counted as failed.
func TestCreateFailureRefuses(t *testing.T) {
	f := newAnchorsFixture(t, namespace("shop", enabled), namespace("cart", enabled),
		configMap("cart", map[string]string{kubemeta.TrustAnchorsKey: anchorsPEM("old")}))
	f.client.PrependReactor("create", "configmaps", forbid("create"))
	f.client.PrependReactor("update", "configmaps", forbid("update"))
	srv, h := f.server(t)

	_, _, resp := post(t, srv, review(t, webPod("shop"), "shop", admissionv1.Create))
	if resp.Allowed || resp.Patch != nil || resp.Result == nil ||
		!strings.Contains(resp.Result.Message, "namespace shop: the trust-anchor ConfigMap skiff-config is not in the namespace") ||
		!strings.Contains(resp.Result.Message, "create denied by this test") {
		t.Errorf("missing copy: %+v, want refused naming the ConfigMap and why", resp)
	}
	if v := testutil.ToFloat64(h.admissions.WithLabelValues(resultDenied)); v != 1 {
		t.Errorf("denied counted %v times", v)
	}

	_, _, resp = post(t, srv, review(t, webPod("cart"), "cart", admissionv1.Create))
	if !resp.Allowed || resp.Patch == nil {
		t.Errorf("stale copy: %+v, want injected", resp)
	}
	if f.count(copyFailed) != 2 {
		t.Errorf("failed counted %v times, want 2", f.count(copyFailed))
	}
}

// TestReadFailureRefuses: a copy that cannot be read may be missing, so
// the pod is refused.
func TestReadFailureRefuses(t *testing.T) {
	f := newAnchorsFixture(t, namespace("shop", enabled))
	f.client.PrependReactor("get", "configmaps", forbid("get"))
	err := f.anchors.Ensure(t.Context(), "shop")
	if !errors.Is(err, ErrAnchorsMissing) || !strings.Contains(err.Error(), "namespace shop") {
		t.Errorf("%v: want ErrAnchorsMissing naming the namespace", err)
	}
}

func TestNewAnchorsRejects(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	writeFile(t, bad, "not PEM")
	for _, tc := range []struct {
		cfg  AnchorsConfig
		want string
	}{
		{AnchorsConfig{File: bad}, "needs a Client and a File"},
		{AnchorsConfig{Client: fake.NewClientset(), File: filepath.Join(dir, "missing")}, "no such file"},
		{AnchorsConfig{Client: fake.NewClientset(), File: bad}, "want PEM certificates"},
	} {
		if _, err := NewAnchors(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
