package kube_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/kube"
)

// wait bounds every wait for a callback; nothing here sleeps blindly.
const wait = 10 * time.Second

// load decodes the multi-document YAML file testdata/name into typed
// objects with client-go's scheme.
func load(t *testing.T, name string) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, doc)
		}
		objs = append(objs, obj)
	}
}

// pick returns the object of type T named name among objs.
func pick[T interface {
	runtime.Object
	GetName() string
}](t *testing.T, objs []runtime.Object, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.(T); ok && v.GetName() == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %s in the fixture", zero, name)
	return zero
}

// start runs a Source over a fake clientset seeded with cluster.yaml and
// stops it at the end of the test, checking that Run returns.
func start(t *testing.T, cfg kube.Config) (*kube.Source, *fake.Clientset) {
	t.Helper()
	leakcheck.Check(t)
	client := fake.NewClientset(load(t, "cluster.yaml")...)
	cfg.Client = client
	src, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	select {
	case <-src.Synced():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(wait):
		t.Fatalf("caches not synced within %v", wait)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(wait):
			t.Errorf("Run did not return %v after its context ended", wait)
		}
	})
	return src, client
}

// watcher collects the snapshots a Watch delivers.
type watcher struct {
	auth  string
	snaps chan discovery.Snapshot
	err   chan error
}

func watch(t *testing.T, src discovery.Source, authority string) *watcher {
	t.Helper()
	w := &watcher{auth: authority, snaps: make(chan discovery.Snapshot, 64), err: make(chan error, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { w.err <- src.Watch(ctx, authority, func(s discovery.Snapshot) { w.snaps <- s }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.err:
			if err != nil {
				t.Errorf("Watch(%s): %v", authority, err)
			}
		case <-time.After(wait):
			t.Errorf("Watch(%s) did not return after its context ended", authority)
		}
	})
	return w
}

// next waits for the next snapshot.
func (w *watcher) next(t *testing.T) discovery.Snapshot {
	t.Helper()
	select {
	case s := <-w.snaps:
		return s
	case err := <-w.err:
		t.Fatalf("Watch(%s) returned early: %v", w.auth, err)
	case <-time.After(wait):
		t.Fatalf("Watch(%s): no snapshot within %v", w.auth, wait)
	}
	panic("unreachable")
}

// show renders a snapshot one endpoint a line, for readable diffs.
func show(s discovery.Snapshot) string {
	if !s.Exists {
		return "(unknown)"
	}
	if len(s.Endpoints) == 0 {
		return "(no endpoints)"
	}
	var b strings.Builder
	for _, e := range s.Endpoints {
		fmt.Fprintf(&b, "%s", e.Addr)
		if e.Meshed {
			b.WriteString(" meshed")
		}
		for _, kv := range [][2]string{{"id", e.Identity}, {"proto", string(e.Protocol)}, {"zone", e.Zone}, {"pod", e.Pod}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
			}
		}
		for _, k := range slices.Sorted(maps.Keys(e.Labels)) {
			fmt.Fprintf(&b, " %s:%s", k, e.Labels[k])
		}
		b.WriteString("\n")
	}
	return b.String()
}

func expect(t *testing.T, got discovery.Snapshot, want string) {
	t.Helper()
	if g := show(got); g != want {
		t.Errorf("snapshot of %s:\n got: %s\nwant: %s", got.Authority, g, want)
	}
}

const webEndpoints = `10.0.0.1:8080 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=http1 zone=zone-a pod=web-0 app:web version:v1
10.0.0.2:8080 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=http1 zone=zone-a pod=web-1 app:web version:v1
10.0.0.3:8080 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=http1 zone=zone-b pod=web-2 app:web version:v2
`

func TestServiceWithThreeReadyEndpoints(t *testing.T) {
	src, _ := start(t, kube.Config{})
	snap := watch(t, src, "web.shop.svc.cluster.local:80").next(t)
	if snap.Authority != "web.shop.svc.cluster.local:80" || !snap.Exists {
		t.Fatalf("got %+v", snap)
	}
	expect(t, snap, webEndpoints)

	// The other port of the same Service: its own slice port, no hint.
	expect(t, watch(t, src, "web.shop.svc.cluster.local:9090").next(t), `10.0.0.1:9090 meshed id=spiffe://cluster.local/ns/shop/sa/web zone=zone-a pod=web-0 app:web version:v1
10.0.0.2:9090 meshed id=spiffe://cluster.local/ns/shop/sa/web zone=zone-a pod=web-1 app:web version:v1
10.0.0.3:9090 meshed id=spiffe://cluster.local/ns/shop/sa/web zone=zone-b pod=web-2 app:web version:v2
`)
}

func TestAuthorityForms(t *testing.T) {
	src, _ := start(t, kube.Config{})
	for _, auth := range []string{
		"web.shop.svc.cluster.local:80",
		"web.shop.svc.cluster.local.:80",
		"WEB.Shop.SVC.cluster.local:80",
		"web.shop.svc:80",
		"web.shop:80",
		"web.shop", // port 80 by default
	} {
		t.Run(auth, func(t *testing.T) {
			expect(t, watch(t, src, auth).next(t), webEndpoints)
		})
	}
}

