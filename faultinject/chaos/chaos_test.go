package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/testwait"
)

// echoServer is an upstream that echoes every connection, honouring
// half-close. It stops with the test.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// startLink returns a started Link to upstream that is closed, and checked
// for leaked goroutines, when the test ends.
func startLink(t *testing.T, upstream string, seed uint64) *Link {
	t.Helper()
	l, err := New(Config{Upstream: upstream, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	// The first link of a test registers the leak check, which so runs
	// after every link of the test is closed.
	if _, done := leakChecked.LoadOrStore(t, true); !done {
		t.Cleanup(func() { checkNoLeak(t) })
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

var leakChecked sync.Map // *testing.T → bool

// checkNoLeak fails if a goroutine running this package's non-test code
// outlives its Link.
func checkNoLeak(t *testing.T) {
	t.Helper()
	var leaked []string
	err := testwait.Until(testwait.Timeout, func() (bool, error) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		leaked = leaked[:0]
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "/faultinject/chaos/") && !strings.Contains(g, "_test.go") {
				leaked = append(leaked, g)
			}
		}
		return len(leaked) == 0, nil
	})
	if err != nil {
		t.Errorf("%d goroutines leaked after Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	}
}

func dial(t *testing.T, l *Link) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back, returning how long that took.
func roundTrip(t *testing.T, c net.Conn, msg string) time.Duration {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return echoed(t, c, msg)
}

// echoed writes msg and reads it back within the deadline already set on
// c, returning how long that took.
func echoed(t *testing.T, c net.Conn, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echoed %q, want %q", buf, msg)
	}
	return time.Since(start)
}

// medianRTT is the median of n round trips, each on a new connection.
func medianRTT(t *testing.T, l *Link, n int) time.Duration {
	t.Helper()
	var d []time.Duration
	for range n {
		c := dial(t, l)
		d = append(d, roundTrip(t, c, "ping"))
		c.Close()
	}
	slices.Sort(d)
	return d[len(d)/2]
}

func TestForwardsManyConnections(t *testing.T) {
	l := startLink(t, echoServer(t), 1)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB: several chunks
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			c, err := net.Dial("tcp", l.Addr())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			go func() {
				c.Write(payload)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				errs <- err
			} else if !bytes.Equal(got, payload) {
				errs <- errors.New("echo differs from what was sent")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLatency(t *testing.T) {
	const lat = 100 * time.Millisecond
	l := startLink(t, echoServer(t), 1)
	c := dial(t, l) // open before the toxic: it must be affected too
	roundTrip(t, c, "warm")

	if err := l.Add(Toxic{Name: "down", Kind: Latency{Latency: lat}}); err != nil {
		t.Fatal(err)
	}
	if d := roundTrip(t, c, "hello"); d < lat {
		t.Errorf("open connection: round trip %s with %s of downstream latency", d, lat)
	}
	if d := medianRTT(t, l, 1); d < lat {
		t.Errorf("new connection: round trip %s with %s of downstream latency", d, lat)
	}
	if err := l.Add(Toxic{Name: "up", Stream: Upstream, Kind: Latency{Latency: lat / 2, Jitter: lat / 4}}); err != nil {
		t.Fatal(err)
	}
	// Both streams delay: at least lat + lat/2 - lat/4 of jitter.
	if d := roundTrip(t, c, "both"); d < lat+lat/4 {
		t.Errorf("round trip %s with %s downstream and %s±%s upstream", d, lat, lat/2, lat/4)
	}
	for _, name := range []string{"down", "up"} {
		if err := l.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	// Removed: told by a count, not by one round trip's time. The toxics
	// would hold 100 round trips for 100 × 125 ms at least, more than
	// twice the deadline that they must now all fit in.
	const n, deadline = 100, 5 * time.Second
	c.SetDeadline(time.Now().Add(deadline))
	for i := range n {
		echoed(t, c, fmt.Sprintf("again %d", i))
	}
}

func TestLatencyDelaysWithoutThrottling(t *testing.T) {
	// A stream of many chunks through a latency toxic takes about the
	// latency once, not once per chunk.
	const lat = 100 * time.Millisecond
	l := startLink(t, echoServer(t), 1)
	stream := func() time.Duration {
		c := dial(t, l)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		go func() {
			for range 10 {
				c.Write(make([]byte, 100))
				// The pause is the behaviour under test: ten chunks, not
				// one write the kernel would coalesce.
				time.Sleep(5 * time.Millisecond)
			}
			c.CloseWrite()
		}()
		n, err := io.Copy(io.Discard, c)
		if err != nil || n != 1000 {
			t.Fatalf("read %d bytes, %v", n, err)
		}
		return time.Since(start)
	}
	// The same stream without the toxic, in the same run: its pauses and
	// whatever the machine costs now.
	base := stream()
	if err := l.Add(Toxic{Name: "lat", Kind: Latency{Latency: lat}}); err != nil {
		t.Fatal(err)
	}
	d := stream()
	if d < lat {
		t.Errorf("10 chunks through %s of latency took %s", lat, d)
	}
	// Counted in latencies: the toxic adds about one; a link that delayed
	// each chunk after the previous one would add ten. Five is the line.
	if added := float64(d-base) / float64(lat); added >= 5 {
		t.Errorf("10 chunks through %s of latency took %s, %s without: %.1f latencies added; want about one, not ten", lat, d, base, added)
	}
}

func TestBandwidth(t *testing.T) {
	const rate = 200 // KB/s = 200 bytes/ms
	const size = 40000
	l := startLink(t, echoServer(t), 1)
	transfer := func(size int) time.Duration {
		c := dial(t, l)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		go func() { c.Write(make([]byte, size)); c.CloseWrite() }()
		n, err := io.Copy(io.Discard, c)
		if err != nil || n != int64(size) {
			t.Fatalf("read %d of %d bytes, %v", n, size, err)
		}
		return time.Since(start)
	}
	base := transfer(size)
	if err := l.Add(Toxic{Name: "bw", Kind: Bandwidth{Rate: rate}}); err != nil {
		t.Fatal(err)
	}
	slow := transfer(size)
	want := time.Duration(size/rate) * time.Millisecond
	if slow < want*9/10 || slow <= base {
		t.Errorf("%d bytes at %d KB/s took %s (unlimited: %s); want at least %s", size, rate, slow, base, want)
	}
	if err := l.Remove("bw"); err != nil {
		t.Fatal(err)
	}
	// Removed: told by a size, not by a time. The toxic would stretch 4 MB
	// to 20 s, twice the deadline the transfer must now fit in.
	transfer(100 * size)
}

func TestResetPeer(t *testing.T) {
	const wait = 100 * time.Millisecond
	l := startLink(t, echoServer(t), 1)
	if err := l.Add(Toxic{Name: "rst", Kind: ResetPeer{Timeout: wait}}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, l)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	c.Write([]byte("doomed"))
	n, err := c.Read(make([]byte, 16))
	if !errors.Is(err, syscall.ECONNRESET) || n != 0 {
		t.Fatalf("read %d bytes, err %v; want connection reset by peer", n, err)
	}
	if d := time.Since(start); d < wait {
		t.Errorf("reset after %s; want at least %s", d, wait)
	}

	// Immediately, on the upstream stream: the client sees its connection
	// end without an answer.
	l.Remove("rst")
	if err := l.Add(Toxic{Name: "rst-up", Stream: Upstream, Kind: ResetPeer{}}); err != nil {
		t.Fatal(err)
	}
	c = dial(t, l)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("doomed"))
	if n, err := c.Read(make([]byte, 16)); err == nil || n != 0 {
		t.Fatalf("read %d bytes, err %v; want the connection closed", n, err)
	}
	l.Remove("rst-up")
	roundTrip(t, dial(t, l), "alive")
}

func TestTimeout(t *testing.T) {
	l := startLink(t, echoServer(t), 1)
	c := dial(t, l)
	roundTrip(t, c, "before")

	// Blackhole: nothing comes back, the connection stays open.
	if err := l.Add(Toxic{Name: "hole", Kind: Timeout{}}); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("lost"))
	c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	if n, err := c.Read(make([]byte, 16)); !errors.Is(err, syscall.ETIMEDOUT) && !isTimeout(err) {
		t.Fatalf("blackholed read: %d bytes, %v; want a read timeout", n, err)
	}
	if err := l.Remove("hole"); err != nil {
		t.Fatal(err)
	}
	// What the hole swallowed stays lost; what follows flows.
	roundTrip(t, c, "after")

	// With a timeout, the connection is closed that long after the toxic
	// applied, even when idle.
	const wait = 100 * time.Millisecond
	if err := l.Add(Toxic{Name: "close", Kind: Timeout{Timeout: wait}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, conn := range []*net.TCPConn{c, dial(t, l)} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := conn.Read(make([]byte, 16)); !errors.Is(err, io.EOF) || n != 0 {
			t.Fatalf("read %d bytes, %v; want end of stream", n, err)
		}
	}
	if d := time.Since(start); d < wait {
		t.Errorf("closed after %s; want at least %s", d, wait)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestSlicer(t *testing.T) {
	const size, slice, delay = 200, 10, 2 * time.Millisecond
	l := startLink(t, echoServer(t), 1)
	if err := l.Add(Toxic{Name: "slices", Kind: Slicer{AverageSize: slice, Delay: delay}}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, l)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	c.Write(bytes.Repeat([]byte("x"), size))
	var got, reads, biggest int
	buf := make([]byte, 4096)
	for got < size {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		got += n
		reads++
		biggest = max(biggest, n)
	}
	// Reads may coalesce slices when the reader is late, never split
	// fewer than the slices allow.
	if reads < 2 || biggest >= size {
		t.Errorf("%d bytes arrived in %d reads, the biggest %d; want slices of about %d", size, reads, biggest, slice)
	}
	if d, want := time.Since(start), (size/slice-1)*delay; d < want {
		t.Errorf("%d slices with %s between took %s; want at least %s", size/slice, delay, d, want)
	}
}

func TestSlicerVariation(t *testing.T) {
	l := startLink(t, echoServer(t), 1)
	if err := l.Add(Toxic{Name: "slices", Stream: Upstream, Kind: Slicer{AverageSize: 8, SizeVariation: 7}}); err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("abcdefgh", 100)
	roundTrip(t, dial(t, l), msg) // intact, in order
}

func TestLimitData(t *testing.T) {
	l := startLink(t, echoServer(t), 1)
	// Downstream: the client gets the first 100 bytes, then end of stream.
	if err := l.Add(Toxic{Name: "limit", Kind: LimitData{Bytes: 100}}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, l)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go c.Write(make([]byte, 300))
	if got, err := io.ReadAll(c); len(got) != 100 {
		t.Errorf("downstream limit 100: read %d bytes (%v)", len(got), err)
	}
	l.Remove("limit")
	// Removed: the whole payload flows.
	roundTrip(t, dial(t, l), strings.Repeat("z", 300))

	// Upstream: the server receives the first 50 bytes, then end of stream.
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	received := make(chan int, 1)
	go func() {
		s, err := sink.Accept()
		if err != nil {
			received <- -1
			return
		}
		s.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(s)
		s.Close()
		received <- len(b)
	}()
	lu := startLink(t, sink.Addr().String(), 1)
	if err := lu.Add(Toxic{Name: "limit", Stream: Upstream, Kind: LimitData{Bytes: 50}}); err != nil {
		t.Fatal(err)
	}
	c = dial(t, lu)
	c.Write(make([]byte, 300))
	if n := <-received; n != 50 {
		t.Errorf("upstream limit 50: the server received %d bytes", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the client connection stayed open after the limit")
	}
}

func TestSlowClose(t *testing.T) {
	const delay = 100 * time.Millisecond
	l := startLink(t, echoServer(t), 1)
	if err := l.Add(Toxic{Name: "slow-close", Kind: SlowClose{Delay: delay}}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, l)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("bye"))
	start := time.Now()
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if string(got) != "bye" || err != nil {
		t.Fatalf("read %q, %v", got, err)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("end of stream after %s; want the close delayed by at least %s", d, delay)
	}
}

func TestToxicityZeroIsUnaffected(t *testing.T) {
	// Toxics no connection could outlive: an hour of latency, an immediate
	// reset. A round trip within its deadline shows neither applied.
	l := startLink(t, echoServer(t), 1)
	if err := l.Add(Toxic{Name: "never", Toxicity: new(0.0), Kind: Latency{Latency: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(Toxic{Name: "never-rst", Toxicity: new(0.0), Kind: ResetPeer{}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c := dial(t, l)
		roundTrip(t, c, "ping")
		c.Close()
	}
}

// affectedPattern opens n connections in turn through a fresh link with
// seed and tells which ones a limit_data(0) toxic of toxicity p closed.
func affectedPattern(t *testing.T, upstream string, seed uint64, p float64, n int) []bool {
	t.Helper()
	l, err := New(Config{Upstream: upstream, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Start()
	if err := l.Add(Toxic{Name: "cut", Toxicity: new(p), Kind: LimitData{}}); err != nil {
		t.Fatal(err)
	}
	out := make([]bool, n)
	for i := range out {
		c, err := net.Dial("tcp", l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("?"))
		_, err = io.ReadFull(c, make([]byte, 1))
		out[i] = err != nil
		c.Close()
	}
	return out
}

func TestToxicitySeededAndRepeatable(t *testing.T) {
	up := echoServer(t)
	const n = 30
	a := affectedPattern(t, up, 7, 0.5, n)
	b := affectedPattern(t, up, 7, 0.5, n)
	c := affectedPattern(t, up, 8, 0.5, n)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different connections affected:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 affected the same %d connections", n)
	}
	hits := 0
	for _, x := range a {
		if x {
			hits++
		}
	}
	if hits < n/5 || hits > n*4/5 {
		t.Errorf("toxicity 0.5 affected %d of %d connections", hits, n)
	}
	checkNoLeak(t)
}

func TestAddRemoveErrors(t *testing.T) {
	l := startLink(t, echoServer(t), 1)
	if err := l.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	if err := l.Add(Toxic{Name: "a", Kind: Latency{Latency: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(Toxic{Name: "a", Kind: Bandwidth{Rate: 1}}); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("duplicate name: %v", err)
	}
	if err := l.Add(Toxic{Name: "b", Stream: Upstream, Kind: LimitData{Bytes: 1 << 20}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Toxic{
		{Kind: Latency{}},
		{Name: "x"},
		{Name: "x", Stream: "sideways", Kind: Latency{}},
		{Name: "x", Toxicity: new(1.5), Kind: Latency{}},
		{Name: "x", Kind: Latency{Latency: -1}},
		{Name: "x", Kind: Bandwidth{}},
		{Name: "x", Kind: Slicer{AverageSize: 4, SizeVariation: 4}},
		{Name: "x", Kind: LimitData{Bytes: -1}},
		{Name: "x", Kind: Timeout{Timeout: -1}},
		{Name: "x", Kind: ResetPeer{Timeout: -1}},
		{Name: "x", Kind: SlowClose{Delay: -1}},
	} {
		if err := l.Add(bad); err == nil {
			t.Errorf("Add(%v) succeeded", bad)
		}
	}
	got := l.Toxics()
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || got[1].Stream != Upstream || *got[0].Toxicity != 1 {
		t.Errorf("Toxics() = %v", got)
	}
	if err := l.Remove("nope"); !errors.Is(err, ErrNoToxic) {
		t.Errorf("Remove unknown: %v", err)
	}
	if err := l.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if got := l.Toxics(); len(got) != 1 || got[0].Name != "b" {
		t.Errorf("after Remove: %v", got)
	}
	roundTrip(t, dial(t, l), "fine")
	if _, err := New(Config{}); err == nil {
		t.Error("New without Upstream succeeded")
	}
}

func TestCloseEndsEverything(t *testing.T) {
	l, err := New(Config{Upstream: echoServer(t)})
	if err != nil {
		t.Fatal(err)
	}
	l.Start()
	// Connections stuck in every kind of wait.
	l.Add(Toxic{Name: "lat", Kind: Latency{Latency: time.Hour}})
	l.Add(Toxic{Name: "hole", Stream: Upstream, Toxicity: new(0.5), Kind: Timeout{Timeout: time.Hour}})
	var conns []*net.TCPConn
	for range 10 {
		c := dial(t, l)
		c.Write([]byte("stuck"))
		conns = append(conns, c)
	}
	testwait.For(t, "the link to hold the 10 connections", func() (bool, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.conns) == 10, fmt.Errorf("it holds %d", len(l.conns))
	})
	done := make(chan error)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 8)); err == nil {
			t.Error("a connection survived Close")
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := l.Add(Toxic{Name: "late", Kind: Latency{}}); err == nil {
		t.Error("Add after Close succeeded")
	}
	checkNoLeak(t)
}

func TestUpstreamDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	l := startLink(t, addr, 1)
	c := dial(t, l)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a connection to a dead upstream stayed open")
	}
}

// BenchmarkLinkThroughput measures the forwarding cost without toxics:
// 32 KiB echoed per iteration over one connection.
func BenchmarkLinkThroughput(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	l, err := New(Config{Upstream: ln.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	l.Start()
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 32<<10)
	buf := make([]byte, len(payload))
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(payload); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMarker counts a known payload crossing the link, split or whole.
func TestMarker(t *testing.T) {
	echo := echoServer(t)
	l, err := New(Config{Upstream: echo, Marker: []byte("CANARY")})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c := dial(t, l)
	// The first part comes back before the second is sent: the link read
	// it alone both ways, so the first marker straddles two reads.
	roundTrip(t, c, "xxCAN")
	c.Write([]byte("ARYyy CANARY z"))
	c.CloseWrite()
	if rest, err := io.ReadAll(c); string(rest) != "ARYyy CANARY z" {
		t.Fatalf("echoed %q, %v", rest, err)
	}
	// Two markers went up and came back down: four sightings.
	testwait.For(t, "four marker hits", func() (bool, error) {
		return l.MarkerHits() >= 4, fmt.Errorf("%d hits", l.MarkerHits())
	})
	if n := l.MarkerHits(); n != 4 {
		t.Errorf("marker hits %d, want 4", n)
	}
}
