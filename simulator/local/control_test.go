package local

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		if seen := allOK(t, env, "echo", 10); len(seen) == 1 && seen["echo-0"] == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a change after the controller's return never reached the client")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
