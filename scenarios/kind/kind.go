// Package kind manages the kind cluster the kind environment runs on,
// through sigs.k8s.io/kind's Go API: create it or reuse it, load Skiff's
// images into its nodes, delete it. make kind-up and make kind-down (and
// ci/kind) call it; it needs a Docker engine, and Available says in one
// line why there is none.
package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindlog "sigs.k8s.io/kind/pkg/log"
	"sigs.k8s.io/yaml"
)

// DefaultName is the cluster's name; its kubeconfig context is
// "kind-" + name.
const DefaultName = "skiff"

// Options shape the cluster. Zero fields take the defaults stated.
type Options struct {
	Name string // DefaultName
	// Workers is how many worker nodes beside the control plane: 0 runs
	// every pod on the control-plane node, enough for a laptop.
	Workers int
	// NodeImage is the kindest/node image; empty is kind's default for
	// its release.
	NodeImage string
	// WaitReady bounds the wait for the control plane (2 minutes).
	WaitReady time.Duration
	// Kubeconfig is the file the cluster's context is written to; empty
	// is kubectl's ($KUBECONFIG, then ~/.kube/config).
	Kubeconfig string
	Logger     *slog.Logger
}

func (o Options) name() string {
	if o.Name == "" {
		return DefaultName
	}
	return o.Name
}

// Context is the kubeconfig context kind writes for the cluster.
func (o Options) Context() string { return "kind-" + o.name() }

// Available reports whether a Docker engine answers, and if not why, in
// one line: what kind needs and this machine lacks.
func Available(ctx context.Context) error {
	docker, err := exec.LookPath("docker")
	if err != nil {
		return errors.New("needs a Docker engine: docker is not installed")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, docker, "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("needs a Docker engine: docker version failed: %s", firstLine(out, err))
	}
	return nil
}

// firstLine is the first non-empty line of out, or err's text.
func firstLine(out []byte, err error) string {
	for line := range strings.SplitSeq(string(out), "\n") {
		if s := strings.TrimSpace(line); s != "" {
			return s
		}
	}
	return err.Error()
}

// Config is the cluster's kind configuration: one control-plane node and
// o.Workers workers, nothing else changed from kind's defaults (the
// sidecar's rules need nothing of the node but iptables, which kind's
// node image has).
func Config(o Options) *v1alpha4.Cluster {
	c := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     o.name(),
		Nodes:    []v1alpha4.Node{{Role: v1alpha4.ControlPlaneRole, Image: o.NodeImage}},
	}
	for range o.Workers {
		c.Nodes = append(c.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: o.NodeImage})
	}
	return c
}

// RenderConfig is Config as the YAML `kind create cluster --config` reads.
func RenderConfig(o Options) ([]byte, error) {
	return yaml.Marshal(Config(o))
}

// Up creates the cluster, or reuses it when one of that name exists, and
// writes its context to the kubeconfig. It reports whether it created
// one.
func Up(ctx context.Context, o Options) (created bool, err error) {
	if err := Available(ctx); err != nil {
		return false, err
	}
	p := provider(o)
	names, err := p.List()
	if err != nil {
		return false, fmt.Errorf("listing kind clusters: %w", err)
	}
	if slices.Contains(names, o.name()) {
		logger(o).Info("reusing the kind cluster", "name", o.name(), "context", o.Context())
		if err := p.ExportKubeConfig(o.name(), o.Kubeconfig, false); err != nil {
			return false, fmt.Errorf("writing the kubeconfig of kind cluster %q: %w", o.name(), err)
		}
		return false, nil
	}
	wait := o.WaitReady
	if wait == 0 {
		wait = 2 * time.Minute
	}
	logger(o).Info("creating the kind cluster", "name", o.name(), "workers", o.Workers)
	err = p.Create(o.name(),
		kindcluster.CreateWithV1Alpha4Config(Config(o)),
		kindcluster.CreateWithWaitForReady(wait),
		kindcluster.CreateWithKubeconfigPath(o.Kubeconfig),
		kindcluster.CreateWithDisplayUsage(false),
		kindcluster.CreateWithDisplaySalutation(false))
	if err != nil {
		return false, fmt.Errorf("creating kind cluster %q: %w", o.name(), err)
	}
	return true, nil
}

// Down deletes the cluster and its kubeconfig context; a cluster that
// does not exist is not an error.
func Down(ctx context.Context, o Options) error {
	if err := Available(ctx); err != nil {
		return err
	}
	if err := provider(o).Delete(o.name(), o.Kubeconfig); err != nil {
		return fmt.Errorf("deleting kind cluster %q: %w", o.name(), err)
	}
	return nil
}

// LoadImages copies images from the local Docker engine into every node
// of the cluster, as `kind load docker-image` does: a cluster pulls
// nothing of Skiff from a registry.
func LoadImages(ctx context.Context, o Options, images ...string) error {
	p := provider(o)
	ns, err := p.ListInternalNodes(o.name())
	if err != nil {
		return fmt.Errorf("listing the nodes of kind cluster %q: %w", o.name(), err)
	}
	if len(ns) == 0 {
		return fmt.Errorf("kind cluster %q has no nodes: is it up (make kind-up)?", o.name())
	}
	for _, image := range images {
		if err := loadImage(ctx, ns, image); err != nil {
			return err
		}
		logger(o).Info("image loaded", "image", image, "nodes", len(ns))
	}
	return nil
}

// loadImage saves image from Docker into a temporary archive and imports
// it into each node.
func loadImage(ctx context.Context, into []nodes.Node, image string) error {
	dir, err := os.MkdirTemp("", "skiff-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "image.tar")
	var stderr bytes.Buffer
	save := exec.CommandContext(ctx, "docker", "save", "-o", name, image)
	save.Stderr = &stderr
	if err := save.Run(); err != nil {
		return fmt.Errorf("docker save %s: %s", image, firstLine(stderr.Bytes(), err))
	}
	for _, n := range into {
		if err := loadArchive(n, name); err != nil {
			return fmt.Errorf("loading %s into node %s: %w", image, n.String(), err)
		}
	}
	return nil
}

// loadArchive imports the image archive at path into node's containerd.
func loadArchive(node nodes.Node, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return nodeutils.LoadImageArchive(node, f)
}

func provider(o Options) *kindcluster.Provider {
	return kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(kindLogger{logger(o)}))
}

func logger(o Options) *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// kindLogger writes kind's messages to the logger: its status lines
// (V(0)) at info, the rest at debug.
type kindLogger struct{ l *slog.Logger }

func (k kindLogger) Warn(msg string)                   { k.l.Warn(msg) }
func (k kindLogger) Warnf(format string, args ...any)  { k.l.Warn(fmt.Sprintf(format, args...)) }
func (k kindLogger) Error(msg string)                  { k.l.Error(msg) }
func (k kindLogger) Errorf(format string, args ...any) { k.l.Error(fmt.Sprintf(format, args...)) }
func (k kindLogger) V(level kindlog.Level) kindlog.InfoLogger {
	return kindInfo{l: k.l, level: slog.LevelInfo - slog.Level(4*level)}
}

type kindInfo struct {
	l     *slog.Logger
	level slog.Level
}

func (k kindInfo) Info(msg string)                  { k.l.Log(context.Background(), k.level, msg) }
func (k kindInfo) Infof(format string, args ...any) { k.Info(fmt.Sprintf(format, args...)) }
func (k kindInfo) Enabled() bool                    { return k.l.Enabled(context.Background(), k.level) }
