// Package leakcheck fails a test whose goroutines outlive it: every Skiff
// test that starts servers, proxies or clients calls Check first.
package leakcheck

import (
	"runtime"
	"testing"
	"time"
)

// Timeout is how long Check waits for goroutines to exit.
const Timeout = 10 * time.Second

// Check records the number of goroutines now, and, once the test's other
// cleanups have run, fails it if more are still alive after Timeout,
// printing every stack. Call it before starting anything: cleanups run
// last-in first-out, so its check comes after the servers are closed.
func Check(t testing.TB) {
	t.Helper()
	check(t, Timeout)
}

func check(t testing.TB, timeout time.Duration) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(timeout)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d before the test, %d after:\n%s", before, n, buf)
				return
			}
			time.Sleep(10 * time.Millisecond) // polling for exit, not timing anything
		}
	})
}
