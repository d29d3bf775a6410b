package telemetry

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
)

// goroutines scrapes r and returns the go_goroutines sample.
func goroutines(t *testing.T, r *Registry) int {
	t.Helper()
	var b strings.Builder
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	typed := false
	for sc.Scan() {
		line := sc.Text()
		if line == "# TYPE go_goroutines gauge" {
			typed = true
		}
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			if !typed {
				t.Errorf("go_goroutines has no TYPE line before its sample")
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("go_goroutines %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no go_goroutines in the exposition:\n%s", b.String())
	return 0
}

// TestGoroutines: the exposition carries the goroutines that exist at
// scrape time, under the Go collector's name, so that a soak can see a
// proxy that keeps one per connection.
func TestGoroutines(t *testing.T) {
	r := New()
	before := goroutines(t, r)
	if before < 1 {
		t.Fatalf("go_goroutines %d: at least the test's own goroutine exists", before)
	}
	const parked = 25
	release := make(chan struct{})
	started := make(chan struct{})
	for range parked {
		go func() {
			started <- struct{}{}
			<-release
		}()
	}
	for range parked {
		<-started
	}
	during := goroutines(t, r)
	close(release)
	if during < before+parked {
		t.Errorf("go_goroutines %d with %d more goroutines parked, %d before", during, parked, before)
	}
}
