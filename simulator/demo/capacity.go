package demo

import (
	"container/list"
	"context"
	"sync"
)

// gate gives the workload requests of a Server at most the behaviour's
// MaxConcurrent slots at once, as a backend with a pool of that many
// workers does: the others wait, in arrival order, and the wait counts in
// their latency. With a service time S the backend then serves at most
// MaxConcurrent/S requests a second, and whatever is sent beyond that
// queues here, without bound, as in a real server. The zero value is open.
type gate struct {
	mu      sync.Mutex
	busy    int       // requests holding a slot
	waiting list.List // of chan struct{}, oldest first; closed when handed a slot
}

// enter takes a slot under limit (0: no limit, the request is only
// counted), waiting for one while every slot is busy. It reports false,
// holding nothing, when ctx ends first.
func (g *gate) enter(ctx context.Context, limit int) bool {
	g.mu.Lock()
	if g.waiting.Len() == 0 && (limit <= 0 || g.busy < limit) {
		g.busy++
		g.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	e := g.waiting.PushBack(ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		select {
		case <-ch:
			// Handed a slot as the context ended: pass it on.
			g.busy--
			g.wakeLocked(limit)
		default:
			g.waiting.Remove(e)
		}
		return false
	}
}

// leave gives back a slot taken by enter and hands the free slots, under
// limit (the behaviour's of the moment, which may have changed since the
// request entered), to the oldest waiters.
func (g *gate) leave(limit int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy--
	g.wakeLocked(limit)
}

func (g *gate) wakeLocked(limit int) {
	for g.waiting.Len() > 0 && (limit <= 0 || g.busy < limit) {
		ch := g.waiting.Remove(g.waiting.Front()).(chan struct{})
		g.busy++
		close(ch)
	}
}

// waiters returns how many requests wait for a slot.
func (g *gate) waiters() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting.Len()
}
