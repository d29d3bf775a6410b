// Package check is skiff check: it reads a cluster through client-go and
// says, check by check, whether Skiff can be installed there (Pre) or is
// installed and healthy: the API reachable, the CRDs present, the control
// plane ready, the injector webhook wired to its serving certificate, the
// certificates valid for long enough, and (Proxy) every injected proxy
// ready and of the control plane's version.
//
// Checks only read, except the SelfSubjectAccessReviews of Pre, which
// create nothing. Every failed check says what is wrong and, where it can,
// what to do.
package check

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-mesh/skiff/mesh/install"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// Defaults of [Config].
const (
	// DefaultExpiryWarning is how long before a certificate's expiry
	// check fails: 60 days, the threshold of `linkerd check`, and time
	// enough to rotate an anchor in the two steps the procedure takes.
	DefaultExpiryWarning = 60 * 24 * time.Hour
	// MinKubernetes is the oldest Kubernetes the injected pods run on:
	// native sidecars (init containers with restartPolicy Always) are on
	// by default from 1.29.
	MinKubernetes = "1.29.0"
)

// GatewayAPIVersion is the Gateway API release whose CRDs the mesh is
// built against (go.mod's sigs.k8s.io/gateway-api).
const GatewayAPIVersion = "v1.6.3"

// Config says what to check and how to reach the cluster. Client and
// Dynamic are required; the zero value of every other field means its
// default.
type Config struct {
	// Client reads the cluster's objects.
	Client kubernetes.Interface
	// Dynamic reads CustomResourceDefinitions
	// (k8s.io/apiextensions-apiserver is not a dependency of Skiff).
	Dynamic dynamic.Interface
	// Pre checks that Skiff can be installed, instead of that it is.
	Pre bool
	// Proxy adds the data-plane checks: every injected pod's proxy.
	Proxy bool
	// ExpiryWarning fails a certificate that expires sooner than this;
	// zero means DefaultExpiryWarning.
	ExpiryWarning time.Duration
	// Now reads the clock; nil means time.Now.
	Now func() time.Time
}

// Result values of a [Check].
const (
	Success = "success"
	Error   = "error"
)

// Check is one line of the report.
type Check struct {
	Description string `json:"description"`
	Result      string `json:"result"`
	// Error says what is wrong (and what to do) when Result is Error.
	Error string `json:"error,omitempty"`
}

// Category groups the checks of one part.
type Category struct {
	Name   string  `json:"categoryName"`
	Checks []Check `json:"checks"`
}

// Report is the outcome of [Run].
type Report struct {
	Success    bool       `json:"success"`
	Categories []Category `json:"categories"`
}

func (r *Report) category(name string) *Category {
	r.Categories = append(r.Categories, Category{Name: name})
	return &r.Categories[len(r.Categories)-1]
}

// ok and fail add a line; fail's message is formatted.
func (c *Category) ok(desc string) {
	c.Checks = append(c.Checks, Check{Description: desc, Result: Success})
}
func (c *Category) fail(desc, format string, args ...any) {
	c.Checks = append(c.Checks, Check{Description: desc, Result: Error, Error: fmt.Sprintf(format, args...)})
}

// result adds desc as ok when err is nil, as failed with err otherwise.
func (c *Category) result(desc string, err error) {
	if err != nil {
		c.fail(desc, "%v", err)
		return
	}
	c.ok(desc)
}

// Run runs the checks and returns the report; it fails only for a
// configuration error. A check that cannot reach the API is a failed
// check, not an error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Client == nil || cfg.Dynamic == nil {
		return nil, errors.New("check: Config.Client and Config.Dynamic are required")
	}
	if cfg.ExpiryWarning <= 0 {
		cfg.ExpiryWarning = DefaultExpiryWarning
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Report{}
	c := &checker{Config: cfg}
	if !c.api(ctx, r.category("kubernetes-api")) {
		r.finish()
		return r, nil
	}
	if cfg.Pre {
		c.pre(ctx, r.category("pre-install"))
		c.crds(ctx, r.category("gateway-api-crds"), gatewayCRDs)
		r.finish()
		return r, nil
	}
	c.crds(ctx, r.category("crds"), append(skiffCRDs(), gatewayCRDs...))
	c.controlPlane(ctx, r.category("control-plane"))
	c.webhook(ctx, r.category("injector-webhook"))
	c.certificates(ctx, r.category("certificates"))
	if cfg.Proxy {
		c.proxies(ctx, r.category("data-plane"))
	}
	r.finish()
	return r, nil
}

