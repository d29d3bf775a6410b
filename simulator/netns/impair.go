package netns

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/simulator/netns/nfqueue"
)

// Queue is the NFQUEUE number of every pod's impairment queue (queue
// numbers are per namespace).
const Queue = 100

// Bounds of an Impairment.
const (
	// DefaultQueueLen is how many of a pod's packets may be held at once
	// when Impairment.QueueLen is 0.
	DefaultQueueLen = 4096
	// MaxQueueLen bounds Impairment.QueueLen.
	MaxQueueLen = 65536
	// MaxDelay bounds Latency + Jitter: more is a unit mistake.
	MaxDelay = time.Minute
)

// drainWait is how long stopping an impairment keeps reading packets that
// were queued before its rules were removed.
const drainWait = 20 * time.Millisecond

// Impairment is latency, jitter and loss on a pod's link, applied in
// user space (see Net.Impair). The zero value passes every packet through
// the queue unchanged (a cost of a few microseconds per packet, and a
// way to test the queue).
type Impairment struct {
	// Latency is added to every packet crossing the pod's link, in each
	// direction: a round trip through the pod's link gains twice Latency
	// (as a link with that one-way delay would).
	Latency time.Duration
	// Jitter spreads each packet's delay uniformly over Latency ± Jitter
	// (never below zero). A flow's packets still leave in order: a packet
	// never leaves before an earlier one of its flow.
	Jitter time.Duration
	// Loss is the probability, 0 to 1, that a packet is dropped, drawn
	// for each packet in each direction.
	Loss float64
	// Seed seeds the draws of jitter and loss: the same seed and the same
	// packets give the same delays and drops. Record it with the result.
	Seed uint64
	// QueueLen is how many of the pod's packets may be held at once; 0
	// means DefaultQueueLen. Past it the kernel drops new packets (as a
	// full router queue would), or with FailOpen lets them through
	// unimpaired.
	QueueLen int
	// FailOpen lets packets through unimpaired while the queue is full,
	// instead of dropping them.
	FailOpen bool
}

func (im Impairment) validate() error {
	switch {
	case im.Latency < 0 || im.Jitter < 0:
		return fmt.Errorf("latency %v and jitter %v must not be negative", im.Latency, im.Jitter)
	case im.Latency+im.Jitter > MaxDelay:
		return fmt.Errorf("latency %v + jitter %v is more than %v", im.Latency, im.Jitter, MaxDelay)
	case math.IsNaN(im.Loss) || im.Loss < 0 || im.Loss > 1:
		return fmt.Errorf("loss %v is not a probability from 0 to 1", im.Loss)
	case im.QueueLen < 0 || im.QueueLen > MaxQueueLen:
		return fmt.Errorf("queue length %d is not from 0 to %d", im.QueueLen, MaxQueueLen)
	}
	return nil
}

// ImpairStats count what an impairment did.
type ImpairStats struct {
	// Packets is how many packets the queue received.
	Packets uint64
	// Dropped is how many of them the Loss draw dropped.
	Dropped uint64
	// Accepted is how many were released (after their delay).
	Accepted uint64
	// Held is how many are held now.
	Held int
	// QueueDropped is how many packets the kernel dropped because the
	// queue was full (or, with FailOpen, let through unimpaired); from
	// /proc/net/netfilter/nfnetlink_queue. Zero after Clear.
	QueueDropped uint64
	// UserDropped is how many packets the kernel dropped because the
	// harness did not read them fast enough (its socket buffer was full).
	// Zero after Clear.
	UserDropped uint64
	// KernelErrors counts the error messages the kernel sent back (a
	// verdict it could not apply).
	KernelErrors uint64
}

// ImpairedLink is an impairment in force on a pod's link, made by
// Net.Impair. Clear ends it.
type ImpairedLink struct {
	net *Net
	pod *Pod
	im  Impairment

	conn     *nfqueue.Conn
	running  bool // the loop runs; guarded by net.mu, so Close and Impair agree on who stops it
	stopping atomic.Bool
	flush    atomic.Bool // set before stopping: release the held packets (Clear) or not (Close)
	done     chan struct{}
	err      error // the loop's, read after done

	packets, dropped, accepted atomic.Uint64
	held                       atomic.Int64

	stopOnce sync.Once
	clear    sync.Once
	clearErr error
}

