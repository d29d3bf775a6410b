package retry

import (
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func ptr(v int) *int { return &v }

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// The Gateway API's example: with 1,000 requests in the interval and the
// default 20 %, retries may make up a fifth of all requests.
func TestBudgetPercent(t *testing.T) {
	b, err := NewBudget(BudgetConfig{MinRetries: ptr(0)})
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		b.Request(t0)
	}
	allowed := 0
	for b.Retry(t0) {
		allowed++
	}
	// r retries of 1000+r requests: r ≤ 0.2 (1000 + r) → r ≤ 250.
	if allowed != 250 {
		t.Errorf("%d retries allowed, want 250 (20 %% of 1,250)", allowed)
	}
	if n, r := b.Counts(t0); n != 1000 || r != 250 {
		t.Errorf("counts %d requests, %d retries", n, r)
	}
}

// Counts leave the window as it slides: once the interval has passed,
// nothing of it remains, and retries are allowed again as new requests
// come.
func TestBudgetSlides(t *testing.T) {
	b, _ := NewBudget(BudgetConfig{Percent: ptr(10), Interval: 10 * time.Second, MinRetries: ptr(0)})
	for range 100 {
		b.Request(t0)
	}
	for b.Retry(t0) {
	}
	if b.Retry(t0.Add(9 * time.Second)) {
		t.Error("a retry allowed within the interval with the budget spent")
	}
	if n, r := b.Counts(t0.Add(11 * time.Second)); n != 0 || r != 0 {
		t.Errorf("after the interval: %d requests, %d retries still counted", n, r)
	}
	if b.Retry(t0.Add(11 * time.Second)) {
		t.Error("a retry allowed with no request in the interval and no minimum rate")
	}
	for range 10 {
		b.Request(t0.Add(11 * time.Second))
	}
	if !b.Retry(t0.Add(11 * time.Second)) {
		t.Error("no retry allowed for 10 fresh requests at 10 %")
	}
	// A clock that goes back counts in the newest bucket.
	b.Request(t0)
	if n, _ := b.Counts(t0.Add(11 * time.Second)); n != 11 {
		t.Errorf("a request from the past: %d requests counted, want 11", n)
	}
}

// minRetryRate lets a quiet backend be retried, and no more than that.
func TestBudgetMinimumRate(t *testing.T) {
	b, _ := NewBudget(BudgetConfig{Percent: ptr(0), MinRetries: ptr(3), MinInterval: time.Second})
	allowed := 0
	for b.Retry(t0) {
		allowed++
	}
	if allowed != 3 {
		t.Errorf("%d retries allowed at 0 %% with a minimum of 3/s, want 3", allowed)
	}
	if !b.Retry(t0.Add(1100 * time.Millisecond)) {
		t.Error("the minimum rate did not come back a second later")
	}
}

// A backend hard down: every request fails and is retried as long as the
// budget allows. Retries stay within 20 % of all requests plus the
// minimum rate: no storm.
func TestBudgetNoStorm(t *testing.T) {
	b, _ := NewBudget(BudgetConfig{})
	var sent, retries int
	for ms := range 20_000 { // 20 s at 500 requests a second
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if ms%2 != 0 {
			continue
		}
		b.Request(now)
		sent++
		for attempt := 0; attempt < 3 && b.Retry(now); attempt++ {
			retries++
		}
	}
	// Over 20 s: 20 % of all requests, and at most 10 a second on top.
	limit := int(0.2/0.8*float64(sent)) + 10*20
	if retries > limit {
		t.Errorf("%d retries for %d requests: over %d", retries, sent, limit)
	}
	if retries < sent/5 {
		t.Errorf("%d retries for %d requests: the budget allows about a quarter", retries, sent)
	}
}

func TestBudgetConfigErrors(t *testing.T) {
	for _, c := range []BudgetConfig{
		{Percent: ptr(101)},
		{Percent: ptr(-1)},
		{MinRetries: ptr(-1)},
		{Interval: time.Millisecond},
		{MinInterval: time.Nanosecond},
	} {
		if _, err := NewBudget(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// Under virtual time, as the proxy will run it: the clock is time.Now.
func TestBudgetSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := NewBudget(BudgetConfig{Percent: ptr(50), Interval: time.Second, MinRetries: ptr(0)})
		b.Request(time.Now())
		b.Request(time.Now())
		first, second, third := b.Retry(time.Now()), b.Retry(time.Now()), b.Retry(time.Now())
		if !first || !second || third {
			t.Fatal("50 % of 2 requests: want 2 retries and no third")
		}
		time.Sleep(1100 * time.Millisecond)
		if n, r := b.Counts(time.Now()); n != 0 || r != 0 {
			t.Errorf("a virtual second later: %d requests, %d retries", n, r)
		}
	})
}

func TestBudgetConcurrent(t *testing.T) {
	b, _ := NewBudget(BudgetConfig{MinRetries: ptr(0)})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				b.Request(t0)
				if b.Retry(t0) {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if n, r := b.Counts(t0); n != 8000 || int(r) != allowed || float64(r) > 0.2*float64(n+r)+1 {
		t.Errorf("%d requests, %d retries (%d allowed)", n, r, allowed)
	}
}

func TestBackoff(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		base, limit time.Duration
		n           int
		lo, hi      time.Duration
	}{
		{25 * time.Millisecond, time.Second, 1, 25 * time.Millisecond, 37500 * time.Microsecond},
		{25 * time.Millisecond, time.Second, 3, 100 * time.Millisecond, 150 * time.Millisecond},
		{25 * time.Millisecond, time.Second, 20, time.Second, time.Second},
		{25 * time.Millisecond, 0, 30, DefaultMaxBackoff, DefaultMaxBackoff},
		{2 * time.Second, time.Second, 1, 2 * time.Second, 2 * time.Second}, // base above the cap wins
		{0, time.Second, 5, 0, 0},
	} {
		for range 200 {
			if d := Backoff(tc.base, tc.limit, tc.n, rnd); d < tc.lo || d > tc.hi {
				t.Fatalf("Backoff(%v, %v, %d) = %v, want within [%v, %v]", tc.base, tc.limit, tc.n, d, tc.lo, tc.hi)
			}
		}
	}
	// The same seed, the same waits.
	a, b := rand.New(rand.NewPCG(7, 7)), rand.New(rand.NewPCG(7, 7))
	for n := 1; n < 10; n++ {
		if x, y := Backoff(10*time.Millisecond, time.Second, n, a), Backoff(10*time.Millisecond, time.Second, n, b); x != y {
			t.Fatalf("attempt %d: %v and %v from the same seed", n, x, y)
		}
	}
}

func BenchmarkBudget(b *testing.B) {
	bud, _ := NewBudget(BudgetConfig{})
	now := t0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Millisecond)
		bud.Request(now)
		if i%10 == 0 {
			bud.Retry(now)
		}
	}
}