func TestClusterDomainAndTrustDomain(t *testing.T) {
	src, _ := start(t, kube.Config{ClusterDomain: "corp.example.", TrustDomain: "example.org"})
	snap := watch(t, src, "web.shop.svc.corp.example:80").next(t)
	if len(snap.Endpoints) != 3 || snap.Endpoints[0].Identity != "spiffe://example.org/ns/shop/sa/web" {
		t.Errorf("got %s", show(snap))
	}
	// The default domain is no longer the cluster's.
	expect(t, watch(t, src, "web.shop.svc.cluster.local:80").next(t), "(unknown)")
}

func TestUnknownAuthority(t *testing.T) {
	src, _ := start(t, kube.Config{})
	for _, auth := range []string{
		"nope.shop.svc.cluster.local:80", // no such Service
		"web.nope.svc.cluster.local:80",  // no such namespace
		"web.shop.svc.cluster.local:81",  // no such port
		"web:80",                         // no namespace
		"example.com.au:443",             // outside the cluster
		"10.0.0.1:8080",                  // an address, not a name
		"web.shop.svc.other.domain:80",
		"under_score.shop:80",
	} {
		t.Run(auth, func(t *testing.T) {
			snap := watch(t, src, auth).next(t)
			if snap.Exists || len(snap.Endpoints) != 0 {
				t.Errorf("got %+v, want Exists false", snap)
			}
		})
	}
}

func TestInvalidAuthority(t *testing.T) {
	leakcheck.Check(t)
	src, _ := start(t, kube.Config{})
	for _, auth := range []string{"", "web.shop:http", "web.shop:0", "web.shop:70000", "web shop:80", ":80"} {
		err := src.Watch(t.Context(), auth, func(s discovery.Snapshot) { t.Errorf("%q: callback with %+v", auth, s) })
		if !errors.Is(err, discovery.ErrInvalidAuthority) {
			t.Errorf("Watch(%q) = %v, want ErrInvalidAuthority", auth, err)
		}
	}
}

func TestServiceWithNoEndpoints(t *testing.T) {
	src, _ := start(t, kube.Config{})
	snap := watch(t, src, "empty.shop.svc.cluster.local:80").next(t)
	if !snap.Exists || len(snap.Endpoints) != 0 {
		t.Errorf("got %+v, want Exists true and no endpoints", snap)
	}
}

func TestNamedTargetPortResolvedPerSlice(t *testing.T) {
	src, _ := start(t, kube.Config{})
	// api-old-0: meshed by annotation, no service account (→ default);
	// api-new-0: meshed by a native sidecar; its slice's targetRef has no
	// namespace (the slice's own).
	expect(t, watch(t, src, "api.shop.svc:8080").next(t), `10.0.1.1:9000 meshed id=spiffe://cluster.local/ns/shop/sa/default proto=h2c pod=api-old-0 app:api
10.0.1.2:9001 meshed id=spiffe://cluster.local/ns/shop/sa/api proto=h2c pod=api-new-0 app:api
`)
}

func TestEndpointConditions(t *testing.T) {
	src, _ := start(t, kube.Config{})
	// 10.0.2.1 ready, unmeshed: no identity. 10.0.2.2 serving but not
	// ready, 10.0.2.3 terminating: left out. 10.0.2.4 no conditions
	// (ready) and no pod. 10.0.2.5: its pod is not known.
	expect(t, watch(t, src, "cond.shop.svc:80").next(t), `10.0.2.1:7000 proto=opaque pod=cond-0 app:cond
10.0.2.4:7000 proto=opaque
`)
}

func TestAddressType(t *testing.T) {
	src, _ := start(t, kube.Config{AddressType: discoveryv1.AddressTypeIPv6})
	expect(t, watch(t, src, "web.shop.svc:80").next(t), `[fd00::1]:8080 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=http1 zone=zone-a pod=web-0 app:web version:v1
`)
	if _, err := kube.New(kube.Config{Client: fake.NewClientset(), AddressType: "FQDN"}); err == nil {
		t.Error("New accepted AddressType FQDN")
	}
}

func TestNamespaceScope(t *testing.T) {
	src, _ := start(t, kube.Config{Namespace: "other"})
	expect(t, watch(t, src, "web.shop.svc:80").next(t), "(unknown)")
}

func TestNewNeedsClient(t *testing.T) {
	if _, err := kube.New(kube.Config{}); err == nil {
		t.Error("New accepted a nil Client")
	}
}

