package certs_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// refusals counts the warnings the manager logs about one file: the
// watcher's "trust anchors not reloaded" line, the observable proof that
// it read the file and refused it.
type refusals struct {
	path string
	n    atomic.Int64
}

func (h *refusals) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *refusals) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *refusals) WithGroup(string) slog.Handler                { return h }
func (h *refusals) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "path" && a.Value.String() == h.path {
			h.n.Add(1)
			return false
		}
		return true
	})
	return nil
}

// TestWatchBundleFile: an anchor rotation done on the file alone reaches
// the manager; garbage in the file is read, refused, and changes nothing.
func TestWatchBundleFile(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	path := filepath.Join(t.TempDir(), "anchors.pem")
	refused := &refusals{path: path}
	cfg := e.config(web)
	cfg.Logger = slog.New(refused)
	m := newManager(t, cfg, true)
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
	waitBundle := func(what string, want *spiffe.Bundle) {
		t.Helper()
		testwait.For(t, "the manager to hold "+what, func() (bool, error) {
			if got := m.Bundle(); !got.Equal(want) {
				return false, fmt.Errorf("it holds %d anchors", len(got.Anchors()))
			}
			return true, nil
		})
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
	waitBundle("the bundle with both anchors", both)
	if n := refused.n.Load(); n != 0 {
		t.Fatalf("%d refusals of valid files", n)
	}

	// The refusal is logged after the file was read and failed to parse,
	// and after any bundle change it would have made: once it is seen, the
	// bundle must be the one before the garbage.
	write([]byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
	testwait.For(t, "the watcher to refuse the malformed file", func() (bool, error) {
		return refused.n.Load() > 0, nil
	})
	if !m.Bundle().Equal(both) {
		t.Fatal("a malformed file replaced the bundle")
	}

	onlyA2, err := both.Without(e.anchor.Cert)
	if err != nil {
		t.Fatal(err)
	}
	write(onlyA2.MarshalPEM())
	waitBundle("the bundle without the old anchor", onlyA2)
}

// TestWatchBundleFileOff: a non-positive interval does not watch.
func TestWatchBundleFileOff(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	e.manager(t, web).WatchBundleFile(t.Context(), "/nonexistent", 0) // returns at once
}
