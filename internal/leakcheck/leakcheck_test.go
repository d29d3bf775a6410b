package leakcheck

import (
	"testing"
	"time"
)

// fakeT collects what check registers and reports.
type fakeT struct {
	testing.TB
	cleanup func()
	failed  bool
}

func (f *fakeT) Cleanup(fn func())     { f.cleanup = fn }
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Helper()               {}

func TestExitedGoroutineIsNoLeak(t *testing.T) {
	f := &fakeT{TB: t}
	check(f, time.Second)
	stop := make(chan struct{})
	exited := make(chan struct{})
	go func() { <-stop; close(exited) }()
	close(stop)
	<-exited
	f.cleanup()
	if f.failed {
		t.Fatal("a goroutine that had exited was reported as a leak")
	}
}

func TestLeakIsReported(t *testing.T) {
	f := &fakeT{TB: t}
	check(f, 50*time.Millisecond)
	stop := make(chan struct{})
	defer close(stop)
	go func() { <-stop }()
	f.cleanup()
	if !f.failed {
		t.Fatal("a goroutine still running was not reported")
	}
}
