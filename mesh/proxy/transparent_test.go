package proxy

import (
	"fmt"
	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/simulator/demo"
)

// Transparent mode runs the protocol matrix with iptables REDIRECT, as in a
// Kubernetes pod: the test re-executes itself inside a network namespace
// it creates, where it may change iptables without touching the host.
//
// Inside the namespace, on its own loopback:
//
//	127.0.0.100    the service's virtual IP: nothing listens there; its
//	               traffic is redirected to the outbound proxy (:4140)
//	127.0.0.2      the backend pod: traffic to it is redirected to the
//	               inbound proxy (:4143), which forwards to the original
//	               destination where the application listens
//
// Each proxy marks its own upstream sockets, and each rule exempts its own
// proxy's mark, as the uid rule does in Kubernetes.
const (
	netnsEnv      = "SKIFF_TEST_IN_NETNS"
	serviceVIP    = "127.0.0.100"
	podIP         = "127.0.0.2"
	outboundMark  = 0x5c1
	inboundMark   = 0x5c2
	transparentRE = "^TestTransparent$"
)

func TestTransparent(t *testing.T) {
	if os.Getenv(netnsEnv) != "" {
		transparentMatrix(t)
		return
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("transparent mode needs Linux and root (network namespaces, iptables)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("transparent mode needs %s (Debian packages iproute2, iptables)", tool)
		}
	}
	ns := fmt.Sprintf("skiff-test-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	in := func(args ...string) { run(append([]string{"ip", "netns", "exec", ns}, args...)...) }
	in("ip", "link", "set", "lo", "up")
	in("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", serviceVIP,
		"-m", "mark", "!", "--mark", fmt.Sprint(outboundMark), "-j", "REDIRECT", "--to-ports", "4140")
	in("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", podIP,
		"-m", "mark", "!", "--mark", fmt.Sprint(inboundMark), "-j", "REDIRECT", "--to-ports", "4143")

	args := []string{"netns", "exec", ns, os.Args[0], "-test.run=" + transparentRE, "-test.count=1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("inside %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("transparent matrix failed: %v", err)
	}
}

func transparentMatrix(t *testing.T) {
	leakcheck.Check(t)
	backend, err := demo.New(demo.Config{Name: "echo-1", Addr: podIP + ":8080", TCPAddr: podIP + ":9000", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := backend.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })

	svcHTTPVIP := serviceVIP + ":80"
	svcTCPVIP := serviceVIP + ":9000"
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{
		// By name (the Host header) and by virtual IP (opaque TCP).
		svcHTTP:   {{Addr: podIP + ":8080", Meshed: true}},
		svcTCPVIP: {{Addr: podIP + ":9000", Meshed: true}},
	})
	m := &mesh{backend: backend}
	m.inbound = startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:4143", Transparent: true, SocketMark: inboundMark})
	m.outbound = startProxy(t, Config{OutboundAddr: "127.0.0.1:4140", Transparent: true, SocketMark: outboundMark, Endpoints: src})
	m.entry = svcHTTPVIP
	m.tcpAddr = svcTCPVIP

	t.Run("http1", func(t *testing.T) { testHTTP(t, m, h1Client(t), "HTTP/1.1") })
	t.Run("h2c", func(t *testing.T) { testHTTP(t, m, h2cClient(t), "HTTP/2.0") })
	t.Run("grpc", func(t *testing.T) { testGRPC(t, m.entry) })
	t.Run("tcp", func(t *testing.T) { testTCP(t, m.tcpAddr) })
	t.Run("passthrough-unknown-authority", func(t *testing.T) {
		// Not in discovery: the request goes where the application sent
		// it (here, the pod IP, through its inbound proxy).
		resp, body := do(t, h1Client(t), "GET", "http://"+podIP+":8080/", podIP+":8080", nil, nil)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "echo-1") {
			t.Fatalf("passthrough: %d %q", resp.StatusCode, body)
		}
	})
}
