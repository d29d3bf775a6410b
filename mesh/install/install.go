package install

import (
	"errors"
	"fmt"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/skiff-mesh/skiff/mesh/control/gatewayapi"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// Config is what an install is rendered from. The zero value renders the
// default install with a generated identity, except that Version is
// required (it tags the images and is what skiff check --proxy compares
// proxies with).
type Config struct {
	// Version is the Skiff version: the image tag and the
	// app.kubernetes.io/version label of the control plane.
	Version string
	// Registry prefixes the image names; "" means
	// kubemeta.DefaultRegistry.
	Registry string
	// TrustDomain is the SPIFFE trust domain; "" means
	// kubemeta.DefaultTrustDomain.
	TrustDomain string
	// Identity is the trust anchors and issuer to install; nil generates
	// them (GenerateIdentity). LoadIdentity reads supplied files.
	Identity *Identity
	// FailurePolicy is the injector webhook's failurePolicy: "" means
	// Ignore (docs/kubernetes.md says why), or Fail.
	FailurePolicy admissionv1.FailurePolicyType
	// Now reads the clock for the generated certificates; nil means
	// time.Now.
	Now func() time.Time
}

// The paths the controller's volumes are mounted at.
const (
	issuerDir   = "/var/run/skiff/issuer"
	anchorsDir  = "/var/run/skiff/anchors"
	injectorDir = "/var/run/skiff/injector"
)

// controlPlaneUID is the uid (and gid) the control plane runs as: not
// root, and not the proxy's (kubemeta.ProxyUID), which the init step
// exempts from redirection.
const controlPlaneUID = 2103

// webhookTimeoutSeconds bounds one admission call; the API server's own
// limit is 30 s. Injection is a pure function of the pod, so 10 s is
// ample and keeps a slow injector from stalling pod creation long.
const webhookTimeoutSeconds = 10

func (c *Config) normalize() error {
	if strings.TrimSpace(c.Version) == "" {
		return errors.New("install: no version: it tags the images (set --version)")
	}
	if strings.ContainsAny(c.Version, " /:@") {
		return fmt.Errorf("install: version %q is not an image tag", c.Version)
	}
	if c.Registry == "" {
		c.Registry = kubemeta.DefaultRegistry
	}
	c.Registry = strings.TrimSuffix(c.Registry, "/")
	if c.TrustDomain == "" {
		c.TrustDomain = kubemeta.DefaultTrustDomain
	}
	if err := spiffe.ValidateTrustDomain(c.TrustDomain); err != nil {
		return fmt.Errorf("install: --trust-domain: %w", err)
	}
	switch c.FailurePolicy {
	case "":
		c.FailurePolicy = admissionv1.Ignore
	case admissionv1.Fail, admissionv1.Ignore:
	default:
		return fmt.Errorf("install: webhook failure policy %q: want Fail or Ignore", c.FailurePolicy)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Image is the reference of one of Skiff's images in the configured
// registry at the configured version.
func (c *Config) image(name string) string { return c.Registry + "/" + name + ":" + c.Version }

// Render returns every object of the install, in the order kubectl
// should apply them: the namespace, the CRDs, RBAC, configuration and
// Secrets, Services, the Deployment, and last the webhook configuration
// (so nothing calls the injector before its Deployment exists).
func Render(cfg Config) ([]runtime.Object, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	id := cfg.Identity
	if id == nil {
		var err error
		if id, err = GenerateIdentity(cfg.TrustDomain, cfg.Now); err != nil {
			return nil, fmt.Errorf("install: %w", err)
		}
	} else if td := id.Bundle.TrustDomain(); td != cfg.TrustDomain {
		return nil, fmt.Errorf("install: the trust anchors are for trust domain %q, the install is for %q", td, cfg.TrustDomain)
	}
	wh, err := newWebhookCerts(cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	return objects(&cfg, id, wh)
}

// CRDs returns Skiff's own CustomResourceDefinitions (skiff install
// --crds). The Gateway API CRDs the mesh reads are installed from the
// Gateway API release (docs/kubernetes.md).
func CRDs() []runtime.Object {
	return []runtime.Object{circuitBreakerCRD()}
}

// Uninstall returns what skiff uninstall deletes: every object of the
// install, cluster-scoped ones included, as apiVersion, kind and name
// only, in the reverse of the install's order (the webhook configuration
// first, the namespace last).
func Uninstall() []runtime.Object {
	cfg := Config{Version: "uninstall"}
	if err := cfg.normalize(); err != nil {
		panic(err) // a constant configuration
	}
	full, err := objects(&cfg, nil, nil)
	if err != nil {
		panic(err) // nothing in it can fail without identity material
	}
	out := make([]runtime.Object, 0, len(full))
	for i := len(full) - 1; i >= 0; i-- {
		out = append(out, reference(full[i]))
	}
	return out
}

// reference keeps apiVersion, kind, name and namespace of obj.
func reference(obj runtime.Object) runtime.Object {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		panic(fmt.Sprintf("install: %T: %v", obj, err))
	}
	u := &unstructured.Unstructured{Object: m}
	ref := &unstructured.Unstructured{}
	ref.SetAPIVersion(u.GetAPIVersion())
	ref.SetKind(u.GetKind())
	ref.SetName(u.GetName())
	if ns := u.GetNamespace(); ns != "" {
		ref.SetNamespace(ns)
	}
	return ref
}

// objects builds the install. id and wh nil leave the Secrets and the
// ConfigMap without data and the webhook without a CA bundle, for
// Uninstall.
func objects(cfg *Config, id *Identity, wh *webhookCerts) ([]runtime.Object, error) {
	var (
		anchorsPEM, issuerCertPEM, issuerKeyPEM []byte
		err                                     error
	)
	if id != nil {
		anchorsPEM = id.Bundle.MarshalPEM()
		if issuerCertPEM, issuerKeyPEM, err = id.Issuer.MarshalPEM(); err != nil {
			return nil, fmt.Errorf("install: %w", err)
		}
	}
	if wh == nil {
		wh = &webhookCerts{}
	}
	objs := []runtime.Object{namespace()}
	objs = append(objs, CRDs()...)
	objs = append(objs,
		serviceAccount(),
		clusterRole(),
		clusterRoleBinding(),
		configMap(anchorsPEM),
		tlsSecret(kubemeta.IssuerSecret, issuerCertPEM, issuerKeyPEM, nil),
		tlsSecret(kubemeta.Injector, wh.certPEM, wh.keyPEM, wh.caPEM),
		service(kubemeta.Controller, corev1.ServicePort{Name: "grpc", Port: kubemeta.GRPCPort, TargetPort: intstr.FromString("grpc")}),
		service(kubemeta.Injector, corev1.ServicePort{Name: "https-webhook", Port: 443, TargetPort: intstr.FromString("webhook")}),
		deployment(cfg),
		webhookConfiguration(cfg, wh.caPEM),
	)
	return objs, nil
}

func ptr[T any](v T) *T { return &v }

// meta is the ObjectMeta every installed object has: its name, the
// namespace for namespaced objects, and the part-of label.
func meta(name string, namespaced bool) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Name: name, Labels: map[string]string{kubemeta.PartOfLabel: kubemeta.PartOf}}
	if namespaced {
		m.Namespace = kubemeta.Namespace
	}
	return m
}

func namespace() *corev1.Namespace {
	m := meta(kubemeta.Namespace, false)
	// The label keeps the webhook's namespaceSelector away from the
	// control plane as well as its name does; the annotation tells the
	// injector itself (skiff inject included).
	m.Labels[kubemeta.InjectAnnotation] = kubemeta.InjectDisabled
	m.Annotations = map[string]string{kubemeta.InjectAnnotation: kubemeta.InjectDisabled}
	return &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: m}
}

