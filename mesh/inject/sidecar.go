package inject

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-mesh/skiff/mesh/kubemeta"
	"github.com/skiff-mesh/skiff/mesh/proxyinit"
)

// The proxy's resources when the pod's annotations name none. No CPU
// limit: a throttled sidecar adds its throttling to every request's
// latency. The memory limit is twice the proxy's default memory budget
// (docs/proxy.md), which the caps are derived for.
var (
	defaultCPURequest    = resource.MustParse("100m")
	defaultMemoryRequest = resource.MustParse("20Mi")
	defaultMemoryLimit   = resource.MustParse("64Mi")
	// minMemoryLimit leaves the proxy a budget (half the limit) above the
	// 10 MiB it holds back for itself.
	minMemoryLimit = resource.MustParse("32Mi")
)

// Environment variables of the proxy container, from the downward API:
// its arguments name the identity through them, so that the identity is
// the namespace and ServiceAccount the API server gave the pod, whatever
// the manifest said or did not say (skiff inject does not know the
// namespace a manifest will be applied to).
const (
	envNamespace      = "SKIFF_POD_NAMESPACE"
	envServiceAccount = "SKIFF_POD_SERVICE_ACCOUNT"
)

// maxOpaquePorts bounds the ports an opaque-ports annotation may expand to:
// the proxy takes a list of ports, not ranges.
const maxOpaquePorts = 1000

// injection is what the injector adds to one pod.
type injection struct {
	init, proxy corev1.Container
	volumes     []corev1.Volume
}

