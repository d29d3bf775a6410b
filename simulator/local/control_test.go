package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/testwait"
)

// TestControlPlane runs the mesh with skiff-controller: endpoints from the
// Destination API, certificates from the Identity API, strict mutual TLS
// between sidecars; and the mesh keeps serving while the controller is
// down.
func TestControlPlane(t *testing.T) {
	env := newEnvWith(t, Config{ControlPlane: true, StrictMTLS: true})
	ctx := context.Background()
	if err := env.Up(ctx, []ServiceSpec{{Name: "echo", Replicas: 2, Meshed: true}}); err != nil {
		t.Fatal(err)
	}
	seen := allOK(t, env, "echo", 20)
	if len(seen) != 2 {
		t.Fatalf("answers came from %v, want both replicas", seen)
	}
	metrics := func() string {
		resp, err := http.Get("http://" + env.Client().AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if m := metrics(); !strings.Contains(m, `authority="echo.default.svc:8080",tls="true"`) {
		t.Fatalf("client requests are not mutual TLS:\n%s", m)
	}
	ctl, err := env.Pod(ControllerPod)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Kill(); err != nil {
		t.Fatal(err)
	}
	// The sidecars keep the last state and their certificates: every
	// request still succeeds (allOK fails the test otherwise).
	allOK(t, env, "echo", 20)
	if err := ctl.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// A pod certified by the restarted controller is trusted by the
	// others, and an endpoint change after its return reaches the client.
	if err := env.Pods("echo")[1].Restart(ctx); err != nil {
		t.Fatal(err)
	}
	allOK(t, env, "echo", 20)
	if err := env.Pods("echo")[1].Kill(); err != nil {
		t.Fatal(err)
	}
	waitRouted(t, env, "echo") // via the restarted controller's Destination API
	if seen := allOK(t, env, "echo", 10); seen["echo-0"] != 10 {
		t.Errorf("answers after echo-1 was killed: %v; want all from echo-0", seen)
	}
}

// TestIdentityRotation walks the anchor rotation procedure on a running
// mesh with 3 s leaves: each step is refused when it would break trust,
// and after each one a restarted pod (a new handshake with a new leaf) is
// served as before.
func TestIdentityRotation(t *testing.T) {
	env := newEnvWith(t, Config{ControlPlane: true, StrictMTLS: true, LeafLifetime: 3 * time.Second})
	ctx := context.Background()
	if err := env.Up(ctx, []ServiceSpec{{Name: "echo", Replicas: 2, Meshed: true}}); err != nil {
		t.Fatal(err)
	}
	allOK(t, env, "echo", 10)
	if err := env.RetireTrustAnchors(ctx); err == nil || !strings.Contains(err.Error(), "holds one anchor") {
		t.Fatalf("retiring the only anchor: %v", err)
	}
	if err := env.AddTrustAnchor(ctx); err != nil { // waits for every sidecar
		t.Fatal(err)
	}
	allOK(t, env, "echo", 10)
	if err := env.RetireTrustAnchors(ctx); err == nil || !strings.Contains(err.Error(), "rotate_issuer first") {
		t.Fatalf("retiring the issuer's anchor: %v", err)
	}
	refreshes := func() map[string]string {
		out := map[string]string{}
		for _, p := range env.meshedPods() {
			v, err := p.Gauges(ctx, "identity_cert_refresh_count")
			if err != nil {
				t.Fatal(err)
			}
			out[p.name] = strconv.FormatFloat(v[0], 'f', -1, 64)
		}
		return out
	}
	before := refreshes()
	if err := env.RotateIssuer(ctx); err != nil {
		t.Fatal(err)
	}
	restartAndServe := func(p *Pod) {
		t.Helper()
		if err := p.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		// Every request must succeed (allOK fails the test otherwise)
		// while the balancer comes to send the restarted pod its share.
		testwait.For(t, p.name+" to serve after its restart", func() (bool, error) {
			if seen := allOK(t, env, "echo", 10); len(seen) < 2 {
				return false, fmt.Errorf("answers from %v", seen)
			}
			return true, nil
		})
	}
	restartAndServe(env.Pods("echo")[1]) // its leaf chains to the new anchor
	// Step 3: wait until every sidecar has renewed since the rotation.
	testwait.For(t, "every sidecar to renew after the issuer rotation", func() (bool, error) {
		now := refreshes()
		for pod, n := range before {
			if now[pod] == n {
				return false, fmt.Errorf("refresh counts %v, then %v", before, now)
			}
		}
		return true, nil
	})
	if err := env.RetireTrustAnchors(ctx); err != nil {
		t.Fatal(err)
	}
	restartAndServe(env.Pods("echo")[0])
	if n := len(env.TrustBundle().Anchors()); n != 1 {
		t.Errorf("the bundle holds %d anchors, want 1", n)
	}
}
