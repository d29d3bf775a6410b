package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/simulator/demo"
)

// bins are built once for every test; binErr says why they could not be.
var (
	bins   Binaries
	binErr error
)

func TestMain(m *testing.M) {
	if os.Getenv("SKIFF_LOCAL_CRASH_CHILD") == "1" {
		// The child of TestCrashedHarnessLeavesNothing: its parent passes
		// the binaries, and it dies by SIGKILL, cleaning up nothing.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "skiff-local-test-bin-")
	if err != nil {
		binErr = err
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		bins, binErr = BuildBinaries(ctx, dir)
		cancel()
	}
	if binErr != nil {
		fmt.Fprintf(os.Stderr, "the end-to-end tests will fail: %v\n", binErr)
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// needBinaries fails the test when the binaries could not be built: a
// broken build must fail `make test`, not skip the tests that would show it.
func needBinaries(t *testing.T) {
	t.Helper()
	if binErr != nil {
		first, _, _ := strings.Cut(binErr.Error(), "\n")
		t.Fatalf("needs the skiff binaries from go build, which failed (full output above the tests): %s", first)
	}
}

// newEnv returns an Env over a test RunDir; on failure its logs' tails are
// printed, and it is closed when the test ends.
func newEnv(t *testing.T) *Env { return newEnvWith(t, Config{}) }

// newEnvWith is newEnv with the options of cfg (Bin, RunDir, Seed and
// Logger are the test's).
func newEnvWith(t *testing.T, cfg Config) *Env {
	t.Helper()
	needBinaries(t)
	cfg.Bin, cfg.RunDir, cfg.Seed = bins, t.TempDir(), 1
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	env, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(env.RunDir(), "logs", "*.log"))
			for _, l := range logs {
				t.Logf("%s:\n%s", filepath.Base(l), logTail(l, 8))
			}
		}
		if err := env.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return env
}

var httpc = &http.Client{
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16},
	Timeout:   5 * time.Second,
}

// viaClient sends GET / through the client sidecar to service and returns
// the status and the replica that answered.
func viaClient(t *testing.T, env *Env, service string) (int, string) {
	t.Helper()
	code, replica, err := get(env, service)
	if err != nil {
		t.Fatal(err)
	}
	return code, replica
}

func get(env *Env, service string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+env.Client().OutboundAddr()+"/", nil)
	req.Host = env.Authority(service)
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET via the client sidecar to %s: %w", service, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(demo.ReplicaHeader), nil
}

// allOK sends n requests through the client to service; every one must
// succeed. It returns the answering replicas.
func allOK(t *testing.T, env *Env, service string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := range n {
		code, replica := viaClient(t, env, service)
		if code != http.StatusOK {
			t.Fatalf("request %d of %d to %s: status %d from %q", i+1, n, service, code, replica)
		}
		seen[replica]++
	}
	return seen
}

