// Package route holds what the proxy does with the requests of each
// outbound authority beyond choosing an endpoint: the route's timeouts,
// its retries and their budget, and the circuit breaker of its endpoints.
//
// A [Table] is read on every request without a lock and replaced as a
// whole: a new set of routes is checked completely before it is taken, and
// one that fails the check leaves the previous set in place. The routes
// come from a file (the proxy's --routes flag, [Parse]) or from the control
// plane's Policy API (a [Source], per authority, compiled with [Compile]);
// both produce the same [Route] values.
package route

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// MaxRoutes bounds the routes of one table.
const MaxRoutes = 10000

// Route is the policy of one outbound authority: one rule that takes every
// request (request matching arrives with the routing issue).
type Route struct {
	// Authority is the host:port the route applies to, as requests name it
	// (Host or :authority); it is compared in lower case.
	Authority string
	// Name labels the route on metrics and in logs.
	Name string
	// Timeouts bound the request and each attempt.
	Timeouts timeout.Route
	// Retry says which failed attempts are retried; its zero value none.
	Retry retry.Policy
	// MaxBackoff caps the wait between retries; zero means ten times
	// Retry.Backoff.
	MaxBackoff time.Duration
	// Budget caps the retries sent to the authority's backend relative to
	// its requests. It applies whenever Retry.Attempts > 0.
	Budget retry.BudgetConfig
	// Breaker, when set, ejects the authority's failing endpoints.
	Breaker *breaker.Config
}

// Validate checks r, naming the field that is wrong.
func (r *Route) Validate() error {
	var errs []error
	if r.Authority == "" {
		errs = append(errs, errors.New("authority is empty"))
	}
	if err := r.Timeouts.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := r.Retry.Validate(); err != nil {
		errs = append(errs, err)
	}
	if r.MaxBackoff < 0 {
		errs = append(errs, fmt.Errorf("retry: maximum backoff %v is negative", r.MaxBackoff))
	}
	if _, err := retry.NewBudget(r.Budget); err != nil {
		errs = append(errs, err)
	}
	if r.Breaker != nil {
		if _, err := breaker.New(*r.Breaker); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Compiled is a route ready for the request path: its budget and its
// source of backoff jitter are shared by every request of the route.
type Compiled struct {
	Route
	budget *retry.Budget

	mu  sync.Mutex
	rnd *rand.Rand
}

// Retries reports whether the route retries anything.
func (c *Compiled) Retries() bool { return c != nil && c.Retry.Attempts > 0 }

// Budget is the route's retry budget; nil when it does not retry.
func (c *Compiled) Budget() *retry.Budget { return c.budget }

// Backoff is the wait before retry n (1 for the first).
func (c *Compiled) Backoff(n int) time.Duration {
	limit := c.MaxBackoff
	if limit <= 0 {
		limit = 10 * c.Retry.Backoff
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return retry.Backoff(c.Retry.Backoff, limit, n, c.rnd)
}

// Table maps authorities to their compiled routes. The zero Table has no
// route. Lookup is safe for concurrent use with Replace.
type Table struct {
	m        atomic.Pointer[map[string]*Compiled]
	seed     atomic.Uint64
	version  atomic.Uint64
	rejected atomic.Uint64
}

// Lookup returns the route of authority, or nil when it has none.
// Authorities are compared in lower case.
func (t *Table) Lookup(authority string) *Compiled {
	if t == nil {
		return nil
	}
	m := t.m.Load()
	if m == nil {
		return nil
	}
	if c := (*m)[authority]; c != nil {
		return c
	}
	for i := 0; i < len(authority); i++ {
		if c := authority[i]; 'A' <= c && c <= 'Z' {
			return (*m)[strings.ToLower(authority)]
		}
	}
	return nil
}

// Len is the number of routes in force.
func (t *Table) Len() int {
	if m := t.m.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// Rejected counts the sets of routes refused, by Replace or a file that
// did not parse.
func (t *Table) Rejected() uint64 { return t.rejected.Load() }

// Version counts the sets of routes taken, 0 before the first.
func (t *Table) Version() uint64 { return t.version.Load() }

// SeedValue is the seed Seed set, 0 before.
func (t *Table) SeedValue() uint64 { return t.seed.Load() }

// Seed sets the seed of the routes' backoff jitter from the next Replace
// on; a run that seeds it draws the same waits every time.
func (t *Table) Seed(s uint64) { t.seed.Store(s) }

// Replace takes routes as the whole new set, after checking every one of
// them. On an error, which names each route that is wrong by its index and
// authority, the table keeps the set it had. A route that keeps its
// authority and its budget settings keeps its budget's counts, so a new
// set does not hand out a fresh allowance of retries.
func (t *Table) Replace(routes []Route) error {
	if len(routes) > MaxRoutes {
		t.rejected.Add(1)
		return fmt.Errorf("%d routes: at most %d are allowed", len(routes), MaxRoutes)
	}
	var errs []error
	seen := make(map[string]int, len(routes))
	for i := range routes {
		r := &routes[i]
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("route %d (%q): %w", i, r.Authority, err))
		}
		a := strings.ToLower(r.Authority)
		if j, dup := seen[a]; dup && a != "" {
			errs = append(errs, fmt.Errorf("route %d (%q): the authority already has route %d", i, r.Authority, j))
		}
		seen[a] = i
	}
	if err := errors.Join(errs...); err != nil {
		t.rejected.Add(1)
		return err
	}
	old := t.m.Load()
	seed := t.seed.Load()
	m := make(map[string]*Compiled, len(routes))
	for i, r := range routes {
		r.Authority = strings.ToLower(r.Authority)
		var prev *Compiled
		if old != nil {
			prev = (*old)[r.Authority]
		}
		m[r.Authority] = compile(r, prev, seed, uint64(i))
	}
	t.m.Store(&m)
	t.version.Add(1)
	return nil
}

// Compile checks r and readies it for the request path. prev, the route
// r replaces (nil for none), hands its retry budget on when the budget's
// settings are the same, so a new version of a route does not hand out a
// fresh allowance of retries. seed seeds the backoff jitter.
func Compile(r Route, prev *Compiled, seed uint64) (*Compiled, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return compile(r, prev, seed, 0), nil
}

func compile(r Route, prev *Compiled, seed, stream uint64) *Compiled {
	c := &Compiled{Route: r, rnd: rand.New(rand.NewPCG(seed, stream))}
	if r.Retry.Attempts > 0 {
		if prev != nil && prev.budget != nil && sameBudget(r.Budget, prev.Route.Budget) {
			c.budget = prev.budget
		}
		if c.budget == nil {
			c.budget, _ = retry.NewBudget(r.Budget) // validated by the caller
		}
	}
	return c
}

// Source streams the route of each outbound authority, as the control
// plane's Policy API does (mesh/proxy/control.PolicySource).
type Source interface {
	// Watch blocks until ctx is done or the source gives up on authority,
	// calling fn with each new route of authority: nil when it has none.
	// A route it hands over has been checked (Route.Validate).
	Watch(ctx context.Context, authority string, fn func(*Route))
}

func sameBudget(a, b retry.BudgetConfig) bool {
	eq := func(x, y *int) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return eq(a.Percent, b.Percent) && eq(a.MinRetries, b.MinRetries) && a.Interval == b.Interval && a.MinInterval == b.MinInterval
}