func TestWatchBeforeRunWaitsForSync(t *testing.T) {
	leakcheck.Check(t)
	client := fake.NewClientset(load(t, "cluster.yaml")...)
	src, err := kube.New(kube.Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, src, "web.shop.svc:80")
	select {
	case <-src.Synced():
		t.Fatal("Synced before Run")
	default:
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	expect(t, w.next(t), webEndpoints)
	<-src.Synced()
	if err := src.Run(ctx); err == nil {
		t.Error("a second Run did not fail")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestRunFailsWhenNotSynced(t *testing.T) {
	leakcheck.Check(t)
	// A client that may not list anything never syncs, as without RBAC.
	forbidden := func() *fake.Clientset {
		c := fake.NewClientset()
		c.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("forbidden")
		})
		return c
	}
	src, err := kube.New(kube.Config{Client: forbidden()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := src.Run(ctx); err == nil || !strings.Contains(err.Error(), "not synced") {
		t.Errorf("Run past its deadline before syncing = %v, want an error", err)
	}

	src, err = kube.New(kube.Config{Client: forbidden()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	if err := src.Run(ctx); err != nil {
		t.Errorf("Run cancelled before syncing = %v, want nil (a shutdown)", err)
	}
}

// TestEndpointChurn drives watch events through the fake clientset; the
// watcher must see each change, and only changes that affect it.
func TestEndpointChurn(t *testing.T) {
	ctx := t.Context()
	src, client := start(t, kube.Config{})
	churn := load(t, "churn.yaml")
	slices := client.DiscoveryV1().EndpointSlices("shop")
	pods := client.CoreV1().Pods("shop")
	w := watch(t, src, "web.shop.svc.cluster.local:80")
	expect(t, w.next(t), webEndpoints)

	getSlice := func(name string) *discoveryv1.EndpointSlice {
		t.Helper()
		s, err := slices.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// A new pod, then its endpoint added to the slice.
	must(pods.Create(ctx, pick[*corev1.Pod](t, churn, "web-3"), metav1.CreateOptions{}))
	sl := getSlice("web-v4")
	sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
		Addresses:  []string{"10.0.0.4"},
		Conditions: discoveryv1.EndpointConditions{Ready: new(true)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-3"},
	})
	must(slices.Update(ctx, sl, metav1.UpdateOptions{}))
	expect(t, w.next(t), webEndpoints+"10.0.0.4:8080 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=http1 pod=web-3 app:web version:v2\n")

	// web-0 stops being ready, then terminates.
	sl = getSlice("web-v4")
	sl.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: new(false), Serving: new(true)}
	must(slices.Update(ctx, sl, metav1.UpdateOptions{}))
	without0 := strings.SplitN(webEndpoints, "\n", 2)[1] + "10.0.0.4:8080 meshed id=spiffe://cluster.local/ns/shop/sa/web proto=http1 pod=web-3 app:web version:v2\n"
	expect(t, w.next(t), without0)

	// Changes elsewhere do not reach this watcher: a slice and a pod of
	// another Service, and a status-only update of web's own pod (the
	// cache does not hold status). The next snapshot it sees is the one
	// after the slice it watches changes again.
	api := getSlice("api-a")
	api.Endpoints[0].Conditions.Ready = new(false)
	must(slices.Update(ctx, api, metav1.UpdateOptions{}))
	cond0, err := pods.Get(ctx, "cond-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cond0.Labels["version"] = "v9"
	must(pods.Update(ctx, cond0, metav1.UpdateOptions{}))
	web1, err := pods.Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	web1.Status.Phase = corev1.PodRunning
	must(pods.UpdateStatus(ctx, web1, metav1.UpdateOptions{}))

	// A slice whose pod the cache does not hold yet: nothing to announce
	// until the pod arrives, then the endpoint appears with its identity.
	must(slices.Create(ctx, pick[*discoveryv1.EndpointSlice](t, churn, "web-late"), metav1.CreateOptions{}))
	must(pods.Create(ctx, pick[*corev1.Pod](t, churn, "web-9"), metav1.CreateOptions{}))
	withLate := without0 + "10.0.0.9:8080 meshed id=spiffe://cluster.local/ns/shop/sa/web-canary proto=http1 pod=web-9 app:web version:v2\n"
	expect(t, w.next(t), withLate)

	// A pod's labels change: the snapshot carries them.
	web9, err := pods.Get(ctx, "web-9", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	web9.Labels["version"] = "v3"
	must(pods.Update(ctx, web9, metav1.UpdateOptions{}))
	expect(t, w.next(t), strings.Replace(withLate, "pod=web-9 app:web version:v2", "pod=web-9 app:web version:v3", 1))

	// Slices go away one by one: the Service exists with no endpoints.
	if err := slices.Delete(ctx, "web-late", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(t, w.next(t), without0)
	if err := slices.Delete(ctx, "web-v4", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(t, w.next(t), "(no endpoints)")

	// The Service goes away, and comes back.
	svc, err := client.CoreV1().Services("shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(t, w.next(t), "(unknown)")
	svc.ResourceVersion = ""
	must(client.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}))
	expect(t, w.next(t), "(no endpoints)")

	select {
	case s := <-w.snaps:
		t.Errorf("an extra snapshot: %s", show(s))
	default:
	}
}
