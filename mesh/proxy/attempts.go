package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/balance"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// This file is the reliability part of the outbound request path: the
// request's deadline (the route's timeouts.request or the client's
// grpc-timeout, whichever ends first), each attempt's deadline
// (timeouts.backendRequest) and the retries of failed attempts, within the
// route's retry budget. A request whose authority has no route and that
// carries no grpc-timeout takes none of it and allocates nothing here.

// routed is what the request path knows of a request's route and deadline.
type routed struct {
	rt       *route.Compiled // nil: no route, only the client's deadline
	deadline time.Time       // zero: none
	reason   string          // what set the deadline, for the 504's message
	dst      *destination    // resolved already (with a policy source); nil: not yet
}

type routedKey struct{}

// TimeoutError is a request the proxy gave up on because a deadline
// passed: it answers 504 (gRPC DEADLINE_EXCEEDED) with the reason in the
// Skiff-Error header.
type TimeoutError struct {
	// What names the deadline: "timeouts.request 300ms",
	// "timeouts.backendRequest 100ms" or "grpc-timeout 250ms".
	What string
}

func (e *TimeoutError) Error() string {
	return "the proxy gave up waiting for the upstream: " + e.What + " expired"
}

// Timeout marks it as a timeout for errorStatus (net.Error).
func (e *TimeoutError) Timeout() bool { return true }

// Temporary is part of net.Error.
func (e *TimeoutError) Temporary() bool { return true }

// bound gives an outbound request its route and its deadline. cancel is
// nil when there is nothing to release.
func (l *listener) bound(r *http.Request, start time.Time) (*http.Request, context.CancelFunc, error) {
	if l.dir != dirOutbound {
		return r, nil, nil
	}
	rt := l.p.cfg.Routes.Lookup(r.Host)
	var dst *destination
	if l.p.cfg.Policy != nil {
		// The control plane's route comes with the authority's endpoints:
		// resolve them now, so the route is known before its deadline is.
		// The transport takes the destination from here when the request
		// carries a routed, and finds it at once otherwise.
		d, err := l.p.destinations.get(r.Context(), r.Host)
		if err != nil {
			return r, nil, err
		}
		if d != nil {
			dst = d
			if prt := d.Route(); prt != nil {
				rt = prt
			}
		}
	}
	var client time.Duration
	if v := r.Header.Get("Grpc-Timeout"); v != "" && isGRPC(r) && !plant.On(plant.TimeoutsIgnored) {
		d, err := timeout.ParseGRPCTimeout(v)
		if err != nil {
			return r, nil, &requestError{http.StatusBadRequest, err.Error()}
		}
		client = d
	}
	if rt == nil && client == 0 {
		return r, nil, nil
	}
	rd := &routed{rt: rt, dst: dst}
	var tr timeout.Route
	if rt != nil && !plant.On(plant.TimeoutsIgnored) {
		tr = rt.Timeouts
	}
	rd.deadline = tr.Deadline(start, client)
	ctx := context.WithValue(r.Context(), routedKey{}, rd)
	var cancel context.CancelFunc
	if !rd.deadline.IsZero() {
		if tr.Request > 0 && !start.Add(tr.Request).After(rd.deadline) {
			rd.reason = "timeouts.request " + tr.Request.String()
		} else {
			rd.reason = "grpc-timeout " + client.String()
		}
		ctx, cancel = context.WithDeadline(ctx, rd.deadline)
	}
	return r.WithContext(ctx), cancel, nil
}

// expired turns the error of a request whose deadline passed into a
// TimeoutError naming it.
func (rd *routed) expired(ctx context.Context, err error) error {
	if rd != nil && err != nil && !rd.deadline.IsZero() && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &TimeoutError{What: rd.reason}
	}
	return err
}

// routeCounters are one route's retry and timeout counters, with the names
// Linkerd's proxies use for its retries.
type routeCounters struct {
	retries, successes, limitExceeded, overflow *atomic.Uint64
	requestTimeouts, attemptTimeouts            *atomic.Uint64
	ejections                                   *atomic.Uint64
}

