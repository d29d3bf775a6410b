package registry

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"time"

	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/internal/coalesce"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// FromProxy converts an endpoint in the proxy's type (what the simulator
// publishes and the endpoints file holds). Pod and Zone come from the
// labels "pod" and "zone", which stay in Labels too.
func FromProxy(ep endpoint.Endpoint) discovery.Endpoint {
	return discovery.Endpoint{
		Addr:     ep.Addr,
		Weight:   ep.Weight,
		Identity: ep.Identity,
		Protocol: discovery.Protocol(ep.Protocol),
		Meshed:   ep.Meshed,
		Zone:     ep.Labels["zone"],
		Pod:      ep.Labels["pod"],
		Labels:   maps.Clone(ep.Labels),
	}
}

func fromProxy(eps []endpoint.Endpoint) []discovery.Endpoint {
	out := make([]discovery.Endpoint, len(eps))
	for i, ep := range eps {
		out[i] = FromProxy(ep)
	}
	return out
}

// ProxySink is a Registry seen as a sink of the proxy's endpoint type. Its
// Set has the signature of simulator/local.Registry, so
// local.Config{Registry: reg.ProxySink()} feeds reg from the simulator.
// The zero value is unusable: get one from Registry.ProxySink.
type ProxySink struct {
	r *Registry
}

// ProxySink returns r as a ProxySink.
func (r *Registry) ProxySink() ProxySink { return ProxySink{r: r} }

// Set converts eps with FromProxy and calls Registry.Set.
func (s ProxySink) Set(authority string, eps []endpoint.Endpoint) error {
	return s.r.Set(authority, fromProxy(eps))
}

// LoadFile replaces r's whole table with the file at path, in the proxy's
// --endpoints-file format (endpoint.ParseStatic):
//
//	AUTHORITY ADDR[;meshed][;weight=N][;id=spiffe://...][;proto=http1|h2c|opaque][;label=k=v] ...
//
// On any error r is unchanged.
func (r *Registry) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	table, err := endpoint.ParseStatic(path, data)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	out := make(map[string][]discovery.Endpoint, len(table))
	for auth, eps := range table {
		out[auth] = fromProxy(eps)
	}
	return r.Replace(out)
}

// WatchFile returns a Registry loaded from path (an error if it cannot
// be), then reloads it whenever it changes, until ctx is done. A reload
// that fails keeps the previous table and is logged on log (nil
// discards).
//
// Changes are noticed two ways. On Linux, inotify on the file's directory
// reports a file renamed over path or closed after writing, and the
// reload follows at once (see notifyChanges). And every interval (zero
// means one second) path is checked: a different file (inode), size or
// modification time means a reload. The check is the only way outside
// Linux or when inotify cannot be had (no instances left), and a safety
// net everywhere: it catches what inotify cannot see, such as a change
// behind a symbolic link.
//
// Writers must replace the file atomically (a temporary file renamed over
// it), as the simulator does: a file rewritten in place may be read
// half-written, and an empty file is a valid, empty table.
func WatchFile(ctx context.Context, path string, interval time.Duration, log *slog.Logger) (*Registry, error) {
	return watchFile(ctx, path, interval, log, true)
}

// watchFile is WatchFile; notify false leaves inotify out, for tests of
// the poll.
func watchFile(ctx context.Context, path string, interval time.Duration, log *slog.Logger, notify bool) (*Registry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = time.Second
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &Registry{}
	if err := r.LoadFile(path); err != nil {
		return nil, err
	}
	changed := coalesce.NewSignal()
	if notify {
		// Set up before returning: a write right after WatchFile returns
		// is heard.
		err := notifyChanges(ctx, path, changed, func(err error) {
			if err != nil {
				log.Warn("endpoints file: change notification ended; polling only", "path", path, "interval", interval, "err", err)
			}
		})
		if err != nil {
			log.Info("endpoints file: no change notification; polling only", "path", path, "interval", interval, "err", err)
		}
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		missing := false
		for {
			notified := false
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-changed:
				notified = true
			}
			nfi, err := os.Stat(path)
			if err != nil {
				if !missing { // once, not every interval
					log.Warn("endpoints file unreadable; keeping the previous table", "path", path, "err", err)
				}
				missing = true
				continue
			}
			missing = false
			// A notified change is reloaded even when the file looks the
			// same: a rewrite of equal size within the file system's clock
			// tick would otherwise be missed. Reloading an unchanged table
			// notifies no watcher.
			if !notified && os.SameFile(fi, nfi) && nfi.ModTime().Equal(fi.ModTime()) && nfi.Size() == fi.Size() {
				continue
			}
			fi = nfi
			if err := r.LoadFile(path); err != nil {
				log.Warn("endpoints file not reloaded; keeping the previous table", "err", err)
				continue
			}
			log.Debug("endpoints file reloaded", "path", path, "notified", notified)
		}
	}()
	return r, nil
}