// sidecar builds the injection for a pod from its annotations.
func (c Config) sidecar(meta metav1.ObjectMeta, spec corev1.PodSpec) (injection, error) {
	ann := meta.Annotations
	if err := checkPorts(spec); err != nil {
		return injection{}, err
	}
	skipIn, err := skipInboundPorts(ann[kubemeta.SkipInboundPortsAnnotation])
	if err != nil {
		return injection{}, err
	}
	// The init image's entrypoint is `skiff-proxy init`: these are its
	// flags.
	initArgs := []string{
		"--inbound-port=" + strconv.Itoa(kubemeta.ProxyInboundPort),
		"--outbound-port=" + strconv.Itoa(kubemeta.ProxyOutboundPort),
		"--proxy-uid=" + strconv.Itoa(kubemeta.ProxyUID),
		"--skip-inbound-ports=" + skipIn,
	}
	if v := strings.TrimSpace(ann[kubemeta.SkipOutboundPortsAnnotation]); v != "" {
		if _, err := proxyinit.ParsePorts(v); err != nil {
			return injection{}, annotationError(kubemeta.SkipOutboundPortsAnnotation, v, err)
		}
		initArgs = append(initArgs, "--skip-outbound-ports="+v)
	}

	res, budgetMiB, err := resources(ann)
	if err != nil {
		return injection{}, err
	}
	proxyArgs := []string{
		"--transparent",
		fmt.Sprintf("--inbound-addr=0.0.0.0:%d", kubemeta.ProxyInboundPort),
		fmt.Sprintf("--outbound-addr=127.0.0.1:%d", kubemeta.ProxyOutboundPort),
		// All addresses: the kubelet probes it from the node, Prometheus
		// scrapes it; 4191 is skipped by the init step.
		fmt.Sprintf("--admin-addr=0.0.0.0:%d", kubemeta.ProxyAdminPort),
		"--destination-addr=" + c.ControllerAddr,
		fmt.Sprintf("--identity-id=spiffe://%s/ns/$(%s)/sa/$(%s)", c.TrustDomain, envNamespace, envServiceAccount),
		"--identity-token-file=" + kubemeta.TokenPath,
		"--trust-anchors=" + kubemeta.AnchorsPath,
		"--memory-budget-mib=" + strconv.FormatInt(budgetMiB, 10),
	}
	if v := strings.TrimSpace(ann[kubemeta.OpaquePortsAnnotation]); v != "" {
		list, err := opaquePorts(v)
		if err != nil {
			return injection{}, annotationError(kubemeta.OpaquePortsAnnotation, v, err)
		}
		proxyArgs = append(proxyArgs, "--opaque-ports="+list)
	}

	always := corev1.ContainerRestartPolicyAlways
	var (
		root    int64 = 0
		proxyID int64 = kubemeta.ProxyUID
	)
	admin := func(p string) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: p, Port: intstr.FromInt32(kubemeta.ProxyAdminPort)}}
	}
	in := injection{
		init: corev1.Container{
			Name:  kubemeta.InitContainer,
			Image: c.InitImage(),
			Args:  initArgs,
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("10Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi")},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: kubemeta.XtablesLockVolume, MountPath: "/run"}},
			SecurityContext: &corev1.SecurityContext{
				// Root for iptables, with no capability but the two it
				// needs, and not privileged.
				RunAsUser:                &root,
				RunAsNonRoot:             new(false),
				Privileged:               new(false),
				AllowPrivilegeEscalation: new(false),
				ReadOnlyRootFilesystem:   new(true),
				Capabilities: &corev1.Capabilities{
					Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
					Drop: []corev1.Capability{"ALL"},
				},
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		},
		proxy: corev1.Container{
			Name:          kubemeta.ProxyContainer,
			Image:         c.ProxyImage(),
			RestartPolicy: &always,
			Args:          proxyArgs,
			Ports: []corev1.ContainerPort{
				{Name: "skiff-admin", ContainerPort: kubemeta.ProxyAdminPort, Protocol: corev1.ProtocolTCP},
			},
			Env: []corev1.EnvVar{
				{Name: envNamespace, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				{Name: envServiceAccount, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
			},
			Resources: res,
			VolumeMounts: []corev1.VolumeMount{
				{Name: kubemeta.TokenVolume, MountPath: path.Dir(kubemeta.TokenPath), ReadOnly: true},
				{Name: kubemeta.AnchorsVolume, MountPath: path.Dir(kubemeta.AnchorsPath), ReadOnly: true},
			},
			// The pod's other containers start once this passes: the
			// proxy is serving, with its first certificate.
			StartupProbe:   &corev1.Probe{ProbeHandler: admin("/ready"), PeriodSeconds: 1, FailureThreshold: 120, TimeoutSeconds: 1},
			ReadinessProbe: &corev1.Probe{ProbeHandler: admin("/ready"), PeriodSeconds: 5, FailureThreshold: 3, TimeoutSeconds: 1},
			LivenessProbe:  &corev1.Probe{ProbeHandler: admin("/live"), PeriodSeconds: 10, FailureThreshold: 3, TimeoutSeconds: 1},
			SecurityContext: &corev1.SecurityContext{
				RunAsUser:                &proxyID,
				RunAsGroup:               &proxyID,
				RunAsNonRoot:             new(true),
				Privileged:               new(false),
				AllowPrivilegeEscalation: new(false),
				ReadOnlyRootFilesystem:   new(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		},
		volumes: []corev1.Volume{
			{Name: kubemeta.TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience: kubemeta.TokenAudience, ExpirationSeconds: &c.TokenExpirationSeconds, Path: path.Base(kubemeta.TokenPath),
				}}},
			}}},
			{Name: kubemeta.AnchorsVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: kubemeta.ConfigMap},
				Items:                []corev1.KeyToPath{{Key: kubemeta.TrustAnchorsKey, Path: path.Base(kubemeta.AnchorsPath)}},
			}}},
			{Name: kubemeta.XtablesLockVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
	}
	return in, nil
}

func annotationError(name, value string, err error) error {
	return fmt.Errorf("%w: annotation %s: %q: %w", ErrInvalid, name, value, err)
}