// routeStats returns the counters of the route named name.
func (p *Proxy) routeStats(name string) *routeCounters {
	if c, ok := p.routeCounters.Load(name); ok {
		return c.(*routeCounters)
	}
	l := `route_name="` + escapeLabel(name) + `"`
	c := &routeCounters{
		retries:         p.metrics.Counter("outbound_http_route_retry_requests_total", l),
		successes:       p.metrics.Counter("outbound_http_route_retry_successes_total", l),
		limitExceeded:   p.metrics.Counter("outbound_http_route_retry_limit_exceeded_total", l),
		overflow:        p.metrics.Counter("outbound_http_route_retry_overflow_total", l),
		requestTimeouts: p.metrics.Counter("outbound_http_route_timeouts_total", l+`,timeout="request"`),
		attemptTimeouts: p.metrics.Counter("outbound_http_route_timeouts_total", l+`,timeout="backend_request"`),
		ejections:       p.metrics.Counter("outbound_http_route_breaker_ejections_total", l),
	}
	v, _ := p.routeCounters.LoadOrStore(name, c)
	return v.(*routeCounters)
}

func escapeLabel(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// attemptTimeout is the route's timeouts.backendRequest.
func attemptTimeout(rt *route.Compiled) time.Duration {
	if plant.On(plant.TimeoutsIgnored) {
		return 0
	}
	return rt.Timeouts.BackendRequest
}

// errAttemptTimeout cancels an attempt that outlived
// timeouts.backendRequest.
var errAttemptTimeout = errors.New("attempt timeout")

// attempt is one try of a routed request with its own deadline: the
// route's backendRequest timeout bounds the wait for the response headers,
// never the body that follows them.
type attempt struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
}

func startAttempt(parent context.Context, d time.Duration) *attempt {
	a := &attempt{}
	a.ctx, a.cancel = context.WithCancelCause(parent)
	if d > 0 {
		a.timer = time.AfterFunc(d, func() { a.cancel(errAttemptTimeout) })
	}
	return a
}

// answered stops the attempt's timer once the headers are in; it reports
// false when the timer had fired already.
func (a *attempt) answered() bool {
	return a.timer == nil || a.timer.Stop()
}

func (a *attempt) timedOut() bool {
	return errors.Is(context.Cause(a.ctx), errAttemptTimeout)
}

// releaseBody ends the attempt when the response body is closed.
type releaseBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// outcome is what an attempt came to, for the retry policy. An attempt
// without an answer counts as what the proxy would answer for it: for a
// gRPC call the code as well as the status (errorStatus), so that a route
// retrying UNAVAILABLE retries a call whose connection was lost.
func outcome(resp *http.Response, err error, timedOut, grpc bool) retry.Outcome {
	switch {
	case timedOut:
		o := retry.Outcome{Status: http.StatusGatewayTimeout}
		if grpc {
			o.GRPCCode = grpcDeadlineExceeded
		}
		return o
	case err != nil && isConnectError(err):
		return retry.Outcome{ConnectFailed: true}
	case err != nil:
		// Sent, then the connection failed without an answer.
		o := retry.Outcome{}
		o.Status, o.GRPCCode = errorStatus(err)
		if !grpc {
			o.GRPCCode = 0
		}
		return o
	}
	o := retry.Outcome{Status: resp.StatusCode}
	if v := resp.Header.Get("Grpc-Status"); v != "" {
		// Trailers-only: a status in the headers is the final one.
		if n, err := strconv.Atoi(v); err == nil {
			o.GRPCCode = n
		}
	}
	return o
}

// failed reports whether an outcome is a failure for the retry policy's
// purpose of counting a success after retries.
func failedOutcome(o retry.Outcome) bool {
	return o.ConnectFailed || o.Status >= 500 || o.GRPCCode != 0
}

// retryRequest is req for another attempt: its own URL and header map, so
// that what the attempt sets does not race with a transport still busy
// with the previous one.
func retryRequest(req *http.Request, ctx context.Context) *http.Request {
	r := req.WithContext(ctx)
	u := *req.URL
	r.URL = &u
	r.Header = req.Header.Clone()
	return r
}

