package netns

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of Config.
const (
	// DefaultCommandTimeout bounds each ip and iptables command.
	DefaultCommandTimeout = 10 * time.Second
	// DefaultIPTables is the iptables command used for partitions and
	// impairments (the nft or legacy flavour the system chose).
	DefaultIPTables = "iptables"
)

// PodInterface is the name of every pod's link, inside its namespace.
const PodInterface = "eth0"

// Config configures a Net. The zero value works: a random run id, the
// first free /24 of 10.248.0.0/16, no logs.
type Config struct {
	// RunID names the run: every name the Net creates carries ShortID of
	// it. Empty means a random one (Net.RunID says which). Two live Nets
	// cannot share one.
	RunID string
	// Subnet is the pods' IPv4 subnet, from /16 to /29; its first host
	// address is the switch's (the pods' gateway), pods get the next ones.
	// The zero value means the first /24 of 10.248.0.0/16 no live run
	// holds. A given Subnet is locked the same way, and New fails if a
	// live run holds it.
	Subnet netip.Prefix
	// Logger receives the Net's logs (every command at debug level). Nil
	// discards them.
	Logger *slog.Logger
	// CommandTimeout bounds each ip and iptables command; 0 means
	// DefaultCommandTimeout.
	CommandTimeout time.Duration
	// IPTables is the iptables command for partitions and impairments
	// ("iptables", "iptables-nft" or "iptables-legacy"; its "-restore"
	// sibling must exist too); empty means DefaultIPTables. Use the
	// flavour the pods' other rules (the sidecar's redirect) use: the two
	// kernels' rule sets do not see each other.
	IPTables string
}

// Net is one run's network: a switch namespace holding a bridge, and a
// namespace per pod wired to it by a veth pair. Its methods are safe for
// concurrent use. Close it, always: it is the only thing that removes what
// New and AddPod create (Sweep does it for a Net whose process died).
type Net struct {
	cfg    Config
	log    *slog.Logger
	run    runner
	id     string
	subnet netip.Prefix
	gw     netip.Addr
	sw     string // switch namespace
	bridge string
	lock   *subnetLock

	mu       sync.Mutex
	st       state
	pods     []*Pod
	byName   map[string]*Pod
	byNS     map[string]bool
	next     int // index of the next pod: its address is gw + next
	impaired map[*Pod]*ImpairedLink
	closed   bool
	closeErr error
}

