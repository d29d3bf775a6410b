package idleconn

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-mesh/skiff/internal/procfs"
	"github.com/skiff-mesh/skiff/internal/proxyproc"
)

// readyWait bounds the proxy's start: with an identity it serves only
// once it has its certificate.
const readyWait = 30 * time.Second

// proxy is a running skiff-proxy.
type proxy struct {
	*proxyproc.Proc
	http *http.Client
}

// startProxy runs bin with args and waits until it logs "proxy ready".
func startProxy(ctx context.Context, bin string, args, env []string) (*proxy, error) {
	pp, err := proxyproc.Start(ctx, bin, args, env, readyWait)
	if err != nil {
		return nil, err
	}
	p := &proxy{Proc: pp, http: &http.Client{Timeout: 10 * time.Second}}
	if p.Inbound == "" || p.Admin == "" {
		p.stop()
		return nil, fmt.Errorf("skiff-proxy's ready line names no inbound or admin address; its log:\n%s", p.Logs)
	}
	return p, nil
}

// stop kills the proxy (it is ours, by its PID) and waits for it.
func (p *proxy) stop() {
	p.Stop()
	p.http.CloseIdleConnections()
}

// Memory is one reading of the proxy's memory, in MiB (/proc's kB are KiB).
type Memory struct {
	VmRSSMB   float64 `json:"vmrss_mib"`
	VmHWMMB   float64 `json:"vmhwm_mib"`
	RssAnonMB float64 `json:"rss_anon_mib"`
	RssFileMB float64 `json:"rss_file_mib"`
	PssMB     float64 `json:"pss_mib"`
	PssAnonMB float64 `json:"pss_anon_mib"`
	// Settled says whether VmRSS settled (see Config) before the reading,
	// and SettleSeconds how long the wait took.
	Settled       bool    `json:"settled"`
	SettleSeconds float64 `json:"settle_seconds"`
	// Runtime holds the Go runtime's own figures, with Config.ProfileDir.
	Runtime *Runtime `json:"runtime,omitempty"`
}

// Runtime is what the proxy's Go runtime says of its memory (from
// /debug/pprof/heap?debug=1), in bytes, and its goroutines.
type Runtime struct {
	HeapInuse    uint64 `json:"heap_inuse"`
	HeapIdle     uint64 `json:"heap_idle"`
	HeapReleased uint64 `json:"heap_released"`
	StackInuse   uint64 `json:"stack_inuse"`
	Sys          uint64 `json:"sys"`
	NumGC        uint64 `json:"num_gc"`
	Goroutines   int    `json:"goroutines"`
}

// settledReading waits until the proxy's VmRSS settles, then reads its
// memory in full (and, with a ProfileDir, its profiles, saved as
// name-*.txt).
func (p *proxy) settledReading(ctx context.Context, cfg Config, name string) (Memory, error) {
	var m Memory
	start := time.Now()
	select {
	case <-ctx.Done():
		return m, ctx.Err()
	case <-time.After(cfg.MinSettle):
	}
	for range cfg.ForceGC {
		if _, err := p.get(ctx, "/debug/pprof/heap?gc=1"); err != nil {
			return m, fmt.Errorf("forcing a collection (is the proxy built with -tags pprof?): %w", err)
		}
	}
	settled, err := settle(ctx, func() (float64, error) {
		st, err := procfs.ReadPID(p.PID)
		return st.VmRSSMB, err
	}, cfg.SettleInterval, cfg.SettleTolerance, cfg.MaxSettle)
	if err != nil {
		return m, err
	}
	m.Settled, m.SettleSeconds = settled, math.Round(time.Since(start).Seconds()*10)/10
	st, err := procfs.ReadPID(p.PID)
	if err != nil {
		return m, err
	}
	pss, err := procfs.ReadProportional(p.PID)
	if err != nil {
		return m, err
	}
	m.VmRSSMB, m.VmHWMMB, m.RssAnonMB, m.RssFileMB = st.VmRSSMB, st.VmHWMMB, st.RssAnonMB, st.RssFileMB
	m.PssMB, m.PssAnonMB = pss.PssMB, pss.PssAnonMB
	if cfg.ProfileDir != "" {
		rt, err := p.profile(ctx, cfg.ProfileDir, name)
		if err != nil {
			return m, err
		}
		m.Runtime = rt
	}
	return m, nil
}