// circuitBreakerCRD is gatewayapi's rendering of the CircuitBreaker CRD
// with the part-of label.
func circuitBreakerCRD() *unstructured.Unstructured {
	var m map[string]any
	if err := yaml.Unmarshal(gatewayapi.CircuitBreakerCRD(), &m); err != nil {
		panic(fmt.Sprintf("install: the CircuitBreaker CRD does not parse: %v", err))
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetLabels(map[string]string{kubemeta.PartOfLabel: kubemeta.PartOf})
	return u
}

func serviceAccount() *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: meta(kubemeta.Controller, true),
	}
}

// clusterRole grants the control plane exactly what it calls:
// mesh/discovery/kube's informers (Services, EndpointSlices, Pods),
// mesh/control/identity/tokenreview's TokenReviews, the injector's
// namespace informer (mesh/control/injector reads their skiff.dev/inject
// annotation), and the injector's copies of the anchors ConfigMap in the
// namespaces it injects pods into: create (which RBAC cannot restrict by
// name) and get and update of that one name, never list or watch. The
// Policy service reads Gateway API objects from a file (--resources), not
// the API, so no rule names them; the issuer and trust anchors come in as
// volumes, so no Secret is read through the API.
func clusterRole() *rbacv1.ClusterRole {
	read := []string{"get", "list", "watch"}
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: meta(kubemeta.Controller, false),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces", "pods", "services"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{kubemeta.ConfigMap}, Verbs: []string{"get", "update"}},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		},
	}
}

