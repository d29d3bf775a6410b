package inject

import (
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-mesh/skiff/mesh/kubemeta"
	"github.com/skiff-mesh/skiff/mesh/proxyinit"
)

// pods are the shapes the patches must handle: with and without
// metadata, annotations, init containers and volumes.
func pods() map[string]Pod {
	app := corev1.Container{Name: "app", Image: "example/app:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}
	return map[string]Pod{
		"bare":     {Spec: corev1.PodSpec{Containers: []corev1.Container{app}}},
		"labelled": {Meta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{app}}},
		"full": {
			Namespace: "shop",
			Meta:      metav1.ObjectMeta{Name: "web", Annotations: map[string]string{"team": "a", kubemeta.OpaquePortsAnnotation: "6379"}},
			Spec: corev1.PodSpec{
				ServiceAccountName: "web",
				InitContainers:     []corev1.Container{{Name: "migrate", Image: "example/migrate:1"}, {Name: "warm", Image: "example/warm:1"}},
				Containers:         []corev1.Container{app},
				Volumes:            []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			},
		},
	}
}

// podJSON is the pod as the API server would hold it.
func podJSON(t *testing.T, meta metav1.ObjectMeta, spec corev1.PodSpec) []byte {
	t.Helper()
	b, err := json.Marshal(corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: meta, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkPatch applies res.Patch to the pod's JSON with a JSON-patch
// library and checks it gives res's pod.
func checkPatch(t *testing.T, from Pod, res Result) {
	t.Helper()
	patch, err := json.Marshal(res.Patch)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Apply(podJSON(t, from.Meta, from.Spec))
	if err != nil {
		t.Fatalf("applying %s: %v", patch, err)
	}
	var gotPod corev1.Pod
	if err := json.Unmarshal(got, &gotPod); err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(gotPod.ObjectMeta, res.Meta) || !apiequality.Semantic.DeepEqual(gotPod.Spec, res.Spec) {
		t.Errorf("the patch gives\n%s\nthe result is\n%s", got, podJSON(t, res.Meta, res.Spec))
	}
}

func TestInjectUninject(t *testing.T) {
	for name, p := range pods() {
		t.Run(name, func(t *testing.T) {
			var cfg Config
			res, err := cfg.Inject(p, Manual)
			if err != nil || res.Skipped != "" || !res.Changed() {
				t.Fatalf("Inject: %+v, %v", res.Skipped, err)
			}
			checkPatch(t, p, res)
			injected := Pod{Namespace: p.Namespace, Meta: res.Meta, Spec: res.Spec}

			again, err := cfg.Inject(injected, Manual)
			if err != nil || again.Changed() || again.Skipped != "" {
				t.Errorf("injecting again: %v, %v, %q", again.Patch, err, again.Skipped)
			}

			newer, err := Config{Version: "v2.0.0"}.Inject(injected, Manual)
			if err != nil || !newer.Changed() {
				t.Fatalf("injecting with another version: %v, %v", newer.Patch, err)
			}
			checkPatch(t, injected, newer)
			if got := newer.Spec.InitContainers[1].Image; !strings.HasSuffix(got, ":v2.0.0") {
				t.Errorf("re-injected image %s", got)
			}

			back := Uninject(injected)
			checkPatch(t, injected, back)
			if !apiequality.Semantic.DeepEqual(back.Meta, p.Meta) || !apiequality.Semantic.DeepEqual(back.Spec, p.Spec) {
				t.Errorf("uninject gives\n%s\nwant\n%s", podJSON(t, back.Meta, back.Spec), podJSON(t, p.Meta, p.Spec))
			}
			if r := Uninject(p); r.Changed() || r.Skipped == "" {
				t.Errorf("uninjecting a pod never injected: %+v", r)
			}
		})
	}
}

func TestSidecar(t *testing.T) {
	p := pods()["full"]
	p.Meta.Annotations[kubemeta.SkipInboundPortsAnnotation] = "9100,4191"
	p.Meta.Annotations[kubemeta.SkipOutboundPortsAnnotation] = "443,8000-8001"
	p.Meta.Annotations[kubemeta.OpaquePortsAnnotation] = "3306,9000-9002"
	p.Meta.Annotations[kubemeta.ProxyMemoryLimitAnnotation] = "256Mi"
	res, err := Config{TrustDomain: "example.org", TokenExpirationSeconds: 7200}.Inject(p, Manual)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, c := range res.Spec.InitContainers {
		names = append(names, c.Name)
	}
	if want := []string{"skiff-init", "skiff-proxy", "migrate", "warm"}; !slices.Equal(names, want) {
		t.Fatalf("init containers %v, want %v", names, want)
	}
	initC, proxyC := res.Spec.InitContainers[0], res.Spec.InitContainers[1]
	if initC.RestartPolicy != nil {
		t.Error("the init step must run to completion, not restart")
	}
	if proxyC.RestartPolicy == nil || *proxyC.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the proxy is not a native sidecar")
	}
	wantInit := []string{"--inbound-port=4143", "--outbound-port=4140", "--proxy-uid=2102",
		"--skip-inbound-ports=4190,9100,4191", "--skip-outbound-ports=443,8000-8001"}
	if !slices.Equal(initC.Args, wantInit) {
		t.Errorf("init args %q, want %q", initC.Args, wantInit)
	}
	for _, want := range []string{
		"--transparent", "--inbound-addr=0.0.0.0:4143", "--outbound-addr=127.0.0.1:4140", "--admin-addr=0.0.0.0:4191",
		"--destination-addr=skiff-controller.skiff.svc.cluster.local:8086",
		"--identity-id=spiffe://example.org/ns/$(SKIFF_POD_NAMESPACE)/sa/$(SKIFF_POD_SERVICE_ACCOUNT)",
		"--identity-token-file=/var/run/skiff/identity/token", "--trust-anchors=/var/run/skiff/anchors/ca-bundle.pem",
		"--memory-budget-mib=128", "--opaque-ports=3306,9000,9001,9002",
	} {
		if !slices.Contains(proxyC.Args, want) {
			t.Errorf("proxy args %q lack %q", proxyC.Args, want)
		}
	}
	sc := proxyC.SecurityContext
	if *sc.RunAsUser != kubemeta.ProxyUID || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("proxy security context %+v", sc)
	}
	isc := initC.SecurityContext
	if *isc.RunAsUser != 0 || *isc.Privileged || !slices.Equal(isc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("init security context %+v", isc)
	}
	if proxyC.ReadinessProbe.HTTPGet.Path != "/ready" || proxyC.LivenessProbe.HTTPGet.Path != "/live" || proxyC.ReadinessProbe.HTTPGet.Port.IntValue() != 4191 {
		t.Error("probes are not the admin server's /ready and /live")
	}
	tok := res.Spec.Volumes[1].Projected.Sources[0].ServiceAccountToken
	if tok.Audience != kubemeta.TokenAudience || *tok.ExpirationSeconds != 7200 {
		t.Errorf("token projection %+v", tok)
	}
	if got := proxyC.Resources.Limits.Memory().String(); got != "256Mi" {
		t.Errorf("memory limit %s", got)
	}
}

