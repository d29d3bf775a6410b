package breaker

import (
	"testing"
	"testing/synctest"
	"time"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func must(t *testing.T, c Config) *Breaker {
	t.Helper()
	b, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Seven failures in a row eject; one success in between starts the count
// again.
func TestConsecutiveFailures(t *testing.T) {
	b := must(t, Config{})
	for range 6 {
		b.Report(t0, false)
	}
	b.Report(t0, true)
	for i := range 6 {
		if s := b.Report(t0, false); s != Closed {
			t.Fatalf("failure %d after a success: %s", i+1, s)
		}
	}
	if s := b.Report(t0, false); s != Open {
		t.Fatalf("seventh consecutive failure: %s, want open", s)
	}
	if b.Allow(t0.Add(999 * time.Millisecond)) {
		t.Error("a request allowed during the 1 s ejection")
	}
}

// After the ejection one probe at a time goes through; its failure ejects
// again for twice as long, its success closes the breaker.
func TestProbationAndBackoff(t *testing.T) {
	b := must(t, Config{ConsecutiveFailures: 1, BaseEjection: time.Second, MaxEjection: 3 * time.Second})
	b.Report(t0, false)
	now := t0.Add(time.Second)
	if s := b.State(now); s != Probation {
		t.Fatalf("after the ejection: %s", s)
	}
	if !b.Allow(now) || b.Allow(now) {
		t.Fatal("probation must let exactly one request through")
	}
	if s := b.Report(now, false); s != Open {
		t.Fatalf("failed probe: %s", s)
	}
	if b.State(now.Add(1999*time.Millisecond)) != Open || b.State(now.Add(2*time.Second)) != Probation {
		t.Error("the second ejection should last 2 s")
	}
	now = now.Add(2 * time.Second)
	b.Allow(now)
	b.Report(now, false)
	if b.State(now.Add(2999*time.Millisecond)) != Open || b.State(now.Add(3*time.Second)) != Probation {
		t.Error("the third ejection should be capped at 3 s")
	}
	now = now.Add(3 * time.Second)
	b.Allow(now)
	if s := b.Report(now, true); s != Closed {
		t.Fatalf("a successful probe: %s", s)
	}
	if n := b.Ejections(now); n != 3 {
		t.Errorf("ejections in a row: %d, want 3", n)
	}
	if n := b.Ejections(now.Add(3 * time.Second)); n != 0 {
		t.Errorf("healthy for MaxEjection: %d ejections remembered", n)
	}
	if !b.Allow(now) {
		t.Error("closed must allow")
	}
}

// The success rate over the window trips the breaker only with enough
// outcomes, and old outcomes leave the window.
func TestSuccessRate(t *testing.T) {
	b := must(t, Config{ConsecutiveFailures: -1, MinSuccessRate: 0.8, Window: 10 * time.Second, MinRequests: 20})
	for i := range 19 {
		b.Report(t0, i%2 == 0) // half fail, but only 19 outcomes
	}
	if s := b.State(t0); s != Closed {
		t.Fatalf("19 outcomes: %s", s)
	}
	later := t0.Add(11 * time.Second) // the 19 are gone
	for i := range 20 {
		if s := b.Report(later, i%10 != 0); s != Closed { // 90 %
			t.Fatalf("90 %% success: %s", s)
		}
	}
	for range 3 {
		b.Report(later, false)
	}
	if s := b.State(later); s != Open {
		t.Fatalf("18 of 23: %s, want open", s)
	}
}

// An outcome of a request sent before the ejection changes nothing.
func TestLateReport(t *testing.T) {
	b := must(t, Config{ConsecutiveFailures: 1})
	b.Report(t0, false)
	if s := b.Report(t0.Add(time.Millisecond), true); s != Open {
		t.Errorf("a late success while open: %s", s)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{MinSuccessRate: 1.5},
		{Window: time.Millisecond},
		{MinRequests: -1},
		{BaseEjection: 2 * time.Minute, MaxEjection: time.Minute},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// Under virtual time, as the proxy will run it.
func TestSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := must(t, Config{ConsecutiveFailures: 2})
		b.Report(time.Now(), false)
		b.Report(time.Now(), false)
		if b.Allow(time.Now()) {
			t.Fatal("allowed right after tripping")
		}
		time.Sleep(DefaultBaseEjection)
		if !b.Allow(time.Now()) {
			t.Fatal("no probe after the ejection")
		}
	})
}

func BenchmarkClosed(b *testing.B) {
	br, _ := New(Config{MinSuccessRate: 0.9})
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		if br.Allow(now) {
			br.Report(now, true)
		}
	}
}
