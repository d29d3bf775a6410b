package certs_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// TestWatchBundleFile: an anchor rotation done on the file alone reaches
// the manager; garbage in the file changes nothing.
func TestWatchBundleFile(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	m := e.manager(t, web)
	path := filepath.Join(t.TempDir(), "anchors.pem")
	write := func(data []byte) {
		t.Helper()
		// Renamed into place, as the simulator and the kubelet do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(e.bundle.MarshalPEM())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		m.WatchBundleFile(ctx, path, 5*time.Millisecond)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, ok func(*spiffe.Bundle) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(m.Bundle()); {
			if time.Now().After(deadline) {
				t.Fatalf("the manager never saw %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	a2, err := ca.NewAnchor(td, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	both, err := e.bundle.With(a2.Cert)
	if err != nil {
		t.Fatal(err)
	}
	write(both.MarshalPEM())
	waitFor("the bundle with both anchors", both.Equal)

	write([]byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
	time.Sleep(30 * time.Millisecond) // several reads of the garbage
	if !m.Bundle().Equal(both) {
		t.Fatal("a malformed file replaced the bundle")
	}

	onlyA2, err := both.Without(e.anchor.Cert)
	if err != nil {
		t.Fatal(err)
	}
	write(onlyA2.MarshalPEM())
	waitFor("the bundle without the old anchor", onlyA2.Equal)
}

// TestWatchBundleFileOff: a non-positive interval does not watch.
func TestWatchBundleFileOff(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	e.manager(t, web).WatchBundleFile(t.Context(), "/nonexistent", 0) // returns at once
}
