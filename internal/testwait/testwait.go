// Package testwait is the one way Skiff's tests wait for something to
// happen: they poll the observable event (a metric moved, a file was
// applied, a process answered) instead of sleeping and hoping, so a slow
// machine makes a test slower, never wrong.
package testwait

import (
	"fmt"
	"testing"
	"time"
)

// Timeout is For's default deadline: long, because reaching it means the
// event did not happen, and only a failing test ever waits that long.
const Timeout = 20 * time.Second

// interval is the polling period; short, since each check is cheap.
const interval = 5 * time.Millisecond

// For calls cond until it returns true and fails tb (naming what) if it
// has not within Timeout. cond's error, when it returns false, is kept and
// printed on failure, so the message says what was last seen.
func For(tb testing.TB, what string, cond func() (bool, error)) {
	tb.Helper()
	if err := Until(Timeout, cond); err != nil {
		tb.Fatalf("waiting for %s: %v", what, err)
	}
}

// Until calls cond until it returns true, or returns an error, naming the
// last one cond gave, once timeout has passed. For helpers that cannot
// fail a test themselves (a goroutine, a TestMain).
func Until(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("not within %v; last: %w", timeout, last)
			}
			return fmt.Errorf("not within %v", timeout)
		}
		time.Sleep(interval) // polling the event, not timing it
	}
}
