// Package kube is the Kubernetes discovery source: client-go shared
// informers on Services, EndpointSlices (discovery.k8s.io/v1) and Pods,
// read through discovery.Source.
//
// Only the control plane imports this package: the proxy's dependency
// closure holds no k8s.io package (ARCHITECTURE.md, contract 1).
//
// # What a snapshot holds
//
// An authority names a Service port: name.ns.svc.<cluster-domain>:port,
// name.ns.svc:port or name.ns:port (a missing port means 80). Its
// endpoints are those of the Service's EndpointSlices, of the configured
// address family, whose conditions say ready and not terminating (an
// endpoint that is serving but not ready, or terminating, gets no new
// traffic), each at the port its slice publishes for the Service port's
// name, so a named target port resolves per slice. From the endpoint's
// Pod come its identity (service account →
// spiffe://<trust-domain>/ns/<ns>/sa/<sa>, set only when the pod is
// meshed), Meshed (the pod has the proxy container or the annotation
// skiff.dev/inject: enabled) and Labels; the protocol hint comes from the
// Service port's appProtocol. An endpoint whose Pod the cache does not
// hold yet is left out until it does, so no endpoint is ever announced
// without its identity.
//
// A Service with no ready endpoint is Exists true with no endpoints; an
// unknown Service, a port the Service does not have, or a name outside
// the cluster domain is Exists false.
//
// # Memory
//
// The informers need spec fields (ports, addresses, service accounts), so
// they hold typed objects, not metadata only; a transform trims every
// object before it is cached to what the source reads: no managedFields,
// no annotations but skiff.dev/inject, no status, and of a pod's
// containers only the proxy's name.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/internal/coalesce"
)

// Names the source recognises in the cluster.
const (
	// InjectAnnotation set to InjectEnabled on a pod marks it meshed.
	InjectAnnotation = "skiff.dev/inject"
	InjectEnabled    = "enabled"
	// DefaultProxyContainer is the sidecar container's name.
	DefaultProxyContainer = "skiff-proxy"
	// AppProtocolOpaque on a Service port makes its hint opaque TCP.
	AppProtocolOpaque = "skiff.dev/opaque"
	// DefaultClusterDomain and DefaultTrustDomain are the defaults of
	// Config.ClusterDomain and Config.TrustDomain.
	DefaultClusterDomain = "cluster.local"
	DefaultTrustDomain   = "cluster.local"
)

// Config configures a Source. Only Client is required; the zero value of
// every other field means its default.
type Config struct {
	// Client reads the cluster.
	Client kubernetes.Interface
	// Namespace limits the source to one namespace; "" watches all.
	Namespace string
	// ClusterDomain is the cluster's DNS domain; "" means
	// DefaultClusterDomain.
	ClusterDomain string
	// TrustDomain is the SPIFFE trust domain of identities; "" means
	// DefaultTrustDomain.
	TrustDomain string
	// AddressType is the one address family endpoints are taken from: a
	// dual-stack Service has slices for both, and one family avoids
	// listing each pod twice. "" means IPv4.
	AddressType discoveryv1.AddressType
	// ProxyContainer is the container (or native sidecar init container)
	// whose presence makes a pod meshed; "" means DefaultProxyContainer.
	ProxyContainer string
	// Resync is the informers' resync period; zero means none (watchers
	// are woken by events only).
	Resync time.Duration
	// Log receives the source's events; nil discards them.
	Log *slog.Logger
}

// Index names on the EndpointSlice informer.
const (
	byService = "service" // "ns/name" of the slice's Service
	byPod     = "pod"     // "ns/name" of each Pod the slice targets
)

// Source is the Kubernetes discovery.Source. Make it with New and start
// it with Run; Watch waits until Run has synced the caches.
type Source struct {
	cfg      Config
	log      *slog.Logger
	factory  informers.SharedInformerFactory
	services cache.Indexer
	slices   cache.Indexer
	pods     cache.Indexer
	synced   []cache.InformerSynced

	runOnce sync.Once
	ready   chan struct{} // closed once the caches are synced

	mu       sync.Mutex
	watchers map[string]map[coalesce.Signal]struct{} // by Service "ns/name"
}

