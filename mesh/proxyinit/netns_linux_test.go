package proxyinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/proxy/origdst"
)

// dialEnv makes the test binary a dialling child: the netns test runs it
// as the proxy's uid, inside the pod's namespace.
const dialEnv = "SKIFF_PROXYINIT_DIAL"

func TestMain(m *testing.M) {
	if addr := os.Getenv(dialEnv); addr != "" {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print(c.LocalAddr())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The rules applied for real, in a pod of two network namespaces joined by
// a veth pair, for each back end installed:
//
//	pod   eth0 192.0.2.1/24   the rules; the proxy's listeners; the app
//	peer  eth0 192.0.2.2/24,  another pod, or the world
//	           192.0.2.3/24
//
// The host's own tables and links are never touched: every command runs
// in a namespace the test creates and deletes.
func TestInNetworkNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and applies iptables rules inside them")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2) to create network namespaces")
	}
	if sysSetns == 0 {
		t.Skipf("needs the number of setns(2) on %s, which the test does not know", runtime.GOARCH)
	}
	var modes []Mode
	for _, m := range []Mode{ModeLegacy, ModeNFT} {
		if _, err := exec.LookPath(Backend{Mode: m}.program(IPv4, "restore")); err == nil {
			modes = append(modes, m)
		}
	}
	if len(modes) == 0 {
		t.Skip("needs iptables-legacy or iptables-nft (Debian package iptables)")
	}
	// Here, not in the subtests, which run in parallel (each in its own
	// namespaces: ip netns exec costs tens of milliseconds a command).
	leakcheck.Check(t)
	child := dialChild(t)
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			testBackend(t, m, child)
		})
	}
}