func directGet(t *testing.T, addr string) int {
	t.Helper()
	resp, err := httpc.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func podNames(eps []endpoint.Endpoint) []string {
	var out []string
	for _, ep := range eps {
		out = append(out, ep.Labels["pod"])
	}
	slices.Sort(out)
	return out
}

// registryLists fails the test unless the registry lists exactly pods for
// service now: Up, Kill and Restart publish before they return.
func registryLists(t *testing.T, env *Env, service string, pods ...string) {
	t.Helper()
	if got := podNames(env.Endpoints(service)); !slices.Equal(got, pods) {
		t.Fatalf("the registry lists %v for %s; want %v", got, service, pods)
	}
}

// waitEndpoints waits until the registry lists exactly pods for service,
// for changes the environment makes on its own (a prober, a process
// exit). It returns how long that took, for the log only.
func waitEndpoints(t *testing.T, env *Env, service string, pods ...string) time.Duration {
	t.Helper()
	start := time.Now()
	testwait.For(t, fmt.Sprintf("the registry to list %v for %s", pods, service), func() (bool, error) {
		if got := podNames(env.Endpoints(service)); !slices.Equal(got, pods) {
			return false, fmt.Errorf("it lists %v", got)
		}
		return true, nil
	})
	return time.Since(start)
}

// waitRouted waits until the client sidecar balances service over exactly
// the endpoints the registry lists for it (its /debug/balancer): the
// registry change has reached the one proxy that routes the tests'
// requests (a pod's sidecar hands inbound requests to its own workload).
// The client must have sent service a request before: a sidecar watches
// an authority from its first request on.
func waitRouted(t *testing.T, env *Env, service string) {
	t.Helper()
	testwait.For(t, "the client sidecar to balance "+service+" over the registry's endpoints", func() (bool, error) {
		var want []string
		for _, ep := range env.Endpoints(service) {
			want = append(want, ep.Addr)
		}
		slices.Sort(want)
		got, err := balancerAddrs(env.Client(), env.Authority(service))
		if err != nil {
			return false, err
		}
		if !slices.Equal(got, want) {
			return false, fmt.Errorf("it balances over %v; the registry lists %v", got, want)
		}
		return true, nil
	})
}

// balancerAddrs returns, sorted, the endpoint addresses of the balancer
// the pod's sidecar holds for authority, as its /debug/balancer lists
// them: an "AUTHORITY exists=…" line, then one indented "ADDR …" line per
// endpoint.
func balancerAddrs(p *Pod, authority string) ([]string, error) {
	resp, err := httpc.Get("http://" + p.AdminAddr() + "/debug/balancer")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/debug/balancer of %s: %s", p.Name(), resp.Status)
	}
	var addrs []string
	found, in := false, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") {
			name, _, _ := strings.Cut(line, " ")
			in = name == authority
			found = found || in
			continue
		}
		if in {
			addr, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			addrs = append(addrs, addr)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s has no balancer for %s (no request for it yet?)", p.Name(), authority)
	}
	slices.Sort(addrs)
	return addrs, nil
}

