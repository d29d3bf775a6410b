package proxy

import (
	"bytes"
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"time"
)

// BinaryResident is the part of the memory budget the proxy's own binary
// takes (its code and data pages, file-backed: about 7 MB resident). The
// rest is the Go runtime's: heap, stacks and metadata.
const BinaryResident = 8 << 20

// RuntimeMemoryLimit is the soft limit (GOMEMLIMIT) for the Go runtime
// that keeps the process within budget: five eighths of it (20 MiB of
// 32). Of the rest, the binary takes BinaryResident, and the remainder is
// room for the excursions a flood causes above a soft limit before the
// collector catches up (measured: up to 10 MB with the limit at budget
// less the binary). A sidecar's steady heap is 1 to 3 MB, so the
// collector works harder only under attack.
func RuntimeMemoryLimit(budget int64) int64 {
	return max(budget*5/8, 4<<20)
}

// overloadPeriod is how often the resident memory is read once it is past
// watchCloseAt of the budget: at the rate a flood grows it (tens of MB/s
// before the other bounds), a few MB per period. Below, it is read every
// idlePeriod: reading every 50 ms all the time kept about 0.3 MB more of
// the sidecar resident at steady load (baseline scenario, VmHWM 9.5-9.8
// against 9.1-9.3 MB), and a sidecar at rest is far below the threshold.
const (
	overloadPeriod = 50 * time.Millisecond
	idlePeriod     = 500 * time.Millisecond
	watchCloseAt   = 0.40
)

// The watch's thresholds, in fractions of the budget, against the
// process's resident memory. Above shedAt the proxy sheds load: a new
// connection from an address that already has one is refused, and the
// shares of the in-flight cap apply whatever the load. Above closeAt it
// also closes, each period, the client connections holding more than
// their share of requests in flight (a flood of streams makes its
// connections the busiest; closing one also drops what its client sent
// and the proxy has not read yet), and returns freed memory to the
// kernel at once. Below clearAt it stops shedding.
const (
	shedAt  = 0.70
	closeAt = 0.85
	clearAt = 0.55
)

// overload watches the runtime's memory against the budget: the caps
// bound what a client can make the proxy hold in the common cases, and
// this catches what they cannot (net/http holds up to five times its
// stream limit in state per HTTP/2 connection before it ends an abusive
// one, so a few dozen connections flooding streams outgrow any cap that
// leaves room for real traffic). The same idea as Envoy's overload
// manager.
type overload struct {
	limit    uint64 // the budget, bytes
	shedding atomic.Bool
	samples  []metrics.Sample
	inUse    atomic.Uint64 // last reading, for the gauge
	statm    []byte        // read buffer for /proc/self/statm
	statmFD  int           // its descriptor: 0 before the first read, -1 if it cannot be read
	periods  int           // checks while shedding between the thresholds

	// Counters: periods spent shedding, connections closed.
	shedPeriods, closed *atomic.Uint64
	// measure reads the resident memory; nil means read (tests set it).
	measure func() uint64
}

func newOverload(budget int64) *overload {
	return &overload{
		limit: uint64(budget),
		statm: make([]byte, 0, 128),
		samples: []metrics.Sample{
			{Name: "/memory/classes/total:bytes"},
			{Name: "/memory/classes/heap/released:bytes"},
		},
	}
}

// pageSize is the unit of /proc/self/statm.
var pageSize = uint64(os.Getpagesize())

// read returns the process's resident memory, from /proc/self/statm (one
// small read), or where there is none the runtime's estimate: what it has
// mapped less what it has returned to the kernel.
func (o *overload) read() uint64 {
	if n, ok := o.readStatm(); ok {
		o.inUse.Store(n)
		return n
	}
	metrics.Read(o.samples)
	var total, released uint64
	if o.samples[0].Value.Kind() == metrics.KindUint64 {
		total = o.samples[0].Value.Uint64()
	}
	if o.samples[1].Value.Kind() == metrics.KindUint64 {
		released = o.samples[1].Value.Uint64()
	}
	n := total - min(released, total) + BinaryResident
	o.inUse.Store(n)
	return n
}