// TestFlagsAreReal parses the init step's arguments with skiff-proxy
// init's own flags (proxyinit's), and checks every proxy flag is one
// cmd/skiff-proxy declares, so the injector never invents one.
func TestFlagsAreReal(t *testing.T) {
	p := pods()["full"]
	p.Meta.Annotations[kubemeta.SkipOutboundPortsAnnotation] = "443"
	res, err := Config{}.Inject(p, Manual)
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	var o proxyinit.Options
	o.AddFlags(fs)
	if err := fs.Parse(res.Spec.InitContainers[0].Args); err != nil {
		t.Fatalf("skiff-proxy init refuses %q: %v", res.Spec.InitContainers[0].Args, err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.ProxyUID != kubemeta.ProxyUID || o.InboundPort != kubemeta.ProxyInboundPort || o.OutboundPort != kubemeta.ProxyOutboundPort {
		t.Errorf("init options %+v disagree with the proxy's", o)
	}

	var src strings.Builder
	for _, f := range []string{"../../cmd/skiff-proxy/main.go", "../../internal/logging/logging.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Skipf("reading the proxy's flags: %v", err)
		}
		src.Write(b)
	}
	declared := map[string]bool{}
	for _, m := range regexp.MustCompile(`fs\.\w+Var\([^,]+, "([a-z-]+)"`).FindAllStringSubmatch(src.String(), -1) {
		declared[m[1]] = true
	}
	for _, a := range res.Spec.InitContainers[1].Args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !declared[name] {
			t.Errorf("skiff-proxy has no flag --%s", name)
		}
	}
}

