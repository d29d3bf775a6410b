//go:build linux

package netns

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
)

// childEnv makes the test binary the crashing child of TestSweepAfterKill:
// its value is the run id.
const childEnv = "SKIFF_NETNS_TEST_CHILD"

// harnessNS is the test process's network namespace, read before any
// test ran.
var harnessNS uint64

func TestMain(m *testing.M) {
	if id := os.Getenv(childEnv); id != "" {
		crashChild(id)
		return
	}
	harnessNS, _ = nsInode("/proc/self/ns/net")
	os.Exit(m.Run())
}

// crashChild builds a net with two pods, a partition and an impairment,
// says "ready", and waits to be killed (a minute at most).
func crashChild(runID string) {
	ctx := context.Background()
	n, err := New(ctx, Config{RunID: runID})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	a, err1 := n.AddPod(ctx, "a")
	b, err2 := n.AddPod(ctx, "b")
	if err := errors.Join(err1, err2); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := n.Partition(ctx, a, b); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := n.Impair(ctx, a, Impairment{Latency: time.Millisecond}); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	time.Sleep(time.Minute) // the parent SIGKILLs us long before
	os.Exit(3)
}

// needNet skips the test, in one line, where a Net cannot run.
func needNet(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// testRunID is a fresh run id.
func testRunID() string { return "t" + strings.ToLower(rand.Text()[:6]) }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newNet builds a Net with the named pods, closed (and checked empty) at
// the end of the test.
func newNet(t *testing.T, pods ...string) (*Net, []*Pod) {
	t.Helper()
	needNet(t)
	ctx := context.Background()
	n, err := New(ctx, Config{RunID: testRunID(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
		assertNoLeftovers(t, n.RunID())
	})
	var ps []*Pod
	for _, name := range pods {
		p, err := n.AddPod(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return n, ps
}

func assertNoLeftovers(t *testing.T, runID string) {
	t.Helper()
	left, err := Leftovers(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("run %s left: %s", runID, strings.Join(left, "; "))
	}
}

// echoServer listens in p on port and echoes every connection; it stops
// at the end of the test.
func echoServer(t *testing.T, p *Pod, port int) {
	t.Helper()
	l, err := p.Listen("tcp", netip.AddrPortFrom(p.Addr(), uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(c, c) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

func dial(from, to *Pod, port int, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return from.DialContext(ctx, "tcp", netip.AddrPortFrom(to.Addr(), uint16(port)).String())
}

// mustReach dials to from from, waiting (bounded) until it works, and
// checks an echo.
func mustReach(t *testing.T, from, to *Pod, port int) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("%s to reach %s", from.Name(), to.Name()), func() (bool, error) {
		c, err := dial(from, to, port, time.Second)
		if err != nil {
			return false, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("hi")); err != nil {
			return false, err
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil {
			return false, err
		}
		return string(buf) == "hi", nil
	})
}

// mustNotReach checks a dial from from to to times out (no refusal, no
// other error: a partition is silence).
func mustNotReach(t *testing.T, from, to *Pod, port int) {
	t.Helper()
	c, err := dial(from, to, port, 300*time.Millisecond)
	if err == nil {
		c.Close()
		t.Fatalf("%s reached %s", from.Name(), to.Name())
	}
	if !isTimeout(err) {
		t.Fatalf("%s to %s: %v, want a timeout", from.Name(), to.Name(), err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func TestAvailableIsOneLine(t *testing.T) {
	err := available("no-such-iptables-for-skiff")
	if err == nil {
		t.Fatal("a missing iptables went unnoticed")
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "no-such-iptables-for-skiff on PATH") {
		t.Fatalf("error %q: want one line naming the missing command", err)
	}
}

func TestDialFromOnePodReachesListenerInAnother(t *testing.T) {
	leakcheck.Check(t)
	_, ps := newNet(t, "a", "b")
	a, b := ps[0], ps[1]
	l, err := b.Listen("tcp", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		peer <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().String()
		io.Copy(c, c)
	}()
	c, err := dial(a, b, 7000, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-peer; got != a.Addr().String() {
		t.Fatalf("b saw the connection come from %s, want a's address %s", got, a.Addr())
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}

	// The listener is b's alone: the harness's namespace has the port free.
	hl, err := net.Listen("tcp", "127.0.0.1:7000")
	if err == nil {
		hl.Close()
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatal(err)
	}
	// UDP too.
	pc, err := b.ListenPacket("udp", ":7001")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	uc, err := a.DialContext(context.Background(), "udp", netip.AddrPortFrom(b.Addr(), 7001).String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.Write([]byte("dgram"))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := pc.ReadFrom(buf[:4])
	if err != nil || from.(*net.UDPAddr).AddrPort().Addr().Unmap() != a.Addr() || n != 4 {
		t.Fatalf("udp: %d bytes from %v: %v", n, from, err)
	}

	if _, err := a.DialContext(context.Background(), "tcp", "b:7000"); err == nil || !strings.Contains(err.Error(), "not a name") {
		t.Fatalf("dial by name: %v, want a refusal naming why", err)
	}
}

func TestDoLeavesOtherGoroutinesInTheHarnessNamespace(t *testing.T) {
	leakcheck.Check(t)
	_, ps := newNet(t, "a")
	a := ps[0]
	podNS, err := nsInode(a.NamespacePath())
	if err != nil {
		t.Fatal(err)
	}
	if podNS == harnessNS {
		t.Fatal("the pod's namespace is the harness's")
	}
	// While one goroutine sits in the pod, every other one, on whatever
	// thread, is in the harness's namespace.
	inPod := make(chan struct{})
	release := make(chan struct{})
	var doErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		doErr = a.Do(func() error {
			ino, err := nsInode(threadNetnsPath)
			if err != nil {
				return err
			}
			if ino != podNS {
				return fmt.Errorf("inside Do the thread is in namespace %d, want the pod's %d", ino, podNS)
			}
			close(inPod)
			<-release
			return nil
		})
	})
	<-inPod
	var bad []string
	var mu sync.Mutex
	var checkers sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		checkers.Go(func() {
			for range 200 {
				ino, err := nsInode(threadNetnsPath)
				if err != nil || ino != harnessNS {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%d (%v)", ino, err))
					mu.Unlock()
				}
				runtime.Gosched()
			}
		})
	}
	checkers.Wait()
	close(release)
	wg.Wait()
	if doErr != nil {
		t.Fatal(doErr)
	}
	if len(bad) > 0 {
		t.Fatalf("%d checks found a goroutine outside the harness's namespace %d: %v", len(bad), harnessNS, bad[:min(len(bad), 5)])
	}
	// Afterwards, every thread of the process is back: lock many at once
	// (each goroutine on a thread of its own) and look.
	var locked sync.WaitGroup
	hold := make(chan struct{})
	n := 2*runtime.GOMAXPROCS(0) + 8
	inos := make(chan uint64, n)
	for range n {
		locked.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ino, _ := nsInode(threadNetnsPath)
			inos <- ino
			<-hold
		})
	}
	for range n {
		if ino := <-inos; ino != harnessNS {
			t.Errorf("a thread is in namespace %d after Do, want %d", ino, harnessNS)
		}
	}
	close(hold)
	locked.Wait()

	// A panic inside Do reaches the caller, with the thread back.
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the panic from inside Do", v)
			}
		}()
		a.Do(func() error { panic("boom") })
	}()
}

func TestCommandRunsInThePodWithItsOwnPID(t *testing.T) {
	leakcheck.Check(t)
	_, ps := newNet(t, "a")
	a := ps[0]
	ctx := context.Background()

	out, err := a.Command(ctx, "ip", "-4", "-o", "addr", "show", "dev", PodInterface).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), a.Addr().String()+"/") {
		t.Fatalf("ip addr inside the pod: %s, want %s", out, a.Addr())
	}

	cmd := a.Command(ctx, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := strconv.Itoa(cmd.Process.Pid)
	podNS, _ := nsInode(a.NamespacePath())
	testwait.For(t, "the command to exec sleep in the pod", func() (bool, error) {
		comm, err := os.ReadFile("/proc/" + pid + "/comm")
		if err != nil {
			return false, err
		}
		ino, err := nsInode("/proc/" + pid + "/ns/net")
		if err != nil {
			return false, err
		}
		return strings.TrimSpace(string(comm)) == "sleep" && ino == podNS,
			fmt.Errorf("pid %s is %q in namespace %d", pid, strings.TrimSpace(string(comm)), ino)
	})
	// The PID is the program's: stopping it stops sleep.
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "sleep to stop", func() (bool, error) {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return false, err
		}
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		return f[0] == "T", fmt.Errorf("state %s", f[0])
	})
	cmd.Process.Kill()
	if err := cmd.Wait(); err == nil {
		t.Fatal("sleep ended well after SIGKILL")
	}
}