// alive reports whether pid runs; a zombie (dead, not yet reaped by
// whoever inherited it) does not.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: trust kill
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func mustPod(t *testing.T, env *Env, name string) *Pod {
	t.Helper()
	p, err := env.Pod(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMeshedService(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	err := env.Up(ctx, []ServiceSpec{
		{Name: "echo", Replicas: 3, Meshed: true, Failover: []string{"backup"}},
		{Name: "backup", Replicas: 1, Meshed: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := env.Authority("echo"); got != "echo.default.svc:8080" {
		t.Errorf("Authority = %q", got)
	}
	if got := len(env.Processes()); got != 2*4+1 {
		t.Errorf("%d processes; want 9 (4 pods × 2 + the client sidecar)", got)
	}
	registryLists(t, env, "echo", "echo-0", "echo-1", "echo-2")

	t.Run("reaches every replica", func(t *testing.T) {
		// Concurrent requests, so that the balancer's in-flight counts
		// spread them over every replica.
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				for range 15 {
					if code, replica, err := get(env, "echo"); err != nil || code != 200 {
						t.Errorf("status %d from %q: %v", code, replica, err)
						return
					}
				}
			})
		}
		wg.Wait()
		for _, p := range env.Pods("echo") {
			s, err := p.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name != p.Name() || s.Requests == 0 || s.HTTP[200] != s.Requests {
				t.Errorf("%s: stats %+v; want some requests, all 200", p.Name(), s)
			}
		}
	})

	t.Run("kill and restart", func(t *testing.T) {
		p := mustPod(t, env, "echo-1")
		old := p.Processes()
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		registryLists(t, env, "echo", "echo-0", "echo-2")
		for _, pr := range old {
			if alive(pr.PID) {
				t.Errorf("%s (pid %d) survived Kill", pr.Name, pr.PID)
			}
		}
		if p.Ready() || len(p.Processes()) != 0 {
			t.Error("a killed pod is ready or lists processes")
		}
		waitRouted(t, env, "echo")
		seen := allOK(t, env, "echo", 30)
		if seen["echo-1"] > 0 {
			t.Errorf("the killed replica answered: %v", seen)
		}

		if err := p.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		registryLists(t, env, "echo", "echo-0", "echo-1", "echo-2")
		waitRouted(t, env, "echo")
		allOK(t, env, "echo", 10)
	})

	t.Run("pause and resume", func(t *testing.T) {
		p := mustPod(t, env, "echo-2")
		if err := p.Pause(); err != nil {
			t.Fatal(err)
		}
		if !p.Paused() || len(p.Processes()) != 2 {
			t.Error("a paused pod must stay listed with its processes")
		}
		d := waitEndpoints(t, env, "echo", "echo-0", "echo-1")
		t.Logf("paused pod out of the registry after %s", d)
		if err := p.Resume(); err != nil {
			t.Fatal(err)
		}
		d = waitEndpoints(t, env, "echo", "echo-0", "echo-1", "echo-2")
		t.Logf("resumed pod back after %s", d)
		waitRouted(t, env, "echo")
		allOK(t, env, "echo", 10)
	})

	t.Run("behaviour", func(t *testing.T) {
		// One replica fails; its peers do not.
		p := mustPod(t, env, "echo-0")
		if err := p.SetBehaviour(ctx, demo.Behaviour{ErrorRate: 1, ErrorStatus: 503}); err != nil {
			t.Fatal(err)
		}
		if code := directGet(t, p.AppAddr()); code != 503 {
			t.Errorf("direct request to the failing replica: %d", code)
		}
		if code := directGet(t, env.DirectAddr("echo", 1)); code != 200 {
			t.Errorf("direct request to a healthy peer: %d", code)
		}
		if err := p.ResetBehaviour(ctx); err != nil {
			t.Fatal(err)
		}
		if code := directGet(t, p.AppAddr()); code != 200 {
			t.Errorf("after ResetBehaviour: %d", code)
		}
		// Through the mesh (a one-replica service: the balancer's choice
		// among several is its own business).
		b := mustPod(t, env, "backup-0")
		if err := b.SetBehaviour(ctx, demo.Behaviour{ErrorRate: 1, ErrorStatus: 503}); err != nil {
			t.Fatal(err)
		}
		if code, replica := viaClient(t, env, "backup"); code != 503 || replica != "backup-0" {
			t.Errorf("via the client sidecar: %d from %q; want 503 from backup-0", code, replica)
		}
		if err := b.ResetBehaviour(ctx); err != nil {
			t.Fatal(err)
		}
		allOK(t, env, "backup", 3)
		if err := env.Client().SetBehaviour(ctx, demo.Behaviour{}); err == nil {
			t.Error("SetBehaviour on the client pod succeeded")
		}
	})

	t.Run("failover", func(t *testing.T) {
		for _, p := range env.Pods("echo") {
			if err := p.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		// The registry lists echo's own pods, none now; the sidecars carry
		// the failover rule and send echo's requests to the backup.
		registryLists(t, env, "echo")
		waitRouted(t, env, "echo") // no endpoint left: the failover rule applies
		if seen := allOK(t, env, "echo", 10); seen["backup-0"] != 10 {
			t.Errorf("answers during failover: %v", seen)
		}
		if err := env.Pods("echo")[0].Restart(ctx); err != nil {
			t.Fatal(err)
		}
		registryLists(t, env, "echo", "echo-0")
	})

	t.Run("close", func(t *testing.T) {
		procs := env.Processes()
		if len(procs) == 0 {
			t.Fatal("no processes")
		}
		lock := env.lock.path
		if err := env.Close(); err != nil {
			t.Fatal(err)
		}
		for _, pr := range procs {
			if alive(pr.PID) {
				t.Errorf("%s (pid %d) survived Close", pr.Name, pr.PID)
			}
		}
		if len(env.Processes()) != 0 {
			t.Error("Processes lists processes after Close")
		}
		if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("subnet lock file %s still there: %v", lock, err)
		}
		if err := env.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestProtocolsAndUnmeshed(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	err := env.Up(ctx, []ServiceSpec{
		{Name: "plain", Replicas: 1},
		{Name: "tcpecho", Replicas: 1, Meshed: true, Protocol: ProtocolTCP},
		{Name: "rpc", Replicas: 1, Meshed: true, Protocol: ProtocolGRPC},
	})
	if err != nil {
		t.Fatal(err)
	}

	// Unmeshed: the registry lists the workload itself.
	eps := env.Endpoints("plain")
	if len(eps) != 1 || eps[0].Addr != env.DirectAddr("plain", 0) || eps[0].Meshed {
		t.Errorf("unmeshed endpoints %+v; want the workload %s", eps, env.DirectAddr("plain", 0))
	}
	if p := env.Pods("plain")[0]; p.InboundAddr() != "" || len(p.Processes()) != 1 {
		t.Errorf("an unmeshed pod has a sidecar")
	}
	allOK(t, env, "plain", 5)

	// A workload that dies on its own leaves the registry at once;
	// Restart brings it back.
	plain := env.Pods("plain")[0]
	syscall.Kill(plain.Processes()[0].PID, syscall.SIGKILL)
	waitEndpoints(t, env, "plain")
	if plain.Ready() {
		t.Error("a pod whose workload died is ready")
	}
	if err := plain.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	registryLists(t, env, "plain", "plain-0")

	// Restart of a running pod: a graceful stop, new processes.
	rpc := env.Pods("rpc")[0]
	before := rpc.Processes()
	if err := rpc.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	after := rpc.Processes()
	if len(after) != 2 || after[0].PID == before[0].PID || alive(before[0].PID) || alive(before[1].PID) {
		t.Errorf("restart: processes %v, then %v", before, after)
	}
	registryLists(t, env, "rpc", "rpc-0")

	// TCP, meshed via the client's TCP route, and direct.
	if got := env.Authority("tcpecho"); got != "tcpecho.default.svc:9000" {
		t.Errorf("tcp authority %q", got)
	}
	for _, addr := range []string{env.TCPAddr("tcpecho"), env.DirectAddr("tcpecho", 0)} {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("hello"))
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if string(got) != "hello" {
			t.Errorf("tcp echo via %s: %q, %v", addr, got, err)
		}
	}
	// Each echo connection is a request of its pod, and the client
	// sidecar's counters are summed by their labels.
	if n, err := env.Pods("tcpecho")[0].Requests(ctx); err != nil || n < 2 {
		t.Errorf("tcpecho-0 served %d requests (%v), want the 2 echo connections", n, err)
	}
	sums, err := env.Client().Sums(ctx, `tcp_open_total{direction="outbound",peer="dst"}`, `tcp_open_total{direction="nowhere"}`, "tcp_open_total")
	if err != nil || sums[0] < 1 || sums[1] != 0 || sums[2] < sums[0]+1 {
		t.Errorf("client sidecar's tcp_open_total: upstream %v, none %v, all %v (%v)", sums[0], sums[1], sums[2], err)
	}
	if _, err := env.Client().Sums(ctx, "tcp_open_total{"); err == nil {
		t.Error("Sums took a series that does not parse")
	}

	// gRPC through the client sidecar.
	cc, err := grpc.NewClient("passthrough:///"+env.Client().OutboundAddr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(env.Authority("rpc")))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// The client sidecar has not asked for rpc yet, so /debug/balancer
	// cannot show it caught up with the restart: the event is the echo
	// itself. Attempts made before it caught up fail in the sidecar and
	// never reach the workload, whose count of OKs must be exactly one.
	testwait.For(t, "a gRPC echo via the client sidecar", func() (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, err := demo.Echo(rctx, cc, []byte("ping"))
		if err != nil {
			return false, err
		}
		if string(out) != "ping" {
			t.Fatalf("gRPC echo via the client sidecar: %q", out)
		}
		return true, nil
	})
	if s, err := env.Pods("rpc")[0].Stats(ctx); err != nil || s.GRPC["OK"] != 1 {
		t.Errorf("rpc stats %+v, %v", s, err)
	}
}

func TestTwoEnvsAndContextEnd(t *testing.T) {
	a := newEnv(t)
	b := newEnv(t)
	if a.Subnet() == b.Subnet() {
		t.Fatalf("two environments share %s", a.Subnet())
	}
	spec := []ServiceSpec{{Name: "web", Replicas: 1, Meshed: true}}
	if err := a.Up(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := b.Up(ctx, spec); err != nil {
		t.Fatal(err)
	}
	allOK(t, a, "web", 3)
	allOK(t, b, "web", 3)
	if a.DirectAddr("web", 0) == b.DirectAddr("web", 0) {
		t.Errorf("both environments use %s", a.DirectAddr("web", 0))
	}

	// The end of Up's context closes b, and only b.
	procs := b.Processes()
	cancel()
	testwait.For(t, "b's processes to end with Up's context", func() (bool, error) {
		for _, pr := range procs {
			if alive(pr.PID) {
				return false, fmt.Errorf("%s (pid %d) is alive", pr.Name, pr.PID)
			}
		}
		return true, nil
	})
	if err := b.Up(t.Context(), spec); err == nil {
		t.Error("Up on a closed environment succeeded")
	}
	allOK(t, a, "web", 3)
}

func TestUpFailureCleansUp(t *testing.T) {
	needBinaries(t)
	env, err := New(Config{Bin: Binaries{Proxy: bins.Proxy, Demo: "/bin/false"}, RunDir: t.TempDir()})
	if err != nil {
		t.Skipf("needs /bin/false: %v", err)
	}
	defer env.Close()
	x := env.lock.x
	err = env.Up(t.Context(), []ServiceSpec{{Name: "broken", Replicas: 1, Meshed: true}})
	if err == nil || !strings.Contains(err.Error(), "broken-0") || !strings.Contains(err.Error(), "exited during start-up") {
		t.Fatalf("Up: %v; want an error naming the pod and the exit", err)
	}
	if len(env.Processes()) != 0 {
		t.Errorf("processes left after a failed Up: %v", env.Processes())
	}
	// The sidecar that did start is gone, and the subnet is free again.
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.%d.1.1:4191", x), 5*time.Second); err == nil {
		c.Close()
		t.Error("the sidecar still listens after a failed Up")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dialing the sidecar's admin port after a failed Up: %v; want connection refused", err)
	}
	l, err := tryLock(x)
	if err != nil {
		t.Errorf("subnet 127.%d/16 still locked after a failed Up (%v)", x, err)
	}
	l.release()
}

func TestInvalidTopology(t *testing.T) {
	fake := Binaries{Proxy: "/bin/true", Demo: "/bin/true"}
	if _, err := os.Stat(fake.Proxy); err != nil {
		t.Skip("needs /bin/true")
	}
	for _, tc := range []struct {
		name  string
		specs []ServiceSpec
		want  string
	}{
		{"none", nil, "no services"},
		{"bad name", []ServiceSpec{{Name: "Echo_1", Replicas: 1}}, "DNS label"},
		{"duplicate", []ServiceSpec{{Name: "a"}, {Name: "a"}}, "listed twice"},
		{"protocol", []ServiceSpec{{Name: "a", Protocol: "udp"}}, "protocol"},
		{"replicas", []ServiceSpec{{Name: "a", Replicas: 300}}, "replicas"},
		{"behaviours", []ServiceSpec{{Name: "a", Replicas: 1, Behaviour: make([]demo.Behaviour, 2)}}, "2 behaviours"},
		{"bad behaviour", []ServiceSpec{{Name: "a", Replicas: 1, Behaviour: []demo.Behaviour{{ErrorRate: 2}}}}, "error_rate"},
		{"failover unknown", []ServiceSpec{{Name: "a", Failover: []string{"b"}}}, "not a service"},
		{"failover self", []ServiceSpec{{Name: "a", Failover: []string{"a"}}}, "itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := New(Config{Bin: fake, RunDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer env.Close()
			err = env.Up(t.Context(), tc.specs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Up: %v; want an error about %q", err, tc.want)
			}
		})
	}
	if _, err := New(Config{Bin: Binaries{Proxy: "/nonexistent/skiff-proxy", Demo: "/bin/true"}}); err == nil {
		t.Error("New with a missing binary succeeded")
	}
}

func TestFileRegistry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints")
	r, err := NewFileRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]endpoint.Endpoint{
		"echo.default.svc:8080": {
			{Addr: "127.10.1.1:4143", Meshed: true, Protocol: endpoint.ProtocolHTTP1, Labels: map[string]string{"pod": "echo-0"}},
			{Addr: "127.10.1.2:8080", Weight: 3, Identity: "spiffe://skiff/ns/default/sa/echo"},
		},
		"db.default.svc:9000": {},
	}
	var mods []time.Time
	for auth, eps := range want {
		if err := r.Set(auth, eps); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		mods = append(mods, fi.ModTime())
	}
	if !mods[1].After(mods[0]) {
		t.Errorf("two quick writes share the modification time %s; sidecars would miss the second", mods[0])
	}
	data, _ := os.ReadFile(path)
	got, err := endpoint.ParseStatic(path, data)
	if err != nil {
		t.Fatalf("the file does not parse: %v\n%s", err, data)
	}
	if len(got) != 2 || len(got["db.default.svc:9000"]) != 0 {
		t.Fatalf("parsed %v from\n%s", got, data)
	}
	for i, ep := range got["echo.default.svc:8080"] {
		w := want["echo.default.svc:8080"][i]
		if ep.Addr != w.Addr || ep.Meshed != w.Meshed || ep.Weight != w.Weight || ep.Identity != w.Identity ||
			ep.Protocol != w.Protocol || ep.Labels["pod"] != w.Labels["pod"] {
			t.Errorf("endpoint %d round-tripped to %+v; want %+v", i, ep, w)
		}
	}
	if !bytes.HasPrefix(data, []byte("#")) {
		t.Errorf("no header comment:\n%s", data)
	}
	for _, bad := range []struct {
		auth string
		ep   endpoint.Endpoint
	}{
		{"has space:80", endpoint.Endpoint{Addr: "127.0.0.1:1"}},
		{"ok:80", endpoint.Endpoint{Addr: "127.0.0.1:1;meshed"}},
		{"ok:80", endpoint.Endpoint{Addr: "127.0.0.1:1", Labels: map[string]string{"a": "b#c"}}},
	} {
		if err := r.Set(bad.auth, []endpoint.Endpoint{bad.ep}); err == nil {
			t.Errorf("Set(%q, %+v) succeeded", bad.auth, bad.ep)
		}
	}
}

func TestSubnetLocks(t *testing.T) {
	a, err := allocSubnet(4140)
	if err != nil {
		t.Fatal(err)
	}
	b, err := allocSubnet(4140)
	if err != nil {
		a.release()
		t.Fatal(err)
	}
	if a.x == b.x {
		t.Errorf("both claimed 127.%d/16", a.x)
	}
	x := a.x
	a.release()
	b.release()
	c, err := tryLock(x)
	if err != nil {
		t.Fatalf("127.%d/16 not free after release: %v", x, err)
	}
	c.release()
}

// TestCrashedHarnessLeavesNothing runs an environment in a child test
// process, SIGKILLs that process (no Close), and expects the kernel to take
// the pods with it (Linux's parent-death signal).
func TestCrashedHarnessLeavesNothing(t *testing.T) {
	if os.Getenv("SKIFF_LOCAL_CRASH_CHILD") == "1" {
		env, err := New(Config{
			Bin:    Binaries{Proxy: os.Getenv("SKIFF_LOCAL_PROXY"), Demo: os.Getenv("SKIFF_LOCAL_DEMO")},
			RunDir: os.Getenv("SKIFF_LOCAL_RUNDIR"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Up(context.Background(), []ServiceSpec{{Name: "victim", Replicas: 1, Meshed: true}}); err != nil {
			t.Fatal(err)
		}
		for _, p := range env.Processes() {
			fmt.Println("PID", p.PID)
		}
		fmt.Println("UP")
		select {} // until killed
	}
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux: the parent-death signal")
	}
	needBinaries(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashedHarnessLeavesNothing$", "-test.v")
	cmd.Env = append(os.Environ(), "SKIFF_LOCAL_CRASH_CHILD=1", "SKIFF_LOCAL_PROXY="+bins.Proxy,
		"SKIFF_LOCAL_DEMO="+bins.Demo, "SKIFF_LOCAL_RUNDIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var pid int
		if _, err := fmt.Sscanf(sc.Text(), "PID %d", &pid); err == nil {
			pids = append(pids, pid)
		}
		if sc.Text() == "UP" {
			break
		}
	}
	cmd.Process.Kill()
	go io.Copy(io.Discard, out)
	cmd.Wait()
	if len(pids) != 3 {
		t.Fatalf("the child environment reported pids %v; want 3", pids)
	}
	err = testwait.Until(testwait.Timeout, func() (bool, error) {
		for _, pid := range pids {
			if alive(pid) {
				return false, fmt.Errorf("pid %d is alive", pid)
			}
		}
		return true, nil
	})
	if err != nil {
		for _, pid := range pids {
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Errorf("pid %d outlived its harness", pid)
			}
		}
	}
}
