package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
)

// Chains the Net creates in the pods' namespaces; nothing else should
// use these names.
const (
	// PartitionChain (filter table) holds the partitions' DROP rules; it
	// is hooked first in INPUT for everything but loopback.
	PartitionChain = "SKIFF-NETNS-PARTITION"
	// ImpairChain (mangle table) sends the pod's TCP and UDP packets to
	// its queue; it is hooked in PREROUTING for packets coming in on
	// PodInterface and in POSTROUTING for packets going out on it.
	ImpairChain = "SKIFF-NETNS-IMPAIR"
)

// Undo reverts one fault. It runs its commands once: later calls return
// the first call's result. After Net.Close it does nothing and returns
// nil (the namespaces are gone). ctx bounds it.
type Undo func(ctx context.Context) error

// once makes an Undo that runs f only the first time.
func (n *Net) once(f func(ctx context.Context) error) Undo {
	var (
		mu   sync.Mutex
		done bool
		err  error
	)
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return err
		}
		if n.isClosed() {
			return nil
		}
		done = true
		err = f(ctx)
		return err
	}
}

func (n *Net) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// own checks that p is a live pod of n.
func (n *Net) own(p *Pod) error {
	if p == nil || p.net != n {
		return errors.New("netns: the pod is not one of this Net's")
	}
	if n.isClosed() {
		return errors.New("netns: the Net is closed")
	}
	return nil
}

// Partition cuts a from b, both ways, and leaves both connected to
// everyone else: each pod's namespace drops, in PartitionChain, every
// packet coming from the other (iptables DROP, in INPUT). Nothing is
// rejected and no error reaches a sender: new connections time out,
// established TCP connections stall (segments and their retransmissions
// vanish) and resume when the partition heals, provided they have not
// timed out meanwhile; datagrams vanish. That is what a real partition
// does; a REJECT would instead end connections at once, a different
// fault. The drop is on the receiving side on purpose: a DROP on the
// sending side (OUTPUT) makes the kernel fail a UDP send with EPERM,
// which no network does. Undo removes the rules.
func (n *Net) Partition(ctx context.Context, a, b *Pod) (Undo, error) {
	if err := n.own(a); err != nil {
		return nil, err
	}
	if err := n.own(b); err != nil {
		return nil, err
	}
	if a == b {
		return nil, fmt.Errorf("netns: partition pod %s from itself", a.name)
	}
	return n.PartitionAddr(ctx, a, netip.PrefixFrom(b.addr, 32))
}

// PartitionAddr cuts pod p from the addresses in from (a control plane's
// pod, a whole service's replicas), both ways where it can: p drops every
// packet from those addresses, and every other pod of the Net whose
// address is in from drops p's packets. An address in from that is no
// pod's (the Gateway, one outside the subnet) has no namespace to drop p's
// packets in; only its packets to p are dropped. Loopback is never
// dropped, so p stays reachable from itself even when from holds its
// address. The packet-level behaviour is Partition's; Undo removes the
// rules.
func (n *Net) PartitionAddr(ctx context.Context, p *Pod, from netip.Prefix) (Undo, error) {
	if err := n.own(p); err != nil {
		return nil, err
	}
	if !from.IsValid() || !from.Addr().Is4() {
		return nil, fmt.Errorf("netns: partition %s from %v: want an IPv4 prefix", p.name, from)
	}
	from = from.Masked()
	comment := fmt.Sprintf("skiff-netns %s: %s cut from %s", n.id, p.name, from)
	rules := map[*Pod][]string{
		p: {fmt.Sprintf("-s %s -m comment --comment %q -j DROP", from, comment)},
	}
	order := []*Pod{p}
	for _, q := range n.Pods() {
		if q != p && from.Contains(q.addr) {
			rules[q] = []string{fmt.Sprintf("-s %s/32 -m comment --comment %q -j DROP", p.addr, comment)}
			order = append(order, q)
		}
	}
	var done []*Pod
	for _, q := range order {
		if err := q.partitionRules(ctx, "-A", rules[q]); err != nil {
			for _, d := range done { // back to where it was
				_ = d.partitionRules(context.WithoutCancel(ctx), "-D", rules[d])
			}
			return nil, fmt.Errorf("netns: partition %s from %s: %w", p.name, from, err)
		}
		done = append(done, q)
	}
	n.log.Info("partition", "pod", p.name, "from", from, "pods", len(order))
	return n.once(func(ctx context.Context) error {
		var errs []error
		for _, q := range order {
			if err := q.partitionRules(ctx, "-D", rules[q]); err != nil {
				errs = append(errs, err)
			}
		}
		n.log.Info("partition healed", "pod", p.name, "from", from)
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("netns: heal partition of %s from %s: %w", p.name, from, err)
		}
		return nil
	}), nil
}

// partitionRules adds (-A) or deletes (-D) rules in p's PartitionChain,
// creating and hooking the chain the first time, in one iptables-restore.
func (p *Pod) partitionRules(ctx context.Context, op string, rules []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	b.WriteString("*filter\n")
	first := !p.partitionOn && op == "-A"
	if first {
		fmt.Fprintf(&b, ":%s - [0:0]\n-I INPUT 1 ! -i lo -j %s\n", PartitionChain, PartitionChain)
	}
	for _, r := range rules {
		fmt.Fprintf(&b, "%s %s %s\n", op, PartitionChain, r)
	}
	b.WriteString("COMMIT\n")
	if err := p.iptablesRestore(ctx, b.String()); err != nil {
		return err
	}
	if first {
		p.partitionOn = true
	}
	return nil
}

// iptablesRestore applies rules (iptables-restore format) in the pod's
// namespace without flushing what is there.
func (p *Pod) iptablesRestore(ctx context.Context, rules string) error {
	_, err := p.net.run.run(ctx, rules, "ip", "netns", "exec", p.ns, p.net.cfg.IPTables+"-restore", "-w", "5", "--noflush")
	return err
}

// LinkDown sets the pod's link (PodInterface) down, like a pulled cable
// seen from the pod: the kernel removes the pod's routes through it, so
// the pod's own sends fail at once (network unreachable) and its
// listeners hear nothing; for its peers the pod is silent (their packets
// to it are dropped, their connections to it time out). Established
// connections stall, as in a partition. Undo is LinkUp.
func (n *Net) LinkDown(ctx context.Context, p *Pod) (Undo, error) {
	if err := n.own(p); err != nil {
		return nil, err
	}
	if _, err := n.run.run(ctx, "", "ip", "-n", p.ns, "link", "set", PodInterface, "down"); err != nil {
		return nil, fmt.Errorf("netns: link down %s: %w", p.name, err)
	}
	n.log.Info("link down", "pod", p.name)
	return n.once(func(ctx context.Context) error { return n.LinkUp(ctx, p) }), nil
}

// LinkUp sets the pod's link up again and restores its address and
// default route (replacing them if they are there): it also repairs a
// pod whose link went down some other way.
func (n *Net) LinkUp(ctx context.Context, p *Pod) error {
	if err := n.own(p); err != nil {
		return err
	}
	if _, err := n.run.run(ctx, p.upBatch("replace"), "ip", "-n", p.ns, "-batch", "-"); err != nil {
		return fmt.Errorf("netns: link up %s: %w", p.name, err)
	}
	n.log.Info("link up", "pod", p.name)
	return nil
}