// Impair applies im to pod p's link, in user space: tc netem is not
// available everywhere the harness runs. Rules in p's namespace
// (ImpairChain, mangle table) send every TCP and UDP packet that comes in
// or goes out on PodInterface (loopback never) to the pod's queue (Queue);
// the harness reads them from a netlink socket opened in p's namespace
// (package nfqueue), draws each packet's fate with a rand seeded by
// im.Seed, drops it with probability im.Loss, or holds it for its delay
// and then accepts it, and the packet goes on as if nothing happened.
// One goroutine per impaired pod does it all, with a heap of release
// times (no goroutine per packet), reading and releasing packets in
// batches; packets of one flow stay in order, and a delayed packet never
// holds back another flow's. Delays are as precise as the Go runtime's
// timers (about a millisecond on a loaded machine; they are never early).
// Other protocols (ICMP, ARP) pass unimpaired. The rules use
// --queue-bypass: if the harness stops reading, packets pass unimpaired
// rather than being dropped. A pod has at most one impairment at a time.
func (n *Net) Impair(ctx context.Context, p *Pod, im Impairment) (*ImpairedLink, error) {
	if err := n.own(p); err != nil {
		return nil, err
	}
	if err := im.validate(); err != nil {
		return nil, fmt.Errorf("netns: impair %s: %w", p.name, err)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, errors.New("netns: the Net is closed")
	}
	if n.impaired[p] != nil {
		n.mu.Unlock()
		return nil, fmt.Errorf("netns: pod %s is impaired already; Clear that first", p.name)
	}
	l := &ImpairedLink{net: n, pod: p, im: im, done: make(chan struct{})}
	n.impaired[p] = l // reserved: Close stops it from now on
	n.mu.Unlock()

	qlen := im.QueueLen
	if qlen == 0 {
		qlen = DefaultQueueLen
	}
	err := p.Do(func() error {
		var err error
		l.conn, err = nfqueue.Open(Queue, nfqueue.Config{MaxLen: uint32(qlen), FailOpen: im.FailOpen})
		return err
	})
	if err != nil {
		n.forget(l)
		return nil, fmt.Errorf("netns: impair %s: %w", p.name, err)
	}
	go l.run()
	n.mu.Lock()
	l.running = true
	closed := n.closed
	n.mu.Unlock()
	if closed { // Close ran meanwhile, before it could see the loop
		l.stop(false)
		n.forget(l)
		return nil, errors.New("netns: the Net is closed")
	}
	if err := p.impairRules(ctx, "-A", n.id); err != nil {
		l.stop(false)
		n.forget(l)
		return nil, fmt.Errorf("netns: impair %s: %w", p.name, err)
	}
	n.log.Info("impair", "pod", p.name, "latency", im.Latency, "jitter", im.Jitter, "loss", im.Loss, "seed", im.Seed)
	return l, nil
}

// forget drops l from the Net's impaired pods.
func (n *Net) forget(l *ImpairedLink) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.impaired[l.pod] == l {
		delete(n.impaired, l.pod)
	}
}

// impairRules adds (-A) or deletes (-D) the rules of ImpairChain that
// send TCP and UDP to the queue, creating and hooking the chain the first
// time.
func (p *Pod) impairRules(ctx context.Context, op, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	rules := "*mangle\n"
	first := !p.impairChains && op == "-A"
	if first {
		rules += fmt.Sprintf(":%[1]s - [0:0]\n-A PREROUTING -i %[2]s -j %[1]s\n-A POSTROUTING -o %[2]s -j %[1]s\n", ImpairChain, PodInterface)
	}
	for _, proto := range []string{"tcp", "udp"} {
		rules += fmt.Sprintf("%s %s -p %s -m comment --comment \"skiff-netns %s: impair %s\" -j NFQUEUE --queue-num %d --queue-bypass\n",
			op, ImpairChain, proto, id, p.name, Queue)
	}
	rules += "COMMIT\n"
	if err := p.iptablesRestore(ctx, rules); err != nil {
		return err
	}
	if first {
		p.impairChains = true
	}
	return nil
}