var _ discovery.Source = (*Source)(nil)

// New checks cfg and sets up the informers; nothing is read from the
// cluster until Run.
func New(cfg Config) (*Source, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube discovery: Config.Client is nil; pass a clientset (kubernetes.NewForConfig)")
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = DefaultClusterDomain
	}
	cfg.ClusterDomain = strings.Trim(strings.ToLower(cfg.ClusterDomain), ".")
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = DefaultTrustDomain
	}
	switch cfg.AddressType {
	case "":
		cfg.AddressType = discoveryv1.AddressTypeIPv4
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
	default:
		return nil, fmt.Errorf("kube discovery: Config.AddressType %q: want %s or %s", cfg.AddressType, discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6)
	}
	if cfg.ProxyContainer == "" {
		cfg.ProxyContainer = DefaultProxyContainer
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cfg:      cfg,
		log:      log.With("component", "discovery", "source", "kube"),
		ready:    make(chan struct{}),
		watchers: make(map[string]map[coalesce.Signal]struct{}),
	}
	opts := []informers.SharedInformerOption{informers.WithTransform(s.trim)}
	if cfg.Namespace != "" {
		opts = append(opts, informers.WithNamespace(cfg.Namespace))
	}
	s.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.Resync, opts...)

	svcInf := s.factory.Core().V1().Services().Informer()
	sliceInf := s.factory.Discovery().V1().EndpointSlices().Informer()
	podInf := s.factory.Core().V1().Pods().Informer()
	if err := sliceInf.AddIndexers(cache.Indexers{byService: sliceService, byPod: slicePods}); err != nil {
		return nil, fmt.Errorf("kube discovery: %w", err)
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{svcInf, s.onService()},
		{sliceInf, s.onSlice()},
		{podInf, s.onPod()},
	}
	for _, h := range handlers {
		reg, err := h.inf.AddEventHandler(h.h)
		if err != nil {
			return nil, fmt.Errorf("kube discovery: %w", err)
		}
		s.synced = append(s.synced, reg.HasSynced)
	}
	s.services, s.slices, s.pods = svcInf.GetIndexer(), sliceInf.GetIndexer(), podInf.GetIndexer()
	return s, nil
}

// Run starts the informers, waits until their caches are synced (then
// Synced is closed and watches start), and keeps them running until ctx
// is done; then it stops them, waits for them to end and returns nil.
// It returns an error if called twice, or if ctx reaches its deadline (or
// ends with a cause other than context.Canceled) before the caches sync:
// check RBAC, the source lists and watches services, endpointslices and
// pods. A plain cancellation before the sync is a shutdown: nil.
func (s *Source) Run(ctx context.Context) error {
	first := false
	s.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("kube discovery: Run called twice")
	}
	defer s.factory.Shutdown()
	s.factory.Start(ctx.Done())
	start := time.Now()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		if errors.Is(context.Cause(ctx), context.Canceled) {
			return nil // shut down while starting: not a failure
		}
		return fmt.Errorf("kube discovery: caches not synced before the context ended (can the controller list and watch services, endpointslices.discovery.k8s.io and pods?): %w", context.Cause(ctx))
	}
	s.log.Info("caches synced", "took", time.Since(start).Round(time.Millisecond),
		"services", len(s.services.ListKeys()), "endpointslices", len(s.slices.ListKeys()), "pods", len(s.pods.ListKeys()))
	close(s.ready)
	<-ctx.Done()
	return nil
}

// Synced is closed once Run has synced the caches (for a readiness
// check).
func (s *Source) Synced() <-chan struct{} { return s.ready }

// Watch implements discovery.Source. It first waits until Run has synced
// the caches (or ctx is done).
func (s *Source) Watch(ctx context.Context, authority string, fn func(discovery.Snapshot)) error {
	auth, err := discovery.NormalizeAuthority(authority)
	if err != nil {
		return fmt.Errorf("kube discovery: %w", err)
	}
	t, known := s.parse(auth)
	select {
	case <-ctx.Done():
		return nil
	case <-s.ready:
	}
	sig := coalesce.NewSignal()
	if known {
		s.mu.Lock()
		w := s.watchers[t.service]
		if w == nil {
			w = make(map[coalesce.Signal]struct{})
			s.watchers[t.service] = w
		}
		w[sig] = struct{}{}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(w, sig)
			if len(w) == 0 {
				delete(s.watchers, t.service)
			}
			s.mu.Unlock()
		}()
	}
	coalesce.Loop(ctx, sig, func() discovery.Snapshot {
		if !known {
			return discovery.Snapshot{Authority: auth}
		}
		return s.snapshot(auth, t)
	}, fn)
	return nil
}