func (r *Report) finish() {
	r.Success = true
	for _, cat := range r.Categories {
		for _, ch := range cat.Checks {
			if ch.Result != Success {
				r.Success = false
			}
		}
	}
}

// WriteTable writes the report for people: a heading per category, a
// ✔ or ✘ line per check, a failed check's reason indented under it, and
// a last line with the verdict.
func (r *Report) WriteTable(w io.Writer) error {
	var b bytes.Buffer
	for i, cat := range r.Categories {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s\n%s\n", cat.Name, strings.Repeat("-", len(cat.Name)))
		for _, ch := range cat.Checks {
			if ch.Result == Success {
				fmt.Fprintf(&b, "✔ %s\n", ch.Description)
				continue
			}
			fmt.Fprintf(&b, "✘ %s\n", ch.Description)
			for l := range strings.SplitSeq(ch.Error, "\n") {
				fmt.Fprintf(&b, "    %s\n", l)
			}
		}
	}
	verdict := "✔"
	if !r.Success {
		verdict = "✘"
	}
	fmt.Fprintf(&b, "\nStatus check results are %s\n", verdict)
	_, err := w.Write(b.Bytes())
	return err
}

// WriteJSON writes the report for machines.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

type checker struct {
	Config
	// version is the control plane's, once controlPlane has read it.
	version string
}

// api checks that the API answers, and its version; false stops the run.
func (c *checker) api(_ context.Context, cat *Category) bool {
	info, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		cat.fail("can reach the Kubernetes API", "%v: check --kubeconfig and --context, and that the cluster is up", err)
		return false
	}
	cat.ok(fmt.Sprintf("can reach the Kubernetes API (%s)", info.GitVersion))
	desc := "Kubernetes is " + MinKubernetes + " or newer (native sidecars)"
	v, err := version.ParseGeneric(info.GitVersion)
	switch {
	case err != nil:
		cat.fail(desc, "cannot read the server version %q: %v", info.GitVersion, err)
	case !v.AtLeast(version.MustParseGeneric(MinKubernetes)):
		cat.fail(desc, "the API server is %s: the injected proxy is a native sidecar, which needs %s or newer", info.GitVersion, MinKubernetes)
	default:
		cat.ok(desc)
	}
	return true
}

// access is one permission skiff install's objects need.
type access struct {
	group, resource, kind, namespace string
}

var installAccess = []access{
	{"", "namespaces", "Namespaces", ""},
	{"apiextensions.k8s.io", "customresourcedefinitions", "CustomResourceDefinitions", ""},
	{"rbac.authorization.k8s.io", "clusterroles", "ClusterRoles", ""},
	{"rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBindings", ""},
	{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", "MutatingWebhookConfigurations", ""},
	{"", "serviceaccounts", "ServiceAccounts", kubemeta.Namespace},
	{"", "configmaps", "ConfigMaps", kubemeta.Namespace},
	{"", "secrets", "Secrets", kubemeta.Namespace},
	{"", "services", "Services", kubemeta.Namespace},
	{"apps", "deployments", "Deployments", kubemeta.Namespace},
}

func (c *checker) pre(ctx context.Context, cat *Category) {
	for _, a := range installAccess {
		desc := "can create " + a.kind
		if a.namespace != "" {
			desc += " in namespace " + a.namespace
		}
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Group: a.group, Resource: a.resource, Namespace: a.namespace},
		}}
		got, err := c.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		switch {
		case err != nil:
			cat.fail(desc, "SelfSubjectAccessReview: %v", err)
		case !got.Status.Allowed:
			reason := got.Status.Reason
			if reason == "" {
				reason = "no RBAC rule allows it"
			}
			cat.fail(desc, "not allowed (%s): skiff install needs a cluster administrator", reason)
		default:
			cat.ok(desc)
		}
	}
	var found []string
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, kubemeta.Namespace, metav1.GetOptions{}); err == nil {
		found = append(found, "Namespace "+kubemeta.Namespace)
	} else if !apierrors.IsNotFound(err) {
		cat.fail("no Skiff install exists", "reading Namespace %s: %v", kubemeta.Namespace, err)
		return
	}
	if _, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, kubemeta.Injector, metav1.GetOptions{}); err == nil {
		found = append(found, "MutatingWebhookConfiguration "+kubemeta.Injector)
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Get(ctx, kubemeta.Controller, metav1.GetOptions{}); err == nil {
		found = append(found, "ClusterRole "+kubemeta.Controller)
	}
	if len(found) > 0 {
		cat.fail("no Skiff install exists", "found %s: run skiff check (without --pre) on it, or skiff uninstall | kubectl delete --ignore-not-found -f - first", strings.Join(found, ", "))
		return
	}
	cat.ok("no Skiff install exists")
}