// run is the queue's one goroutine: read packets in batches, draw their
// fate, release those due, wait for the next packet or release time.
func (l *ImpairedLink) run() {
	defer close(l.done)
	rng := rand.New(rand.NewPCG(l.im.Seed, l.im.Seed^0x9e3779b97f4a7c15))
	s := newSchedule()
	var vs []nfqueue.Verdict
	onPacket := func(p nfqueue.Packet) {
		l.packets.Add(1)
		if l.im.Loss > 0 && rng.Float64() < l.im.Loss {
			vs = append(vs, nfqueue.Verdict{ID: p.ID, Drop: true})
			l.dropped.Add(1)
			return
		}
		d := l.im.Latency
		if l.im.Jitter > 0 {
			d += time.Duration((rng.Float64()*2 - 1) * float64(l.im.Jitter))
		}
		s.push(time.Now(), flowOf(p.Payload), p.ID, max(d, 0))
	}
	release := func() bool {
		n := len(vs)
		for _, v := range vs {
			if !v.Drop {
				l.accepted.Add(1)
			}
		}
		l.held.Store(int64(s.len()))
		if n == 0 {
			return true
		}
		err := l.conn.SetVerdicts(vs)
		vs = vs[:0]
		if err != nil {
			l.err = err
			return false
		}
		return true
	}
	for {
		next, _ := s.next() // zero when nothing is held: wait for packets only
		if err := l.conn.SetReadDeadline(next); err != nil {
			l.err = err
			break
		}
		if l.stopping.Load() { // after setting the deadline: stop's wake-up is not lost
			break
		}
		if _, err := l.conn.Receive(onPacket); err != nil {
			l.err = err
			break
		}
		vs = s.popDue(time.Now(), vs)
		if !release() {
			break
		}
	}
	if l.flush.Load() && l.err == nil {
		// The rules are gone: read what was queued before, then let
		// everything held go at once, in order.
		for {
			if err := l.conn.SetReadDeadline(time.Now().Add(drainWait)); err != nil {
				break
			}
			n, err := l.conn.Receive(func(p nfqueue.Packet) {
				l.packets.Add(1)
				s.push(time.Now(), flowOf(p.Payload), p.ID, 0)
			})
			if err != nil || n == 0 {
				break
			}
		}
		vs = s.popAll(vs)
		release()
	}
	l.conn.Close()
}

// stop ends the loop; with flush it releases the held packets first
// (Clear), without it the kernel drops them with the queue (Close, or a
// failed Impair). It waits for the loop to end.
func (l *ImpairedLink) stop(flush bool) {
	l.stopOnce.Do(func() {
		l.flush.Store(flush)
		l.stopping.Store(true)
		_ = l.conn.SetReadDeadline(time.Unix(1, 0)) // wakes a waiting Receive
	})
	<-l.done
}

// Clear ends the impairment: it removes the rules (new packets pass
// unimpaired), releases every packet still held at once, in order, and
// closes the queue. Calling it again returns the first call's result;
// after Net.Close it does nothing. ctx bounds the rule removal.
func (l *ImpairedLink) Clear(ctx context.Context) error {
	l.clear.Do(func() {
		if l.net.isClosed() {
			return
		}
		err := l.pod.impairRules(ctx, "-D", l.net.id)
		// Even if the rules could not be removed, stop the loop: with
		// --queue-bypass, packets pass once no one reads the queue.
		l.stop(err == nil)
		l.net.forget(l)
		if err == nil && l.err != nil && !errors.Is(l.err, os.ErrClosed) {
			err = l.err
		}
		if err != nil {
			l.clearErr = fmt.Errorf("netns: clear impairment of %s: %w", l.pod.name, err)
		}
		l.net.log.Info("impairment cleared", "pod", l.pod.name, "err", err)
	})
	return l.clearErr
}

// Impairment is what l applies.
func (l *ImpairedLink) Impairment() Impairment { return l.im }

// Stats are l's counters: its own, and the kernel's for the queue while
// it is bound (read from inside the pod's namespace).
func (l *ImpairedLink) Stats() (ImpairStats, error) {
	st := ImpairStats{
		Packets:      l.packets.Load(),
		Dropped:      l.dropped.Load(),
		Accepted:     l.accepted.Load(),
		Held:         int(l.held.Load()),
		KernelErrors: l.conn.Errors(),
	}
	select {
	case <-l.done:
		return st, nil // the queue is gone
	default:
	}
	var text []byte
	err := l.pod.Do(func() error {
		var err error
		text, err = os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
		return err
	})
	if err != nil {
		return st, fmt.Errorf("netns: queue stats of %s: %w", l.pod.name, err)
	}
	ks, ok, err := nfqueue.ParseProcStats(string(text), Queue)
	if err != nil {
		return st, err
	}
	if ok {
		st.QueueDropped, st.UserDropped = uint64(ks.QueueDropped), uint64(ks.UserDropped)
	}
	return st, nil
}
