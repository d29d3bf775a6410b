package local

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// Registry receives the endpoints of each authority from the simulator,
// which owns services → pods. The file the sidecars read (FileRegistry) is
// the implementation today; a control plane's Destination API replaces it
// later.
type Registry interface {
	// Set replaces the endpoints of authority. An empty list means the
	// authority is known but has no ready endpoint (sidecars answer 503).
	Set(authority string, endpoints []endpoint.Endpoint) error
}

// FileRegistry is a Registry kept in a file in skiff-proxy's
// --endpoints-file format, rewritten atomically (temporary file and
// rename) on every change. Its methods are safe for concurrent use.
type FileRegistry struct {
	path string

	mu      sync.Mutex
	table   map[string][]endpoint.Endpoint
	lastMod time.Time
}

var _ Registry = (*FileRegistry)(nil)

// NewFileRegistry writes an empty table to path and returns the registry.
// The file must exist before a sidecar starts with --endpoints-file.
func NewFileRegistry(path string) (*FileRegistry, error) {
	r := &FileRegistry{path: path, table: map[string][]endpoint.Endpoint{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.write(); err != nil {
		return nil, err
	}
	return r, nil
}

// Path is the file the sidecars read.
func (r *FileRegistry) Path() string { return r.path }

// Set implements Registry.
func (r *FileRegistry) Set(authority string, endpoints []endpoint.Endpoint) error {
	return r.SetAll(map[string][]endpoint.Endpoint{authority: endpoints})
}

// SetAll sets every authority of table as Set does, in one atomic
// rewrite of the file: a reader sees all of it or none. Authorities not in
// table keep their endpoints. It checks everything before changing
// anything.
func (r *FileRegistry) SetAll(table map[string][]endpoint.Endpoint) error {
	for authority, endpoints := range table {
		if err := checkField("authority", authority); err != nil {
			return err
		}
		for _, ep := range endpoints {
			if err := checkEndpoint(ep); err != nil {
				return fmt.Errorf("authority %s: %w", authority, err)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for authority, endpoints := range table {
		r.table[strings.ToLower(authority)] = slices.Clone(endpoints)
	}
	return r.write()
}

// Table returns a copy of the current table.
func (r *FileRegistry) Table() map[string][]endpoint.Endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]endpoint.Endpoint, len(r.table))
	for k, v := range r.table {
		out[k] = slices.Clone(v)
	}
	return out
}

// write renders the table atomically; r.mu is held.
//
// skiff-proxy notices a change by the file's modification time and size.
// File timestamps come from the kernel's coarse clock (a few ms), so two
// quick writes of the same size could look identical; every write
// therefore gets a modification time strictly after the previous one.
func (r *FileRegistry) write() error {
	var b strings.Builder
	b.WriteString("# Skiff local registry, written by simulator/local: AUTHORITY ENDPOINT [ENDPOINT ...]\n")
	for _, auth := range slices.Sorted(maps.Keys(r.table)) {
		b.WriteString(auth)
		for _, ep := range r.table[auth] {
			b.WriteByte(' ')
			b.WriteString(formatEndpoint(ep))
		}
		b.WriteByte('\n')
	}
	tmp, err := os.CreateTemp(filepath.Dir(r.path), ".endpoints-*")
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	_, err = tmp.WriteString(b.String())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	mod := time.Now()
	if !mod.After(r.lastMod) {
		mod = r.lastMod.Add(time.Millisecond)
	}
	if err == nil {
		err = os.Chtimes(tmp.Name(), mod, mod)
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), r.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("registry: write %s: %w", r.path, err)
	}
	r.lastMod = mod
	return nil
}

// formatEndpoint renders ep in the --endpoints-file syntax.
func formatEndpoint(ep endpoint.Endpoint) string {
	var b strings.Builder
	b.WriteString(ep.Addr)
	if ep.Meshed {
		b.WriteString(";meshed")
	}
	if ep.Weight != 0 {
		b.WriteString(";weight=" + strconv.FormatUint(uint64(ep.Weight), 10))
	}
	if ep.Identity != "" {
		b.WriteString(";id=" + ep.Identity)
	}
	if ep.Protocol != endpoint.ProtocolUnknown {
		b.WriteString(";proto=" + string(ep.Protocol))
	}
	for _, k := range slices.Sorted(maps.Keys(ep.Labels)) {
		b.WriteString(";label=" + k + "=" + ep.Labels[k])
	}
	return b.String()
}

// checkField rejects what would break the line format.
func checkField(what, s string) error {
	if s == "" || strings.ContainsAny(s, " \t\r\n;#") {
		return fmt.Errorf("registry: %s %q is empty or holds a space, ';' or '#'", what, s)
	}
	return nil
}

func checkEndpoint(ep endpoint.Endpoint) error {
	if err := checkField("endpoint address", ep.Addr); err != nil {
		return err
	}
	if ep.Identity != "" {
		if err := checkField("identity", ep.Identity); err != nil {
			return err
		}
	}
	for k, v := range ep.Labels {
		if err := checkField("label key", k); err != nil {
			return err
		}
		if strings.Contains(k, "=") {
			return fmt.Errorf("registry: label key %q holds '='", k)
		}
		if err := checkField("label value", v); err != nil {
			return err
		}
	}
	return nil
}
