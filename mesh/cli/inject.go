package cli

import (
	"fmt"
	"os"
	"regexp"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/skiff-mesh/skiff/mesh/inject"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

func newInjectCmd(o *Options) *cobra.Command {
	var cfg inject.Config
	cmd := &cobra.Command{
		Use:   "inject FILE|-",
		Short: "Add the Skiff sidecar to the pod templates of a manifest",
		Long: `Read a kubectl-apply-able YAML (or JSON) stream from FILE, or stdin for "-",
and write it to stdout with the sidecar and the init step added to every pod
template: Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and
CronJobs, alone or in Lists. Other objects, and pods left alone (annotated
skiff.dev/inject: disabled, on the host network, in kube-system or skiff),
are written as they were; stderr says what was done to each. Injecting an
injected manifest changes nothing but what the flags change.

  skiff inject deploy.yaml | kubectl apply -f -

What is injected, and why: docs/injection.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cfg.Validate(); err != nil {
				return err
			}
			return transformManifests(cmd, o, args[0], "injected", func(p inject.Pod) (inject.Result, error) {
				return cfg.Inject(p, inject.Manual)
			})
		},
	}
	cmd.Flags().StringVar(&cfg.Registry, "registry", kubemeta.DefaultRegistry, "registry of the proxy image")
	cmd.Flags().StringVar(&cfg.Version, "version", imageTag(), "tag of the proxy image (the skiff.dev/proxy-version annotation too)")
	cmd.Flags().StringVar(&cfg.TrustDomain, "trust-domain", kubemeta.DefaultTrustDomain, "SPIFFE trust domain of the workloads' identities (the control plane's)")
	return cmd
}

func newUninjectCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "uninject FILE|-",
		Short: "Remove the Skiff sidecar from the pod templates of a manifest",
		Long: `Read a YAML (or JSON) stream from FILE, or stdin for "-", and write it to
stdout without what skiff inject (or the injection webhook) added to its pod
templates: the manifest skiff inject was given.

  kubectl get deploy web -o yaml | skiff uninject - | kubectl apply -f -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return transformManifests(cmd, o, args[0], "uninjected", func(p inject.Pod) (inject.Result, error) {
				return inject.Uninject(p), nil
			})
		},
	}
}

// transformManifests runs f over the manifest at name ("-": stdin),
// writing the result to stdout and a line per pod template to stderr.
func transformManifests(cmd *cobra.Command, o *Options, name, verb string, f inject.Transform) error {
	r := cmd.InOrStdin()
	if name != "-" {
		file, err := os.Open(name)
		if err != nil {
			return err
		}
		defer file.Close()
		r = file
	}
	reports, err := inject.Manifests(r, o.Stdout, f)
	for _, rep := range reports {
		switch {
		case rep.Skipped != "":
			fmt.Fprintf(o.Stderr, "%s: left alone: %s\n", rep.Object, rep.Skipped)
		case rep.Changed:
			fmt.Fprintf(o.Stderr, "%s: %s\n", rep.Object, verb)
		default:
			fmt.Fprintf(o.Stderr, "%s: unchanged\n", rep.Object)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// releaseTag matches a release's version, v1.2.3 or v1.2.3-rc.1; Go's
// pseudo-versions (v0.0.0-20260101000000-abcdef123456) hold a second "-".
var releaseTag = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$`)

// imageTag is the proxy image's tag this skiff goes with: its module
// version when it is a release, inject.DefaultVersion for a development
// build (whose version names no image).
func imageTag() string {
	if bi, ok := debug.ReadBuildInfo(); ok && releaseTag.MatchString(bi.Main.Version) {
		return bi.Main.Version
	}
	return inject.DefaultVersion
}