// crd is a CustomResourceDefinition the mesh needs, and the version of
// it the mesh reads.
type crd struct {
	name, version, from string
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// gatewayCRDs are the Gateway API CRDs the mesh reads; install.md says
// how to install them.
var gatewayCRDs = []crd{
	{"httproutes.gateway.networking.k8s.io", "v1", "gateway"},
	{"grpcroutes.gateway.networking.k8s.io", "v1", "gateway"},
	{"xbackendtrafficpolicies.gateway.networking.x-k8s.io", "v1alpha1", "gateway"},
}

// skiffCRDs are the install's own, read from what it renders.
func skiffCRDs() []crd {
	var out []crd
	for _, o := range install.CRDs() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
		for _, v := range versions {
			if m, ok := v.(map[string]any); ok && m["storage"] == true {
				out = append(out, crd{u.GetName(), fmt.Sprint(m["name"]), "skiff"})
			}
		}
	}
	return out
}

func (c *checker) crds(ctx context.Context, cat *Category, want []crd) {
	for _, w := range want {
		desc := "CRD " + w.name + " is installed"
		fix := "skiff install --crds | kubectl apply -f -"
		if w.from == "gateway" {
			fix = "install the Gateway API " + GatewayAPIVersion + " CRDs (docs/kubernetes.md)"
		}
		u, err := c.Dynamic.Resource(crdGVR).Get(ctx, w.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cat.fail(desc, "not found: %s", fix)
			continue
		}
		if err != nil {
			cat.fail(desc, "%v", err)
			continue
		}
		if err := crdServes(u, w.version); err != nil {
			cat.fail(desc, "%v: %s", err, fix)
			continue
		}
		if w.from == "gateway" {
			ann := u.GetAnnotations()
			if v := ann["gateway.networking.k8s.io/bundle-version"]; v != "" {
				desc += fmt.Sprintf(" (Gateway API %s, %s channel)", v, ann["gateway.networking.k8s.io/channel"])
			}
		}
		cat.ok(desc)
	}
}

// crdServes says why u is not established or does not serve version.
func crdServes(u *unstructured.Unstructured, version string) error {
	established := false
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, cond := range conds {
		if m, ok := cond.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
			established = true
		}
	}
	if !established {
		return errors.New("not established yet (no Established=True condition)")
	}
	versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
	var served []string
	for _, v := range versions {
		if m, ok := v.(map[string]any); ok && m["served"] == true {
			served = append(served, fmt.Sprint(m["name"]))
		}
	}
	if !slices.Contains(served, version) {
		return fmt.Errorf("serves %v, the mesh reads %s", served, version)
	}
	return nil
}

