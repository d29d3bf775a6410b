package inject

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

// DefaultVersion is the proxy image's tag when Config.Version is empty:
// development builds have no release tag to name.
const DefaultVersion = "dev"

// DefaultTokenExpiration is the lifetime, in seconds, of the projected
// ServiceAccount token the proxy proves its identity with. The kubelet
// renews it at 80 % of that; the proxy reads the file at every
// certificate renewal.
const DefaultTokenExpiration = 3600

// Config says what the injector adds. The zero value injects the images of
// kubemeta.DefaultRegistry tagged DefaultVersion, in trust domain
// kubemeta.DefaultTrustDomain, talking to the controller skiff install
// deploys.
type Config struct {
	// Registry prefixes the images' names ("" means
	// kubemeta.DefaultRegistry).
	Registry string
	// Version is the images' tag and the value of the
	// skiff.dev/proxy-version annotation ("" means DefaultVersion).
	Version string
	// TrustDomain is the SPIFFE trust domain of the workload identities
	// ("" means kubemeta.DefaultTrustDomain).
	TrustDomain string
	// ControllerAddr is the controller's gRPC address as the proxies
	// dial it ("" means skiff-controller.skiff.svc.cluster.local:8086).
	ControllerAddr string
	// TokenExpirationSeconds bounds the identity token's lifetime
	// (0 means DefaultTokenExpiration; the API server's minimum is 600).
	TokenExpirationSeconds int64
}

func (c Config) normalize() (Config, error) {
	c.Registry = strings.TrimSuffix(cmp.Or(c.Registry, kubemeta.DefaultRegistry), "/")
	c.Version = cmp.Or(c.Version, DefaultVersion)
	c.TrustDomain = cmp.Or(c.TrustDomain, kubemeta.DefaultTrustDomain)
	c.ControllerAddr = cmp.Or(c.ControllerAddr, fmt.Sprintf("%s.%s.svc.cluster.local:%d", kubemeta.Controller, kubemeta.Namespace, kubemeta.GRPCPort))
	if c.TokenExpirationSeconds == 0 {
		c.TokenExpirationSeconds = DefaultTokenExpiration
	}
	switch {
	case c.TokenExpirationSeconds < 600:
		return c, fmt.Errorf("token expiration %ds: the API server takes at least 600", c.TokenExpirationSeconds)
	case strings.ContainsAny(c.Version, " /:@"):
		return c, fmt.Errorf("version %q is not an image tag", c.Version)
	case strings.ContainsAny(c.TrustDomain, " /:"):
		return c, fmt.Errorf("trust domain %q is not a DNS name", c.TrustDomain)
	}
	return c, nil
}

// Validate says what is wrong with c, or nil.
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

// ProxyImage is the sidecar's image.
func (c Config) ProxyImage() string {
	c, _ = c.normalize()
	return c.Registry + "/" + kubemeta.ProxyImage + ":" + c.Version
}

// InitImage is the init step's image: skiff-proxy with the iptables
// tools, its entrypoint `skiff-proxy init` (build/Dockerfile).
func (c Config) InitImage() string {
	c, _ = c.normalize()
	return c.Registry + "/" + kubemeta.InitImage + ":" + c.Version
}

// Mode says who asks for the injection.
type Mode int

const (
	// Manual is skiff inject: the user asks for these pods, so only a
	// pod's own skiff.dev/inject: disabled (and the rules every mode has)
	// leave it alone.
	Manual Mode = iota
	// Admission is the webhook: a pod is injected when it, or else its
	// namespace, is annotated skiff.dev/inject: enabled.
	Admission
)

// Pod is what the injector reads: a pod, or a workload's pod template.
type Pod struct {
	// Namespace is the pod's namespace; "" when not known (a manifest
	// without one), which no namespace rule matches.
	Namespace string
	// NamespaceAnnotations are its namespace's annotations (nil: none).
	NamespaceAnnotations map[string]string
	// Meta and Spec are the pod's (or its template's).
	Meta metav1.ObjectMeta
	Spec corev1.PodSpec
}

// Result is what Inject or Uninject did to a Pod.
type Result struct {
	// Skipped says why the pod was left alone; empty when it was
	// changed or was already as asked.
	Skipped string
	// Warning, when set, is a mistake the user should hear of: an
	// skiff.dev/inject value that means neither enabled nor disabled.
	Warning string
	// Patch is the JSON patch (RFC 6902) from the Pod to the result, its
	// paths relative to the pod (/metadata/..., /spec/...). Empty when
	// nothing changes.
	Patch []Operation
	// Meta and Spec are the result (the input when Patch is empty).
	Meta metav1.ObjectMeta
	Spec corev1.PodSpec
}

// Changed reports whether r changes the pod.
func (r Result) Changed() bool { return len(r.Patch) > 0 }

// Namespaces whose pods are never injected: the cluster's own, and the
// control plane's (its controller must not depend on itself to start).
var excludedNamespaces = []string{"kube-system", kubemeta.Namespace}

// NeverInjected reports whether pods of namespace ns are never injected,
// whatever they or the namespace say: kube-system and the control
// plane's.
func NeverInjected(ns string) bool { return slices.Contains(excludedNamespaces, ns) }