func TestPartitionDropsBothWaysAndHeals(t *testing.T) {
	leakcheck.Check(t)
	n, ps := newNet(t, "a", "b", "c")
	a, b, c := ps[0], ps[1], ps[2]
	for _, p := range ps {
		echoServer(t, p, 7000)
	}
	ctx := context.Background()
	mustReach(t, a, b, 7000)

	est, err := dial(a, b, 7000, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer est.Close()

	undo, err := n.Partition(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, a, b, 7000)
	mustNotReach(t, b, a, 7000)
	mustReach(t, a, c, 7000)
	mustReach(t, c, b, 7000)

	// The established connection stalls: no answer, and no error either.
	if _, err := est.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	est.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := io.ReadFull(est, buf); !isTimeout(err) {
		t.Fatalf("read across the partition: %v, want a timeout", err)
	}

	rules, err := a.Command(ctx, n.cfg.IPTables+"-save", "-t", "filter").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rules), "-A "+PartitionChain+" -s "+b.Addr().String()+"/32") ||
		!strings.Contains(string(rules), "skiff-netns "+n.ID()+": a cut from") {
		t.Fatalf("a's rules do not show the partition:\n%s", rules)
	}

	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
	if err := undo(ctx); err != nil {
		t.Fatalf("a second undo: %v", err)
	}
	// The stalled data arrives once TCP retransmits across the healed link.
	est.SetReadDeadline(time.Now().Add(testwait.Timeout))
	if _, err := io.ReadFull(est, buf); err != nil || string(buf) != "late" {
		t.Fatalf("after the heal: %q, %v", buf, err)
	}
	mustReach(t, a, b, 7000)
	mustReach(t, b, a, 7000)
	rules, _ = a.Command(ctx, n.cfg.IPTables+"-save", "-t", "filter").Output()
	if strings.Contains(string(rules), "-A "+PartitionChain+" ") {
		t.Fatalf("rules left after the heal:\n%s", rules)
	}
}