// settle reads rss every interval until two readings in a row differ by
// less than tol (a fraction of the first), or until maxWait has passed;
// it reports whether they settled.
func settle(ctx context.Context, rss func() (float64, error), interval time.Duration, tol float64, maxWait time.Duration) (bool, error) {
	prev, err := rss()
	if err != nil {
		return false, err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for waited := time.Duration(0); waited+interval <= maxWait; waited += interval {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
		cur, err := rss()
		if err != nil {
			return false, err
		}
		if prev > 0 && math.Abs(cur-prev) < tol*prev {
			return true, nil
		}
		prev = cur
	}
	return false, nil
}

// profile saves the proxy's heap and goroutine profiles into dir, prefixed
// with name, and returns the runtime's figures from them.
func (p *proxy) profile(ctx context.Context, dir, name string) (*Runtime, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rt := &Runtime{}
	for _, f := range []struct{ path, file string }{
		{"/debug/pprof/heap?debug=1", name + "-heap.txt"},
		{"/debug/pprof/goroutine?debug=1", name + "-goroutine.txt"},
		{"/debug/pprof/heap", name + "-heap.pb.gz"},
	} {
		b, err := p.get(ctx, f.path)
		if err != nil {
			return nil, fmt.Errorf("profile (is the proxy built with -tags pprof?): %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.file), b, 0o644); err != nil {
			return nil, err
		}
		switch f.file {
		case name + "-heap.txt":
			parseMemStats(string(b), rt)
		case name + "-goroutine.txt":
			// "goroutine profile: total 1234"
			if line, _, _ := strings.Cut(string(b), "\n"); strings.HasPrefix(line, "goroutine profile: total ") {
				rt.Goroutines, _ = strconv.Atoi(strings.TrimPrefix(line, "goroutine profile: total "))
			}
		}
	}
	return rt, nil
}

// parseMemStats reads the runtime.MemStats lines that end a debug=1 heap
// profile ("# HeapInuse = 1234").
func parseMemStats(s string, rt *Runtime) {
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), " = ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.Fields(v + " ")[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "HeapInuse":
			rt.HeapInuse = n
		case "HeapIdle":
			rt.HeapIdle = n
		case "HeapReleased":
			rt.HeapReleased = n
		case "Stack": // "Stack = StackInuse / StackSys"
			rt.StackInuse = n
		case "Sys":
			rt.Sys = n
		case "NumGC":
			rt.NumGC = n
		}
	}
}

func (p *proxy) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Admin+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

// counts are the proxy's metrics that say whether it kept the
// connections.
type counts struct {
	open, upstream, evicted, rejected, shed float64
}

// scrape reads the counts from the proxy's /metrics.
func (p *proxy) scrape(ctx context.Context) (counts, error) {
	var c counts
	b, err := p.get(ctx, "/metrics")
	if err != nil {
		return c, fmt.Errorf("reading the proxy's metrics: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		switch name := line[:i]; {
		case strings.HasPrefix(name, `tcp_open_connections{direction="inbound",peer="src"`):
			c.open += v
		case strings.HasPrefix(name, `tcp_open_connections{direction="inbound",peer="dst"`):
			c.upstream += v
		case strings.HasPrefix(name, "tcp_evicted_total{"):
			c.evicted += v
		case strings.HasPrefix(name, "tcp_rejected_total{"):
			c.rejected += v
		case name == "memory_shed_connections_total":
			c.shed += v
		}
	}
	return c, nil
}

// waitOpen waits, at most maxWait, until the proxy counts want open
// client connections on its inbound listener.
func (p *proxy) waitOpen(ctx context.Context, want int, maxWait time.Duration) error {
	deadline := time.Now().Add(maxWait)
	for {
		c, err := p.scrape(ctx)
		if err != nil {
			return err
		}
		if int(c.open) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the proxy counts %v open inbound connections after %v, want %d", c.open, maxWait, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
