package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/inject"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

var injectConfig = inject.Config{Version: "v0.9.0", TrustDomain: "example.org"}

// server is a webhook over TLS reading namespaces from a fake cluster
// through the informer.
func server(t *testing.T, objects ...runtime.Object) (*httptest.Server, *Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns := NewKubeNamespaces(ctx, fake.NewClientset(objects...))
	testwait.For(t, "the namespace cache", func() (bool, error) { return ns.HasSynced(), nil })
	h, err := New(Config{Inject: injectConfig, Namespaces: ns, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

func namespace(name string, annotations map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
}

var enabled = map[string]string{kubemeta.InjectAnnotation: kubemeta.InjectEnabled}

// webPod is a ReplicaSet's pod as the API server passes it to mutating
// webhooks: generateName, no name, its ServiceAccount defaulted.
func webPod(ns string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-7d4b9c-", Namespace: ns, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web",
			InitContainers:     []corev1.Container{{Name: "migrate", Image: "example/migrate:1"}},
			Containers: []corev1.Container{{
				Name: "web", Image: "example/web:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}},
			}},
		},
	}
}

func review(t *testing.T, obj any, ns string, op admissionv1.Operation) []byte {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("705ab4f5-6393-11e8-b7cc-42010a800002"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Operation: op,
			Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body and decodes the review it gets back; a non-200 status
// is returned with a nil response.
func post(t *testing.T, srv *httptest.Server, body []byte) (int, string, *admissionv1.AdmissionResponse) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+kubemeta.WebhookPath+"?timeout=10s", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, buf.String(), nil
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		t.Fatalf("response %s: %v", buf.String(), err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil || out.Response.UID != "705ab4f5-6393-11e8-b7cc-42010a800002" {
		t.Fatalf("response %s: want an AdmissionReview v1 with the request's uid", buf.String())
	}
	return resp.StatusCode, buf.String(), out.Response
}

// TestInjectsLikeTheCLI posts a pod creation in an enabled namespace,
// applies the returned JSON patch, and checks the pod is the one skiff
// inject writes for the same pod.
func TestInjectsLikeTheCLI(t *testing.T) {
	srv, h := server(t, namespace("shop", enabled))
	pod := webPod("shop")
	_, _, resp := post(t, srv, review(t, pod, "shop", admissionv1.Create))
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response %+v: want allowed with a JSON patch", resp)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	podJSON, _ := json.Marshal(pod)
	patched, err := patch.Apply(podJSON)
	if err != nil {
		t.Fatalf("applying %s: %v", resp.Patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}

	podYAML, _ := yaml.Marshal(pod)
	var cli bytes.Buffer
	if _, err := inject.Manifests(bytes.NewReader(podYAML), &cli, func(p inject.Pod) (inject.Result, error) {
		return injectConfig.Inject(p, inject.Manual)
	}); err != nil {
		t.Fatal(err)
	}
	var want corev1.Pod
	if err := yaml.Unmarshal(cli.Bytes(), &want); err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("the webhook's pod:\n%s\nskiff inject's:\n%s", patched, cli.Bytes())
	}
	if n := len(got.Spec.InitContainers); n != 3 || got.Spec.InitContainers[1].Name != kubemeta.ProxyContainer {
		t.Errorf("init containers %d", n)
	}
	if v := testutil.ToFloat64(h.admissions.WithLabelValues(resultInjected)); v != 1 {
		t.Errorf("injected counted %v times", v)
	}

	// The injected pod, created again (skiff inject's output applied to
	// an enabled namespace), is allowed as it is.
	_, _, resp = post(t, srv, review(t, &got, "shop", admissionv1.Create))
	if !resp.Allowed || resp.Patch != nil {
		t.Errorf("an injected pod: %+v", resp)
	}
}

func TestLeftAlone(t *testing.T) {
	srv, h := server(t,
		namespace("off", map[string]string{kubemeta.InjectAnnotation: kubemeta.InjectDisabled}),
		namespace("plain", nil),
		namespace("shop", enabled),
		namespace("typo", map[string]string{kubemeta.InjectAnnotation: "on"}),
	)
	optedOut := webPod("shop")
	optedOut.Annotations = map[string]string{kubemeta.InjectAnnotation: kubemeta.InjectDisabled}
	hostNet := webPod("shop")
	hostNet.Spec.HostNetwork = true
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		ns   string
		warn string
	}{
		{"disabled namespace", webPod("off"), "off", ""},
		{"namespace without annotation", webPod("plain"), "plain", ""},
		{"pod disabled", optedOut, "shop", ""},
		{"host network", hostNet, "shop", ""},
		{"kube-system", webPod("kube-system"), "kube-system", ""},
		{"namespace annotation typo", webPod("typo"), "typo", `"on" is neither enabled nor disabled`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, resp := post(t, srv, review(t, tc.pod, tc.ns, admissionv1.Create))
			if !resp.Allowed || resp.Patch != nil || resp.PatchType != nil {
				t.Errorf("response %+v: want allowed, unchanged", resp)
			}
			if tc.warn != "" && (len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tc.warn)) {
				t.Errorf("warnings %q, want one saying %q", resp.Warnings, tc.warn)
			}
		})
	}
	if v := testutil.ToFloat64(h.admissions.WithLabelValues(resultSkipped)); v != 6 {
		t.Errorf("skipped counted %v times", v)
	}
}

