// Package timeout decides how long a request and each of its attempts may
// take: the route rule's timeouts (the Gateway API's timeouts.request for
// the whole exchange, retries included, and timeouts.backendRequest for
// one attempt) and the client's own gRPC deadline (the grpc-timeout
// header), whichever ends first.
//
// The decisions are pure: the time is passed in.
package timeout

import (
	"errors"
	"fmt"
	"time"
)

// Route is a route rule's timeouts. A zero field sets no bound.
type Route struct {
	// Request bounds the whole exchange, retries and backoff included
	// (timeouts.request).
	Request time.Duration
	// BackendRequest bounds one attempt (timeouts.backendRequest).
	BackendRequest time.Duration
}

// Validate checks r as the Gateway API does: no negative timeout, and an
// attempt's timeout no longer than the request's.
func (r Route) Validate() error {
	switch {
	case r.Request < 0 || r.BackendRequest < 0:
		return fmt.Errorf("timeouts: request %v and backendRequest %v must not be negative", r.Request, r.BackendRequest)
	case r.Request > 0 && r.BackendRequest > r.Request:
		return fmt.Errorf("timeouts: backendRequest %v is longer than request %v", r.BackendRequest, r.Request)
	}
	return nil
}

// Deadline is when a request that started at start must be answered: the
// earlier of the route's request timeout and the client's own deadline
// (client, zero when it gave none). The zero Time means no deadline.
func (r Route) Deadline(start time.Time, client time.Duration) time.Time {
	var d time.Time
	if r.Request > 0 {
		d = start.Add(r.Request)
	}
	if client > 0 {
		if c := start.Add(client); d.IsZero() || c.Before(d) {
			d = c
		}
	}
	return d
}

// Attempt is when an attempt that starts at now must end: the route's
// per-attempt timeout from now, but never after the request's deadline
// (the zero Time: none). It reports false when the deadline has passed
// and no attempt may start.
func (r Route) Attempt(now, deadline time.Time) (time.Time, bool) {
	if !deadline.IsZero() && !now.Before(deadline) {
		return time.Time{}, false
	}
	end := deadline
	if r.BackendRequest > 0 {
		if a := now.Add(r.BackendRequest); end.IsZero() || a.Before(end) {
			end = a
		}
	}
	return end, true
}

// MaxGRPCTimeout bounds a client's grpc-timeout: a deadline further away
// than this is no deadline (100 million hours is what the format allows;
// nothing waits that long).
const MaxGRPCTimeout = 24 * time.Hour

// ErrGRPCTimeout is wrapped by every ParseGRPCTimeout error.
var ErrGRPCTimeout = errors.New("invalid grpc-timeout")

// ParseGRPCTimeout reads a grpc-timeout header value: 1 to 8 ASCII digits
// and a unit, H M S m u or n (gRPC over HTTP/2). A value longer than
// MaxGRPCTimeout is MaxGRPCTimeout. A malformed value is an error that
// says what is wrong; the caller answers INTERNAL as gRPC servers do,
// rather than guessing a deadline.
func ParseGRPCTimeout(v string) (time.Duration, error) {
	if len(v) < 2 || len(v) > 9 {
		return 0, fmt.Errorf("%w %q: want 1 to 8 digits and a unit (H, M, S, m, u or n)", ErrGRPCTimeout, truncate(v))
	}
	var n int64
	for _, c := range []byte(v[:len(v)-1]) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w %q: %q is not a digit", ErrGRPCTimeout, v, c)
		}
		n = n*10 + int64(c-'0')
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, fmt.Errorf("%w %q: unit %q is not H, M, S, m, u or n", ErrGRPCTimeout, v, v[len(v)-1])
	}
	// 99,999,999 fits any unit's multiplication only below hours: check
	// before multiplying.
	if n > int64(MaxGRPCTimeout/unit) {
		return MaxGRPCTimeout, nil
	}
	return time.Duration(n) * unit, nil
}

func truncate(v string) string {
	if len(v) > 32 {
		return v[:32] + "…"
	}
	return v
}