func testBackend(t *testing.T, mode Mode, child string) {
	ctx := t.Context()
	pod, peer := newNetns(t, mode, "pod"), newNetns(t, mode, "peer")
	sh(t, "ip", "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer)
	for _, c := range [][]string{
		{"-n", pod, "link", "set", "lo", "up"},
		{"-n", pod, "link", "set", "eth0", "up"},
		{"-n", pod, "addr", "add", "192.0.2.1/24", "dev", "eth0"},
		{"-n", peer, "link", "set", "lo", "up"},
		{"-n", peer, "link", "set", "eth0", "up"},
		{"-n", peer, "addr", "add", "192.0.2.2/24", "dev", "eth0"},
		{"-n", peer, "addr", "add", "192.0.2.3/24", "dev", "eth0"},
	} {
		sh(t, append([]string{"ip"}, c...)...)
	}
	runner := ExecRunner{Prefix: []string{"ip", "netns", "exec", pod}}
	in := Installer{Mode: mode, Runner: runner}
	b := Backend{Mode: mode}
	save := func(f Family) string {
		t.Helper()
		out, err := runner.Run(ctx, Command{Name: b.program(f, "save"), Args: []string{"-t", "nat"}})
		if err != nil {
			t.Fatal(err)
		}
		return stripSaveComments(out)
	}
	// Another tool's rules, which must stay as they are.
	if _, err := runner.Run(ctx, Command{Name: b.program(IPv4, "restore"), Args: restoreArgs(), Stdin: []byte(foreign)}); err != nil {
		t.Fatal(err)
	}
	before := save(IPv4)

	opts := Options{
		ProxyMark:         0x5c1,
		SkipOutboundPorts: []PortRange{{9999, 9999}},
		SkipOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.3/32")},
	}
	p, err := in.Apply(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Summary(false), "applied 13 rules with "+b.String(); got != want {
		t.Errorf("first apply: %q, want %q", got, want)
	}
	once := save(IPv4)
	p, err = in.Apply(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Summary(false), "already in place with "+b.String()+": 13 rules, nothing applied"; got != want {
		t.Errorf("second apply: %q, want %q", got, want)
	}
	// Byte for byte, but for the save's date comments.
	if twice := save(IPv4); twice != once {
		t.Errorf("applying twice changed the table:\n%s\nthen\n%s", once, twice)
	}
	if rep, err := in.Check(ctx, opts); err != nil || !rep.InPlace() {
		t.Errorf("check after apply: %v, %v", rep.Differences, err)
	}
	// Auto mode finds the back end the rules went to: legacy now holds
	// rules; nft wins the tie when the rules are nft's.
	if got, err := (Installer{Runner: runner}).Backend(ctx); err != nil || got.Mode != mode {
		t.Errorf("auto mode chose %+v, %v; want %s", got, err, mode)
	}

	t.Run("traffic", func(t *testing.T) { testTraffic(t, pod, peer, child) })

	// Every golden case, one over the other: iptables-save prints each
	// rule as rendered (or check would see differences, and a second
	// apply would not find them in place), and each apply replaces the
	// rules before it.
	for _, tc := range goldenCases() {
		if tc.opts.IPv6 {
			if _, err := exec.LookPath(b.program(IPv6, "restore")); err != nil {
				t.Logf("%s: skipped, %s is not installed", tc.name, b.program(IPv6, "restore"))
				continue
			}
		}
		if _, err := in.Apply(ctx, tc.opts); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		rep, err := in.Check(ctx, tc.opts)
		if err != nil || !rep.InPlace() {
			t.Errorf("%s: installed, then checked: %v\n%s", tc.name, err, strings.Join(rep.Differences, "\n"))
		}
	}

	for _, f := range []Family{IPv4, IPv6} {
		if f == IPv6 {
			if _, err := exec.LookPath(b.program(IPv6, "save")); err != nil {
				continue
			}
		}
		if _, err := in.Remove(ctx, Options{IPv6: f == IPv6}); err != nil {
			t.Fatal(err)
		}
		after := save(f)
		if strings.Contains(after, "SKIFF") {
			t.Errorf("%v: removal left Skiff's rules:\n%s", f, after)
		}
		if f == IPv4 && after != zeroCounters(before) {
			t.Errorf("removal left the table\n%s\nnot as it was:\n%s", after, before)
		}
	}
	p, err = in.Remove(ctx, Options{})
	if err != nil || p.Summary(false) != "no Skiff rules installed with "+b.String()+": nothing removed" {
		t.Errorf("second removal: %q, %v", p.Summary(false), err)
	}
}

// testTraffic connects as the application, the proxy and a peer would,
// and sees where each connection lands.
func testTraffic(t *testing.T, pod, peer, child string) {
	outbound := listenIn(t, pod, "127.0.0.1:4140", "the outbound proxy")
	inbound := listenIn(t, pod, "0.0.0.0:4143", "the inbound proxy")
	app := listenIn(t, pod, "192.0.2.1:8080", "the application")
	admin := listenIn(t, pod, "192.0.2.1:4191", "the proxy's admin port")
	web := listenIn(t, peer, "192.0.2.2:80", "the peer's web server")
	smtp := listenIn(t, peer, "192.0.2.2:9999", "the peer's port 9999")
	skipped := listenIn(t, peer, "192.0.2.3:80", "the skipped CIDR's web server")

	for _, tc := range []struct {
		name     string
		ns, addr string
		mark     uint32
		asProxy  bool // from a child running as the proxy's uid
		want     *landing
		origDst  string // "": not redirected
	}{
		{"outbound is redirected", pod, "192.0.2.2:80", 0, false, outbound, "192.0.2.2:80"},
		{"the proxy's mark is not", pod, "192.0.2.2:80", 0x5c1, false, web, ""},
		{"another mark is", pod, "192.0.2.2:80", 0x5c2, false, outbound, "192.0.2.2:80"},
		{"the proxy's uid is not", pod, "192.0.2.2:80", 0, true, web, ""},
		{"the pod's own IP reaches the app", pod, "192.0.2.1:8080", 0, false, app, ""},
		{"a skipped outbound port is not", pod, "192.0.2.2:9999", 0, false, smtp, ""},
		{"a skipped outbound CIDR is not", pod, "192.0.2.3:80", 0, false, skipped, ""},
		{"inbound is redirected", peer, "192.0.2.1:8080", 0, false, inbound, "192.0.2.1:8080"},
		{"a skipped inbound port is not", peer, "192.0.2.1:4191", 0, false, admin, ""},
	} {
		var from string
		if tc.asProxy {
			from = dialAsProxy(t, child, tc.ns, tc.addr)
		} else {
			c := dialIn(t, tc.ns, tc.addr, tc.mark)
			from = c.LocalAddr().String()
		}
		got := tc.want.expect(t, tc.name, from)
		if tc.origDst == "" {
			continue
		}
		dst, err := origdst.Get(got)
		if err != nil || dst.String() != tc.origDst {
			t.Errorf("%s: SO_ORIGINAL_DST %v, %v; want %s", tc.name, dst, err, tc.origDst)
		}
	}
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// stripSaveComments drops iptables-save's dated comment lines.
func stripSaveComments(save []byte) string {
	var b strings.Builder
	for l := range strings.Lines(string(save)) {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// zeroCounters sets the packet counters of a save to zero: traffic moves
// the built-in chains' own.
func zeroCounters(save string) string { return counters.ReplaceAllString(save, "[0:0]") }

func sh(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// newNetns creates a network namespace, deleted when the test ends. Its
// name holds the test process's pid, the back end and the role: runs
// never collide, and a leftover says whose it is.
func newNetns(t *testing.T, mode Mode, role string) string {
	t.Helper()
	name := fmt.Sprintf("skiff-pi-%d-%s-%s", os.Getpid(), mode, role)
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return name
}

// inNetns runs f on an OS thread moved into the namespace ns: the sockets
// f opens belong to ns, and so do the processes it starts. The thread is
// never unlocked, so it ends with f's goroutine and runs nothing else.
func inNetns(ns string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := syscall.Open(filepath.Join("/run/netns", ns), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		_, _, errno := syscall.RawSyscall(sysSetns, uintptr(fd), syscall.CLONE_NEWNET, 0)
		syscall.Close(fd)
		if errno != 0 {
			done <- fmt.Errorf("setns %s: %w", ns, errno)
			return
		}
		done <- f()
	}()
	return <-done
}

// landing is a listener in a namespace and the connections it accepted.
type landing struct {
	name  string
	conns chan *net.TCPConn
}

func listenIn(t *testing.T, ns, addr, name string) *landing {
	t.Helper()
	var l net.Listener
	if err := inNetns(ns, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	ld := &landing{name: name, conns: make(chan *net.TCPConn, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ld.conns <- c.(*net.TCPConn)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(ld.conns)
		for c := range ld.conns {
			c.Close()
		}
	})
	return ld
}

// expect returns the connection from the address from, which must land
// here: a connection that went elsewhere never comes.
func (ld *landing) expect(t *testing.T, what, from string) *net.TCPConn {
	t.Helper()
	timeout := time.NewTimer(5 * time.Second) // a bound on a failure, not a measurement
	defer timeout.Stop()
	for {
		select {
		case c := <-ld.conns:
			if c.RemoteAddr().String() == from {
				t.Cleanup(func() { c.Close() })
				return c
			}
			c.Close()
		case <-timeout.C:
			t.Fatalf("%s: the connection from %s did not reach %s", what, from, ld.name)
		}
	}
}

// dialIn connects from the namespace ns, with SO_MARK mark unless 0.
func dialIn(t *testing.T, ns, addr string, mark uint32) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if mark != 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(mark))
			}); err != nil {
				return err
			}
			return serr
		}
	}
	var c net.Conn
	if err := inNetns(ns, func() (err error) { c, err = d.Dial("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialAsProxy connects from the namespace ns in a child process running
// as the proxy's uid, and returns the child's address.
func dialAsProxy(t *testing.T, child, ns, addr string) string {
	t.Helper()
	var out, stderr bytes.Buffer
	err := inNetns(ns, func() error {
		cmd := exec.Command(child, "-test.run=^$")
		cmd.Env = append(os.Environ(), dialEnv+"="+addr)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: DefaultProxyUID, Gid: DefaultProxyUID}}
		return cmd.Run()
	})
	if err != nil {
		t.Fatalf("dialling %s as uid %d: %v: %s", addr, DefaultProxyUID, err, stderr.Bytes())
	}
	return out.String()
}

// dialChild is a copy of the test binary the proxy's uid may run: the go
// tool builds it in a directory only root can enter.
func dialChild(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "skiff-pi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, "dial")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(errors.Join(errors.New("copying the test binary"), err))
	}
	return path
}
