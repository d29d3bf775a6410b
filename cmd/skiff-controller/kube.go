package main

import (
	"fmt"
	"log/slog"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// kubeClient returns a client for the cluster of the kubeconfig file (""
// means $KUBECONFIG, ~/.kube/config, then the in-cluster configuration),
// and sends client-go's klog output to log. Both users of the cluster
// (--discovery kube and --token-verifier kube) call it; setting klog's
// logger again, for `all`, replaces it with an equal one.
func kubeClient(kubeconfig string, log *slog.Logger) (*kubernetes.Clientset, error) {
	klog.SetSlogLogger(log.With("component", "client-go"))
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster configuration (set --kubeconfig, or run in a pod): %w", err)
	}
	return kubernetes.NewForConfig(cfg)
}