func (c *checker) controlPlane(ctx context.Context, cat *Category) {
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, kubemeta.Namespace, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			cat.fail("namespace "+kubemeta.Namespace+" exists", "not found: Skiff is not installed (skiff install | kubectl apply -f -)")
		} else {
			cat.fail("namespace "+kubemeta.Namespace+" exists", "%v", err)
		}
		return
	}
	cat.ok("namespace " + kubemeta.Namespace + " exists")
	desc := "Deployment " + kubemeta.Controller + " is ready"
	d, err := c.Client.AppsV1().Deployments(kubemeta.Namespace).Get(ctx, kubemeta.Controller, metav1.GetOptions{})
	if err != nil {
		cat.fail(desc, "%v", err)
		return
	}
	c.version = d.Labels["app.kubernetes.io/version"]
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.ObservedGeneration < d.Generation:
		cat.fail(desc, "the Deployment controller has not seen generation %d yet (observed %d)", d.Generation, st.ObservedGeneration)
	case st.UpdatedReplicas < want || st.ReadyReplicas < want || st.AvailableReplicas < want:
		cat.fail(desc, "%d of %d replicas ready, %d updated: kubectl -n %s describe deployment %s; kubectl -n %s logs deploy/%s --all-containers",
			st.ReadyReplicas, want, st.UpdatedReplicas, kubemeta.Namespace, kubemeta.Controller, kubemeta.Namespace, kubemeta.Controller)
	default:
		cat.ok(fmt.Sprintf("%s (%d/%d, version %s)", desc, st.ReadyReplicas, want, c.version))
	}
}

// webhookHost is the name the API server dials the injector Service by.
const webhookHost = kubemeta.Injector + "." + kubemeta.Namespace + ".svc"

func (c *checker) webhook(ctx context.Context, cat *Category) {
	desc := "MutatingWebhookConfiguration " + kubemeta.Injector + " exists"
	mwc, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, kubemeta.Injector, metav1.GetOptions{})
	if err != nil {
		cat.fail(desc, "%v", err)
		return
	}
	if len(mwc.Webhooks) == 0 {
		cat.fail(desc, "it has no webhooks")
		return
	}
	cat.ok(desc)

	desc = "the webhook's CA bundle verifies the injector's serving certificate"
	sec, err := c.Client.CoreV1().Secrets(kubemeta.Namespace).Get(ctx, kubemeta.Injector, metav1.GetOptions{})
	if err != nil {
		cat.fail(desc, "reading Secret %s/%s: %v", kubemeta.Namespace, kubemeta.Injector, err)
	} else {
		cat.result(desc, c.webhookCA(mwc.Webhooks, sec))
	}

	desc = "Service " + kubemeta.Injector + " has ready endpoints"
	eps, err := c.Client.DiscoveryV1().EndpointSlices(kubemeta.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + kubemeta.Injector})
	if err != nil {
		cat.fail(desc, "%v", err)
		return
	}
	ready := 0
	for _, s := range eps.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready++
			}
		}
	}
	if ready == 0 {
		cat.fail(desc, "none: the API server cannot call the injector, so pods are created without a sidecar (failurePolicy Ignore) or refused (Fail); see the control-plane checks")
		return
	}
	cat.ok(fmt.Sprintf("%s (%d)", desc, ready))
}

// webhookCA checks every webhook's caBundle against the serving Secret:
// the bundle must verify the Secret's certificate for webhookHost.
func (c *checker) webhookCA(hooks []admissionv1.MutatingWebhook, sec *corev1.Secret) error {
	certs, err := spiffe.ParseCertificatesPEM(sec.Data[corev1.TLSCertKey])
	if err != nil {
		return fmt.Errorf("the serving Secret %s/%s %s: %w", kubemeta.Namespace, kubemeta.Injector, corev1.TLSCertKey, err)
	}
	for _, h := range hooks {
		roots := x509.NewCertPool()
		if len(h.ClientConfig.CABundle) == 0 || !roots.AppendCertsFromPEM(h.ClientConfig.CABundle) {
			return fmt.Errorf("webhook %s has no CA bundle: re-apply skiff install", h.Name)
		}
		inter := x509.NewCertPool()
		for _, ic := range certs[1:] {
			inter.AddCert(ic)
		}
		// At the certificate's NotBefore: its expiry is the validity
		// lines' to report, not this one's.
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: webhookHost, CurrentTime: certs[0].NotBefore.Add(time.Second)}); err != nil {
			return fmt.Errorf("webhook %s: its caBundle does not verify the certificate of Secret %s/%s for %s (%w): the API server will refuse to call the injector; re-apply skiff install, which renders both together",
				h.Name, kubemeta.Namespace, kubemeta.Injector, webhookHost, err)
		}
	}
	return nil
}