func TestLeftAlone(t *testing.T) {
	app := []corev1.Container{{Name: "app", Image: "x"}}
	ann := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	enabled := ann(kubemeta.InjectAnnotation, kubemeta.InjectEnabled)
	disabled := ann(kubemeta.InjectAnnotation, kubemeta.InjectDisabled)
	for _, tc := range []struct {
		name   string
		pod    Pod
		mode   Mode
		reason string // "" means injected
		warn   bool
	}{
		{"manual", Pod{Spec: corev1.PodSpec{Containers: app}}, Manual, "", false},
		{"disabled", Pod{Meta: metav1.ObjectMeta{Annotations: disabled}, Spec: corev1.PodSpec{Containers: app}}, Manual, "skiff.dev/inject: disabled", false},
		{"typo", Pod{Meta: metav1.ObjectMeta{Annotations: ann(kubemeta.InjectAnnotation, "enable")}, Spec: corev1.PodSpec{Containers: app}}, Manual, `"enable" is neither`, true},
		{"host network", Pod{Spec: corev1.PodSpec{HostNetwork: true, Containers: app}}, Manual, "hostNetwork", false},
		{"kube-system", Pod{Namespace: "kube-system", Meta: metav1.ObjectMeta{Annotations: enabled}, Spec: corev1.PodSpec{Containers: app}}, Admission, "namespace kube-system", false},
		{"skiff", Pod{Namespace: "skiff", Spec: corev1.PodSpec{Containers: app}}, Manual, "namespace skiff", false},
		{"foreign proxy", Pod{Spec: corev1.PodSpec{Containers: append(app, corev1.Container{Name: "skiff-proxy"})}}, Manual, "container named skiff-proxy that Skiff did not inject", false},
		{"foreign init", Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "skiff-init"}}, Containers: app}}, Manual, "container named skiff-init", false},
		{"foreign volume", Pod{Spec: corev1.PodSpec{Containers: app, Volumes: []corev1.Volume{{Name: kubemeta.TokenVolume}}}}, Manual, "volume named skiff-identity-token", false},
		{"namespace not enabled", Pod{Namespace: "shop", Spec: corev1.PodSpec{Containers: app}}, Admission, `neither the pod nor namespace "shop"`, false},
		{"namespace enabled", Pod{Namespace: "shop", NamespaceAnnotations: enabled, Spec: corev1.PodSpec{Containers: app}}, Admission, "", false},
		{"namespace disabled", Pod{Namespace: "shop", NamespaceAnnotations: disabled, Spec: corev1.PodSpec{Containers: app}}, Admission, `namespace "shop" is annotated skiff.dev/inject: disabled`, false},
		{"pod wins over namespace", Pod{Namespace: "shop", NamespaceAnnotations: enabled, Meta: metav1.ObjectMeta{Annotations: disabled}, Spec: corev1.PodSpec{Containers: app}}, Admission, "skiff.dev/inject: disabled", false},
		{"pod enabled in a disabled namespace", Pod{Namespace: "shop", NamespaceAnnotations: disabled, Meta: metav1.ObjectMeta{Annotations: enabled}, Spec: corev1.PodSpec{Containers: app}}, Admission, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Config{}.Inject(tc.pod, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.reason == "" && (res.Skipped != "" || !res.Changed()):
				t.Errorf("left alone: %s", res.Skipped)
			case tc.reason != "" && !strings.Contains(res.Skipped, tc.reason):
				t.Errorf("skipped %q, want it to say %q", res.Skipped, tc.reason)
			case tc.reason != "" && res.Changed():
				t.Error("skipped, yet patched")
			case (res.Warning != "") != tc.warn:
				t.Errorf("warning %q", res.Warning)
			}
		})
	}
}

func TestInjectErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		port int32
		want string
	}{
		{"opaque", map[string]string{kubemeta.OpaquePortsAnnotation: "1-2000"}, 0, "more than 1000 ports"},
		{"skip inbound", map[string]string{kubemeta.SkipInboundPortsAnnotation: "80,80"}, 0, "overlaps"},
		{"skip outbound", map[string]string{kubemeta.SkipOutboundPortsAnnotation: "0"}, 0, "skiff.dev/skip-outbound-ports"},
		{"cpu", map[string]string{kubemeta.ProxyCPURequestAnnotation: "fast"}, 0, "not a quantity"},
		{"negative", map[string]string{kubemeta.ProxyCPULimitAnnotation: "-1"}, 0, "positive"},
		{"request above limit", map[string]string{kubemeta.ProxyMemoryRequestAnnotation: "100Mi"}, 0, "memory request 100Mi is above its limit 64Mi"},
		{"small limit", map[string]string{kubemeta.ProxyMemoryLimitAnnotation: "16Mi", kubemeta.ProxyMemoryRequestAnnotation: "8Mi"}, 0, "below 32Mi"},
		{"port", nil, 4143, "declares port 4143"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := corev1.Container{Name: "app"}
			if tc.port != 0 {
				c.Ports = []corev1.ContainerPort{{ContainerPort: tc.port}}
			}
			res, err := Config{}.Inject(Pod{Meta: metav1.ObjectMeta{Annotations: tc.ann}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}, Manual)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			if res.Changed() {
				t.Error("an error with a patch")
			}
		})
	}
	for _, cfg := range []Config{{TokenExpirationSeconds: 60}, {Version: "a b"}, {TrustDomain: "a/b"}} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