func clusterRoleBinding() *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: meta(kubemeta.Controller, false),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: kubemeta.Controller},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: kubemeta.Controller, Namespace: kubemeta.Namespace}},
	}
}

func configMap(anchorsPEM []byte) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(kubemeta.ConfigMap, true),
	}
	if anchorsPEM != nil {
		cm.Data = map[string]string{kubemeta.TrustAnchorsKey: string(anchorsPEM)}
	}
	return cm
}

// CAKey holds, in the injector's serving Secret, the CA that signed its
// certificate: the webhook's caBundle (cert-manager's key for it).
const CAKey = "ca.crt"

// tlsSecret is a kubernetes.io/tls Secret; caPEM, when set, goes under
// CAKey.
func tlsSecret(name string, certPEM, keyPEM, caPEM []byte) *corev1.Secret {
	s := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: meta(name, true),
		Type:       corev1.SecretTypeTLS,
	}
	if certPEM != nil {
		s.Data = map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}
		if caPEM != nil {
			s.Data[CAKey] = caPEM
		}
	}
	return s
}

// selector picks the control plane's pods.
func selector() map[string]string {
	return map[string]string{kubemeta.ControlPlaneLabel: "controller"}
}

func service(name string, port corev1.ServicePort) *corev1.Service {
	port.Protocol = corev1.ProtocolTCP
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(name, true),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selector(),
			Ports:    []corev1.ServicePort{port},
		},
	}
}

// controllerArgs are skiff-controller all's flags, as
// cmd/skiff-controller defines them: kube discovery, TokenReview, the
// issuer from its Secret and the anchors from the ConfigMap (both re-read
// when kubelet updates the volumes, so a rotation needs no restart).
func controllerArgs(cfg *Config) []string {
	return []string{
		"all",
		fmt.Sprintf("--grpc-addr=:%d", kubemeta.GRPCPort),
		fmt.Sprintf("--admin-addr=:%d", kubemeta.ControllerAdminPort),
		"--discovery=kube",
		"--token-verifier=kube",
		"--token-audience=" + kubemeta.TokenAudience,
		"--trust-domain=" + cfg.TrustDomain,
		"--identity-issuer-cert=" + issuerDir + "/" + corev1.TLSCertKey,
		"--identity-issuer-key=" + issuerDir + "/" + corev1.TLSPrivateKeyKey,
		"--trust-anchors=" + kubemeta.AnchorsPath,
		"--log-format=json",
	}
}

// injectorAdminPort serves the injector's /live and /ready.
const injectorAdminPort = 9997

// injectorArgs are skiff-controller inject's flags, as
// cmd/skiff-controller defines them: it serves the webhook with the
// serving Secret's certificate (re-read when it changes) and injects the
// proxy image of this registry and version. It reads the namespaces'
// annotations through the API (the ClusterRole's namespaces rule), and
// copies the trust anchors it mounts into the namespaces of the pods it
// injects (the configmaps rules).
func injectorArgs(cfg *Config) []string {
	return []string{
		"inject",
		fmt.Sprintf("--addr=:%d", kubemeta.WebhookPort),
		fmt.Sprintf("--admin-addr=:%d", injectorAdminPort),
		"--tls-cert-file=" + injectorDir + "/" + corev1.TLSCertKey,
		"--tls-key-file=" + injectorDir + "/" + corev1.TLSPrivateKeyKey,
		"--registry=" + cfg.Registry,
		"--version=" + cfg.Version,
		"--trust-domain=" + cfg.TrustDomain,
		"--trust-anchors=" + kubemeta.AnchorsPath,
		"--log-format=json",
	}
}

// containerSecurity runs a container as nobody special, with nothing
// writable and no capabilities.
func containerSecurity() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr(true),
		RunAsUser:                ptr[int64](controlPlaneUID),
		RunAsGroup:               ptr[int64](controlPlaneUID),
		AllowPrivilegeEscalation: ptr(false),
		ReadOnlyRootFilesystem:   ptr(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func probe(path, port string) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString(port)}},
		PeriodSeconds:    10,
		TimeoutSeconds:   1,
		FailureThreshold: 3,
	}
}

func resources(cpu, memory, memoryLimit string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memoryLimit)},
	}
}

