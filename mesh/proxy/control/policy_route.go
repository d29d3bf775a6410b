package control

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// maxRetryCodes bounds the distinct HTTP statuses a retry policy lists
// once its ranges and conditions are expanded. Only 400..599 pass
// retry.Policy.Validate, 200 statuses: a longer list is wrong anyway, and
// this stops it before it is built.
const maxRetryCodes = 200

// The retry conditions of skiff.policy.v1.RetryCondition.
const (
	conditionUnspecified    = 0
	conditionServerError    = 1
	conditionGatewayError   = 2
	conditionRetriable4xx   = 3
	conditionConnectFailure = 4
	conditionReset          = 5
	conditionTimeout        = 6
)

// ignored says which parts of a policy the proxy left out of its route:
// they are logged at Debug, once per watch.
type ignored uint8

const (
	ignoredBalancer ignored = 1 << iota
	ignoredIdle
	ignoredFailover
	ignoredCondition
)

// ignoredNotes are the log lines of each ignored part.
var ignoredNotes = [...]struct {
	bit ignored
	msg string
}{
	{ignoredBalancer, "policy: the balancer is ignored; the proxy balances with its own settings"},
	{ignoredIdle, "policy: the idle timeout is ignored; the proxy does not implement it yet"},
	{ignoredFailover, "policy: the backend's failover list is ignored; the proxy takes failover from its own configuration"},
	{ignoredCondition, "policy: a retry condition this proxy does not know is ignored"},
}

// Paths of the parts the proxy reads.
const (
	pathRule     = "routes[0].rules[0]"
	pathRetry    = pathRule + ".retry"
	pathBudget   = pathRetry + ".budget"
	pathTimeouts = pathRule + ".timeouts"
)

// notImplemented is the end of every error for a policy the proxy cannot
// apply yet.
const notImplemented = "the proxy does not implement it yet: it applies one route with one rule that matches every request and sends it to the watched authority"

// decodePolicy decodes an OutboundPolicy message for authority and maps
// it to the route the proxy applies: nil when the policy asks for nothing
// a route.Route holds. Every error is a *fieldError.
func decodePolicy(authority string, b []byte) (*route.Route, ignored, error) {
	p, err := decodeOutboundPolicy(b)
	if err != nil {
		return nil, 0, err
	}
	return p.route(authority)
}

// route maps p to the route of authority (see [PolicySource.Watch]),
// checked with route.Route.Validate; nil when p asks for no timeout,
// retry or breaker.
func (p *outboundPolicy) route(authority string) (*route.Route, ignored, error) {
	var ign ignored
	if p.balancer {
		ign |= ignoredBalancer
	}
	switch len(p.routes) {
	case 0:
		return nil, 0, fieldErrorf("routes", "empty; the control plane always sends one route at least")
	case 1:
	default:
		return nil, 0, fieldErrorf("routes", "%d routes: %s", len(p.routes), notImplemented)
	}
	pr := &p.routes[0]
	switch len(pr.rules) {
	case 0:
		return nil, 0, fieldErrorf("routes[0].rules", "empty; a route has one rule at least")
	case 1:
	default:
		return nil, 0, fieldErrorf("routes[0].rules", "%d rules: %s", len(pr.rules), notImplemented)
	}
	rule := &pr.rules[0]
	ruleIgn, err := rule.check(authority)
	if err != nil {
		return nil, 0, err
	}
	ign |= ruleIgn

	rt := &route.Route{Authority: authority}
	if pr.kind != "default" {
		rt.Name = pr.name
		if pr.namespace != "" {
			rt.Name = pr.namespace + "/" + pr.name
		}
	}
	if t := rule.timeouts; t != nil {
		var idle time.Duration
		var d durations
		d.set(&rt.Timeouts.Request, t.request, pathTimeouts+".request")
		d.set(&rt.Timeouts.BackendRequest, t.backendRequest, pathTimeouts+".backend_request")
		d.set(&idle, t.idle, pathTimeouts+".idle")
		if d.err != nil {
			return nil, 0, d.err
		}
		if idle != 0 {
			ign |= ignoredIdle
		}
		if err := rt.Timeouts.Validate(); err != nil {
			return nil, 0, &fieldError{path: pathTimeouts, err: err}
		}
	}
	if r := rule.retry; r != nil {
		condIgn, err := r.apply(rt)
		if err != nil {
			return nil, 0, err
		}
		ign |= condIgn
	}
	if b := p.breaker; b != nil {
		c, err := b.config()
		if err != nil {
			return nil, 0, err
		}
		rt.Breaker = c
	}
	if rt.Timeouts == (timeout.Route{}) && rule.retry == nil && p.breaker == nil {
		return nil, ign, nil // the control plane's default: nothing to hold
	}
	if err := rt.Validate(); err != nil {
		return nil, 0, &fieldError{err: err}
	}
	return rt, ign, nil
}

