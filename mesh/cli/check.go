package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-mesh/skiff/mesh/check"
)

// checkOptions are skiff check's flags.
type checkOptions struct {
	output      string
	kubeconfig  string
	kubeContext string
	timeout     time.Duration
	cfg         check.Config
}

func newCheckCmd(o *Options) *cobra.Command {
	var co checkOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that Skiff can be installed, or is installed and healthy",
		Long: `Check the cluster of the current kubeconfig context and print one ✔ or ✘
line per check; a ✘ says what is wrong and what to do.

  skiff check --pre     before skiff install: the API, your permissions, no install yet,
                        the Gateway API CRDs
  skiff check           after it: CRDs, control plane, injector webhook, certificates
                        (valid for 60 more days)
  skiff check --proxy   and every injected proxy: ready and of the control plane's version

It exits 0 when every check passes, 99 when one fails (1 when it cannot run).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return co.run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&co.output, "output", "o", "table", "output format: table or json")
	f.BoolVar(&co.cfg.Pre, "pre", false, "check that Skiff can be installed, instead of that it is")
	f.BoolVar(&co.cfg.Proxy, "proxy", false, "check the injected proxies too")
	f.StringVar(&co.kubeconfig, "kubeconfig", "", "kubeconfig file (empty: $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&co.kubeContext, "context", "", "kubeconfig context (empty: the current one)")
	f.DurationVar(&co.timeout, "timeout", time.Minute, "how long all the checks may take")
	return cmd
}

func (co *checkOptions) run(ctx context.Context, o *Options) error {
	if co.output != "table" && co.output != "json" {
		return fmt.Errorf("-o %q: want table or json", co.output)
	}
	if co.cfg.Pre && co.cfg.Proxy {
		return fmt.Errorf("--pre and --proxy: the proxies are checked on an installed mesh, --pre before it is installed")
	}
	if co.timeout <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration", co.timeout)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = co.kubeconfig
	rest, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: co.kubeContext}).ClientConfig()
	if err != nil {
		return fmt.Errorf("no cluster configuration (set --kubeconfig or --context): %w", err)
	}
	rest.Timeout = co.timeout
	if co.cfg.Client, err = kubernetes.NewForConfig(rest); err != nil {
		return err
	}
	if co.cfg.Dynamic, err = dynamic.NewForConfig(rest); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, co.timeout)
	defer cancel()
	return report(ctx, o, co.output, co.cfg)
}

// report runs the checks with cfg's clients and prints them; a failed
// check is an ExitError with ExitAssertionFailed.
func report(ctx context.Context, o *Options, output string, cfg check.Config) error {
	r, err := check.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if output == "json" {
		err = r.WriteJSON(o.Stdout)
	} else {
		err = r.WriteTable(o.Stdout)
	}
	if err != nil {
		return err
	}
	if !r.Success {
		return &ExitError{Code: ExitAssertionFailed}
	}
	return nil
}
