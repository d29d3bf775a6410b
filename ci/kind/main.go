// Command kind brings up and tears down the kind cluster of the kind
// environment (make kind-up, make kind-down):
//
//	go run ./ci/kind up [--name skiff] [--workers 0] [--images=true] [--install=true]
//	go run ./ci/kind down [--name skiff]
//	go run ./ci/kind config [--name skiff] [--workers 0]
//
// up creates the cluster through sigs.k8s.io/kind's Go API, or reuses one
// of that name; builds Skiff's images (ci/images.sh) and loads them into
// its nodes, so the cluster pulls nothing of Skiff from a registry; then
// applies `skiff install` with kubectl's server-side apply. Without a
// Docker engine it says so in one line and exits 2.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/skiff-mesh/skiff/mesh/kubemeta"
	"github.com/skiff-mesh/skiff/scenarios/kind"
)

// exitUnavailable is the environments' exit code for "this machine
// cannot" (no Docker), as skiff scenario run --env kind uses.
const exitUnavailable = 2

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: kind up|down|config [flags]")
		return 1
	}
	verb := args[0]
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	var o kind.Options
	fs.StringVar(&o.Name, "name", kind.DefaultName, "the kind cluster's name (its context is kind-NAME)")
	fs.IntVar(&o.Workers, "workers", 0, "worker nodes beside the control plane")
	fs.StringVar(&o.NodeImage, "node-image", "", "kindest/node image (empty: kind's default)")
	images := fs.Bool("images", true, "up: build Skiff's images and load them into the nodes")
	install := fs.Bool("install", true, "up: apply skiff install (needs kubectl)")
	skiff := fs.String("skiff", "bin/skiff", "up: the skiff command line that renders the install")
	registry := fs.String("registry", kubemeta.DefaultRegistry, "images' registry prefix")
	version := fs.String("version", "", "images' tag (empty: ci/version.sh)")
	if err := fs.Parse(args[1:]); err != nil {
		return 1
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	var err error
	switch verb {
	case "config":
		var out []byte
		if out, err = kind.RenderConfig(o); err == nil {
			_, err = os.Stdout.Write(out)
		}
	case "down":
		err = kind.Down(ctx, o)
	case "up":
		err = up(ctx, o, *images, *install, *skiff, *registry, *version)
	default:
		fmt.Fprintf(os.Stderr, "kind: unknown verb %q: want up, down or config\n", verb)
		return 1
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "kind %s: %v\n", verb, err)
	if kind.Available(ctx) != nil {
		return exitUnavailable
	}
	return 1
}

func up(ctx context.Context, o kind.Options, images, install bool, skiff, registry, version string) error {
	if err := kind.Available(ctx); err != nil {
		return err
	}
	if install {
		// Before the cluster: a missing kubectl should not cost a cluster.
		if _, err := exec.LookPath("kubectl"); err != nil {
			return errors.New("needs kubectl to apply skiff install (or pass --install=false)")
		}
	}
	if version == "" {
		out, err := exec.CommandContext(ctx, "./ci/version.sh").Output()
		if err != nil {
			return fmt.Errorf("ci/version.sh: %w", err)
		}
		version = strings.TrimSpace(string(out))
	}
	if _, err := kind.Up(ctx, o); err != nil {
		return err
	}
	if images {
		build := exec.CommandContext(ctx, "./ci/images.sh")
		build.Env = append(os.Environ(), "REGISTRY="+registry, "VERSION="+version)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building the images (ci/images.sh): %w", err)
		}
		var refs []string
		for _, name := range []string{kubemeta.ProxyImage, "skiff-init", kubemeta.ControllerImage, kubemeta.DemoImage} {
			refs = append(refs, registry+"/"+name+":"+version)
		}
		if err := kind.LoadImages(ctx, o, refs...); err != nil {
			return err
		}
	}
	if !install {
		return nil
	}
	var manifests, stderr bytes.Buffer
	render := exec.CommandContext(ctx, skiff, "install", "--registry", registry, "--version", version)
	render.Stdout, render.Stderr = &manifests, &stderr
	if err := render.Run(); err != nil {
		return fmt.Errorf("%s install: %w: %s", skiff, err, strings.TrimSpace(stderr.String()))
	}
	apply := exec.CommandContext(ctx, "kubectl", "--context", o.Context(), "apply", "--server-side", "--field-manager", "skiff", "-f", "-")
	apply.Stdin = &manifests
	apply.Stdout, apply.Stderr = os.Stderr, os.Stderr
	if err := apply.Run(); err != nil {
		return fmt.Errorf("kubectl apply of skiff install: %w", err)
	}
	o.Logger.Info("skiff is installed", "context", o.Context(), "check", "skiff check --context "+o.Context())
	return nil
}
