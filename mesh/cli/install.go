package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	admissionv1 "k8s.io/api/admissionregistration/v1"

	"github.com/skiff-mesh/skiff/mesh/install"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

// installOptions are skiff install's flags.
type installOptions struct {
	output        string
	crdsOnly      bool
	cfg           install.Config
	failurePolicy string
	identity      install.IdentityFiles
}

func newInstallCmd(o *Options) *cobra.Command {
	var io installOptions
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Render Skiff's installation for kubectl apply",
		Long: `Write every Kubernetes object of Skiff's control plane to stdout: the skiff
namespace, Skiff's CRDs, the controller's RBAC, ServiceAccount, Deployment and
Services, the injector's MutatingWebhookConfiguration and serving certificate,
and the mesh identity (trust anchors and issuer), generated unless supplied.

  skiff install | kubectl apply -f -
  skiff install --crds | kubectl apply -f -     # Skiff's CRDs only

The Gateway API CRDs the mesh reads (HTTPRoute, GRPCRoute,
XBackendTrafficPolicy) are installed from the Gateway API release: see
docs/kubernetes.md. Each run generates new certificates; supply the identity
files to keep the mesh's trust anchors across re-installs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return io.run(o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&io.output, "output", "o", install.FormatYAML, "output format: yaml (a stream of documents) or json (a v1 List)")
	f.BoolVar(&io.crdsOnly, "crds", false, "render only Skiff's CustomResourceDefinitions")
	f.StringVar(&io.cfg.Registry, "registry", kubemeta.DefaultRegistry, "registry of the Skiff images")
	f.StringVar(&io.cfg.Version, "version", imageTag(), "Skiff version: the images' tag (a development build's default is dev; make images tags with ci/version.sh's)")
	f.StringVar(&io.cfg.TrustDomain, "trust-domain", kubemeta.DefaultTrustDomain, "SPIFFE trust domain of the mesh's identities")
	f.StringVar(&io.failurePolicy, "webhook-failure-policy", string(admissionv1.Ignore), "what the API server does with a pod when the injector cannot be reached: Ignore (create it without the sidecar) or Fail (refuse it); docs/kubernetes.md")
	f.StringVar(&io.identity.TrustAnchors, "identity-trust-anchors-file", "", "PEM file of the mesh's trust anchors (root certificates); with the two issuer flags, instead of a generated identity")
	f.StringVar(&io.identity.IssuerCert, "identity-issuer-certificate-file", "", "PEM file of the identity issuer's certificate (then any intermediates), signed by a trust anchor")
	f.StringVar(&io.identity.IssuerKey, "identity-issuer-key-file", "", "PEM file of the identity issuer's private key")
	return cmd
}

func (io *installOptions) run(o *Options) error {
	if io.output != install.FormatYAML && io.output != install.FormatJSON {
		return fmt.Errorf("-o %q: want yaml or json", io.output)
	}
	if io.crdsOnly {
		return install.Write(o.Stdout, install.CRDs(), io.output, "Skiff's CustomResourceDefinitions, rendered by skiff install --crds")
	}
	io.cfg.FailurePolicy = admissionv1.FailurePolicyType(io.failurePolicy)
	if !io.identity.IsZero() {
		id, err := install.LoadIdentity(io.identity, io.cfg.TrustDomain, time.Now)
		if err != nil {
			return err
		}
		io.cfg.Identity = id
	}
	objs, err := install.Render(io.cfg)
	if err != nil {
		return err
	}
	return install.Write(o.Stdout, objs, io.output,
		fmt.Sprintf("Skiff %s, rendered by skiff install. Apply with: skiff install | kubectl apply -f -", io.cfg.Version),
		"The Secrets hold private keys: keep this output out of version control.")
}

func newUninstallCmd(o *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Render what to delete to remove Skiff, for kubectl delete",
		Long: `Write, by kind and name, every object skiff install creates, cluster-scoped
ones included, for kubectl to delete: the webhook configuration first, the
namespace last.

  skiff uninstall | kubectl delete --ignore-not-found -f -

Deleting Skiff's CRDs deletes every CircuitBreaker with them. Injected pods
keep their sidecars until they are restarted; uninject their workloads first
(skiff uninject) if they are to run without the mesh.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != install.FormatYAML && output != install.FormatJSON {
				return fmt.Errorf("-o %q: want yaml or json", output)
			}
			return install.Write(o.Stdout, install.Uninstall(), output, "Skiff's objects, rendered by skiff uninstall. Delete with: skiff uninstall | kubectl delete --ignore-not-found -f -")
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", install.FormatYAML, "output format: yaml or json")
	return cmd
}