// target is what an authority names: a Service port.
type target struct {
	service string // "ns/name"
	port    int32
}

// parse maps a normalised authority to a Service port; false when the
// authority cannot name one (an IP, a name outside the cluster domain,
// too few or too many labels).
func (s *Source) parse(auth string) (target, bool) {
	host, port := auth, "80"
	if h, p, err := net.SplitHostPort(auth); err == nil {
		host, port = h, p
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return target{}, false
	}
	switch {
	case strings.HasSuffix(host, ".svc."+s.cfg.ClusterDomain):
		host = strings.TrimSuffix(host, ".svc."+s.cfg.ClusterDomain)
	case strings.HasSuffix(host, ".svc"):
		host = strings.TrimSuffix(host, ".svc")
	}
	name, ns, ok := strings.Cut(host, ".")
	if !ok || strings.Contains(ns, ".") ||
		len(validation.IsDNS1123Label(name)) != 0 || len(validation.IsDNS1123Label(ns)) != 0 {
		return target{}, false
	}
	if s.cfg.Namespace != "" && ns != s.cfg.Namespace {
		return target{}, false
	}
	return target{service: ns + "/" + name, port: int32(n)}, true
}

// notify wakes the watchers of each Service key.
func (s *Source) notify(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		for sig := range s.watchers[k] {
			sig.Poke()
		}
	}
}

func (s *Source) onService() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.notify(objectKey(obj)) },
		UpdateFunc: func(_, obj any) { s.notify(objectKey(obj)) },
		DeleteFunc: func(obj any) { s.notify(objectKey(obj)) },
	}
}

func (s *Source) onSlice() cache.ResourceEventHandler {
	keys := func(objs ...any) {
		var ks []string
		for _, obj := range objs {
			if k, _ := sliceService(tombstone(obj)); len(k) == 1 {
				ks = append(ks, k[0])
			}
		}
		s.notify(ks...)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { keys(obj) },
		UpdateFunc: func(old, obj any) { keys(old, obj) },
		DeleteFunc: func(obj any) { keys(obj) },
	}
}

// onPod wakes the watchers of every Service whose slices target the pod,
// for the changes a snapshot reflects.
func (s *Source) onPod() cache.ResourceEventHandler {
	wake := func(obj any) {
		key := objectKey(obj)
		slices, err := s.slices.ByIndex(byPod, key)
		if err != nil {
			return
		}
		var ks []string
		for _, sl := range slices {
			if k, _ := sliceService(sl); len(k) == 1 {
				ks = append(ks, k[0])
			}
		}
		s.notify(ks...)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: wake,
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*corev1.Pod)
			n, ok2 := obj.(*corev1.Pod)
			if ok1 && ok2 && samePodView(o, n) {
				return
			}
			wake(obj)
		},
		DeleteFunc: wake,
	}
}

func tombstone(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func objectKey(obj any) string {
	k, _ := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	return k
}

// sliceService is the byService index: the slice's Service.
func sliceService(obj any) ([]string, error) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := sl.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{sl.Namespace + "/" + name}, nil
}

// slicePods is the byPod index: every Pod the slice targets.
func slicePods(obj any) ([]string, error) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	var keys []string
	for _, ep := range sl.Endpoints {
		if k, ok := podKey(sl, ep); ok {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func podKey(sl *discoveryv1.EndpointSlice, ep discoveryv1.Endpoint) (string, bool) {
	ref := ep.TargetRef
	if ref == nil || ref.Kind != "Pod" || ref.Name == "" {
		return "", false
	}
	ns := ref.Namespace
	if ns == "" {
		ns = sl.Namespace
	}
	return ns + "/" + ref.Name, true
}
