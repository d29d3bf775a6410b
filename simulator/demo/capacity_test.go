package demo

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"

	"github.com/skiff-mesh/skiff/internal/testwait"
)

// TestGate checks the slots in a synctest bubble: at most limit holders,
// the waiters served in arrival order, a cancelled waiter gone from the
// queue, and a limit raised while requests wait honoured at the next
// leave.
func TestGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g gate
		for range 2 {
			if !g.enter(t.Context(), 2) {
				t.Fatal("enter refused a free slot")
			}
		}
		var mu sync.Mutex
		var order []int
		cancelled, cancel := context.WithCancel(t.Context())
		for i := range 4 {
			ctx := t.Context()
			if i == 1 {
				ctx = cancelled
			}
			go func() {
				if g.enter(ctx, 2) {
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
				}
			}()
			synctest.Wait() // queued in this order
		}
		if n := g.waiters(); n != 4 {
			t.Fatalf("%d waiters, want 4", n)
		}
		cancel()
		synctest.Wait()
		if n := g.waiters(); n != 3 {
			t.Fatalf("%d waiters after a cancellation, want 3", n)
		}
		g.leave(2)
		synctest.Wait()
		if len(order) != 1 || order[0] != 0 {
			t.Fatalf("after one leave, served %v, want [0]", order)
		}
		g.leave(4) // the limit was raised: three may hold slots now
		synctest.Wait()
		// Both woken at once: they record themselves in either order.
		if len(order) != 3 || order[1]+order[2] != 5 {
			t.Fatalf("after the limit rose, served %v, want 0 then 2 and 3", order)
		}
		g.mu.Lock()
		busy := g.busy
		g.mu.Unlock()
		if busy != 3 || g.waiters() != 0 {
			t.Fatalf("busy %d, waiters %d; want 3 and 0", busy, g.waiters())
		}
		if !g.enter(t.Context(), 0) {
			t.Fatal("no limit, and enter waited")
		}
	})
}

// TestMaxConcurrentHTTP holds two requests in hour-long delays with
// max_concurrent 2: a third waits for a slot, and gets one as soon as one
// of the first two goes away.
func TestMaxConcurrentHTTP(t *testing.T) {
	b := Behaviour{Latency: Delays{{Delay: MaxDelay, Percent: 100}}, MaxConcurrent: 2}
	matrix(t, Config{Behaviour: b}, func(t *testing.T, c *client) {
		var cancels []context.CancelFunc
		var wg sync.WaitGroup
		for range 3 {
			ctx, cancel := context.WithCancel(t.Context())
			cancels = append(cancels, cancel)
			wg.Go(func() { c.statusOnly(ctx, http.MethodGet, "/") })
			// One at a time, so that the third is the one waiting.
			testwait.For(t, "the request in", func() (bool, error) {
				return c.s.Stats().InFlight == int64(len(cancels)), nil
			})
		}
		if st := c.s.Stats(); st.Waiting != 1 || st.Delayed != 2 {
			t.Fatalf("stats %+v, want 1 waiting and 2 delayed", st)
		}
		cancels[0]()
		testwait.For(t, "the third request to get the slot", func() (bool, error) {
			st := c.s.Stats()
			return st.Waiting == 0 && st.Delayed == 3, nil
		})
		for _, cancel := range cancels {
			cancel()
		}
		wg.Wait()
		testwait.For(t, "every handler to return", func() (bool, error) { return c.s.Stats().InFlight == 0, nil })
	})
}

// TestMaxConcurrentCapacity checks the capacity: with 2 slots and 20 ms
// each, 20 requests sent at once take at least ten rounds, 200 ms, over
// HTTP and gRPC alike.
func TestMaxConcurrentCapacity(t *testing.T) {
	b := Behaviour{Latency: Delays{{Delay: 20 * time.Millisecond, Percent: 100}}, MaxConcurrent: 2}
	const n, floor = 20, 200 * time.Millisecond
	check := func(t *testing.T, s *Server, call func() error) {
		start := time.Now()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if err := call(); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if took := time.Since(start); took < floor {
			t.Errorf("%d requests took %s with 2 slots of 20 ms, want at least %s", n, took, floor)
		}
		if st := s.Stats(); st.Delayed != n || st.Waiting != 0 {
			t.Errorf("stats %+v, want %d delayed and none waiting", st, n)
		}
	}
	matrix(t, Config{Behaviour: b}, func(t *testing.T, c *client) {
		check(t, c.s, func() error {
			if code := c.statusOnly(t.Context(), http.MethodGet, "/"); code != http.StatusOK {
				return fmt.Errorf("GET / = %d, want 200", code)
			}
			return nil
		})
	})
	grpcMatrix(t, Config{Behaviour: b}, func(t *testing.T, s *Server, cc *grpc.ClientConn) {
		check(t, s, func() error {
			_, err := Echo(t.Context(), cc, []byte("x"))
			return err
		})
	})
}