func deployment(cfg *Config) *appsv1.Deployment {
	m := meta(kubemeta.Controller, true)
	m.Labels["app.kubernetes.io/name"] = kubemeta.Controller
	m.Labels["app.kubernetes.io/version"] = cfg.Version
	podLabels := map[string]string{kubemeta.PartOfLabel: kubemeta.PartOf, "app.kubernetes.io/version": cfg.Version}
	for k, v := range selector() {
		podLabels[k] = v
	}
	secretMode := ptr[int32](0o440)
	controller := corev1.Container{
		Name:            "controller",
		Image:           cfg.image(kubemeta.ControllerImage),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            controllerArgs(cfg),
		Ports: []corev1.ContainerPort{
			{Name: "grpc", ContainerPort: kubemeta.GRPCPort, Protocol: corev1.ProtocolTCP},
			{Name: "admin", ContainerPort: kubemeta.ControllerAdminPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe:  probe("/ready", "admin"),
		LivenessProbe:   probe("/live", "admin"),
		Resources:       resources("100m", "64Mi", "256Mi"),
		SecurityContext: containerSecurity(),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "identity-issuer", MountPath: issuerDir, ReadOnly: true},
			{Name: kubemeta.AnchorsVolume, MountPath: anchorsDir, ReadOnly: true},
		},
	}
	injector := corev1.Container{
		Name:            "injector",
		Image:           cfg.image(kubemeta.ControllerImage),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            injectorArgs(cfg),
		Ports: []corev1.ContainerPort{
			{Name: "webhook", ContainerPort: kubemeta.WebhookPort, Protocol: corev1.ProtocolTCP},
			{Name: "injector-admin", ContainerPort: injectorAdminPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe:  probe("/ready", "injector-admin"),
		LivenessProbe:   probe("/live", "injector-admin"),
		Resources:       resources("50m", "32Mi", "128Mi"),
		SecurityContext: containerSecurity(),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "injector-tls", MountPath: injectorDir, ReadOnly: true},
			{Name: kubemeta.AnchorsVolume, MountPath: anchorsDir, ReadOnly: true},
		},
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: m,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: selector()},
			// The webhook stays up through a rollout: a pod created
			// while no injector serves misses its sidecar (Ignore) or
			// is refused (Fail).
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr(intstr.FromInt32(0)),
					MaxSurge:       ptr(intstr.FromInt32(1)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels,
					Annotations: map[string]string{kubemeta.InjectAnnotation: kubemeta.InjectDisabled},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName:           kubemeta.Controller,
					AutomountServiceAccountToken: ptr(true),
					EnableServiceLinks:           ptr(false),
					NodeSelector:                 map[string]string{corev1.LabelOSStable: "linux"},
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr(true),
						FSGroup:        ptr[int64](controlPlaneUID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{controller, injector},
					Volumes: []corev1.Volume{
						{Name: "identity-issuer", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: kubemeta.IssuerSecret, DefaultMode: secretMode}}},
						{Name: kubemeta.AnchorsVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: kubemeta.ConfigMap}}}},
						{Name: "injector-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: kubemeta.Injector, DefaultMode: secretMode}}},
					},
				},
			},
		},
	}
}

// webhookConfiguration sends the injector every pod created outside
// kube-system and skiff, except those whose namespace or own labels say
// skiff.dev/inject=disabled (a label opt-out that spares the call). The
// injector decides the rest from the skiff.dev/inject annotations of the
// pod and its namespace, which a selector cannot read
// (mesh/control/injector).
func webhookConfiguration(cfg *Config, caPEM []byte) *admissionv1.MutatingWebhookConfiguration {
	notDisabled := metav1.LabelSelectorRequirement{Key: kubemeta.InjectAnnotation, Operator: metav1.LabelSelectorOpNotIn, Values: []string{kubemeta.InjectDisabled}}
	return &admissionv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: meta(kubemeta.Injector, false),
		Webhooks: []admissionv1.MutatingWebhook{{
			Name: kubemeta.WebhookName,
			ClientConfig: admissionv1.WebhookClientConfig{
				Service:  &admissionv1.ServiceReference{Namespace: kubemeta.Namespace, Name: kubemeta.Injector, Path: ptr(kubemeta.WebhookPath), Port: ptr[int32](443)},
				CABundle: caPEM,
			},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: ptr(admissionv1.NamespacedScope)},
			}},
			FailurePolicy: ptr(cfg.FailurePolicy),
			MatchPolicy:   ptr(admissionv1.Equivalent),
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", kubemeta.Namespace}},
				notDisabled,
			}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{notDisabled}},
			// The injector writes the anchors ConfigMap into the pod's
			// namespace, except on a dry run.
			SideEffects:             ptr(admissionv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr[int32](webhookTimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
			// Another webhook that changes the pod after ours (adding a
			// container, say) gets us called again; injection is
			// idempotent.
			ReinvocationPolicy: ptr(admissionv1.IfNeededReinvocationPolicy),
		}},
	}
}
