package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyClosure keeps Kubernetes (and other control-plane weight)
// out of the sidecar: every linked package costs resident memory, and the
// proxy must stay under 10 MB RSS.
func TestDependencyClosure(t *testing.T) {
	// No skip: `go test` puts its own go tool first on PATH, so a failing
	// go list is a broken build or environment, and must fail the test.
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	forbidden := []string{
		"k8s.io/",                         // contract 1 of ARCHITECTURE.md
		"sigs.k8s.io/",                    // the same
		"github.com/prometheus/client_go", // the proxy has a lean exposition
		"net/http/pprof",                  // only with -tags pprof
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("skiff-proxy links %s", pkg)
			}
		}
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--endpoint", "svc"}, `--endpoint "svc": want AUTHORITY=ADDR`},
		{[]string{"--endpoint", "svc=127.0.0.1:1;bogus"}, `unknown option "bogus"`},
		{[]string{"--endpoint", "svc=nohostport"}, `want host:port`},
		{[]string{"--opaque-ports", "25,x"}, `--opaque-ports: "x" is not a port number`},
		{[]string{"--tcp-route", "nonsense"}, `want LISTEN_ADDR=AUTHORITY`},
		{[]string{"--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"--balancer", "random"}, `--balancer "random"`},
		{[]string{"--endpoints-file", "/nonexistent/eps"}, "endpoints file"},
		{[]string{"--pprof", "--inbound-addr", "-", "--outbound-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, "rebuild with -tags pprof"},
		{[]string{"--control-plane-identity", "spiffe://cluster.local/ns/skiff/sa/skiff-controller"}, "need --identity-id"},
		{[]string{"--identity-id", "spiffe://cluster.local/ns/shop/sa/web", "--control-plane-identity", "skiff-controller"}, "--control-plane-identity: invalid SPIFFE ID"},
		{[]string{"--identity-id", "spiffe://cluster.local/ns/shop/sa/web", "--control-plane-identity", "spiffe://example.org/ns/skiff/sa/skiff-controller"}, `trust domain "example.org"`},
		{[]string{"--identity-id", "spiffe://cluster.local/ns/shop/sa/web", "--control-plane-identity", "spiffe://cluster.local/ns/skiff/sa/skiff-controller", "--control-plane-plaintext"}, "contradict"},
	} {
		var stderr bytes.Buffer
		err := run(context.Background(), tc.args, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