// Inject returns p with the sidecar and the init step, or why it is left
// alone. A pod Skiff injected before is injected afresh (so a new Config
// takes effect) and unchanged when that gives the same pod. An error is
// a pod that asks for injection and cannot have it (an annotation that
// does not parse, a port the proxy needs taken); it never returns half an
// injection.
func (c Config) Inject(p Pod, mode Mode) (Result, error) {
	c, err := c.normalize()
	if err != nil {
		return Result{}, err
	}
	keep := Result{Meta: p.Meta, Spec: p.Spec}
	if reason, warn := c.leaveAlone(p, mode); reason != "" {
		keep.Skipped = reason
		if warn {
			keep.Warning = reason
		}
		return keep, nil
	}
	var ops []Operation
	meta, spec := p.Meta, p.Spec
	if injected(p.Meta) {
		ops, meta, spec = strip(p.Meta, p.Spec)
	}
	add, meta, spec, err := c.add(meta, spec)
	if err != nil {
		return Result{}, err
	}
	if apiequality.Semantic.DeepEqual(meta, p.Meta) && apiequality.Semantic.DeepEqual(spec, p.Spec) {
		return keep, nil // already injected so
	}
	return Result{Patch: append(ops, add...), Meta: meta, Spec: spec}, nil
}

// Uninject returns p without what Inject added: exactly the pod Inject
// was given, except that a list or map Inject created is removed when it
// becomes empty (to the API server an empty list and none are one).
func Uninject(p Pod) Result {
	if !injected(p.Meta) {
		return Result{Skipped: "not injected by Skiff (no " + kubemeta.InjectedAnnotation + " annotation)", Meta: p.Meta, Spec: p.Spec}
	}
	ops, meta, spec := strip(p.Meta, p.Spec)
	return Result{Patch: ops, Meta: meta, Spec: spec}
}

// leaveAlone says why p is not to be injected, or "", and whether that
// is a mistake to warn of.
func (c Config) leaveAlone(p Pod, mode Mode) (reason string, warn bool) {
	if NeverInjected(p.Namespace) {
		return fmt.Sprintf("namespace %s is never injected", p.Namespace), false
	}
	switch v := p.Meta.Annotations[kubemeta.InjectAnnotation]; v {
	case kubemeta.InjectDisabled:
		return kubemeta.InjectAnnotation + ": " + kubemeta.InjectDisabled, false
	case kubemeta.InjectEnabled:
	case "":
		if mode == Admission {
			switch nv := p.NamespaceAnnotations[kubemeta.InjectAnnotation]; nv {
			case kubemeta.InjectEnabled:
			case kubemeta.InjectDisabled:
				return fmt.Sprintf("namespace %q is annotated %s: %s", p.Namespace, kubemeta.InjectAnnotation, kubemeta.InjectDisabled), false
			case "":
				return fmt.Sprintf("neither the pod nor namespace %q is annotated %s: %s", p.Namespace, kubemeta.InjectAnnotation, kubemeta.InjectEnabled), false
			default:
				return fmt.Sprintf("namespace %q: %s: %q is neither %s nor %s", p.Namespace, kubemeta.InjectAnnotation, nv, kubemeta.InjectEnabled, kubemeta.InjectDisabled), true
			}
		}
	default:
		return fmt.Sprintf("%s: %q is neither %s nor %s", kubemeta.InjectAnnotation, v, kubemeta.InjectEnabled, kubemeta.InjectDisabled), true
	}
	if p.Spec.HostNetwork {
		return "hostNetwork: the pod shares the node's network, which the init step must not redirect", false
	}
	if !injected(p.Meta) {
		for _, name := range []string{kubemeta.ProxyContainer, kubemeta.InitContainer} {
			if containerIndex(p.Spec.InitContainers, name) >= 0 || containerIndex(p.Spec.Containers, name) >= 0 {
				return fmt.Sprintf("it has a container named %s that Skiff did not inject (no %s annotation)", name, kubemeta.InjectedAnnotation), false
			}
		}
		for _, v := range p.Spec.Volumes {
			if slices.Contains(ourVolumes, v.Name) {
				return fmt.Sprintf("it has a volume named %s that Skiff did not add (no %s annotation)", v.Name, kubemeta.InjectedAnnotation), false
			}
		}
	} else if containerIndex(p.Spec.Containers, kubemeta.ProxyContainer) >= 0 || containerIndex(p.Spec.Containers, kubemeta.InitContainer) >= 0 {
		return "it has a regular container named " + kubemeta.ProxyContainer + " or " + kubemeta.InitContainer + ": Skiff adds them only as init containers", false
	}
	return "", false
}

var ourVolumes = []string{kubemeta.TokenVolume, kubemeta.AnchorsVolume, kubemeta.XtablesLockVolume}

var ourContainers = []string{kubemeta.InitContainer, kubemeta.ProxyContainer}

func injected(m metav1.ObjectMeta) bool {
	_, ok := m.Annotations[kubemeta.InjectedAnnotation]
	return ok
}