// check refuses a rule the proxy cannot apply as it is: one that does not
// match every request, has filters or faults, or sends anywhere but the
// watched authority.
func (r *policyRule) check(authority string) (ignored, error) {
	switch len(r.matches) {
	case 0:
	case 1:
		m := &r.matches[0]
		const path = pathRule + ".matches[0]"
		switch {
		case m.pathKind == pathExact:
			return 0, fieldErrorf(path+".path", "exact path %q: %s", m.path, notImplemented)
		case m.pathKind == pathRegex:
			return 0, fieldErrorf(path+".path", "path regex %q: %s", m.path, notImplemented)
		case m.pathKind == pathPrefix && m.path != "/":
			return 0, fieldErrorf(path+".path", "path prefix %q: %s", m.path, notImplemented)
		case m.headers > 0:
			return 0, fieldErrorf(path+".headers", "%d header matches: %s", m.headers, notImplemented)
		case m.queryParams > 0:
			return 0, fieldErrorf(path+".query_params", "%d query parameter matches: %s", m.queryParams, notImplemented)
		case m.method != "":
			return 0, fieldErrorf(path+".method", "method %q: %s", m.method, notImplemented)
		}
	default:
		return 0, fieldErrorf(pathRule+".matches", "%d matches: %s", len(r.matches), notImplemented)
	}
	if r.filters > 0 {
		return 0, fieldErrorf(pathRule+".filters", "%d filters: the proxy does not implement filters yet", r.filters)
	}
	if r.fault {
		return 0, fieldErrorf(pathRule+".fault", "the proxy does not implement fault injection yet")
	}
	if len(r.backends) != 1 {
		return 0, fieldErrorf(pathRule+".backends", "%d backends: %s", len(r.backends), notImplemented)
	}
	be := &r.backends[0]
	if !strings.EqualFold(be.authority, authority) {
		return 0, fieldErrorf(pathRule+".backends[0].authority", "%q is not the watched authority %q: %s", be.authority, authority, notImplemented)
	}
	if be.filters > 0 {
		return 0, fieldErrorf(pathRule+".backends[0].filters", "%d filters: the proxy does not implement filters yet", be.filters)
	}
	if be.failover > 0 {
		return ignoredFailover, nil
	}
	return 0, nil
}

// apply sets rt's Retry, MaxBackoff and Budget from r.
func (r *policyRetry) apply(rt *route.Route) (ignored, error) {
	var ign ignored
	p := retry.Policy{
		Attempts:      max(int(r.limit), 1),
		NonIdempotent: r.nonIdempotent,
		MaxBodyBytes:  int64(r.maxBodyBytes),
	}
	var seen [600]bool
	add := func(c int) error {
		if seen[c] {
			return nil
		}
		seen[c] = true
		if len(p.Codes) == maxRetryCodes {
			return fieldErrorf(pathRetry, "http_statuses and conditions give more than %d distinct statuses, the most the proxy accepts", maxRetryCodes)
		}
		p.Codes = append(p.Codes, c)
		return nil
	}
	for i, s := range r.statuses {
		lo, hi := s.min, s.max
		if hi == 0 {
			hi = lo
		}
		at := func() string { return fmt.Sprintf("%s.http_statuses[%d]", pathRetry, i) }
		switch {
		case lo < 100 || lo > 599:
			return 0, fieldErrorf(at(), "min %d is not 100..599", lo)
		case hi < 100 || hi > 599:
			return 0, fieldErrorf(at(), "max %d is not 100..599", hi)
		case hi < lo:
			return 0, fieldErrorf(at(), "max %d is below min %d", hi, lo)
		}
		for c := lo; c <= hi; c++ {
			if err := add(int(c)); err != nil {
				return 0, err
			}
		}
	}
	for _, c := range r.conditions {
		var lo, hi int
		switch c {
		case conditionServerError:
			lo, hi = 500, 599
		case conditionGatewayError:
			lo, hi = 502, 504
		case conditionRetriable4xx:
			lo, hi = 409, 409
		case conditionUnspecified, conditionConnectFailure, conditionReset, conditionTimeout:
			// Connect failures are always retried; resets and timeouts
			// the proxy treats itself.
			continue
		default:
			ign |= ignoredCondition // from a newer control plane
			continue
		}
		for s := lo; s <= hi; s++ {
			if err := add(s); err != nil {
				return 0, err
			}
		}
	}
	for _, c := range r.grpcCodes {
		p.GRPCCodes = append(p.GRPCCodes, int(c))
	}
	if bo := r.backoff; bo != nil {
		var d durations
		d.set(&p.Backoff, bo.base, pathRetry+".backoff.base")
		d.set(&rt.MaxBackoff, bo.max, pathRetry+".backoff.max")
		if d.err != nil {
			return 0, d.err
		}
	}
	if err := p.Validate(); err != nil {
		return 0, &fieldError{path: pathRetry, err: err}
	}
	rt.Retry = p
	if bu := r.budget; bu != nil {
		c, err := bu.config()
		if err != nil {
			return 0, err
		}
		rt.Budget = c
	}
	return ign, nil
}

