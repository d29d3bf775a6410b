// Package breaker is the circuit breaker of one endpoint: failure accrual
// (consecutive failures, or the success rate over a window), ejection for
// a time that doubles with each ejection, then probation, when real
// requests are let through one at a time until one succeeds.
//
// Like package balance, the decisions are pure: the time is passed in, so
// the same code runs in the proxy, in tests under testing/synctest and in
// a virtual-time simulator. A 429 or RESOURCE_EXHAUSTED answer is
// backpressure, not failure: the caller does not report it here.
package breaker

import (
	"fmt"
	"sync"
	"time"
)

// Defaults of a [Config] field left at zero.
const (
	// DefaultConsecutiveFailures is Linkerd's consecutive-failure accrual.
	DefaultConsecutiveFailures = 7
	DefaultWindow              = 10 * time.Second
	DefaultMinRequests         = 20
	DefaultBaseEjection        = time.Second
	DefaultMaxEjection         = time.Minute
)

// Config configures a [Breaker]. The zero value ejects an endpoint after
// 7 consecutive failures, for 1 s doubling up to 1 min, and does not judge
// the success rate.
type Config struct {
	// ConsecutiveFailures trips the breaker; zero means
	// DefaultConsecutiveFailures, a negative value turns it off.
	ConsecutiveFailures int
	// MinSuccessRate, when above zero, also trips the breaker when the
	// success rate over Window falls below it with at least MinRequests
	// outcomes in the window.
	MinSuccessRate float64
	Window         time.Duration // zero means DefaultWindow
	MinRequests    int           // zero means DefaultMinRequests
	// BaseEjection is the first ejection's length; each further ejection
	// without a healthy MaxEjection in between doubles it, up to
	// MaxEjection. Zero means the defaults.
	BaseEjection, MaxEjection time.Duration
}

// State is a breaker's state.
type State int

// The states, as the metric's label values name them.
const (
	Closed    State = iota // requests flow; failures accrue
	Open                   // ejected: no request until the ejection ends
	Probation              // one request at a time; its outcome decides
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case Probation:
		return "probation"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

const buckets = 10

// Breaker is one endpoint's breaker. Its methods are safe for concurrent
// use and do not allocate.
type Breaker struct {
	cfg Config
	mu  sync.Mutex

	state       State
	consecutive int
	ejections   int       // ejections since the endpoint was last healthy for MaxEjection
	until       time.Time // Open: the end of the ejection
	since       time.Time // Closed: when it closed
	probing     bool      // Probation: a probe is in flight

	width      int64 // ns per bucket of the success-rate window
	head       int64
	ok, failed [buckets]int64
}

// New returns a breaker configured by c, or an error naming the field
// out of range.
func New(c Config) (*Breaker, error) {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if c.MinSuccessRate < 0 || c.MinSuccessRate > 1 {
		return nil, fmt.Errorf("breaker: minimum success rate %v is outside 0..1", c.MinSuccessRate)
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.BaseEjection == 0 {
		c.BaseEjection = DefaultBaseEjection
	}
	if c.MaxEjection == 0 {
		c.MaxEjection = max(DefaultMaxEjection, c.BaseEjection)
	}
	switch {
	case c.Window < buckets*time.Millisecond:
		return nil, fmt.Errorf("breaker: window %v is shorter than %v", c.Window, buckets*time.Millisecond)
	case c.MinRequests < 0:
		return nil, fmt.Errorf("breaker: minimum requests %d is negative", c.MinRequests)
	case c.BaseEjection < 0 || c.MaxEjection < c.BaseEjection:
		return nil, fmt.Errorf("breaker: ejection %v..%v is not a range", c.BaseEjection, c.MaxEjection)
	}
	return &Breaker{cfg: c, width: int64(c.Window) / buckets}, nil
}

// Allow says whether a request may be sent to the endpoint at now. In
// probation it allows one request until that one is reported; the caller
// must Report every request Allow let through.
func (b *Breaker) Allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.stateLocked(now) {
	case Closed:
		return true
	case Probation:
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
	return false
}

// Report records the outcome of a request sent at Allow's word: ok is
// false for a failure (a connection error, a 5xx, a gRPC UNAVAILABLE…),
// true otherwise. It returns the state after it.
func (b *Breaker) Report(now time.Time, ok bool) State {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.stateLocked(now) {
	case Probation:
		b.probing = false
		if ok {
			b.close(now)
		} else {
			b.eject(now)
		}
	case Closed:
		b.record(now, ok)
		if ok {
			b.consecutive = 0
		} else {
			b.consecutive++
		}
		if b.tripped(now) {
			b.eject(now)
		}
	}
	// An outcome reported while Open (a request sent before the ejection)
	// changes nothing.
	return b.state
}

// State is the state at now.
func (b *Breaker) State(now time.Time) State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stateLocked(now)
}

// Ejections is the number of ejections in a row, the last included; 0
// once the endpoint has been healthy for MaxEjection.
func (b *Breaker) Ejections(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stateLocked(now)
	return b.ejections
}

func (b *Breaker) stateLocked(now time.Time) State {
	switch b.state {
	case Open:
		if !now.Before(b.until) {
			b.state, b.probing = Probation, false
		}
	case Closed:
		if b.ejections > 0 && now.Sub(b.since) >= b.cfg.MaxEjection {
			b.ejections = 0
		}
	}
	return b.state
}

func (b *Breaker) tripped(now time.Time) bool {
	if b.cfg.ConsecutiveFailures > 0 && b.consecutive >= b.cfg.ConsecutiveFailures {
		return true
	}
	if b.cfg.MinSuccessRate <= 0 {
		return false
	}
	var ok, failed int64
	b.advance(now)
	for i := range buckets {
		ok += b.ok[i]
		failed += b.failed[i]
	}
	n := ok + failed
	return n >= int64(b.cfg.MinRequests) && n > 0 && float64(ok) < b.cfg.MinSuccessRate*float64(n)
}

func (b *Breaker) eject(now time.Time) {
	d := b.cfg.BaseEjection
	for i := 0; i < b.ejections && d < b.cfg.MaxEjection; i++ {
		d *= 2
	}
	b.ejections++
	b.state, b.until, b.probing = Open, now.Add(min(d, b.cfg.MaxEjection)), false
}

func (b *Breaker) close(now time.Time) {
	b.state, b.since, b.consecutive = Closed, now, 0
	b.ok, b.failed = [buckets]int64{}, [buckets]int64{}
}

func (b *Breaker) advance(now time.Time) int {
	i := now.UnixNano() / b.width
	if i > b.head {
		for k := b.head + 1; k <= i && k <= b.head+buckets; k++ {
			b.ok[k%buckets], b.failed[k%buckets] = 0, 0
		}
		b.head = i
	}
	return int(b.head % buckets)
}

func (b *Breaker) record(now time.Time, ok bool) {
	i := b.advance(now)
	if ok {
		b.ok[i]++
	} else {
		b.failed[i]++
	}
}