// readStatm reads the resident set size from /proc/self/statm ("size
// resident shared ..." in pages), kept open and read again from its start
// with one pread. Through the raw system call: os and internal/poll's
// file paths are code no other part of the serving proxy runs, and
// running them every period kept about 0.3 MB more of the binary resident
// (baseline scenario, VmHWM).
func (o *overload) readStatm() (uint64, bool) {
	if o.statmFD < 0 {
		return 0, false
	}
	if o.statmFD == 0 {
		fd, err := syscall.Open("/proc/self/statm", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			o.statmFD = -1
			return 0, false
		}
		o.statmFD = fd
	}
	n, err := syscall.Pread(o.statmFD, o.statm[:cap(o.statm)], 0)
	if n <= 0 || err != nil {
		return 0, false
	}
	// The second field, in decimal.
	b := o.statm[:n]
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return 0, false
	}
	var pages uint64
	digits := 0
	for _, c := range b[i+1:] {
		if c < '0' || c > '9' {
			break
		}
		pages = pages*10 + uint64(c-'0')
		digits++
	}
	if digits == 0 {
		return 0, false
	}
	return pages * pageSize, true
}

// run checks, every idlePeriod or overloadPeriod, until ctx is done.
func (o *overload) run(ctx context.Context, p *Proxy) {
	t := time.NewTimer(idlePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !o.shedding.Load() && !p.busy() {
				// Nothing a client holds is near a cap: memory cannot
				// be either, and not reading it keeps the reading's
				// code out of a quiet sidecar's resident pages.
				t.Reset(idlePeriod)
				continue
			}
			if n := o.check(p); n > watchCloseAt*float64(o.limit) || o.shedding.Load() {
				t.Reset(overloadPeriod)
			} else {
				t.Reset(idlePeriod)
			}
		}
	}
}

// check reads the resident memory, acts on it and returns it.
func (o *overload) check(p *Proxy) float64 {
	measure := o.read
	if o.measure != nil {
		measure = o.measure
	}
	n := float64(measure())
	limit := float64(o.limit)
	switch {
	case n > closeAt*limit:
		if !o.shedding.Swap(true) {
			p.log.Warn("memory near the budget: shedding load", "in_use_mib", n/(1<<20), "runtime_share_mib", limit/(1<<20))
		}
		o.closed.Add(uint64(p.closeBusiest()))
		debug.FreeOSMemory()
	case n > shedAt*limit:
		if !o.shedding.Swap(true) {
			p.log.Warn("memory near the budget: shedding load", "in_use_mib", n/(1<<20), "runtime_share_mib", limit/(1<<20))
		}
	case n < clearAt*limit:
		if o.shedding.Swap(false) {
			p.log.Info("memory back under the budget: load shedding ends", "in_use_mib", n/(1<<20))
		}
	case o.shedding.Load():
		// Between the thresholds: what an attack left freed but still
		// resident (the runtime returns it lazily) would keep the
		// proxy shedding long after; return it, once a second.
		if o.periods++; o.periods%int(time.Second/overloadPeriod) == 0 { // shedding: checked every overloadPeriod
			debug.FreeOSMemory()
		}
	}
	if o.shedding.Load() {
		o.shedPeriods.Add(1)
	}
	return n
}

// busy reports whether clients hold an eighth of a cap: connections on a
// listener, or requests being handled. Below that, what they hold is well
// within the budget.
func (p *Proxy) busy() bool {
	if p.active.Load() > p.maxActive/8 {
		return true
	}
	for _, l := range p.listeners {
		if l.conns.n.Load() > l.conns.max/8 {
			return true
		}
	}
	return false
}

// closeBusiest closes the client connections that are handling more than
// a share of a listener's in-flight cap in requests (refused ones
// included: a flood of streams that each get a fast 503 holds their state
// all the same), and returns how many it closed. A client with a few
// requests in flight is never closed.
func (p *Proxy) closeBusiest() int {
	var victims []*conn
	for _, l := range p.listeners {
		share := int32(max(l.inflight.max/connShareDiv, 16))
		l.table.mu.Lock()
		for c := range l.table.m {
			n := c.active.Load()
			if c.closed.Load() {
				continue
			}
			if n > share {
				victims = append(victims, c)
			}
		}
		l.table.mu.Unlock()
	}
	for _, c := range victims {
		c.Close()
	}
	return len(victims)
}