func TestPartitionAddrCutsAPodFromAPrefix(t *testing.T) {
	leakcheck.Check(t)
	n, ps := newNet(t, "a", "b", "c", "d")
	a, b, c, d := ps[0], ps[1], ps[2], ps[3]
	for _, p := range ps {
		echoServer(t, p, 7000)
	}
	ctx := context.Background()
	// Pods get addresses in order from .2: c and d are .4 and .5, one /31.
	from := netip.PrefixFrom(c.Addr(), 31).Masked()
	if !from.Contains(d.Addr()) || from.Contains(a.Addr()) || from.Contains(b.Addr()) {
		t.Fatalf("prefix %s: want c (%s) and d (%s) only", from, c.Addr(), d.Addr())
	}
	undo, err := n.PartitionAddr(ctx, a, from)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Pod{c, d} {
		mustNotReach(t, a, p, 7000)
		mustNotReach(t, p, a, 7000)
	}
	mustReach(t, a, b, 7000)
	mustReach(t, b, a, 7000)
	mustReach(t, c, d, 7000)
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
	mustReach(t, a, c, 7000)
	mustReach(t, d, a, 7000)
}

func TestLinkDownAndUp(t *testing.T) {
	leakcheck.Check(t)
	n, ps := newNet(t, "a", "b")
	a, b := ps[0], ps[1]
	echoServer(t, a, 7000)
	echoServer(t, b, 7000)
	ctx := context.Background()
	mustReach(t, a, b, 7000)

	undo, err := n.LinkDown(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, a, b, 7000)
	// b's own sends fail at once: its routes went with the link.
	if _, err := dial(b, a, 7000, 5*time.Second); !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("dial from the downed pod: %v, want network unreachable", err)
	}
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
	mustReach(t, a, b, 7000)
	mustReach(t, b, a, 7000)
	out, err := b.Command(ctx, "ip", "route", "show", "default").Output()
	if err != nil || !strings.Contains(string(out), "via "+n.Gateway().String()) {
		t.Fatalf("b's default route after the link came up: %q, %v", out, err)
	}
}