// retrying sends a routed request, retrying failed attempts as its route
// allows: another endpoint when there is one, after the route's backoff,
// within the budget and the request's deadline. The request body is
// replayed from what the first attempt read, up to the route's bound; a
// longer body is sent once, with retries off for that request.
func (t outboundTransport) retrying(req *http.Request, d *destination, rd *routed) (*http.Response, error) {
	p := t.l.p
	rt := rd.rt
	stats := p.routeStats(rt.Name)
	canRetry := rt.Retries() && !plant.On(plant.RetriesOff)
	hasBody := req.Body != nil && req.Body != http.NoBody
	var body *retry.Replay
	if hasBody && canRetry {
		if req.ContentLength > rt.Retry.BodyBound() {
			canRetry = false // known too long: no copy kept
		} else {
			body = retry.NewReplay(req.Body, rt.Retry.BodyBound())
			defer body.Close()
		}
	}
	var budget *retry.Budget
	if canRetry {
		budget = rt.Budget()
		budget.Request(time.Now())
	}
	var avoidBuf [4]*balance.Node
	avoid := avoidBuf[:0]
	var next io.ReadCloser // the body of the next attempt
	if body != nil {
		next, _ = body.Attempt() // the first always succeeds
	}
	for n := 0; ; n++ {
		a := startAttempt(req.Context(), attemptTimeout(rt))
		ar := req.WithContext(a.ctx)
		if n > 0 {
			ar = retryRequest(req, a.ctx)
		}
		if next != nil {
			ar.Body = next
		}
		resp, node, err := t.forward(ar, d, avoid, rt)
		timedOut := false
		if err == nil && !a.answered() {
			resp.Body.Close() // the headers came as the timer fired
			resp, err, timedOut = nil, errAttemptTimeout, true
		} else if err != nil {
			timedOut = a.timedOut()
		}
		if err == nil {
			resp.Body = &releaseBody{ReadCloser: resp.Body, done: func() { a.cancel(nil) }}
		} else {
			a.cancel(nil)
		}
		if err != nil && req.Context().Err() != nil {
			// The client left, or the whole request's deadline passed:
			// no attempt may follow.
			if rd.deadline.IsZero() || !errors.Is(req.Context().Err(), context.DeadlineExceeded) {
				return nil, err
			}
			stats.requestTimeouts.Add(1)
			return nil, &TimeoutError{What: rd.reason}
		}
		o := outcome(resp, err, timedOut, isGRPC(req))
		if timedOut {
			stats.attemptTimeouts.Add(1)
			err = &TimeoutError{What: "timeouts.backendRequest " + rt.Timeouts.BackendRequest.String()}
		}
		if !failedOutcome(o) || !canRetry {
			if n > 0 && !failedOutcome(o) {
				stats.successes.Add(1)
			}
			return resp, err
		}
		if !rt.Retry.Retryable(req.Method, n+1, o) {
			if n+1 > rt.Retry.Attempts && rt.Retry.Retryable(req.Method, 1, o) {
				stats.limitExceeded.Add(1)
			}
			return resp, err
		}
		if hasBody && !body.Replayable() {
			return resp, err
		}
		wait := rt.Backoff(n + 1)
		now := time.Now()
		if !rd.deadline.IsZero() && !now.Add(wait).Before(rd.deadline) {
			return resp, err // no time left for another attempt
		}
		if !budget.Retry(now) && !plant.On(plant.BudgetIgnored) {
			stats.overflow.Add(1)
			return resp, err
		}
		if body != nil {
			// Taking the body for the next attempt detaches this one's,
			// which a transport may still be sending.
			var ok bool
			if next, ok = body.Attempt(); !ok {
				return resp, err // went over the bound meanwhile
			}
		}
		if resp != nil {
			resp.Body.Close()
		}
		if node != nil && len(avoid) < cap(avoid) {
			avoid = append(avoid, node)
		}
		if wait > 0 {
			tm := time.NewTimer(wait)
			select {
			case <-tm.C:
			case <-req.Context().Done():
				tm.Stop()
				return nil, rd.expired(req.Context(), req.Context().Err())
			}
		}
		stats.retries.Add(1)
	}
}
