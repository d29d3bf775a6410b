package install_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/install"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// epoch is the fixed clock of the golden renderings.
var epoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return epoch }

// render renders the default install with a fixed clock and a fixed
// randomness source, so its bytes are the same on every run (of one Go
// version: crypto may use its randomness differently in another).
func render(t *testing.T, cfg install.Config) []runtime.Object {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 14)
	if cfg.Version == "" {
		cfg.Version = "v0.1.0"
	}
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	objs, err := install.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func encode(t *testing.T, objs []runtime.Object, format string, header ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := install.Write(&buf, objs, format, header...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// golden compares got with testdata/name, or writes it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./mesh/install -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the rendering differs from %s: run go test ./mesh/install -update and review the diff (a new Go version may use crypto randomness differently: then only the PEM blocks change)", path)
	}
}

func TestGolden(t *testing.T) {
	golden(t, "install.yaml", encode(t, render(t, install.Config{}), install.FormatYAML, "Skiff v0.1.0, rendered by skiff install"))
	golden(t, "install.json", encode(t, render(t, install.Config{}), install.FormatJSON))
	golden(t, "install-fail-registry.yaml", encode(t, render(t, install.Config{
		Registry: "registry.example:5000/mesh/", FailurePolicy: admissionv1.Fail, TrustDomain: "mesh.example",
	}), install.FormatYAML))
	golden(t, "crds.yaml", encode(t, install.CRDs(), install.FormatYAML))
	golden(t, "uninstall.yaml", encode(t, install.Uninstall(), install.FormatYAML))
}

// The same clock and randomness give the same bytes.
func TestDeterministic(t *testing.T) {
	a := encode(t, render(t, install.Config{}), install.FormatYAML)
	b := encode(t, render(t, install.Config{}), install.FormatYAML)
	if !bytes.Equal(a, b) {
		t.Fatal("two renderings with the same clock and seed differ")
	}
}

// strict decodes YAML into client-go's typed objects, refusing unknown
// and duplicate fields.
var strict = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{Yaml: true, Strict: true})

// decode reads a YAML stream back into typed objects (unstructured for
// kinds client-go's scheme does not know), strictly.
func decode(t *testing.T, data []byte) []runtime.Object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 || bytes.HasPrefix(bytes.TrimSpace(doc), []byte("#")) && !bytes.Contains(doc, []byte("\nkind:")) {
			continue
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			u := &unstructured.Unstructured{}
			if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatal(err)
			}
			obj = u
		} else if err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}

func find[T runtime.Object](t *testing.T, objs []runtime.Object, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.(T); ok {
			if m, ok := o.(interface{ GetName() string }); ok && m.GetName() == name {
				return v
			}
		}
	}
	var zero T
	t.Fatalf("no %T %q in the install", zero, name)
	return zero
}