// New builds a run's switch: it sweeps what dead runs left (Sweep), claims
// the run id and a subnet, writes the state file, then creates the switch
// namespace NamespacePrefix+id with lo up and a bridge sk<id>br holding
// the subnet's first address. ctx bounds the set-up only. On failure New
// removes whatever it created and returns a nil Net; the error says which
// step failed. It fails at once, with Available's error, on a machine that
// cannot run it.
func New(ctx context.Context, cfg Config) (*Net, error) {
	if cfg.IPTables == "" {
		cfg.IPTables = DefaultIPTables
	}
	if err := available(cfg.IPTables); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.RunID == "" {
		cfg.RunID = strings.ToLower(rand.Text()[:6])
	}
	id := ShortID(cfg.RunID)
	log := cfg.Logger.With("component", "netns", "run", cfg.RunID)
	if _, err := Sweep(ctx, cfg.Logger); err != nil {
		log.Warn("sweeping dead runs failed; going on", "err", err)
	}

	n := &Net{
		cfg:      cfg,
		log:      log,
		run:      runner{timeout: cfg.CommandTimeout, log: log},
		id:       id,
		sw:       NamespacePrefix + id,
		bridge:   "sk" + id + "br",
		byName:   map[string]*Pod{},
		byNS:     map[string]bool{},
		next:     1,
		impaired: map[*Pod]*ImpairedLink{},
	}
	start, err := pidStart(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("netns: own start time: %w", err)
	}
	n.st = state{RunID: cfg.RunID, ID: id, PID: os.Getpid(), PIDStart: start, Created: time.Now().UTC()}
	if err := claimState(&n.st); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	fail := func(err error) (*Net, error) {
		if cerr := n.Close(); cerr != nil {
			err = fmt.Errorf("%w; and removing what was made: %w", err, cerr)
		}
		return nil, err
	}
	if cfg.Subnet.IsValid() {
		p := cfg.Subnet.Masked()
		if !p.Addr().Is4() || p.Bits() < 16 || p.Bits() > 29 {
			return fail(fmt.Errorf("netns: subnet %s: want an IPv4 prefix from /16 to /29", cfg.Subnet))
		}
		l, err := lockSubnet(p)
		if errors.Is(err, errLocked) {
			return fail(fmt.Errorf("netns: subnet %s is held by another live run; leave Config.Subnet empty to get a free one", p))
		}
		if err != nil {
			return fail(fmt.Errorf("netns: %w", err))
		}
		n.subnet, n.lock = p, l
	} else {
		p, l, err := allocSubnet()
		if err != nil {
			return fail(fmt.Errorf("netns: %w", err))
		}
		n.subnet, n.lock = p, l
	}
	n.gw = n.subnet.Addr().Next()
	n.st.Subnet = n.subnet.String()
	n.st.Namespaces = []string{n.sw}
	n.st.Links = []string{n.bridge}
	if err := writeState(&n.st); err != nil {
		return fail(fmt.Errorf("netns: %w", err))
	}
	if _, err := n.run.run(ctx, "", "ip", "netns", "add", n.sw); err != nil {
		return fail(fmt.Errorf("netns: create the switch namespace: %w", err))
	}
	batch := strings.Join([]string{
		"link set lo up",
		"link add " + n.bridge + " type bridge",
		fmt.Sprintf("addr add %s/%d dev %s", n.gw, n.subnet.Bits(), n.bridge),
		"link set " + n.bridge + " up",
	}, "\n") + "\n"
	if _, err := n.run.run(ctx, batch, "ip", "-n", n.sw, "-batch", "-"); err != nil {
		return fail(fmt.Errorf("netns: create the bridge: %w", err))
	}
	log.Info("switch up", "netns", n.sw, "bridge", n.bridge, "subnet", n.subnet)
	return n, nil
}

// RunID is the run's id (Config.RunID, or the random one New chose).
func (n *Net) RunID() string { return n.cfg.RunID }

// ID is the short id every name of the run carries (ShortID(RunID)).
func (n *Net) ID() string { return n.id }

// Subnet is the pods' subnet.
func (n *Net) Subnet() netip.Prefix { return n.subnet }

// Gateway is the switch's address on the bridge, the pods' default
// route. It forwards nothing: the switch namespace has no other link, and
// forwarding off, so a packet for an address outside the subnet ends
// there.
func (n *Net) Gateway() netip.Addr { return n.gw }

// SwitchNamespace is the name of the namespace that holds the bridge.
func (n *Net) SwitchNamespace() string { return n.sw }

// Pods are the pods added so far, in order.
func (n *Net) Pods() []*Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.pods)
}

// Pod is the pod named name, or nil.
func (n *Net) Pod(name string) *Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byName[name]
}

// podNameRe: names as Kubernetes would take them, and safe in an
// iptables comment and a file name.
var podNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// maxPodPart bounds the pod's part of its namespace name; longer names
// are cut and given a hash.
const maxPodPart = 40

// podNamespace is pod name's namespace.
func (n *Net) podNamespace(name string) string {
	part := name
	if len(part) > maxPodPart {
		part = part[:maxPodPart-9] + "-" + ShortID(name+"\x00") // a hash even for short-id-like names
	}
	return n.sw + "-" + part
}