func containerIndex(cs []corev1.Container, name string) int {
	return slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name })
}

// strip removes what Inject adds, returning the patch and the result. The
// removals of one list go from its end, so each index is still right when
// its operation applies.
func strip(meta metav1.ObjectMeta, spec corev1.PodSpec) ([]Operation, metav1.ObjectMeta, corev1.PodSpec) {
	var ops []Operation
	spec = *spec.DeepCopy()
	meta = *meta.DeepCopy()

	var keptInit []corev1.Container
	var initIdx []int
	for i, c := range spec.InitContainers {
		if slices.Contains(ourContainers, c.Name) {
			initIdx = append(initIdx, i)
		} else {
			keptInit = append(keptInit, c)
		}
	}
	ops = append(ops, removeAt("/spec/initContainers", initIdx, len(keptInit) == 0)...)
	if len(initIdx) > 0 {
		spec.InitContainers = keptInit
	}

	var keptVol []corev1.Volume
	var volIdx []int
	for i, v := range spec.Volumes {
		if slices.Contains(ourVolumes, v.Name) {
			volIdx = append(volIdx, i)
		} else {
			keptVol = append(keptVol, v)
		}
	}
	ops = append(ops, removeAt("/spec/volumes", volIdx, len(keptVol) == 0)...)
	if len(volIdx) > 0 {
		spec.Volumes = keptVol
	}

	delete(meta.Annotations, kubemeta.InjectedAnnotation)
	switch {
	case len(meta.Annotations) > 0:
		ops = append(ops, Operation{Op: "remove", Path: "/metadata/annotations/" + escape(kubemeta.InjectedAnnotation)})
	case apiequality.Semantic.DeepEqual(meta, metav1.ObjectMeta{Annotations: meta.Annotations}):
		// Inject made the metadata for its annotation: a template that had
		// none.
		meta.Annotations = nil
		ops = append(ops, Operation{Op: "remove", Path: "/metadata"})
	default:
		meta.Annotations = nil
		ops = append(ops, Operation{Op: "remove", Path: "/metadata/annotations"})
	}
	return ops, meta, spec
}

// removeAt removes the items at idx (ascending) of the list at path, or
// the whole list when all goes.
func removeAt(path string, idx []int, all bool) []Operation {
	if len(idx) == 0 {
		return nil
	}
	if all {
		return []Operation{{Op: "remove", Path: path}}
	}
	ops := make([]Operation, 0, len(idx))
	for _, i := range slices.Backward(idx) {
		ops = append(ops, Operation{Op: "remove", Path: fmt.Sprintf("%s/%d", path, i)})
	}
	return ops
}

// add adds the sidecar, the init step, their volumes and the annotation
// to a pod that has none of them.
func (c Config) add(meta metav1.ObjectMeta, spec corev1.PodSpec) ([]Operation, metav1.ObjectMeta, corev1.PodSpec, error) {
	s, err := c.sidecar(meta, spec)
	if err != nil {
		return nil, meta, spec, err
	}
	var ops []Operation
	meta = *meta.DeepCopy()
	spec = *spec.DeepCopy()

	switch {
	case apiequality.Semantic.DeepEqual(meta, metav1.ObjectMeta{}):
		meta.Annotations = map[string]string{kubemeta.InjectedAnnotation: c.Version}
		ops = append(ops, Operation{Op: "add", Path: "/metadata", Value: map[string]any{"annotations": meta.Annotations}})
	case meta.Annotations == nil:
		meta.Annotations = map[string]string{kubemeta.InjectedAnnotation: c.Version}
		ops = append(ops, Operation{Op: "add", Path: "/metadata/annotations", Value: meta.Annotations})
	default:
		meta.Annotations[kubemeta.InjectedAnnotation] = c.Version
		ops = append(ops, Operation{Op: "add", Path: "/metadata/annotations/" + escape(kubemeta.InjectedAnnotation), Value: c.Version})
	}

	// First the init step, then the proxy, then the pod's own init
	// containers: they run with the proxy up.
	ours := []corev1.Container{s.init, s.proxy}
	if len(spec.InitContainers) == 0 {
		ops = append(ops, Operation{Op: "add", Path: "/spec/initContainers", Value: ours})
	} else {
		ops = append(ops,
			Operation{Op: "add", Path: "/spec/initContainers/0", Value: s.init},
			Operation{Op: "add", Path: "/spec/initContainers/1", Value: s.proxy})
	}
	spec.InitContainers = append(ours, spec.InitContainers...)

	if len(spec.Volumes) == 0 {
		ops = append(ops, Operation{Op: "add", Path: "/spec/volumes", Value: s.volumes})
	} else {
		for _, v := range s.volumes {
			ops = append(ops, Operation{Op: "add", Path: "/spec/volumes/-", Value: v})
		}
	}
	spec.Volumes = append(spec.Volumes, s.volumes...)
	return ops, meta, spec, nil
}

// ErrInvalid marks the errors of a pod that asks for something the
// injector cannot give: an annotation that does not parse, a port the
// proxy needs that a container takes.
var ErrInvalid = errors.New("cannot inject")
