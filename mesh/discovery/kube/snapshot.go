package kube

import (
	"cmp"
	"maps"
	"net"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skiff-mesh/skiff/mesh/discovery"
)

// snapshot reads the caches for t. It runs on the watcher's goroutine;
// the cached objects are shared and only read.
func (s *Source) snapshot(auth string, t target) discovery.Snapshot {
	snap := discovery.Snapshot{Authority: auth}
	obj, exists, err := s.services.GetByKey(t.service)
	if err != nil || !exists {
		return snap
	}
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return snap
	}
	sp, ok := servicePort(svc, t.port)
	if !ok {
		return snap
	}
	snap.Exists = true
	proto := protocolHint(sp.AppProtocol)

	objs, err := s.slices.ByIndex(byService, t.service)
	if err != nil {
		return snap
	}
	seen := make(map[string]bool)
	for _, o := range objs {
		sl, ok := o.(*discoveryv1.EndpointSlice)
		if !ok || sl.AddressType != s.cfg.AddressType {
			continue
		}
		port, ok := slicePort(sl, sp)
		if !ok {
			continue
		}
		for _, ep := range sl.Endpoints {
			if !ready(ep.Conditions) || len(ep.Addresses) == 0 {
				continue
			}
			// The addresses of one endpoint are fungible; the first will do.
			addr := net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port)))
			if seen[addr] {
				continue // briefly in two slices while the controller moves it
			}
			e := discovery.Endpoint{Addr: addr, Protocol: proto}
			if ep.Zone != nil {
				e.Zone = *ep.Zone
			}
			if key, isPod := podKey(sl, ep); isPod {
				pod, ok := s.pod(key)
				if !ok {
					continue // announced once the pod is cached, with its identity
				}
				e.Pod = pod.Name
				e.Labels = maps.Clone(pod.Labels)
				e.Meshed = s.meshed(pod)
				if e.Meshed {
					e.Identity = s.identity(pod)
				}
			}
			seen[addr] = true
			snap.Endpoints = append(snap.Endpoints, e)
		}
	}
	slices.SortFunc(snap.Endpoints, func(a, b discovery.Endpoint) int { return cmp.Compare(a.Addr, b.Addr) })
	return snap
}

func (s *Source) pod(key string) (*corev1.Pod, bool) {
	obj, exists, err := s.pods.GetByKey(key)
	if err != nil || !exists {
		return nil, false
	}
	pod, ok := obj.(*corev1.Pod)
	return pod, ok
}

// servicePort finds the TCP Service port an authority's port names (the
// mesh carries TCP only: a UDP or SCTP port is no authority of ours).
func servicePort(svc *corev1.Service, port int32) (corev1.ServicePort, bool) {
	for _, p := range svc.Spec.Ports {
		if p.Port == port && (p.Protocol == corev1.ProtocolTCP || p.Protocol == "") {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

// slicePort is the port sl publishes for the TCP Service port sp: the
// TCP one with the same name. Each slice resolves a named target
// port for its own pods, so two slices may differ.
func slicePort(sl *discoveryv1.EndpointSlice, sp corev1.ServicePort) (int32, bool) {
	for _, p := range sl.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		tcp := p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP
		if name == sp.Name && tcp && p.Port != nil {
			return *p.Port, true
		}
	}
	return 0, false
}

// ready says an endpoint may get new traffic: ready (nil means ready, as
// the API says) and not terminating. Serving-but-not-ready and
// terminating endpoints only finish what they have.
func ready(c discoveryv1.EndpointConditions) bool {
	if c.Terminating != nil && *c.Terminating {
		return false
	}
	return c.Ready == nil || *c.Ready
}

// protocolHint maps a Service port's appProtocol to the proxy's hint;
// what it does not know means "detect".
func protocolHint(appProtocol *string) discovery.Protocol {
	if appProtocol == nil {
		return discovery.ProtocolUnknown
	}
	switch *appProtocol {
	case "http", "http1", "kubernetes.io/http":
		return discovery.ProtocolHTTP1
	case "kubernetes.io/h2c", "h2c", "grpc":
		return discovery.ProtocolH2C
	case AppProtocolOpaque, "tcp", "https", "kubernetes.io/ws", "kubernetes.io/wss":
		// TLS the proxy cannot read, or an upgrade it should not parse.
		return discovery.ProtocolOpaque
	}
	return discovery.ProtocolUnknown
}

// meshed says a Skiff proxy receives the pod's traffic.
func (s *Source) meshed(pod *corev1.Pod) bool {
	if pod.Annotations[InjectAnnotation] == InjectEnabled {
		return true
	}
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name == s.cfg.ProxyContainer {
				return true
			}
		}
	}
	return false
}

// identity is the pod's SPIFFE ID, from its service account.
func (s *Source) identity(pod *corev1.Pod) string {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return "spiffe://" + s.cfg.TrustDomain + "/ns/" + pod.Namespace + "/sa/" + sa
}
