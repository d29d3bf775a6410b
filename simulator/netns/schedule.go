package netns

import (
	"container/heap"
	"encoding/binary"
	"time"

	"github.com/skiff-mesh/skiff/simulator/netns/nfqueue"
)

// flowKey is a packet's flow: protocol, addresses and ports (0 for a
// fragment or a protocol without ports). Packets it cannot parse share
// the zero key.
type flowKey struct {
	proto      uint8
	src, dst   [4]byte
	sport, dpt uint16
}

// flowOf reads an IPv4 packet's flow from its first bytes.
func flowOf(b []byte) flowKey {
	if len(b) < 20 || b[0]>>4 != 4 {
		return flowKey{}
	}
	ihl := int(b[0]&0x0f) * 4
	k := flowKey{proto: b[9]}
	copy(k.src[:], b[12:16])
	copy(k.dst[:], b[16:20])
	fragOff := binary.BigEndian.Uint16(b[6:]) & 0x1fff
	if (k.proto == 6 || k.proto == 17) && fragOff == 0 && ihl >= 20 && len(b) >= ihl+4 {
		k.sport = binary.BigEndian.Uint16(b[ihl:])
		k.dpt = binary.BigEndian.Uint16(b[ihl+2:])
	}
	return k
}

// held is a packet waiting for its release time.
type held struct {
	at  time.Time
	seq uint64 // arrival order: breaks ties, so equal times keep order
	id  uint32
}

type heldHeap []held

func (h heldHeap) Len() int { return len(h) }
func (h heldHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h heldHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *heldHeap) Push(x any)   { *h = append(*h, x.(held)) }
func (h *heldHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// schedule holds packets until their release times: a heap keyed by
// release time, so a long-delayed packet never holds back one due
// sooner, and a per-flow floor, so a flow's packets leave in the order
// they came however the jitter falls. It is used by one goroutine.
type schedule struct {
	h    heldHeap
	seq  uint64
	last map[flowKey]time.Time // release time of each flow's latest packet
}

func newSchedule() *schedule { return &schedule{last: map[flowKey]time.Time{}} }

// push holds packet id of flow k, which arrived at now, for delay d (or
// until its flow's previous packet leaves, if later), and returns its
// release time.
func (s *schedule) push(now time.Time, k flowKey, id uint32, d time.Duration) time.Time {
	at := now.Add(d)
	if prev, ok := s.last[k]; ok && prev.After(at) {
		at = prev
	}
	s.last[k] = at
	s.seq++
	heap.Push(&s.h, held{at: at, seq: s.seq, id: id})
	if len(s.last) > 1024 && len(s.last) > 4*len(s.h) {
		for k, t := range s.last { // flows with nothing held: no floor left
			if !t.After(now) {
				delete(s.last, k)
			}
		}
	}
	return at
}

// next is the earliest release time, if anything is held.
func (s *schedule) next() (time.Time, bool) {
	if len(s.h) == 0 {
		return time.Time{}, false
	}
	return s.h[0].at, true
}

// popDue appends an accept verdict for every packet due by now, in
// release order.
func (s *schedule) popDue(now time.Time, vs []nfqueue.Verdict) []nfqueue.Verdict {
	for len(s.h) > 0 && !s.h[0].at.After(now) {
		vs = append(vs, nfqueue.Verdict{ID: heap.Pop(&s.h).(held).id})
	}
	return vs
}

// popAll appends an accept verdict for every packet held, in release
// order.
func (s *schedule) popAll(vs []nfqueue.Verdict) []nfqueue.Verdict {
	for len(s.h) > 0 {
		vs = append(vs, nfqueue.Verdict{ID: heap.Pop(&s.h).(held).id})
	}
	clear(s.last)
	return vs
}

// len is how many packets are held.
func (s *schedule) len() int { return len(s.h) }