func (c *checker) certificates(ctx context.Context, cat *Category) {
	var bundle *spiffe.Bundle
	desc := "trust anchors (ConfigMap " + kubemeta.ConfigMap + ")"
	cm, err := c.Client.CoreV1().ConfigMaps(kubemeta.Namespace).Get(ctx, kubemeta.ConfigMap, metav1.GetOptions{})
	if err != nil {
		cat.fail(desc+" are valid", "%v", err)
	} else if certs, err := spiffe.ParseCertificatesPEM([]byte(cm.Data[kubemeta.TrustAnchorsKey])); err != nil {
		cat.fail(desc+" are valid", "%s: %v", kubemeta.TrustAnchorsKey, err)
	} else {
		for _, a := range certs {
			c.validity(cat, fmt.Sprintf("trust anchor %q", a.Subject.CommonName), a)
		}
		if b, err := spiffe.NewBundle(trustDomain(certs), certs...); err == nil {
			bundle = b
		}
	}

	sec, err := c.Client.CoreV1().Secrets(kubemeta.Namespace).Get(ctx, kubemeta.IssuerSecret, metav1.GetOptions{})
	if err != nil {
		cat.fail("identity issuer (Secret "+kubemeta.IssuerSecret+") is valid", "%v", err)
	} else if certs, err := spiffe.ParseCertificatesPEM(sec.Data[corev1.TLSCertKey]); err != nil {
		cat.fail("identity issuer (Secret "+kubemeta.IssuerSecret+") is valid", "%s: %v", corev1.TLSCertKey, err)
	} else {
		issuer := certs[0]
		name := fmt.Sprintf("identity issuer %q", issuer.Subject.CommonName)
		c.validity(cat, name, issuer)
		if bundle != nil {
			desc := name + " chains to the trust anchors"
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			for _, a := range bundle.Anchors() {
				roots.AddCert(a)
			}
			for _, ic := range certs[1:] {
				inter.AddCert(ic)
			}
			// At the issuer's own NotBefore, so that an expired issuer is
			// reported once, by its validity line.
			_, err := issuer.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: issuer.NotBefore.Add(time.Second), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if err != nil {
				cat.fail(desc, "%v: proxies would reject every certificate it signs; supply an issuer signed by an anchor of %s/%s", err, kubemeta.ConfigMap, kubemeta.TrustAnchorsKey)
			} else {
				cat.ok(desc)
			}
		}
	}

	ws, err := c.Client.CoreV1().Secrets(kubemeta.Namespace).Get(ctx, kubemeta.Injector, metav1.GetOptions{})
	if err != nil {
		cat.fail("webhook serving certificate (Secret "+kubemeta.Injector+") is valid", "%v", err)
		return
	}
	for _, k := range []string{install.CAKey, corev1.TLSCertKey} {
		certs, err := spiffe.ParseCertificatesPEM(ws.Data[k])
		if err != nil {
			cat.fail("webhook certificate "+k+" (Secret "+kubemeta.Injector+") is valid", "%v", err)
			continue
		}
		label := "webhook serving certificate"
		if k == install.CAKey {
			label = "webhook CA"
		}
		c.validity(cat, fmt.Sprintf("%s %q", label, certs[0].Subject.CommonName), certs[0])
	}
}