// The install, read back as kubectl would, holds what it promises.
func TestRenderedInstall(t *testing.T) {
	objs := decode(t, encode(t, render(t, install.Config{}), install.FormatYAML, "header"))

	var kinds []string
	for _, o := range objs {
		m := o.(interface {
			GetName() string
			GetNamespace() string
			GetLabels() map[string]string
		})
		kind := o.GetObjectKind().GroupVersionKind().Kind
		kinds = append(kinds, kind)
		if m.GetLabels()[kubemeta.PartOfLabel] != kubemeta.PartOf {
			t.Errorf("%s %s: no %s=%s label", kind, m.GetName(), kubemeta.PartOfLabel, kubemeta.PartOf)
		}
		if ns := m.GetNamespace(); ns != "" && ns != kubemeta.Namespace {
			t.Errorf("%s %s in namespace %q", kind, m.GetName(), ns)
		}
	}
	if kinds[0] != "Namespace" || kinds[len(kinds)-1] != "MutatingWebhookConfiguration" {
		t.Errorf("order %v: want the Namespace first and the webhook configuration last", kinds)
	}

	ns := find[*corev1.Namespace](t, objs, kubemeta.Namespace)
	if ns.Annotations[kubemeta.InjectAnnotation] != kubemeta.InjectDisabled {
		t.Errorf("namespace annotations %v: want %s: disabled", ns.Annotations, kubemeta.InjectAnnotation)
	}

	// RBAC: no wildcard; nothing but reads, TokenReview creation and the
	// injector's copies of the anchors ConfigMap (by name but for create,
	// and never listed).
	cr := find[*rbacv1.ClusterRole](t, objs, kubemeta.Controller)
	for _, r := range cr.Rules {
		for _, s := range slices.Concat(r.APIGroups, r.Resources, r.Verbs, r.ResourceNames) {
			if strings.Contains(s, "*") {
				t.Errorf("rule %v has a wildcard", r)
			}
		}
		for _, v := range r.Verbs {
			configMaps := slices.Equal(r.Resources, []string{"configmaps"})
			switch {
			case configMaps && v == "create" && len(r.ResourceNames) == 0:
			case configMaps && (v == "get" || v == "update") && slices.Equal(r.ResourceNames, []string{kubemeta.ConfigMap}):
			case configMaps:
				t.Errorf("rule %v grants %s on ConfigMaps", r, v)
			case v == "create" && slices.Equal(r.Resources, []string{"tokenreviews"}):
			case v != "get" && v != "list" && v != "watch":
				t.Errorf("rule %v grants %s", r, v)
			}
		}
	}

	// The identity: the issuer chains to the anchors of the ConfigMap.
	cm := find[*corev1.ConfigMap](t, objs, kubemeta.ConfigMap)
	bundle, err := spiffe.ParseBundlePEM(kubemeta.DefaultTrustDomain, []byte(cm.Data[kubemeta.TrustAnchorsKey]))
	if err != nil {
		t.Fatal(err)
	}
	issuerSecret := find[*corev1.Secret](t, objs, kubemeta.IssuerSecret)
	if issuerSecret.Type != corev1.SecretTypeTLS {
		t.Errorf("issuer Secret type %q", issuerSecret.Type)
	}
	issuer, err := ca.ParseKeyPairPEM(issuerSecret.Data[corev1.TLSCertKey], issuerSecret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.New(ca.Config{Issuer: issuer, Bundle: bundle, Tokens: noTokens{}, Now: fixedNow}); err != nil {
		t.Errorf("the installed issuer and anchors do not make a CA: %v", err)
	}

	// The webhook: its CA bundle verifies the serving certificate for the
	// Service's DNS name, and it is the Secret's ca.crt.
	mwc := find[*admissionv1.MutatingWebhookConfiguration](t, objs, kubemeta.Injector)
	serving := find[*corev1.Secret](t, objs, kubemeta.Injector)
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(mwc.Webhooks))
	}
	for _, w := range mwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, serving.Data[install.CAKey]) {
			t.Errorf("webhook %s: caBundle is not the serving Secret's %s", w.Name, install.CAKey)
		}
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Name != kubemeta.Injector || *w.ClientConfig.Service.Path != kubemeta.WebhookPath {
			t.Errorf("webhook %s: clientConfig %+v", w.Name, w.ClientConfig)
		}
		if *w.SideEffects != admissionv1.SideEffectClassNoneOnDryRun || *w.FailurePolicy != admissionv1.Ignore || !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) || w.TimeoutSeconds == nil {
			t.Errorf("webhook %s: sideEffects %v failurePolicy %v versions %v timeout %v", w.Name, *w.SideEffects, *w.FailurePolicy, w.AdmissionReviewVersions, w.TimeoutSeconds)
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("caBundle holds no certificate")
	}
	block, _ := pem.Decode(serving.Data[corev1.TLSCertKey])
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: kubemeta.Injector + "." + kubemeta.Namespace + ".svc", CurrentTime: epoch}); err != nil {
		t.Errorf("serving certificate: %v", err)
	}

	// The Deployment: non-root, read-only, no capabilities, probed.
	d := find[*appsv1.Deployment](t, objs, kubemeta.Controller)
	if got := d.Labels["app.kubernetes.io/version"]; got != "v0.1.0" {
		t.Errorf("Deployment version label %q", got)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s: security context %+v", c.Name, sc)
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: probes or resources missing", c.Name)
		}
		if c.Image != kubemeta.DefaultRegistry+"/"+kubemeta.ControllerImage+":v0.1.0" {
			t.Errorf("container %s: image %s", c.Name, c.Image)
		}
	}
}

type noTokens struct{}

func (noTokens) Verify(_ context.Context, _ string) (string, error) {
	return "", errors.New("no tokens in this test")
}
