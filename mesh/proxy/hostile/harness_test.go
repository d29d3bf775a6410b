package hostile

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/procfs"
	"github.com/skiff-mesh/skiff/internal/proxyproc"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/simulator/demo"
)

var full = flag.Bool("hostile.full", false, "run every attack at the size it was found at (slower)")

// proxyBin is the skiff-proxy binary under attack, built once by TestMain
// as the Makefile builds it (static, trimmed): its memory is the point.
var proxyBin string

func TestMain(m *testing.M) {
	flag.Parse()
	// SKIFF_HOSTILE_PROXY: another build (an older commit's, say) to compare with.
	// A broken build fails the suite; it never skips it.
	bin, remove, err := proxyproc.Build(os.Getenv("SKIFF_HOSTILE_PROXY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
	proxyBin = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

// Addresses on loopback: attackers and the well-behaved client come from
// different hosts, as they would in a cluster.
const (
	attackerIP = "127.0.0.2"
	goodIP     = "127.0.0.3"
	service    = "echo.hostile.svc"
	// lateService is known to discovery but asked for only after an
	// attack.
	lateService = "late.hostile.svc"
)

// target is a running skiff-proxy in front of a demo backend.
type target struct {
	pid                      int
	inbound, outbound, admin string
	backend                  *demo.Server
	budgetMiB                float64
	logs                     *proxyproc.LogTail
	startRSSMiB, startHWMMiB float64
}

// start runs the proxy with its defaults (plus args) and waits until it
// serves.
func start(t *testing.T, args ...string) *target {
	t.Helper()
	backend, err := demo.New(demo.Config{Name: "echo-1", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := backend.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	argv := append([]string{
		"--inbound-addr", "127.0.0.1:0", "--outbound-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--inbound-forward", backend.Addr(), "--endpoint", service + "=" + backend.Addr(),
		"--endpoint", lateService + "=" + backend.Addr(),
		"--log-format", "json", "--detect-timeout", "2s",
	}, args...)
	argv = append(argv, strings.Fields(os.Getenv("SKIFF_HOSTILE_ARGS"))...)
	p, err := proxyproc.Start(context.Background(), proxyBin, argv, nil, testwait.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	tg := &target{pid: p.PID, backend: backend, logs: p.Logs,
		inbound: p.Inbound, outbound: p.Outbound, admin: p.Admin}
	tg.budgetMiB, _ = p.Ready["memory_budget_mib"].(float64)
	st := tg.stat(t)
	tg.startRSSMiB, tg.startHWMMiB = st.VmRSSMB, st.VmHWMMB
	if dir := os.Getenv("SKIFF_HOSTILE_PROFILES"); dir != "" {
		tg.profileAtPeak(t, filepath.Join(dir, t.Name()))
	}
	return tg
}

// profileAtPeak saves the proxy's heap and goroutine profiles (a -tags
// pprof build run with --pprof) each time its resident memory reaches a
// new peak, into dir: where the memory of an attack goes.
func (tg *target) profileAtPeak(t *testing.T, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var peak float64
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			st, err := procfs.ReadPID(tg.pid)
			if err != nil || st.VmRSSMB <= peak+1 {
				continue
			}
			peak = st.VmRSSMB
			for name, path := range map[string]string{"heap.prof": "/debug/pprof/heap", "goroutine.txt": "/debug/pprof/goroutine?debug=1", "heap.txt": "/debug/pprof/heap?debug=1"} {
				resp, err := http.Get("http://" + tg.admin + path)
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				os.WriteFile(filepath.Join(dir, name), b, 0o644)
			}
			os.WriteFile(filepath.Join(dir, "peak.txt"), []byte(fmt.Sprintf("VmRSS %.1f MiB\n", peak)), 0o644)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

func (tg *target) stat(t *testing.T) procfs.Stat {
	t.Helper()
	st, err := procfs.ReadPID(tg.pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// metric returns the value of the first sample whose line starts with
// prefix on the proxy's /metrics, or 0.
func (tg *target) metric(t *testing.T, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + tg.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var sum float64
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			sum += v
		}
	}
	return sum
}

// dialFrom dials addr from the given loopback host.
func dialFrom(ip, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// goodClient sends one request every interval from goodIP while an
// attack runs: on a kept-alive connection, and every fourth on a new
// one, since a new client must be served too.
type goodClient struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       map[string]int
	stop       chan struct{}
	done       chan struct{}
}

func startGood(t *testing.T, addr string) *goodClient {
	g := &goodClient{errs: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	newClient := func(keepAlive bool) *http.Client {
		tr := &http.Transport{
			DialContext:       func(ctx context.Context, _, a string) (net.Conn, error) { return dialFrom(goodIP, a) },
			DisableKeepAlives: !keepAlive,
		}
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}
	kept, fresh := newClient(true), newClient(false)
	go func() {
		defer close(g.done)
		defer kept.CloseIdleConnections()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-g.stop:
				return
			case <-tick.C:
			}
			c := kept
			if i%4 == 3 {
				c = fresh
			}
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			req.Host = service
			resp, err := c.Do(req)
			switch {
			case err != nil:
				g.fail(err.Error())
			case resp.StatusCode != 200:
				g.fail(fmt.Sprintf("status %d %s", resp.StatusCode, resp.Header.Get("Skiff-Error")))
			default:
				g.ok.Add(1)
			}
			if resp != nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	t.Cleanup(g.end)
	return g
}

func (g *goodClient) fail(why string) {
	g.failed.Add(1)
	g.mu.Lock()
	g.errs[why]++
	g.mu.Unlock()
}

func (g *goodClient) end() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
}

// goodSamples is how many requests the well-behaved client makes during
// an attack: an attack lasts until it has.
const goodSamples = 25

func (g *goodClient) total() int64 { return g.ok.Load() + g.failed.Load() }

// check ends the client and fails t unless it was served: 99 % of its
// requests answered 200.
func (g *goodClient) check(t *testing.T) {
	t.Helper()
	g.end()
	ok, failed := g.ok.Load(), g.failed.Load()
	if ok+failed < goodSamples || float64(ok) < 0.99*float64(ok+failed) {
		g.mu.Lock()
		defer g.mu.Unlock()
		t.Errorf("the well-behaved client was not served: %d of %d requests succeeded; failures: %v", ok, ok+failed, g.errs)
	}
	t.Logf("well-behaved client: %d of %d requests succeeded", ok, ok+failed)
}

// checkMemory fails t if the proxy's peak resident memory passed its
// budget, and logs the figures.
func (tg *target) checkMemory(t *testing.T) {
	t.Helper()
	st := tg.stat(t)
	t.Logf("proxy memory: VmRSS %.1f MiB at start, VmHWM %.1f MiB at start, %.1f MiB peak under attack (budget %.0f MiB)",
		tg.startRSSMiB, tg.startHWMMiB, st.VmHWMMB, tg.budgetMiB)
	if tg.budgetMiB == 0 {
		t.Errorf("the proxy did not report its memory budget")
	} else if st.VmHWMMB > tg.budgetMiB {
		t.Errorf("VmHWM %.1f MiB is over the memory budget of %.0f MiB", st.VmHWMMB, tg.budgetMiB)
	}
}

// hold keeps n connections from attackerIP to addr, each set up by open,
// until the returned func is called; it returns how many were opened.
func hold(n int, addr string, open func(net.Conn) error) (opened int, release func()) {
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var count atomic.Int64
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialFrom(attackerIP, addr)
			if err != nil {
				return
			}
			if err := open(c); err != nil {
				c.Close()
				return
			}
			count.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	return int(count.Load()), func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
}

// percentile of xs (sorted in place), p in [0, 1].
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	return xs[min(len(xs)-1, int(p*float64(len(xs))))]
}

// size picks the fast form or, with -hostile.full, the size an attack was
// found at.
func size(fast, found int) int {
	if *full {
		return found
	}
	return fast
}

// underAttack runs attack against tg while a well-behaved client sends to
// addr, until the client has made goodSamples requests and the attack
// has run at least once; attack must return once stop is closed. Then it
// checks the client was served and the proxy kept to its budget.
func underAttack(t *testing.T, tg *target, addr string, attack func(stop <-chan struct{})) {
	t.Helper()
	g := startGood(t, addr)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); attack(stop) }()
	err := testwait.Until(3*testwait.Timeout, func() (bool, error) {
		return g.total() >= goodSamples, fmt.Errorf("the well-behaved client made %d of %d requests", g.total(), goodSamples)
	})
	close(stop)
	<-done
	if err != nil {
		t.Error(err)
	}
	g.check(t)
	tg.checkMemory(t)
}

// repeat runs round until stop is closed, at least once.
func repeat(stop <-chan struct{}, round func()) {
	for {
		round()
		select {
		case <-stop:
			return
		default:
		}
	}
}