// validity adds the line "name is valid until <date>" when cert is valid
// now and for ExpiryWarning more, a failed one otherwise.
func (c *checker) validity(cat *Category, name string, cert *x509.Certificate) {
	now := c.Now()
	until := cert.NotAfter.UTC().Format(time.DateOnly)
	desc := fmt.Sprintf("%s is valid until %s and not expiring within %d days", name, until, int(c.ExpiryWarning.Hours()/24))
	switch {
	case now.Before(cert.NotBefore):
		cat.fail(desc, "not valid before %s (clock skew?)", cert.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(cert.NotAfter):
		cat.fail(desc, "expired on %s: rotate it (docs/identity.md)", cert.NotAfter.UTC().Format(time.RFC3339))
	case cert.NotAfter.Sub(now) < c.ExpiryWarning:
		cat.fail(desc, "expires on %s, in %d days: rotate it (docs/identity.md)", cert.NotAfter.UTC().Format(time.RFC3339), int(cert.NotAfter.Sub(now).Hours()/24))
	default:
		cat.ok(desc)
	}
}

// trustDomain reads the trust domain from the anchors' spiffe:// URI SAN;
// anchors without one are for the default.
func trustDomain(certs []*x509.Certificate) string {
	for _, c := range certs {
		for _, u := range c.URIs {
			if u.Scheme == "spiffe" && spiffe.ValidateTrustDomain(u.Host) == nil {
				return u.Host
			}
		}
	}
	return kubemeta.DefaultTrustDomain
}

// proxies checks every injected pod: its proxy version is the control
// plane's and its proxy container is ready; and that no pod that asked
// for the sidecar lacks it (created while the injector was down).
func (c *checker) proxies(ctx context.Context, cat *Category) {
	nsEnabled := map[string]bool{}
	var cont string
	for {
		list, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 500, Continue: cont})
		if err != nil {
			cat.fail("pods are listed", "namespaces: %v", err)
			return
		}
		for _, ns := range list.Items {
			nsEnabled[ns.Name] = ns.Annotations[kubemeta.InjectAnnotation] == kubemeta.InjectEnabled
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	var outdated, notReady, missing []string
	injected := 0
	for {
		list, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 500, Continue: cont})
		if err != nil {
			cat.fail("pods are listed", "%v", err)
			return
		}
		for i := range list.Items {
			p := &list.Items[i]
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			name := p.Namespace + "/" + p.Name
			v, ok := p.Annotations[kubemeta.InjectedAnnotation]
			if !ok {
				if wantsSidecar(p, nsEnabled[p.Namespace]) {
					missing = append(missing, name)
				}
				continue
			}
			injected++
			if c.version != "" && v != c.version {
				outdated = append(outdated, fmt.Sprintf("%s (%s)", name, v))
			}
			if !proxyReady(p) {
				notReady = append(notReady, name)
			}
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	desc := fmt.Sprintf("every injected proxy is version %s", c.version)
	switch {
	case c.version == "":
		cat.fail("every injected proxy is the control plane's version", "the control plane's version is unknown (no app.kubernetes.io/version label on Deployment %s)", kubemeta.Controller)
	case len(outdated) > 0:
		cat.fail(desc, "%d of %d differ: %s: restart their workloads (kubectl rollout restart) to inject the current proxy", len(outdated), injected, strings.Join(limit(outdated), ", "))
	default:
		cat.ok(fmt.Sprintf("%s (%d injected pods)", desc, injected))
	}
	desc = "every injected proxy is ready"
	if len(notReady) > 0 {
		cat.fail(desc, "the %s container is not ready in %s: kubectl logs POD -c %s", kubemeta.ProxyContainer, strings.Join(limit(notReady), ", "), kubemeta.ProxyContainer)
	} else {
		cat.ok(desc)
	}
	desc = "every pod that asks for the sidecar has it"
	if len(missing) > 0 {
		cat.fail(desc, "no proxy in %s, though it or its namespace is annotated %s: %s (created while the injector was down?): restart their workloads", strings.Join(limit(missing), ", "), kubemeta.InjectAnnotation, kubemeta.InjectEnabled)
	} else {
		cat.ok(desc)
	}
}

// wantsSidecar says that pod p is annotated, or sits in a namespace
// annotated, skiff.dev/inject: enabled, and does not opt out.
func wantsSidecar(p *corev1.Pod, nsEnabled bool) bool {
	if p.Spec.HostNetwork || p.Namespace == kubemeta.Namespace || p.Namespace == "kube-system" {
		return false
	}
	switch p.Annotations[kubemeta.InjectAnnotation] {
	case kubemeta.InjectEnabled:
		return true
	case kubemeta.InjectDisabled:
		return false
	}
	return nsEnabled && p.Labels[kubemeta.InjectAnnotation] != kubemeta.InjectDisabled
}

// proxyReady finds the proxy among the native sidecars (init containers)
// or, for pods injected otherwise, the containers.
func proxyReady(p *corev1.Pod) bool {
	for _, s := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
		if s.Name == kubemeta.ProxyContainer {
			return s.Ready
		}
	}
	return false
}

// limit keeps a long list of names readable.
func limit(names []string) []string {
	const n = 10
	if len(names) <= n {
		return names
	}
	return append(slices.Clone(names[:n]), fmt.Sprintf("and %d more", len(names)-n))
}