// pingPong measures k round trips of one byte over c (an echo).
func pingPong(t *testing.T, c net.Conn, k int) time.Duration {
	t.Helper()
	rtts := make([]time.Duration, 0, k)
	buf := []byte{0}
	c.SetDeadline(time.Now().Add(testwait.Timeout))
	for range k {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

func TestImpairLatencyRaisesRTT(t *testing.T) {
	leakcheck.Check(t)
	n, ps := newNet(t, "a", "b")
	a, b := ps[0], ps[1]
	echoServer(t, b, 7000)
	ctx := context.Background()
	c, err := dial(a, b, 7000, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pingPong(t, c, 20) // warm up
	base := pingPong(t, c, 50)

	const latency = 15 * time.Millisecond
	im, err := n.Impair(ctx, a, Impairment{Latency: latency, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Impair(ctx, a, Impairment{}); err == nil {
		t.Fatal("a second impairment of the same pod was accepted")
	}
	impaired := pingPong(t, c, 20)
	st, err := im.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	after := pingPong(t, c, 50)

	// Each round trip crosses a's link twice: out and back.
	want := 2 * latency
	rise := impaired - base
	t.Logf("median RTT: %v unimpaired, %v with %v latency on a's link (rise %v, want about %v), %v after Clear; queue: %+v",
		base, impaired, latency, rise, want, after, st)
	if slack := want/4 + 5*base; rise < want-slack || rise > want+slack {
		t.Errorf("RTT rose by %v, want %v ± %v", rise, want, slack)
	}
	if after > base+want/4 {
		t.Errorf("after Clear the RTT is %v, the baseline %v: the impairment stayed", after, base)
	}
	if st.Packets < 40 || st.Dropped != 0 || st.QueueDropped != 0 || st.UserDropped != 0 || st.KernelErrors != 0 {
		t.Errorf("queue counters: %+v; want every ping and pong queued (40+), none dropped", st)
	}
}

func TestImpairLossDropsAShareAndTCPStillDelivers(t *testing.T) {
	leakcheck.Check(t)
	n, ps := newNet(t, "a", "b")
	a, b := ps[0], ps[1]
	ctx := context.Background()

	// b answers each upload with its SHA-256.
	l, err := b.Listen("tcp", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		c.Write(h.Sum(nil))
	})

	const loss = 0.1
	im, err := n.Impair(ctx, a, Impairment{Loss: loss, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Clear(ctx)
	retrans := func() int {
		var v int
		if err := a.Do(func() error {
			var err error
			v, err = tcpRetransSegs()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := retrans()

	data := make([]byte, 256<<10)
	rand.Read(data)
	c, err := dial(a, b, 7000, 10*time.Second)
	for err != nil && isTimeout(err) { // a lost SYN costs a second
		c, err = dial(a, b, 7000, 10*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testwait.Timeout))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); string(got) != string(sum[:]) {
		t.Fatal("the data arrived damaged")
	}

	st, err := im.Stats()
	if err != nil {
		t.Fatal(err)
	}
	resent := retrans() - before
	// Binomial: the share dropped is within 4 standard deviations.
	mean := loss * float64(st.Packets)
	sd := sqrtF(float64(st.Packets) * loss * (1 - loss))
	t.Logf("queue: %+v; dropped %.3f of packets (want %.2f, ±%.1f packets is 4 sd); TCP retransmitted %d segments",
		st, float64(st.Dropped)/float64(max(st.Packets, 1)), loss, 4*sd, resent)
	if st.Packets < 200 {
		t.Fatalf("only %d packets went through the queue", st.Packets)
	}
	if d := float64(st.Dropped) - mean; d > 4*sd+1 || d < -4*sd-1 {
		t.Errorf("dropped %d of %d packets, want %.0f ± %.0f", st.Dropped, st.Packets, mean, 4*sd)
	}
	if st.Accepted+st.Dropped+uint64(st.Held) != st.Packets {
		t.Errorf("counters do not add up: %+v", st)
	}
	if resent <= 0 {
		t.Errorf("TCP retransmitted nothing: the drops were not real")
	}
}

func sqrtF(x float64) float64 {
	r := x
	for range 50 {
		if r == 0 {
			return 0
		}
		r = (r + x/r) / 2
	}
	return r
}

// tcpRetransSegs reads RetransSegs from the calling thread's namespace.
func tcpRetransSegs() (int, error) {
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return 0, err
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "RetransSegs"); i > 0 && i < len(f) {
			return strconv.Atoi(f[i])
		}
	}
	return 0, errors.New("no Tcp RetransSegs in snmp")
}

func TestImpairJitterKeepsAFlowInOrder(t *testing.T) {
	leakcheck.Check(t)
	n, ps := newNet(t, "a", "b")
	a, b := ps[0], ps[1]
	ctx := context.Background()
	pc, err := b.ListenPacket("udp", ":7001")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	im, err := n.Impair(ctx, a, Impairment{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Clear(ctx)
	uc, err := a.DialContext(ctx, "udp", netip.AddrPortFrom(b.Addr(), 7001).String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	const k = 300
	for i := range k {
		if _, err := uc.Write([]byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 16)
	pc.SetReadDeadline(time.Now().Add(testwait.Timeout))
	for i := range k {
		m, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", i, err)
		}
		if got := string(buf[:m]); got != strconv.Itoa(i) {
			t.Fatalf("datagram %d is %s: the flow was reordered", i, got)
		}
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	leakcheck.Check(t)
	needNet(t)
	ctx := context.Background()
	n, err := New(ctx, Config{RunID: testRunID(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.AddPod(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddPod(ctx, strings.Repeat("long-pod-name-", 6))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Partition(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	im, err := n.Impair(ctx, b, Impairment{Latency: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// A process left running in a pod is killed by Close.
	cmd := a.Command(ctx, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	left, _ := Leftovers(ctx, n.RunID())
	if len(left) < 4 { // switch, two pods, state file
		t.Fatalf("before Close, Leftovers lists only %v", left)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the process in the pod outlived Close")
	}
	assertNoLeftovers(t, n.RunID())
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := im.Clear(ctx); err != nil {
		t.Fatalf("Clear after Close: %v", err)
	}
	if _, err := n.AddPod(ctx, "c"); err == nil {
		t.Fatal("AddPod on a closed Net worked")
	}
}

func TestCancelWhileBuildingLeavesNothingAfterClose(t *testing.T) {
	leakcheck.Check(t)
	needNet(t)
	// Cancelled before New: nothing is made, nothing is left.
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	id := testRunID()
	if _, err := New(dead, Config{RunID: id}); err == nil {
		t.Fatal("New with a cancelled context worked")
	}
	assertNoLeftovers(t, id)

	// Cancelled midway through adding pods, as a Ctrl-C would.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := New(ctx, Config{RunID: testRunID(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		testwait.Until(testwait.Timeout, func() (bool, error) {
			st, err := readState(statePath(n.ID()))
			return err == nil && len(st.Namespaces) >= 4, err
		})
		cancel()
	})
	var addErr error
	for i := range 100 {
		if _, addErr = n.AddPod(ctx, "p"+strconv.Itoa(i)); addErr != nil {
			break
		}
	}
	wg.Wait()
	if !errors.Is(addErr, context.Canceled) {
		t.Fatalf("AddPod after the cancel: %v, want context.Canceled", addErr)
	}
	t.Logf("cancelled after %d pods: %v", len(n.Pods()), addErr)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoLeftovers(t, n.RunID())
}

func TestSweepAfterKill(t *testing.T) {
	needNet(t)
	id := testRunID()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+id)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	select {
	case line := <-lines:
		if line != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the child said %q", line)
		}
	case <-time.After(testwait.Timeout):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the child did not get ready")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	ctx := context.Background()
	left, err := Leftovers(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) < 4 {
		t.Fatalf("the killed run left only %v; want its switch, two pods and its state file", left)
	}
	t.Logf("the killed run left: %s", strings.Join(left, "; "))
	swept, err := Sweep(ctx, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(swept, id) {
		t.Errorf("Sweep removed runs %v, not %s", swept, id)
	}
	assertNoLeftovers(t, id)
}

// TestSniffSeesTheWire: bytes one pod sends another cross the switch,
// where the sniffer counts the frames that carry the marker, once each;
// bytes without it are seen as frames but not as hits.
func TestSniffSeesTheWire(t *testing.T) {
	needNet(t)
	n, ps := newNet(t, "a", "b")
	echoServer(t, ps[1], 7000)
	mustReach(t, ps[0], ps[1], 7000)
	s, err := n.Sniff([]byte("SKIFF-MARKER-7f3a"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	send := func(payload string) {
		t.Helper()
		c, err := dial(ps[0], ps[1], 7000, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(payload))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	send("nothing to see here")
	testwait.For(t, "the sniffer to see frames", func() (bool, error) { return s.Frames() > 0, nil })
	if h := s.Hits(); h != 0 {
		t.Fatalf("%d hits before the marker was sent", h)
	}
	send("body SKIFF-MARKER-7f3a body")
	// The request and its echo: two frames with the marker, each
	// counted once although it crosses two ports of the switch.
	testwait.For(t, "two hits", func() (bool, error) { return s.Hits() >= 2, nil })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if h := s.Hits(); h != 2 {
		t.Errorf("%d hits, want 2 (one frame each way, counted once)", h)
	}
}