func TestDenied(t *testing.T) {
	srv, h := server(t, namespace("shop", enabled))
	badPorts := webPod("shop")
	badPorts.Annotations = map[string]string{kubemeta.OpaquePortsAnnotation: "3306,mysql"}
	taken := webPod("shop")
	taken.Spec.Containers[0].Ports = append(taken.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 4191})
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"annotation", review(t, badPorts, "shop", admissionv1.Create), `cannot inject pod web-7d4b9c-* in namespace shop: cannot inject: annotation skiff.dev/opaque-ports: "3306,mysql"`},
		{"port taken", review(t, taken, "shop", admissionv1.Create), "container web declares port 4191"},
		{"unknown namespace", review(t, webPod("gone"), "gone", admissionv1.Create), `namespace "gone"`},
		{"not a pod", review(t, map[string]any{"spec": "nope"}, "shop", admissionv1.Create), "its object is not a Pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, resp := post(t, srv, tc.body)
			if resp.Allowed || resp.Patch != nil || resp.Result == nil || !strings.Contains(resp.Result.Message, tc.want) {
				t.Errorf("response %+v: want refused saying %q", resp, tc.want)
			}
		})
	}
	if v := testutil.ToFloat64(h.admissions.WithLabelValues(resultDenied)); v != 4 {
		t.Errorf("denied counted %v times", v)
	}
}

// TestOtherRequests: what is not a pod's creation is allowed unchanged.
func TestOtherRequests(t *testing.T) {
	srv, _ := server(t, namespace("shop", enabled))
	_, _, resp := post(t, srv, review(t, webPod("shop"), "shop", admissionv1.Update))
	if !resp.Allowed || resp.Patch != nil {
		t.Errorf("update: %+v", resp)
	}
}

func TestMalformed(t *testing.T) {
	srv, h := server(t, namespace("shop", enabled))
	big := review(t, webPod("shop"), "shop", admissionv1.Create)
	big = append(big[:len(big)-1], []byte(`,"padding":"`+strings.Repeat("x", DefaultMaxBodyBytes)+`"}`)...)
	for _, tc := range []struct {
		name   string
		body   string
		status int
		want   string
	}{
		{"not JSON", "{", http.StatusBadRequest, "not an AdmissionReview"},
		{"v1beta1", `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"1"}}`, http.StatusBadRequest, "want admission.k8s.io/v1 AdmissionReview"},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest, "no request"},
		{"no uid", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`, http.StatusBadRequest, "no uid"},
		{"oversized", string(big), http.StatusRequestEntityTooLarge, "larger than 3145728 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := post(t, srv, []byte(tc.body))
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Errorf("%d %q, want %d saying %q", status, body, tc.status, tc.want)
			}
		})
	}
	resp, err := srv.Client().Post(srv.URL+kubemeta.WebhookPath, "text/plain", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d", resp.StatusCode)
	}
	resp, err = srv.Client().Get(srv.URL + kubemeta.WebhookPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if v := testutil.ToFloat64(h.admissions.WithLabelValues(resultMalformed)); v != 7 {
		t.Errorf("malformed counted %v times", v)
	}
}

// TestNamespaceNotCachedYet: a namespace the informer has not seen (here:
// an informer that never ran) is read from the API.
func TestNamespaceNotCachedYet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ns := NewKubeNamespaces(ctx, fake.NewClientset(namespace("new", enabled)))
	ann, err := ns.NamespaceAnnotations(context.Background(), "new")
	if err != nil || ann[kubemeta.InjectAnnotation] != kubemeta.InjectEnabled {
		t.Fatalf("%v, %v", ann, err)
	}
	if _, err := ns.NamespaceAnnotations(context.Background(), "none"); err == nil || !strings.Contains(err.Error(), `namespace "none"`) {
		t.Errorf("unknown namespace: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Config{MaxBodyBytes: -1}); err == nil {
		t.Error("negative MaxBodyBytes")
	}
	if _, err := New(Config{Inject: inject.Config{Version: "a:b"}}); err == nil {
		t.Error("bad version")
	}
}

// FuzzDecodeReview: no body panics the decoder, and what it accepts has a
// request with a uid, which admit answers without panicking.
func FuzzDecodeReview(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","resource":{"version":"v1","resource":"pods"},"operation":"CREATE","namespace":"shop","object":{"metadata":{"annotations":{"skiff.dev/inject":"enabled"}},"spec":{"containers":[{"name":"a"}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","resource":{"version":"v1","resource":"pods"},"operation":"CREATE","object":{"spec":{"initContainers":[{"name":"skiff-proxy"}]}}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	h, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeReview(body)
		if err != nil {
			return
		}
		if r.Request == nil || r.Request.UID == "" {
			t.Fatal("accepted a review without a request uid")
		}
		resp, result := h.admit(context.Background(), r.Request)
		if resp == nil || result == "" {
			t.Fatal("no response")
		}
		if resp.Patch != nil && !resp.Allowed {
			t.Fatal("a refusal with a patch")
		}
	})
}