// config maps a RetryBudget, whose absent fields mean the Gateway API's
// defaults as retry.BudgetConfig's zero fields do.
func (bu *policyBudget) config() (retry.BudgetConfig, error) {
	var c retry.BudgetConfig
	switch {
	case bu.hasPercent:
		pct := int(bu.percent)
		c.Percent = &pct
	case bu.ratio != 0:
		if !(bu.ratio > 0 && bu.ratio <= 1) { // NaN too
			return c, fieldErrorf(pathBudget+".ratio", "%v is not 0..1", bu.ratio)
		}
		pct := int(math.Round(bu.ratio * 100))
		c.Percent = &pct
	}
	switch {
	case bu.hasMinRetries:
		n := int(bu.minRetries)
		c.MinRetries = &n
	case bu.minPerSecond != 0:
		n := int(bu.minPerSecond)
		c.MinRetries, c.MinInterval = &n, time.Second
	}
	var d durations
	d.set(&c.Interval, bu.ttl, pathBudget+".ttl")
	if bu.minInterval.set {
		d.set(&c.MinInterval, bu.minInterval, pathBudget+".min_interval")
	}
	if d.err != nil {
		return c, d.err
	}
	if _, err := retry.NewBudget(c); err != nil {
		return c, &fieldError{path: pathBudget, err: err}
	}
	return c, nil
}

// config maps a Breaker.
func (br *policyBreaker) config() (*breaker.Config, error) {
	c := new(breaker.Config)
	switch {
	case br.consecutive != nil:
		c.ConsecutiveFailures = int(br.consecutive.maxFailures) // 0: the breaker's default
	case br.successRate != nil:
		c.ConsecutiveFailures = -1 // only the success rate trips it
	}
	if s := br.successRate; s != nil {
		if !(s.minSuccessRate >= 0 && s.minSuccessRate <= 1) { // NaN too
			return nil, fieldErrorf("breaker.success_rate.min_success_rate", "%v is not 0..1", s.minSuccessRate)
		}
		c.MinSuccessRate, c.MinRequests = s.minSuccessRate, int(s.minRequests)
	}
	var d durations
	if s := br.successRate; s != nil {
		d.set(&c.Window, s.window, "breaker.success_rate.window")
	}
	d.set(&c.BaseEjection, br.minPenalty, "breaker.min_penalty")
	d.set(&c.MaxEjection, br.maxPenalty, "breaker.max_penalty")
	if d.err != nil {
		return nil, d.err
	}
	if _, err := breaker.New(*c); err != nil {
		return nil, &fieldError{path: "breaker", err: err}
	}
	return c, nil
}

// durations converts policy durations into the route's, keeping the
// first error, so that a message names one field.
type durations struct{ err error }

// set sets *dst to d's value (zero when unset) unless an earlier call
// failed; an invalid d is the error, at path.
func (c *durations) set(dst *time.Duration, d duration, path string) {
	if c.err != nil {
		return
	}
	v, err := d.value()
	if err != nil {
		c.err = &fieldError{path: path, err: err}
		return
	}
	*dst = v
}
