package endpoint

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Static is a Source read from a table: one line per authority,
//
//	# comment
//	AUTHORITY ENDPOINT [ENDPOINT ...]
//	ENDPOINT = host:port[;meshed][;weight=N][;id=spiffe://...][;proto=http1|h2c|opaque][;label=k=v]
//
// An authority listed with no endpoint is known but has none ready. When
// the table comes from a file, Static re-reads it whenever its modification
// time or size changes (the simulator rewrites it atomically), and keeps
// the previous table if the new one is malformed, logging why.
//
// The zero value is an empty table; use ParseStatic or WatchFile.
type Static struct {
	mu      sync.Mutex
	table   map[string][]Endpoint
	version uint64
	changed chan struct{} // closed and replaced on every change
}

var _ Source = (*Static)(nil)

// ParseStatic parses the table format. name is used in error messages
// (a file name, or "--endpoints").
func ParseStatic(name string, data []byte) (map[string][]Endpoint, error) {
	table := make(map[string][]Endpoint)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" {
			continue
		}
		fields := strings.Fields(text)
		auth := strings.ToLower(fields[0])
		if _, dup := table[auth]; dup {
			return nil, fmt.Errorf("%s:%d: authority %q is listed twice", name, line, auth)
		}
		eps := make([]Endpoint, 0, len(fields)-1)
		for _, f := range fields[1:] {
			ep, err := parseEndpoint(f)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: authority %q: %w", name, line, auth, err)
			}
			eps = append(eps, ep)
		}
		table[auth] = eps
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line, err)
	}
	return table, nil
}

func parseEndpoint(s string) (Endpoint, error) {
	parts := strings.Split(s, ";")
	ep := Endpoint{Addr: parts[0]}
	if _, port, err := net.SplitHostPort(ep.Addr); err != nil || port == "" {
		return ep, fmt.Errorf("endpoint %q: want host:port", s)
	}
	for _, opt := range parts[1:] {
		k, v, _ := strings.Cut(opt, "=")
		switch k {
		case "meshed":
			ep.Meshed = true
		case "weight":
			w, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return ep, fmt.Errorf("endpoint %q: weight %q is not a whole number", s, v)
			}
			ep.Weight = uint32(w)
		case "id":
			ep.Identity = v
		case "proto":
			switch p := Protocol(v); p {
			case ProtocolHTTP1, ProtocolH2C, ProtocolOpaque:
				ep.Protocol = p
			default:
				return ep, fmt.Errorf("endpoint %q: proto %q is not one of http1, h2c, opaque", s, v)
			}
		case "label":
			lk, lv, ok := strings.Cut(v, "=")
			if !ok {
				return ep, fmt.Errorf("endpoint %q: label %q wants key=value", s, v)
			}
			if ep.Labels == nil {
				ep.Labels = make(map[string]string)
			}
			ep.Labels[lk] = lv
		default:
			return ep, fmt.Errorf("endpoint %q: unknown option %q (want meshed, weight=, id=, proto=, label=)", s, k)
		}
	}
	return ep, nil
}

// NewStatic returns a Source over a fixed table.
func NewStatic(table map[string][]Endpoint) *Static {
	s := &Static{}
	s.Set(table)
	return s
}

// Set replaces the whole table and notifies watchers.
func (s *Static) Set(table map[string][]Endpoint) {
	s.mu.Lock()
	s.table = table
	s.version++
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Static) snapshot(authority string) (Snapshot, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	eps, ok := s.table[authority]
	return Snapshot{Exists: ok, Endpoints: eps}, s.changed
}

// Watch implements Source.
func (s *Static) Watch(ctx context.Context, authority string, fn func(Snapshot)) {
	authority = strings.ToLower(authority)
	for {
		snap, changed := s.snapshot(authority)
		fn(snap)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// WatchFile loads path into s now (an error if it cannot), then polls it
// every interval until ctx is done, reloading when it changes. A reload
// that fails keeps the previous table and is logged.
func WatchFile(ctx context.Context, path string, interval time.Duration, log *slog.Logger) (*Static, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("endpoints file: %w", err)
	}
	table, err := ParseStatic(path, data)
	if err != nil {
		return nil, err
	}
	s := NewStatic(table)
	if interval <= 0 {
		interval = time.Second
	}
	go func() {
		fi, _ := os.Stat(path)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			nfi, err := os.Stat(path)
			if err != nil || (fi != nil && nfi.ModTime().Equal(fi.ModTime()) && nfi.Size() == fi.Size()) {
				continue
			}
			fi = nfi
			data, err := os.ReadFile(path)
			if err != nil {
				log.Warn("endpoints file unreadable; keeping the previous table", "path", path, "err", err)
				continue
			}
			table, err := ParseStatic(path, data)
			if err != nil {
				log.Warn("endpoints file malformed; keeping the previous table", "err", err)
				continue
			}
			s.Set(table)
			log.Debug("endpoints file reloaded", "path", path, "authorities", len(table))
		}
	}()
	return s, nil
}
