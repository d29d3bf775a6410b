package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
)

// echoRoute is an HTTPRoute for Service echo port 8080 in namespace ns
// with the request timeout request.
func echoRoute(ns, request string) string {
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: %s}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 8080}]
  rules:
  - timeouts: {request: %s}
`, ns, request)
}

// TestPolicyResources runs `policy --resources`: the route's policy at
// name.namespace.svc:port (any namespace), a rewrite sent, a refused
// rewrite counted on /metrics with the last set kept.
func TestPolicyResources(t *testing.T) {
	leakcheck.Check(t)
	file := filepath.Join(t.TempDir(), "resources.yaml")
	writeAtomic(t, file, echoRoute("shop", "2s"))
	rec, _ := startController(t, "policy", "--plaintext", "--resources", file, "--resources-poll", "5ms")
	adminAddr := rec["admin_addr"].(string)
	if v := gauges(t, adminAddr, "skiff_policy_resources_version")["skiff_policy_resources_version"]; v != 1 {
		t.Errorf("skiff_policy_resources_version = %v at start, want 1", v)
	}
	cc, err := grpc.NewClient(rec["grpc_addr"].(string), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), testwait.Timeout)
	defer cancel()
	s, err := policyv1.NewPolicyClient(cc).WatchOutbound(ctx, &policyv1.WatchOutboundRequest{Authority: "echo.shop.svc:8080"})
	if err != nil {
		t.Fatal(err)
	}
	request := func(what string) time.Duration {
		t.Helper()
		p, err := s.Recv()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		md := p.GetRoutes()[0].GetMetadata()
		if md.GetKind() != "HTTPRoute" || md.GetNamespace() != "shop" || md.GetName() != "echo" {
			t.Fatalf("%s: route %v, want HTTPRoute shop/echo", what, md)
		}
		return p.GetRoutes()[0].GetRules()[0].GetTimeouts().GetRequest().AsDuration()
	}
	if d := request("first message"); d != 2*time.Second {
		t.Fatalf("first message: request timeout %v, want 2s", d)
	}

	writeAtomic(t, file, echoRoute("shop", "never"))
	testwait.For(t, "the refusal on /metrics", func() (bool, error) {
		v := gauges(t, adminAddr, "skiff_policy_resources_rejected_total")["skiff_policy_resources_rejected_total"]
		return v == 1, fmt.Errorf("skiff_policy_resources_rejected_total = %v", v)
	})
	writeAtomic(t, file, echoRoute("shop", "3s"))
	if d := request("after a refused and a valid rewrite"); d != 3*time.Second {
		t.Fatalf("after a refused and a valid rewrite: request timeout %v, want 3s (the refused one sent nothing)", d)
	}
	if v := gauges(t, adminAddr, "skiff_policy_resources_version")["skiff_policy_resources_version"]; v != 2 {
		t.Errorf("skiff_policy_resources_version = %v, want 2", v)
	}
}

func TestPolicyResourcesFlags(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.yaml")
	writeAtomic(t, invalid, echoRoute("default", "soon"))
	valid := filepath.Join(dir, "valid.yaml")
	writeAtomic(t, valid, echoRoute("default", "1s"))
	missing := filepath.Join(dir, "missing.yaml")
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"policy", "--plaintext", "--resources", missing}, []string{"--resources", "missing.yaml", "no such file"}},
		{[]string{"policy", "--plaintext", "--resources", invalid}, []string{"--resources", "invalid.yaml", "document 1", "timeouts.request"}},
		{[]string{"policy", "--plaintext", "--resources", valid, "--resources-poll", "0s"}, []string{"--resources-poll"}},
		{[]string{"destination", "--resources", valid}, []string{"flag provided but not defined: -resources"}},
		{[]string{"identity", "--resources-poll", "1s"}, []string{"flag provided but not defined: -resources-poll"}},
	} {
		err := run(t.Context(), tt.args, io.Discard)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, w)
			}
		}
	}
	for _, sub := range []string{"policy", "all"} {
		var help strings.Builder
		if err := run(t.Context(), []string{sub, "-h"}, &help); err != nil || !strings.Contains(help.String(), "-resources-poll") {
			t.Errorf("%s -h: %v, want --resources and --resources-poll:\n%s", sub, err, help.String())
		}
	}
}
