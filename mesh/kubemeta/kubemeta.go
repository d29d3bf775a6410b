// Package kubemeta holds the names Skiff's Kubernetes parts agree on: the
// install (skiff install), the injector (skiff inject and the
// skiff-controller inject webhook), skiff check, and the kind and kube
// environments. It is constants only, so that any of them can import it
// without linking the others.
package kubemeta

// The control plane's namespace and objects.
const (
	// Namespace is where skiff install puts the control plane.
	Namespace = "skiff"
	// Controller names the controller's Deployment, ServiceAccount,
	// ClusterRole, ClusterRoleBinding and gRPC Service.
	Controller = "skiff-controller"
	// Injector names the webhook's Service, its serving Secret and the
	// MutatingWebhookConfiguration.
	Injector = "skiff-injector"
	// WebhookName is the webhook's name inside the
	// MutatingWebhookConfiguration (it must be a DNS name).
	WebhookName = "inject.skiff.dev"
	// WebhookPath is the path the API server posts AdmissionReviews to.
	WebhookPath = "/inject"
	// WebhookPort is the port the injector serves HTTPS on in its pod;
	// its Service listens on 443.
	WebhookPort = 8443
	// ConfigMap holds what the injector needs besides its flags: the
	// trust-anchor bundle every proxy verifies peers against
	// (TrustAnchorsKey).
	ConfigMap = "skiff-config"
	// TrustAnchorsKey is the trust-anchor bundle's key in ConfigMap.
	TrustAnchorsKey = "ca-bundle.pem"
	// IssuerSecret is the kubernetes.io/tls Secret holding the identity
	// issuer's certificate (tls.crt, its chain up to the anchor) and key.
	IssuerSecret = "skiff-identity-issuer"
	// GRPCPort is the controller's Destination, Identity and Policy port.
	GRPCPort = 8086
	// ControllerAdminPort serves the controller's /live, /ready, /metrics.
	ControllerAdminPort = 9996
)

// Labels and annotations on workloads and the objects Skiff creates.
const (
	// InjectAnnotation, on a namespace or a pod template, asks for the
	// sidecar: "enabled" or "disabled" (a workload's overrides its
	// namespace's).
	InjectAnnotation = "skiff.dev/inject"
	InjectEnabled    = "enabled"
	InjectDisabled   = "disabled"
	// InjectedAnnotation records on an injected pod the proxy version it
	// was given, which skiff check --proxy compares with the control
	// plane's.
	InjectedAnnotation = "skiff.dev/proxy-version"
	// OpaquePortsAnnotation lists ports (and ranges) forwarded as TCP
	// without protocol detection, e.g. "3306,6379,9000-9010".
	OpaquePortsAnnotation = "skiff.dev/opaque-ports"
	// SkipInboundPortsAnnotation and SkipOutboundPortsAnnotation list
	// ports the init step does not redirect.
	SkipInboundPortsAnnotation  = "skiff.dev/skip-inbound-ports"
	SkipOutboundPortsAnnotation = "skiff.dev/skip-outbound-ports"
	// Proxy resources: "skiff.dev/proxy-cpu-request" and the like; the
	// defaults are in the injector.
	ProxyCPURequestAnnotation    = "skiff.dev/proxy-cpu-request"
	ProxyCPULimitAnnotation      = "skiff.dev/proxy-cpu-limit"
	ProxyMemoryRequestAnnotation = "skiff.dev/proxy-memory-request"
	ProxyMemoryLimitAnnotation   = "skiff.dev/proxy-memory-limit"
	// PartOfLabel marks every object skiff install renders, so that
	// skiff uninstall and skiff check find them.
	PartOfLabel = "app.kubernetes.io/part-of"
	PartOf      = "skiff"
	// ControlPlaneLabel marks the control plane's pods.
	ControlPlaneLabel = "skiff.dev/control-plane-component"
	// ManagedByLabel, with the value Injector, marks the copies of
	// ConfigMap the injector keeps in the namespaces of the pods it
	// injects (mesh/control/injector).
	ManagedByLabel = "app.kubernetes.io/managed-by"
)

// The sidecar as the injector adds it.
const (
	// ProxyContainer is the sidecar's name: a native sidecar (an init
	// container with restartPolicy Always). Discovery takes a pod that
	// has it as meshed.
	ProxyContainer = "skiff-proxy"
	// InitContainer runs skiff-proxy init (mesh/proxyinit) before it.
	InitContainer = "skiff-init"
	// ProxyUID is the uid the proxy runs as, which the init step's rules
	// exempt from redirection (mesh/proxyinit's default).
	ProxyUID = 2102
	// Ports inside the pod (mesh/proxy's defaults).
	ProxyInboundPort  = 4143
	ProxyOutboundPort = 4140
	ProxyAdminPort    = 4191
	// TokenVolume holds the projected ServiceAccount token for the
	// identity audience, at TokenPath.
	TokenVolume = "skiff-identity-token"
	TokenPath   = "/var/run/skiff/identity/token"
	// TokenAudience is the audience of that token
	// (mesh/control/identity/tokenreview.DefaultAudience).
	TokenAudience = "identity.skiff.dev"
	// AnchorsVolume mounts ConfigMap's trust anchors at AnchorsPath.
	AnchorsVolume = "skiff-trust-anchors"
	AnchorsPath   = "/var/run/skiff/anchors/" + TrustAnchorsKey
	// XtablesLockVolume is an emptyDir at /run in the init container:
	// iptables takes its lock file there, and the root filesystem is
	// read-only.
	XtablesLockVolume = "skiff-xtables-lock"
)

// Images. A tag is the skiff version it was built from.
const (
	// DefaultRegistry prefixes the images' names; skiff install and
	// inject take --registry.
	DefaultRegistry    = "ghcr.io/skiff-mesh"
	ProxyImage         = "skiff-proxy"
	InitImage          = "skiff-init" // skiff-proxy init with iptables: its entrypoint is `skiff-proxy init`
	ControllerImage    = "skiff-controller"
	DemoImage          = "skiff-demo"
	DefaultTrustDomain = "cluster.local"
)
