// Package retry decides whether a failed request may be tried again: the
// route rule's retry policy (the Gateway API's HTTPRouteRetry: which
// outcomes, how many attempts), the retry budget of a backend (the
// XBackendTrafficPolicy retryConstraint) and the backoff before each
// attempt (retry.backoff).
//
// The decisions are pure: the time is passed in and the randomness is a
// source the caller seeds, so the same code runs in the proxy, in tests
// under testing/synctest and in a virtual-time simulator.
package retry

import (
	"fmt"
	"sync"
	"time"
)

// Defaults of a [BudgetConfig] field left at zero: the Gateway API's.
const (
	DefaultPercent     = 20
	DefaultInterval    = 10 * time.Second
	DefaultMinRetries  = 10
	DefaultMinInterval = time.Second
)

// buckets is the resolution of a window: it slides by 1/buckets of its
// length, so a count leaves it within that much of its age.
const buckets = 10

// BudgetConfig is a retry budget. The zero value is the Gateway API's
// default: retries may be 20 % of the requests of the last 10 s, and at
// least 10 retries a second are allowed whatever the traffic.
type BudgetConfig struct {
	// Percent is the most retries may be of all requests (retries
	// included) over Interval, 0..100. Nil means DefaultPercent; 0 allows
	// only the minimum rate.
	Percent *int
	// Interval is the window the budget counts over (budget.interval).
	// Zero means DefaultInterval.
	Interval time.Duration
	// MinRetries retries per MinInterval are allowed whatever Percent says
	// (minRetryRate), so that a backend with little traffic can still be
	// retried. Nil means DefaultMinRetries; 0 means none.
	MinRetries *int
	// MinInterval is minRetryRate.interval. Zero means DefaultMinInterval.
	MinInterval time.Duration
}

func (c BudgetConfig) normalize() (pct float64, interval time.Duration, minN int, minInterval time.Duration, err error) {
	pct, interval, minN, minInterval = DefaultPercent, c.Interval, DefaultMinRetries, c.MinInterval
	if c.Percent != nil {
		if *c.Percent < 0 || *c.Percent > 100 {
			return 0, 0, 0, 0, fmt.Errorf("retry budget: percent %d is outside 0..100", *c.Percent)
		}
		pct = float64(*c.Percent)
	}
	if c.MinRetries != nil {
		if *c.MinRetries < 0 {
			return 0, 0, 0, 0, fmt.Errorf("retry budget: minimum retries %d is negative", *c.MinRetries)
		}
		minN = *c.MinRetries
	}
	if interval == 0 {
		interval = DefaultInterval
	}
	if minInterval == 0 {
		minInterval = DefaultMinInterval
	}
	if interval < buckets*time.Millisecond || minInterval < buckets*time.Millisecond {
		return 0, 0, 0, 0, fmt.Errorf("retry budget: intervals %v and %v must be at least %v", interval, minInterval, buckets*time.Millisecond)
	}
	return pct / 100, interval, minN, minInterval, nil
}

// Budget is one backend's retry budget. Its methods are safe for
// concurrent use; each takes a short lock and does not allocate.
type Budget struct {
	pct     float64
	minN    int
	mu      sync.Mutex
	budget  window // requests and retries over Interval
	minRate window // retries over MinInterval
}

// NewBudget returns the budget c describes, or an error naming the field
// that is out of range.
func NewBudget(c BudgetConfig) (*Budget, error) {
	pct, interval, minN, minInterval, err := c.normalize()
	if err != nil {
		return nil, err
	}
	return &Budget{pct: pct, minN: minN, budget: newWindow(interval), minRate: newWindow(minInterval)}, nil
}

// Request counts an original request (not a retry) sent at now.
func (b *Budget) Request(now time.Time) {
	b.mu.Lock()
	b.budget.add(now, 1, 0)
	b.mu.Unlock()
}

// Retry says whether a retry may be sent at now, and counts it when it
// may. It may when retries, this one included, stay within Percent of all
// requests over Interval, or within MinRetries over MinInterval. When it
// may not, the caller returns the original failure.
func (b *Budget) Retry(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, r := b.budget.sum(now)
	_, recent := b.minRate.sum(now)
	if float64(r+1) > b.pct*float64(n+r+1) && recent+1 > int64(b.minN) {
		return false
	}
	b.budget.add(now, 0, 1)
	b.minRate.add(now, 0, 1)
	return true
}

// Counts are the requests and retries within the budget's interval at now.
func (b *Budget) Counts(now time.Time) (requests, retries int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.budget.sum(now)
}

// window counts requests and retries over a sliding span of time in
// buckets of span/buckets.
type window struct {
	width    int64 // a bucket's span, ns
	head     int64 // the index (time / width) of the newest bucket
	requests [buckets]int64
	retries  [buckets]int64
}

func newWindow(span time.Duration) window {
	return window{width: int64(span) / buckets}
}

// advance moves the window to now, emptying the buckets that fell out.
// Time never goes back: a now older than the newest bucket counts in it.
func (w *window) advance(now time.Time) int {
	i := now.UnixNano() / w.width
	if i > w.head {
		for k := w.head + 1; k <= i && k <= w.head+buckets; k++ {
			w.requests[k%buckets], w.retries[k%buckets] = 0, 0
		}
		w.head = i
	}
	return int(w.head % buckets)
}

func (w *window) add(now time.Time, requests, retries int64) {
	i := w.advance(now)
	w.requests[i] += requests
	w.retries[i] += retries
}

func (w *window) sum(now time.Time) (requests, retries int64) {
	w.advance(now)
	for i := range buckets {
		requests += w.requests[i]
		retries += w.retries[i]
	}
	return requests, retries
}
