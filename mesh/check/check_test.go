package check_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-mesh/skiff/mesh/check"
	"github.com/skiff-mesh/skiff/mesh/install"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// epoch is when the install's certificates were made; checks run a day
// later unless a test moves the clock.
var epoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

var strict = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{Yaml: true, Strict: true})

// decode reads a YAML stream: client-go's kinds typed, the rest (CRDs)
// unstructured.
func decode(t *testing.T, data []byte) (typed []runtime.Object, crds []*unstructured.Unstructured) {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return typed, crds
		}
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatal(err)
		}
		if len(u.Object) == 0 {
			continue // a comment
		}
		if u.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, u)
			continue
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		typed = append(typed, obj)
	}
}

// cluster is what the fake clients are seeded with.
type cluster struct {
	objs      []runtime.Object
	crds      []*unstructured.Unstructured
	version   string
	denied    map[string]bool // resources SelfSubjectAccessReview refuses
	apiBroken bool
}

// installed is a healthy cluster: skiff install's rendering (YAML, as
// kubectl would apply it) with the status the cluster's controllers
// would give it, plus testdata/cluster.yaml.
func installed(t *testing.T) *cluster {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 14)
	objs, err := install.Render(install.Config{Version: "v0.1.0", Now: func() time.Time { return epoch }})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := install.Write(&buf, objs, install.FormatYAML); err != nil {
		t.Fatal(err)
	}
	c := &cluster{version: "v1.37.2"}
	c.objs, c.crds = decode(t, buf.Bytes())
	for _, u := range c.crds {
		establish(u)
	}
	for _, o := range c.objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			d.Generation, d.Status.ObservedGeneration = 1, 1
			d.Status.Replicas, d.Status.ReadyReplicas, d.Status.UpdatedReplicas, d.Status.AvailableReplicas = 1, 1, 1, 1
		}
	}
	data, err := os.ReadFile(filepath.Join("testdata", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs2, crds2 := decode(t, data)
	c.objs, c.crds = append(c.objs, objs2...), append(c.crds, crds2...)
	return c
}

func establish(u *unstructured.Unstructured) {
	_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{"type": "Established", "status": "True"}}, "status", "conditions")
}

// empty is a cluster with the Gateway API CRDs and nothing of Skiff's.
func empty(t *testing.T) *cluster {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{version: "v1.37.2"}
	_, c.crds = decode(t, data)
	return c
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func (c *cluster) run(t *testing.T, cfg check.Config) *check.Report {
	t.Helper()
	client := fake.NewClientset(c.objs...)
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: c.version}
	if c.apiBroken {
		client.PrependReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
		})
	}
	client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		r.Status.Allowed = !c.denied[r.Spec.ResourceAttributes.Resource]
		return true, r, nil
	})
	var crds []runtime.Object
	for _, u := range c.crds {
		crds = append(crds, u)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{crdGVR: "CustomResourceDefinitionList"}, crds...)
	cfg.Client, cfg.Dynamic = client, dyn
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return epoch.Add(24 * time.Hour) }
	}
	r, err := check.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func table(t *testing.T, r *check.Report) string {
	t.Helper()
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./mesh/check -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test ./mesh/check -update, then review the diff):\n%s", path, got)
	}
}

// failed returns the failed checks as "description: error" lines.
func failed(r *check.Report) []string {
	var out []string
	for _, cat := range r.Categories {
		for _, ch := range cat.Checks {
			if ch.Result != check.Success {
				out = append(out, ch.Description+": "+ch.Error)
			}
		}
	}
	return out
}

// expectFailures asserts that exactly the failures matching each of want
// are reported (each want a set of substrings of one failure line).
func expectFailures(t *testing.T, r *check.Report, want ...[]string) {
	t.Helper()
	got := failed(r)
	if r.Success != (len(want) == 0) {
		t.Errorf("Success %v with %d failures", r.Success, len(got))
	}
	if len(got) != len(want) {
		t.Fatalf("%d failures, want %d:\n%s\n\n%s", len(got), len(want), strings.Join(got, "\n"), table(t, r))
	}
	for i, w := range want {
		for _, s := range w {
			if !strings.Contains(got[i], s) {
				t.Errorf("failure %q does not say %q", got[i], s)
			}
		}
	}
}

func TestHealthy(t *testing.T) {
	r := installed(t).run(t, check.Config{Proxy: true})
	expectFailures(t, r)
	golden(t, "healthy.txt", table(t, r))
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back check.Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || !back.Success || len(back.Categories) != len(r.Categories) {
		t.Errorf("JSON does not read back: %v\n%s", err, b.String())
	}
}

func TestMissingCRD(t *testing.T) {
	c := installed(t)
	var keep []*unstructured.Unstructured
	for _, u := range c.crds {
		if !strings.HasPrefix(u.GetName(), "xbackendtrafficpolicies.") && !strings.HasPrefix(u.GetName(), "circuitbreakers.") {
			keep = append(keep, u)
		}
	}
	c.crds = keep
	expectFailures(t, c.run(t, check.Config{}),
		[]string{"circuitbreakers.policy.skiff.dev", "not found", "skiff install --crds"},
		[]string{"xbackendtrafficpolicies.gateway.networking.x-k8s.io", "not found", "Gateway API v1.6.3"})
}

func TestCRDNotEstablished(t *testing.T) {
	c := installed(t)
	for _, u := range c.crds {
		if strings.HasPrefix(u.GetName(), "httproutes.") {
			unstructured.RemoveNestedField(u.Object, "status")
		}
	}
	expectFailures(t, c.run(t, check.Config{}), []string{"httproutes.gateway.networking.k8s.io", "not established"})
}

