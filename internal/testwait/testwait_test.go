package testwait

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	if err := Until(time.Second, func() (bool, error) { return n.Add(1) >= 3, nil }); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 {
		t.Fatalf("cond called %d times, want 3", n.Load())
	}
	err := Until(20*time.Millisecond, func() (bool, error) { return false, errors.New("still 0 of 2") })
	if err == nil || !strings.Contains(err.Error(), "still 0 of 2") {
		t.Fatalf("got %v, want the last condition error", err)
	}
}
