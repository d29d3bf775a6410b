package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-mesh/skiff/faultinject"
	"github.com/skiff-mesh/skiff/scenarios"
)

// Network gives every pod a network of its own instead of an address on
// loopback: the netns environment (a network namespace per pod on a
// bridge, simulator/netns) through an adapter. With a Network, pods know
// nothing of the mesh: each meshed pod's init step (skiff-proxy init, the
// same as a Kubernetes pod's init container) installs the iptables rules
// that send its traffic through its sidecar, the sidecar runs in
// transparent mode, and the registry lists each pod at its workload's own
// address, as a cluster's endpoints do.
type Network interface {
	// AddPod gives the pod named name its network and address.
	AddPod(ctx context.Context, name string) (PodNetwork, error)
	// Close removes everything the network made; it is called by
	// Env.Close after every process is gone.
	Close() error
}

// PodNetwork is one pod's network.
type PodNetwork interface {
	// Addr is the pod's address.
	Addr() netip.Addr
	// Wrap turns a command line into one that runs inside the pod's
	// network and keeps its process ID (for signals and /proc).
	Wrap(argv []string) []string
	// Do runs f on an OS thread inside the pod's network: the sockets f
	// opens belong to it.
	Do(f func() error) error
	// Partition drops the pod's traffic with the addresses in from, both
	// ways; the function returned undoes it.
	Partition(ctx context.Context, from []netip.Addr) (func(context.Context) error, error)
	// LinkDown takes the pod's link down; the function returned brings it
	// back up.
	LinkDown(ctx context.Context) (func(context.Context) error, error)
	// Impair puts latency (each way, with jitter) and loss on the pod's
	// link, replacing an earlier impairment; the function returned clears
	// it.
	Impair(ctx context.Context, im faultinject.Impairment, seed uint64) (func(context.Context) error, error)
}

// MarkerWatcher is a Network that can watch the wire between its pods for
// Config.Marker, as the chaos links do on loopback.
type MarkerWatcher interface {
	// WatchMarker starts counting the frames between pods that carry
	// marker; stop ends it.
	WatchMarker(marker []byte) (hits func() uint64, stop func(), err error)
}

// Marks and ports of the netns mode's interception (skiff-proxy init).
const (
	// ProxyMark is the SO_MARK of every sidecar's upstream sockets, and
	// of the harness's own connections inside a pod: the init step's
	// rules let marked traffic pass without redirection.
	ProxyMark = 0x5c1
)

// markControl sets SO_MARK on a socket before it connects.
func markControl(mark int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setMark(int(fd), mark) }); err != nil {
			return err
		}
		return serr
	}
}

// Dial connects the harness to a pod's address (its sidecar's inbound or
// admin listener, its workload): on loopback directly; on a Network from
// inside that pod, with the mark its rules let pass, as a kubelet's
// probes reach a pod. It is also the harness's own HTTP client's dialer.
func (e *Env) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if e.cfg.Network == nil {
		return (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("local: %s is not an address of a pod", addr)
	}
	e.mu.Lock()
	var pn PodNetwork
	for _, p := range e.pods {
		if p.ip == ip && p.net != nil {
			pn = p.net
			break
		}
	}
	e.mu.Unlock()
	if pn == nil {
		return nil, fmt.Errorf("local: no pod has the address %s", ip)
	}
	return dialIn(ctx, pn, network, addr, ProxyMark)
}

// DirectPod names the network of the unmeshed client on a Network: where
// the direct path's load comes from. Every meshed pod's rules let its
// connections reach the workload without the sidecar, as a Kubernetes
// pod's skip-inbound rules do for a named source.
const DirectPod = "direct"

