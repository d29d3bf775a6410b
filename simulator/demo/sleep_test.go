package demo

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestSleep runs in a synctest bubble: fake time, no real waiting.
func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		if !sleep(t.Context(), time.Hour) {
			t.Error("sleep ended early")
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan bool)
		go func() { done <- sleep(ctx, time.Hour) }()
		synctest.Wait() // the goroutine is parked in sleep
		cancel()
		if <-done {
			t.Error("sleep ignored cancellation")
		}
		if sleep(ctx, 0) {
			t.Error("sleep(0) on a cancelled context reported success")
		}
	})
}