// Forty days on, the 90-day issuer expires within 60 days; a hundred
// days on it has expired (and the anchors and webhook certificates, of
// 365 days, are still fine).
func TestIssuerExpiry(t *testing.T) {
	c := installed(t)
	soon := c.run(t, check.Config{Now: func() time.Time { return epoch.Add(40 * 24 * time.Hour) }})
	expectFailures(t, soon, []string{`identity issuer "Skiff issuer cluster.local 2026-11-30`, "is valid until 2027-03-01", "expires on 2027-03-01", "in 50 days", "rotate"})
	late := c.run(t, check.Config{Now: func() time.Time { return epoch.Add(100 * 24 * time.Hour) }})
	expectFailures(t, late, []string{"identity issuer", "expired on 2027-03-01"})
}

func TestWebhookCAMismatch(t *testing.T) {
	c := installed(t)
	cryptotest.SetGlobalRandom(t, 15) // another rendering: another webhook CA
	objs, err := install.Render(install.Config{Version: "v0.1.0", Now: func() time.Time { return epoch }})
	if err != nil {
		t.Fatal(err)
	}
	var otherCA []byte
	for _, o := range objs {
		if s, ok := o.(*corev1.Secret); ok && s.Name == kubemeta.Injector {
			otherCA = s.Data[install.CAKey]
		}
	}
	for _, o := range c.objs {
		if m, ok := o.(*admissionv1.MutatingWebhookConfiguration); ok {
			m.Webhooks[0].ClientConfig.CABundle = otherCA
		}
	}
	expectFailures(t, c.run(t, check.Config{}), []string{"CA bundle verifies", "webhook inject.skiff.dev", "does not verify the certificate of Secret skiff/skiff-injector", "re-apply skiff install"})
}

func TestWebhookNoEndpoints(t *testing.T) {
	c := installed(t)
	var keep []runtime.Object
	for _, o := range c.objs {
		if _, ok := o.(interface{ GetAddressType() string }); ok {
			continue
		}
		if m, ok := o.(interface{ GetName() string }); ok && strings.HasPrefix(m.GetName(), "skiff-injector-") {
			continue
		}
		keep = append(keep, o)
	}
	c.objs = keep
	expectFailures(t, c.run(t, check.Config{}), []string{"Service skiff-injector has ready endpoints", "none"})
}

func TestControlPlaneNotReady(t *testing.T) {
	c := installed(t)
	for _, o := range c.objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			d.Status.ReadyReplicas, d.Status.AvailableReplicas = 0, 0
		}
	}
	expectFailures(t, c.run(t, check.Config{}), []string{"Deployment skiff-controller is ready", "0 of 1 replicas ready", "kubectl -n skiff describe deployment skiff-controller"})
}

func TestOldProxy(t *testing.T) {
	c := installed(t)
	for _, o := range c.objs {
		if p, ok := o.(*corev1.Pod); ok && p.Name == "web-7d4b9c-x2x9q" {
			p.Annotations[kubemeta.InjectedAnnotation] = "v0.0.9"
			p.Status.InitContainerStatuses[0].Ready = false
		}
	}
	r := c.run(t, check.Config{Proxy: true})
	golden(t, "old-proxy.txt", table(t, r))
	expectFailures(t, r,
		[]string{"every injected proxy is version v0.1.0", "1 of 1 differ", "shop/web-7d4b9c-x2x9q (v0.0.9)", "rollout restart"},
		[]string{"every injected proxy is ready", "skiff-proxy container is not ready in shop/web-7d4b9c-x2x9q"})
}

// A pod in an enabled namespace without a proxy (created while the
// injector was down, with failurePolicy Ignore) is named.
func TestMissingSidecar(t *testing.T) {
	c := installed(t)
	c.objs = append(c.objs, &corev1.Pod{
		TypeMeta:   pod().TypeMeta,
		ObjectMeta: pod().ObjectMeta,
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	})
	expectFailures(t, c.run(t, check.Config{Proxy: true}), []string{"every pod that asks for the sidecar has it", "no proxy in shop/api-0", "skiff.dev/inject: enabled"})
}

func pod() *corev1.Pod {
	p := &corev1.Pod{}
	p.APIVersion, p.Kind = "v1", "Pod"
	p.Name, p.Namespace = "api-0", "shop"
	return p
}

func TestAPIUnreachable(t *testing.T) {
	c := installed(t)
	c.apiBroken = true
	r := c.run(t, check.Config{})
	expectFailures(t, r, []string{"can reach the Kubernetes API", "connection refused", "--kubeconfig"})
	if len(r.Categories) != 1 {
		t.Errorf("%d categories after an unreachable API, want 1", len(r.Categories))
	}
}

func TestPre(t *testing.T) {
	c := empty(t)
	r := c.run(t, check.Config{Pre: true})
	expectFailures(t, r)
	golden(t, "pre.txt", table(t, r))

	c.denied = map[string]bool{"mutatingwebhookconfigurations": true}
	c.version = "v1.28.4"
	expectFailures(t, c.run(t, check.Config{Pre: true}),
		[]string{"1.29.0 or newer", "v1.28.4", "native sidecar"},
		[]string{"can create MutatingWebhookConfigurations", "not allowed"})

	expectFailures(t, installed(t).run(t, check.Config{Pre: true}),
		[]string{"no Skiff install exists", "Namespace skiff", "MutatingWebhookConfiguration skiff-injector", "ClusterRole skiff-controller"})
}
