package main

import (
	"flag"
	"io"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/skiff-mesh/skiff/mesh/install"
)

// The Deployment skiff install renders runs skiff-controller with flags
// this binary defines: each container's args parse with its subcommand's
// flag set, and name the files and sources a cluster needs.
func TestInstallArgsParse(t *testing.T) {
	objs, err := install.Render(install.Config{Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	var d *appsv1.Deployment
	for _, o := range objs {
		if v, ok := o.(*appsv1.Deployment); ok {
			d = v
		}
	}
	if d == nil {
		t.Fatal("no Deployment in the install")
	}
	seen := map[string]bool{}
	for _, c := range d.Spec.Template.Spec.Containers {
		args := c.Args
		if len(args) == 0 {
			t.Fatalf("container %s has no args", c.Name)
		}
		name := args[0]
		seen[name] = true
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		switch name {
		case "inject":
			var o injectOptions
			o.addFlags(fs)
			if err := fs.Parse(args[1:]); err != nil {
				t.Fatalf("container %s: skiff-controller %v: %v", c.Name, args, err)
			}
			if o.tlsCertFile == "" || o.tlsKeyFile == "" || o.noNamespaces {
				t.Errorf("container %s: inject without its serving certificate, or without namespaces: %v", c.Name, args)
			}
		default:
			svc, ok := subcommands[name]
			if !ok {
				t.Fatalf("container %s runs subcommand %q, which skiff-controller does not have", c.Name, name)
			}
			var o options
			o.addFlags(fs, svc)
			if err := fs.Parse(args[1:]); err != nil {
				t.Fatalf("container %s: skiff-controller %v: %v", c.Name, args, err)
			}
			if o.discovery != "kube" || o.tokenVerifier != "kube" || o.issuerCert == "" || o.issuerKey == "" || o.trustAnchors == "" || o.identityDev || o.plaintext {
				t.Errorf("container %s: not a cluster's configuration (kube discovery and tokens, issuer and anchors from files, TLS): %v", c.Name, args)
			}
		}
		if fs.NArg() > 0 {
			t.Errorf("container %s: stray arguments %v", c.Name, fs.Args())
		}
	}
	if !seen["all"] || !seen["inject"] {
		t.Errorf("subcommands run: %v, want all and inject", seen)
	}
}
