package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
)

// Pod is one pod's network namespace, made by Net.AddPod. Its methods are
// safe for concurrent use.
type Pod struct {
	net   *Net
	name  string
	ns    string
	index int
	addr  netip.Addr
	veth  string

	// mu serialises rule changes in the pod's namespace and guards the
	// chain flags.
	mu           sync.Mutex
	partitionOn  bool // SKIFF-NETNS-PARTITION exists and is hooked
	impairChains bool // SKIFF-NETNS-IMPAIR exists and is hooked
}

// Name is the pod's name.
func (p *Pod) Name() string { return p.name }

// Addr is the pod's address on PodInterface.
func (p *Pod) Addr() netip.Addr { return p.addr }

// Namespace is the name of the pod's network namespace (as ip netns
// knows it).
func (p *Pod) Namespace() string { return p.ns }

// NamespacePath is the file the namespace is mounted at, for setns(2) or
// nsenter --net=.
func (p *Pod) NamespacePath() string { return netnsPath(p.ns) }

// SwitchLink is the name of the veth's other end, on the bridge in the
// switch namespace.
func (p *Pod) SwitchLink() string { return p.veth }

// upBatch is the ip -batch input that brings the pod's links, address and
// default route up; verb is "add" (new pod) or "replace" (LinkUp).
func (p *Pod) upBatch(verb string) string {
	return strings.Join([]string{
		"link set lo up",
		fmt.Sprintf("addr %s %s/%d dev %s", verb, p.addr, p.net.subnet.Bits(), PodInterface),
		fmt.Sprintf("link set %s up", PodInterface),
		fmt.Sprintf("route %s default via %s", verb, p.net.gw),
	}, "\n") + "\n"
}

// Command is a command that runs name with args inside the pod's network
// namespace, through `ip netns exec`, which enters the namespace and then
// execs name: the process started keeps cmd.Process.Pid, so the caller
// can signal it (SIGSTOP, SIGTERM) and read /proc/<pid>. The mount
// namespace is private to the command (ip netns exec remounts /sys for
// the namespace, and binds /etc/netns/<ns>/* over /etc if present); the
// file system is otherwise the harness's. The command runs in its own
// process group and gets SIGKILL when the harness dies (Linux's parent
// death signal, which follows the thread that started it: start it from
// an ordinary goroutine, not inside Do). ctx kills it, as with
// exec.CommandContext. Set cmd's other fields (Env, Dir, output, Cancel)
// as with any exec.Cmd.
func (p *Pod) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.ns, name}, args...)...)
	cmd.SysProcAttr = procAttr()
	return cmd
}

// Do runs fn on an OS thread that is inside the pod's network namespace,
// and returns fn's error: sockets fn creates (net.Dial, net.Listen, raw
// syscalls) belong to the pod's namespace and keep working from any
// goroutine afterwards. Only fn's own goroutine is in the namespace:
// goroutines it starts, and every other goroutine of the harness, stay in
// the harness's namespace. If the thread cannot be moved back, it is
// thrown away (never reused by another goroutine), and Do's error says
// so. Keep fn short: it holds an OS thread.
func (p *Pod) Do(fn func() error) error {
	if err := enterNetns(p.NamespacePath(), fn); err != nil {
		return fmt.Errorf("pod %s: %w", p.name, err)
	}
	return nil
}

// DialContext dials address from inside the pod, as net.Dialer does: the
// connection's socket is in the pod's namespace, so it leaves through the
// pod's link with the pod's address. Its signature fits
// http.Transport.DialContext. For TCP and UDP, address must be an IP
// literal and port: the pods have no name service, and a name lookup would
// run on other goroutines, outside the namespace.
func (p *Pod) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if err := ipLiteral(network, address, false); err != nil {
		return nil, fmt.Errorf("pod %s: dial: %w", p.name, err)
	}
	var c net.Conn
	err := p.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Listen listens on address inside the pod, as net.Listen does (address
// an IP literal and port, or ":port" for every address of the pod). The
// listener accepts connections that reach the pod's namespace, from any
// goroutine.
func (p *Pod) Listen(network, address string) (net.Listener, error) {
	if err := ipLiteral(network, address, true); err != nil {
		return nil, fmt.Errorf("pod %s: listen: %w", p.name, err)
	}
	var l net.Listener
	err := p.Do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// ListenPacket is Listen for packet networks (udp), as net.ListenPacket.
func (p *Pod) ListenPacket(network, address string) (net.PacketConn, error) {
	if err := ipLiteral(network, address, true); err != nil {
		return nil, fmt.Errorf("pod %s: listen: %w", p.name, err)
	}
	var c net.PacketConn
	err := p.Do(func() error {
		var err error
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

// ipLiteral rejects a TCP or UDP address whose host is a name (or empty,
// unless emptyOK).
func ipLiteral(network, address string, emptyOK bool) error {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if host == "" && emptyOK {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("address %q: want an IP address, not a name (no name service in the pods)", address)
	}
	return nil
}