// AddPod creates pod name: a namespace NamespacePrefix+id+"-"+name
// (long names cut and hashed), a veth pair from it (PodInterface, with
// the pod's address) to the bridge (sk<id>v<n>), lo up and a default
// route through the Gateway. Pods get the subnet's addresses in order,
// from the Gateway's next. ctx bounds the creation; on failure AddPod
// removes the half-made pod (and if that fails too, Close does) and the
// Net stays usable. Names are letters, digits, '.', '_' and '-', unique
// in the Net.
func (n *Net) AddPod(ctx context.Context, name string) (*Pod, error) {
	if !podNameRe.MatchString(name) || len(name) > 253 {
		return nil, fmt.Errorf("netns: pod name %q: want letters, digits, '.', '_' or '-', at most 253, starting with a letter or digit", name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("netns: AddPod on a closed Net")
	}
	if n.byName[name] != nil {
		return nil, fmt.Errorf("netns: pod %q exists", name)
	}
	ns := n.podNamespace(name)
	if n.byNS[ns] {
		return nil, fmt.Errorf("netns: pod %q: its namespace name %s is taken by another pod (a long name's cut and hash)", name, ns)
	}
	addr := n.gw
	for range n.next {
		addr = addr.Next()
	}
	if last := broadcast(n.subnet); !n.subnet.Contains(addr) || addr == last {
		return nil, fmt.Errorf("netns: pod %q: subnet %s is full (%d pods)", name, n.subnet, len(n.pods))
	}
	p := &Pod{
		net:   n,
		name:  name,
		ns:    ns,
		index: n.next,
		addr:  addr,
		veth:  fmt.Sprintf("sk%sv%d", n.id, n.next),
	}
	n.next++
	n.byNS[ns] = true
	n.st.Namespaces = append(n.st.Namespaces, ns)
	n.st.Links = append(n.st.Links, p.veth)
	if err := writeState(&n.st); err != nil {
		return nil, fmt.Errorf("netns: add pod %s: %w", name, err)
	}
	if err := n.createPod(ctx, p); err != nil {
		// Remove the half-made pod with a context of its own: ctx may be
		// what ended (a Ctrl-C). If this fails, Close tries again.
		cctx, cancel := context.WithTimeout(context.Background(), 3*n.cfg.CommandTimeout)
		defer cancel()
		if rerr := removeNetns(cctx, n.run, ns); rerr != nil {
			n.log.Warn("removing a half-made pod failed; Close will try again", "pod", name, "err", rerr)
		}
		return nil, fmt.Errorf("netns: add pod %s: %w", name, err)
	}
	n.pods = append(n.pods, p)
	n.byName[name] = p
	n.log.Info("pod up", "pod", name, "netns", ns, "addr", addr, "veth", p.veth)
	return p, nil
}

func (n *Net) createPod(ctx context.Context, p *Pod) error {
	if _, err := n.run.run(ctx, "", "ip", "netns", "add", p.ns); err != nil {
		return err
	}
	sw := strings.Join([]string{
		fmt.Sprintf("link add %s type veth peer name %s netns %s", p.veth, PodInterface, p.ns),
		fmt.Sprintf("link set %s master %s", p.veth, n.bridge),
		fmt.Sprintf("link set %s up", p.veth),
	}, "\n") + "\n"
	if _, err := n.run.run(ctx, sw, "ip", "-n", n.sw, "-batch", "-"); err != nil {
		return err
	}
	_, err := n.run.run(ctx, p.upBatch("add"), "ip", "-n", p.ns, "-batch", "-")
	return err
}

// broadcast is the last address of p.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Close removes everything the Net made: it stops the impairments'
// queues, kills any process still in its namespaces (stop the pods'
// processes first, gracefully: this is a safety net), deletes the pods'
// namespaces and the switch's (their links, bridge and rules go with
// them), the state file, and releases the subnet. It works on a Net whose
// AddPod failed midway, and after the context given to New or AddPod
// ended; each command is bounded by Config.CommandTimeout. Calling it
// again returns the first call's result. If some part could not be
// removed, the state file stays, so a later Sweep (once this process has
// exited) finishes the job. Sockets the caller made in a pod (Pod.Listen,
// Pod.DialContext) keep the pod's namespace alive, unnamed, until they are
// closed: close them first.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		defer n.mu.Unlock()
		return n.closeErr
	}
	n.closed = true
	links := make([]*ImpairedLink, 0, len(n.impaired))
	for _, l := range n.impaired {
		if l.running {
			links = append(links, l)
		}
	}
	nss := slices.Clone(n.st.Namespaces)
	n.mu.Unlock()

	for _, l := range links {
		l.stop(false)
	}
	var errs []error
	ctx := context.Background()
	for _, ns := range slices.Backward(nss) { // pods first, the switch last
		if err := removeNetns(ctx, n.run, ns); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(statePath(n.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	n.lock.release()
	err := errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("netns: close run %s: %w", n.id, err)
	}
	n.mu.Lock()
	n.closeErr = err
	n.mu.Unlock()
	n.log.Info("closed", "err", err)
	return err
}