// placePods gives every pod its network and address, and the direct
// client its network; e.mu is held.
func (e *Env) placePods() error {
	for _, s := range e.services {
		if s.spec.Chaos {
			return fmt.Errorf("service %q: chaos links sit on loopback; on a network of pods use the latency and loss faults", s.spec.Name)
		}
	}
	names := make([]string, 0, len(e.pods))
	for _, s := range e.services {
		for _, p := range s.pods {
			names = append(names, p.name)
		}
	}
	names = append(names, ClientPod)
	if e.ctl != nil {
		names = append(names, ControllerPod)
	}
	for _, name := range names {
		pn, err := e.cfg.Network.AddPod(e.ctx, name)
		if err != nil {
			return fmt.Errorf("pod %s: %w", name, err)
		}
		p := e.pods[name]
		p.ip, p.net = pn.Addr(), pn
	}
	direct, err := e.cfg.Network.AddPod(e.ctx, DirectPod)
	if err != nil {
		return fmt.Errorf("the direct client: %w", err)
	}
	e.direct = direct
	if e.cfg.Marker != nil {
		mw, ok := e.cfg.Network.(MarkerWatcher)
		if !ok {
			return errors.New("this network cannot watch the wire for the plaintext marker")
		}
		hits, stop, err := mw.WatchMarker(e.cfg.Marker)
		if err != nil {
			return fmt.Errorf("watching the wire for the marker: %w", err)
		}
		e.wireHits, e.wireStop = hits, stop
	}
	// The client sidecar's TCP routes listen on its loopback, where the
	// harness connects from inside the client pod.
	routes := 0
	for _, s := range e.services {
		if s.tcpAddr != "" {
			s.tcpAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(e.cfg.Ports.TCPRouteBase+routes))
			routes++
		}
	}
	return nil
}

// intercept installs a meshed pod's interception rules once, before its
// first start, with skiff-proxy init inside the pod's network: what a
// Kubernetes pod's init container does. Its output goes to the sidecar's
// log.
func (p *Pod) intercept(ctx context.Context) error {
	if p.net == nil || !p.Meshed() || p.initDone {
		return nil
	}
	e := p.env
	args := []string{e.cfg.Bin.Proxy, "init",
		"--inbound-port", strconv.Itoa(e.cfg.Ports.Inbound), "--outbound-port", strconv.Itoa(e.cfg.Ports.Outbound),
		"--proxy-mark", strconv.Itoa(ProxyMark),
		"--skip-inbound-ports", strconv.Itoa(e.cfg.Ports.Admin),
	}
	if e.direct != nil {
		args = append(args, "--skip-inbound-cidrs", netip.PrefixFrom(e.direct.Addr(), 32).String())
	}
	if e.ctl != nil {
		// The control plane is reached without the sidecar: its own
		// connections to it are not marked.
		args = append(args, "--skip-outbound-cidrs", netip.PrefixFrom(e.ctl.ip, 32).String())
	}
	argv := p.net.Wrap(args)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	logPath := e.LogPath(p.name, RoleProxy)
	if f, ferr := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		f.Write(out)
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("pod %s: skiff-proxy init: %w: %s", p.name, err, strings.TrimSpace(string(out)))
	}
	p.initDone = true
	p.log.Info("interception rules installed", "output", strings.TrimSpace(string(out)))
	return nil
}

// VirtualAddr is a service's virtual address on a Network (a ClusterIP):
// nothing listens there; the client pod's rules redirect its connections to
// the client's sidecar, which routes them by authority.
func (e *Env) VirtualAddr(service string) string {
	s := e.service(service)
	if s == nil {
		return ""
	}
	return net.JoinHostPort(netip.AddrFrom4([4]byte{10, 96, 0, byte(s.index + 1)}).String(), strconv.Itoa(s.spec.Port))
}

func (w environment) networkEntry(service string, direct bool) scenarios.Entry {
	e := w.Env
	if direct {
		en := scenarios.Entry{Addr: e.DirectAddr(service, 0)}
		if d := e.direct; d != nil {
			en.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialIn(ctx, d, network, addr, 0)
			}
		}
		return en
	}
	en := scenarios.Entry{Addr: e.VirtualAddr(service), Authority: e.Authority(service), TCPAddr: e.TCPAddr(service)}
	if pods := e.Pods(service); len(pods) > 0 {
		// The first replica's own address: to the client's sidecar an
		// unknown destination, classified and passed through.
		en.TLSAddr, en.BannerAddr = pods[0].AppTLSAddr(), pods[0].AppBannerAddr()
	}
	if c := e.Client(); c != nil && c.net != nil {
		pn := c.net
		en.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, pn, network, addr, 0)
		}
	}
	return en
}

