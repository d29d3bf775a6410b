package local

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/control"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// TestControlPlaneAlone: with a control plane and no services, Up runs the
// controller alone; synthetic endpoints published before Up are served at
// once, and a change after it reaches a Destination client.
func TestControlPlaneAlone(t *testing.T) {
	env := newEnvWith(t, Config{ControlPlane: true})
	const auth = "synthetic.default.svc:8080"
	ep := func(host string, w uint32) endpoint.Endpoint {
		return endpoint.Endpoint{Addr: host + ":4143", Weight: w, Meshed: true, Labels: map[string]string{"pod": "synthetic-0"}}
	}
	a, b := env.Subnet().Addr().Next().Next().Next().String(), env.Subnet().Addr().Next().Next().Next().Next().String()
	if err := env.SetEndpoints(map[string][]endpoint.Endpoint{auth: {ep(a, 1)}}); err != nil {
		t.Fatal(err)
	}
	if err := env.Up(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	conn := control.NewConn(env.ControlAddr(), control.ConnConfig{TLS: env.ControlTLSConfig("synthetic-watcher")})
	defer conn.Close()
	snaps := make(chan endpoint.Snapshot, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&control.DestinationSource{Conn: conn}).Watch(ctx, auth, func(s endpoint.Snapshot) { snaps <- s })
	}()
	defer func() { cancel(); <-done }()
	next := func() endpoint.Snapshot {
		t.Helper()
		select {
		case s := <-snaps:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no snapshot from the controller within 10 s")
		}
		panic("unreachable")
	}
	if s := next(); !s.Exists || len(s.Endpoints) != 1 || s.Endpoints[0].Addr != a+":4143" {
		t.Fatalf("initial snapshot %+v, want %s", s, a)
	}
	if err := env.SetEndpoints(map[string][]endpoint.Endpoint{auth: {ep(a, 1), ep(b, 7)}}); err != nil {
		t.Fatal(err)
	}
	if s := next(); len(s.Endpoints) != 2 || s.Endpoints[1].Weight != 7 {
		t.Fatalf("after the change: %+v", s)
	}
}

// TestSetEndpointsRefusesTopology: the authorities of the topology's
// services are the environment's to publish.
func TestSetEndpointsRefusesTopology(t *testing.T) {
	env := newEnv(t)
	if err := env.Up(t.Context(), []ServiceSpec{{Name: "echo", Replicas: 1, Meshed: true}}); err != nil {
		t.Fatal(err)
	}
	err := env.SetEndpoints(map[string][]endpoint.Endpoint{env.Authority("echo"): nil})
	if err == nil || !strings.Contains(err.Error(), `service "echo"`) {
		t.Errorf("SetEndpoints on the topology's authority: %v", err)
	}
	if err := env.SetEndpoints(map[string][]endpoint.Endpoint{"bad authority": nil}); err == nil {
		t.Error("SetEndpoints accepted an authority with a space")
	}
}