// checkPorts refuses a pod whose containers declare a port the proxy
// listens on: the proxy would not start.
func checkPorts(spec corev1.PodSpec) error {
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			if c.Name == kubemeta.ProxyContainer {
				continue
			}
			for _, p := range c.Ports {
				switch p.ContainerPort {
				case kubemeta.ProxyInboundPort, kubemeta.ProxyOutboundPort, kubemeta.ProxyAdminPort:
					return fmt.Errorf("%w: container %s declares port %d, which the proxy listens on; move it, or annotate the pod %s: %s",
						ErrInvalid, c.Name, p.ContainerPort, kubemeta.InjectAnnotation, kubemeta.InjectDisabled)
				}
			}
		}
	}
	return nil
}

// skipInboundPorts is the init step's --skip-inbound-ports: the
// annotation's ports and the proxy's own (proxyinit's defaults, 4190 and
// 4191: giving the flag replaces them, so they are always added back).
func skipInboundPorts(v string) (string, error) {
	rs, err := proxyinit.ParsePorts(v)
	if err != nil {
		return "", annotationError(kubemeta.SkipInboundPortsAnnotation, v, err)
	}
	defaults, _ := proxyinit.ParsePorts(proxyinit.DefaultSkipInboundPorts)
	var out []string
	for _, d := range defaults {
		covered := false
		for _, r := range rs {
			covered = covered || (r.First <= d.First && d.Last <= r.Last)
		}
		if !covered {
			out = append(out, d.String())
		}
	}
	for _, r := range rs {
		out = append(out, r.String())
	}
	return strings.Join(out, ","), nil
}

// opaquePorts expands the annotation's ports and ranges into the list
// skiff-proxy --opaque-ports takes.
func opaquePorts(v string) (string, error) {
	rs, err := proxyinit.ParsePorts(v)
	if err != nil {
		return "", err
	}
	var out []string
	for _, r := range rs {
		for p := int(r.First); p <= int(r.Last); p++ {
			if len(out) == maxOpaquePorts {
				return "", fmt.Errorf("more than %d ports", maxOpaquePorts)
			}
			out = append(out, strconv.Itoa(p))
		}
	}
	return strings.Join(out, ","), nil
}

// resources are the proxy's requests and limits, and the memory budget
// it derives its caps from (half the memory limit).
func resources(ann map[string]string) (corev1.ResourceRequirements, int64, error) {
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: defaultCPURequest, corev1.ResourceMemory: defaultMemoryRequest},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: defaultMemoryLimit},
	}
	for _, a := range []struct {
		name string
		list corev1.ResourceList
		res  corev1.ResourceName
	}{
		{kubemeta.ProxyCPURequestAnnotation, res.Requests, corev1.ResourceCPU},
		{kubemeta.ProxyCPULimitAnnotation, res.Limits, corev1.ResourceCPU},
		{kubemeta.ProxyMemoryRequestAnnotation, res.Requests, corev1.ResourceMemory},
		{kubemeta.ProxyMemoryLimitAnnotation, res.Limits, corev1.ResourceMemory},
	} {
		v, ok := ann[a.name]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(strings.TrimSpace(v))
		if err != nil {
			return res, 0, annotationError(a.name, v, fmt.Errorf("not a quantity (e.g. 100m, 64Mi)"))
		}
		if q.Sign() <= 0 {
			return res, 0, annotationError(a.name, v, fmt.Errorf("want a positive quantity"))
		}
		a.list[a.res] = q
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := res.Requests[r]
		lim, okLim := res.Limits[r]
		if okReq && okLim && req.Cmp(lim) > 0 {
			return res, 0, fmt.Errorf("%w: the proxy's %s request %s is above its limit %s: set skiff.dev/proxy-%s-limit too", ErrInvalid, r, req.String(), lim.String(), r)
		}
	}
	lim := res.Limits[corev1.ResourceMemory]
	if lim.Cmp(minMemoryLimit) < 0 {
		return res, 0, annotationError(kubemeta.ProxyMemoryLimitAnnotation, lim.String(), fmt.Errorf("below %s: the proxy's memory budget is half its limit, and it holds 10 MiB back for itself", minMemoryLimit.String()))
	}
	return res, lim.Value() / 2 >> 20, nil
}