// dialIn connects from inside pn's network, with the socket mark mark
// (0: none, so the pod's rules apply to the connection).
func dialIn(ctx context.Context, pn PodNetwork, network, addr string, mark int) (net.Conn, error) {
	var c net.Conn
	err := pn.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		if mark != 0 {
			d.Control = markControl(mark)
		}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// netFaults are the network faults on a pod, for undo and Heal; guarded by
// Pod.netMu.
type netFaults struct {
	undos  map[int]func(context.Context) error // partitions and link downs, by id
	nextID int
	im     faultinject.Impairment      // the impairment in force
	clear  func(context.Context) error // clears it; nil when none
	seq    uint64                      // impairments applied, for their seeds
}

func (p *Pod) needNet(what string) error {
	if p.net == nil {
		return fmt.Errorf("%s: pod %s is on loopback, without a link of its own (use --env netns, or the chaos faults)", what, p.name)
	}
	return nil
}

// track keeps undo until it runs, once, from the fault's undo or Heal.
func (p *Pod) track(undo func(context.Context) error) faultinject.Undo {
	p.netMu.Lock()
	if p.faults.undos == nil {
		p.faults.undos = map[int]func(context.Context) error{}
	}
	id := p.faults.nextID
	p.faults.nextID++
	p.faults.undos[id] = undo
	p.netMu.Unlock()
	return func(ctx context.Context) error {
		p.netMu.Lock()
		u := p.faults.undos[id]
		delete(p.faults.undos, id)
		p.netMu.Unlock()
		if u == nil {
			return nil // healed meanwhile
		}
		return u(ctx)
	}
}

// Partition cuts the pod off from the pods named in from: pod names,
// service names (all their pods) or ControllerPod.
func (p *Pod) Partition(ctx context.Context, from []string) (faultinject.Undo, error) {
	if err := p.needNet("partition"); err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	for _, name := range from {
		if q, err := p.env.Pod(name); err == nil {
			addrs = append(addrs, q.ip)
			continue
		}
		ps := p.env.Pods(name)
		if len(ps) == 0 {
			return nil, fmt.Errorf("partition %s: no pod or service named %q (or %q)", p.name, name, ControllerPod)
		}
		for _, q := range ps {
			addrs = append(addrs, q.ip)
		}
	}
	undo, err := p.net.Partition(ctx, addrs)
	if err != nil {
		return nil, err
	}
	p.log.Info("partitioned", "from", from)
	return p.track(undo), nil
}

// LinkDown takes the pod's link down.
func (p *Pod) LinkDown(ctx context.Context) (faultinject.Undo, error) {
	if err := p.needNet("link_down"); err != nil {
		return nil, err
	}
	undo, err := p.net.LinkDown(ctx)
	if err != nil {
		return nil, err
	}
	p.log.Info("link down")
	return p.track(undo), nil
}

// Impair sets latency (when im has latency or jitter) or loss (when im has
// loss) on the pod's link, keeping the other part of an impairment in
// force; undo restores the impairment as it was.
func (p *Pod) Impair(ctx context.Context, im faultinject.Impairment) (faultinject.Undo, error) {
	if err := p.needNet("impair"); err != nil {
		return nil, err
	}
	p.netMu.Lock()
	defer p.netMu.Unlock()
	prev := p.faults.im
	next := prev
	if im.Latency != 0 || im.Jitter != 0 {
		next.Latency, next.Jitter = im.Latency, im.Jitter
	}
	if im.Loss != 0 {
		next.Loss = im.Loss
	}
	if err := p.setImpairmentLocked(ctx, next); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		p.netMu.Lock()
		defer p.netMu.Unlock()
		return p.setImpairmentLocked(ctx, prev)
	}, nil
}

// setImpairmentLocked replaces the impairment in force; netMu is held.
func (p *Pod) setImpairmentLocked(ctx context.Context, im faultinject.Impairment) error {
	if p.faults.clear != nil {
		if err := p.faults.clear(ctx); err != nil {
			return err
		}
		p.faults.clear = nil
	}
	p.faults.im = faultinject.Impairment{}
	if im == (faultinject.Impairment{}) {
		p.log.Info("link unimpaired")
		return nil
	}
	p.faults.seq++
	clear, err := p.net.Impair(ctx, im, podSeed(p.env.seed, fmt.Sprintf("%s/impair/%d", p.name, p.faults.seq)))
	if err != nil {
		return err
	}
	p.faults.im, p.faults.clear = im, clear
	p.log.Info("link impaired", "latency", im.Latency, "jitter", im.Jitter, "loss", im.Loss)
	return nil
}

// Heal removes every network fault from the pod.
func (p *Pod) Heal(ctx context.Context) error {
	if err := p.needNet("heal"); err != nil {
		return err
	}
	p.netMu.Lock()
	undos := p.faults.undos
	p.faults.undos = nil
	err := p.setImpairmentLocked(ctx, faultinject.Impairment{})
	p.netMu.Unlock()
	errs := []error{err}
	for _, u := range undos {
		errs = append(errs, u(ctx))
	}
	p.log.Info("network faults healed")
	return errors.Join(errs...)
}

var _ faultinject.NetworkPod = (*Pod)(nil)
