package certs

import (
	"context"
	"os"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// WatchBundleFile re-reads the trust bundle in path (PEM anchors, the
// proxy's --trust-anchors file) every interval until ctx ends, and gives
// the manager a bundle that differs from its own through
// [Manager.SetBundle]: an anchor rotation reaches the proxy without a
// restart. A file is read again only when its modification time or size
// changed (in Kubernetes, the kubelet swaps a ConfigMap volume's files
// atomically). A file that cannot be read or parsed leaves the current
// bundle in place, with one log line until it changes. A non-positive
// interval returns at once.
func (m *Manager) WatchBundleFile(ctx context.Context, path string, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	// The first read always parses the file: it may have changed since the
	// bundle in use was read. An equal bundle is no change.
	w := bundleFile{path: path, td: m.id.TrustDomain, size: -1}
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := w.changed()
		if plant.On(plant.BundleNotReloaded) {
			continue
		}
		if err == nil && b != nil && !b.Equal(m.Bundle()) {
			if err = m.SetBundle(b); err == nil {
				m.log.Info("trust anchors reloaded", "path", path, "anchors", len(b.Anchors()))
			}
		}
		switch {
		case err == nil:
			lastErr = ""
		case err.Error() != lastErr:
			lastErr = err.Error()
			m.log.Warn("trust anchors not reloaded; keeping the current ones", "path", path, "err", err)
		}
	}
}

// bundleFile remembers the version of a bundle file last taken.
type bundleFile struct {
	path, td string
	modTime  time.Time
	size     int64
}

// changed returns the bundle in the file when the file changed since the
// last bundle taken, nil when it did not. A file that fails to parse is
// read again next time, whatever its time and size.
func (w *bundleFile) changed() (*spiffe.Bundle, error) {
	fi, err := os.Stat(w.path)
	if err != nil {
		return nil, err
	}
	if fi.ModTime().Equal(w.modTime) && fi.Size() == w.size {
		return nil, nil
	}
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil, err
	}
	b, err := spiffe.ParseBundlePEM(w.td, data)
	if err != nil {
		return nil, err
	}
	w.modTime, w.size = fi.ModTime(), fi.Size()
	return b, nil
}
