package proxy

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/balance"
	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
)

// This file keeps what the request path knows of each endpoint's health
// beyond the balancer's latency estimate: its circuit breaker, when the
// route configures one, and the backpressure it asked for with a 429 or
// RESOURCE_EXHAUSTED answer. An endpoint whose breaker is open, or that
// asked to be left alone until its Retry-After, is passed over while
// another endpoint can take the request; a backpressured one is never
// ejected for it.

// maxRetryAfter bounds how long a 429's Retry-After steers traffic away.
const maxRetryAfter = time.Minute

// defaultRetryAfter is the wait a 429 without Retry-After asks for.
const defaultRetryAfter = time.Second

// endpointHealth is one endpoint's breaker and backpressure.
type endpointHealth struct {
	cfg       *breaker.Config  // what br was made from; nil: no breaker
	br        *breaker.Breaker // nil: no breaker
	throttled atomic.Int64     // Unix ns until which the endpoint is left alone
}

// health holds the endpointHealth of a destination's endpoints.
type health struct {
	mu        sync.Mutex
	m         map[*balance.Node]*endpointHealth
	throttles atomic.Int64 // Unix ns until which some endpoint may be throttled
}

// get returns n's health, with a breaker made from cfg when cfg is set;
// a new cfg replaces the breaker.
func (h *health) get(n *balance.Node, cfg *breaker.Config, nodes int) *endpointHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[*balance.Node]*endpointHealth)
	}
	e := h.m[n]
	if e == nil {
		if len(h.m) > 2*nodes+8 {
			clear(h.m) // endpoints that left: their health goes with them
		}
		e = &endpointHealth{}
		h.m[n] = e
	}
	if e.cfg != cfg {
		e.cfg, e.br = cfg, nil
		if cfg != nil {
			e.br, _ = breaker.New(*cfg) // validated with its route
		}
	}
	return e
}

// peek returns n's health if it has any.
func (h *health) peek(n *balance.Node) *endpointHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[n]
}

// gate says whether n may take a request now, and returns the health to
// report the outcome to (nil when nothing is tracked). cfg is the route's
// breaker; nil when it has none.
//
// Without a breaker and before any endpoint asked for backpressure it
// reads neither the clock nor a lock: the path of most requests.
func (d *destination) gate(n *balance.Node, cfg *breaker.Config) (*endpointHealth, bool) {
	if cfg == nil && d.health.throttles.Load() == 0 {
		return nil, true
	}
	now := time.Now()
	var e *endpointHealth
	switch {
	case cfg != nil:
		e = d.health.get(n, cfg, d.bal.Len())
	case d.health.throttles.Load() > now.UnixNano():
		e = d.health.peek(n)
	}
	if e == nil {
		return nil, true
	}
	if e.throttled.Load() > now.UnixNano() {
		return e, false
	}
	if e.br != nil && !e.br.Allow(now) && !plant.On(plant.BreakerOff) {
		return e, false
	}
	return e, true
}

// report tells n's health how an attempt allowed by gate ended. It
// reports whether the breaker opened on it (an ejection began).
func (d *destination) report(n *balance.Node, e *endpointHealth, resp *http.Response, failed bool, now time.Time) (ejected bool) {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.Header.Get("Grpc-Status") == "8") {
		wait := retryAfter(resp.Header.Get("Retry-After"), now)
		if e == nil {
			e = d.health.get(n, nil, d.bal.Len())
		}
		until := now.Add(wait).UnixNano()
		e.throttled.Store(until)
		if until > d.health.throttles.Load() {
			d.health.throttles.Store(until)
		}
	}
	if e != nil && e.br != nil {
		before := e.br.State(now)
		ejected = e.br.Report(now, !failed) == breaker.Open && before != breaker.Open
	}
	return ejected
}

// retryAfter reads a Retry-After value: seconds, or an HTTP date; bounded
// by maxRetryAfter, defaultRetryAfter when absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return defaultRetryAfter
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return defaultRetryAfter
		}
		return min(time.Duration(s)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return defaultRetryAfter
}

// breakerState is n's breaker state for the admin page, "none" without one.
func (d *destination) breakerState(n *balance.Node, now time.Time) string {
	e := d.health.peek(n)
	switch {
	case e == nil:
		return "none"
	case e.throttled.Load() > now.UnixNano():
		return "throttled"
	case e.br == nil:
		return "none"
	}
	return e.br.State(now).String()
}

// endpointStates emits, for the metrics, each watched authority's endpoints
// by the state its circuit breaker and backpressure give them
// (outbound_http_balancer_endpoints, Linkerd's name, with the states
// ready, probation, ejected and throttled), and one series per endpoint
// that has a breaker or was throttled (outbound_http_endpoint_state, the
// state as a label with value 1). Endpoints without either are ready and
// have no series of their own.
func (p *Proxy) endpointStates(perEndpoint bool, emit func(labels string, v float64)) {
	ds := p.destinations
	ds.mu.RLock()
	all := make([]*destination, 0, len(ds.m))
	for _, d := range ds.m {
		all = append(all, d)
	}
	ds.mu.RUnlock()
	slices.SortFunc(all, func(a, b *destination) int { return strings.Compare(a.authority, b.authority) })
	now := time.Now()
	for _, d := range all {
		auth := `authority="` + escapeLabel(d.authority) + `"`
		counts := map[string]int{"ready": 0, "probation": 0, "ejected": 0, "throttled": 0}
		for _, n := range d.bal.Nodes() {
			state := "ready"
			switch d.breakerState(n, now) {
			case "throttled":
				state = "throttled"
			case breaker.Open.String():
				state = "ejected"
			case breaker.Probation.String():
				state = "probation"
			}
			counts[state]++
			if perEndpoint && d.health.peek(n) != nil {
				emit(auth+`,endpoint="`+escapeLabel(n.Endpoint().Addr)+`",state="`+state+`"`, 1)
			}
		}
		if !perEndpoint {
			for _, s := range []string{"ready", "probation", "ejected", "throttled"} {
				emit(auth+`,endpoint_state="`+s+`"`, float64(counts[s]))
			}
		}
	}
}
