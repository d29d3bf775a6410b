package retry

import (
	"fmt"
	"net/http"
	"time"
)

// DefaultMaxBodyBytes is the largest request body a retry may replay: a
// longer body streams through with retries off for that request.
const DefaultMaxBodyBytes = 64 << 10

// Policy is a route rule's retry stanza (the Gateway API's HTTPRouteRetry,
// with gRPC codes and Skiff's body bound). The zero value retries nothing:
// Attempts is 0.
type Policy struct {
	// Attempts is the most retries of one request (retry.attempts), not
	// counting the first attempt.
	Attempts int
	// Codes are the HTTP statuses that are retried (retry.codes), 500..599
	// or 400..499.
	Codes []int
	// GRPCCodes are the gRPC status codes that are retried (e.g. 14,
	// UNAVAILABLE).
	GRPCCodes []int
	// Backoff is the least wait before a retry (retry.backoff); it doubles
	// per attempt (see Backoff).
	Backoff time.Duration
	// NonIdempotent retries methods RFC 9110 does not call idempotent
	// (POST, PATCH) on a status too. Connection failures before any byte
	// was sent are retried whatever the method.
	NonIdempotent bool
	// MaxBodyBytes bounds the body a retry may replay; zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Validate checks p, naming the field that is wrong.
func (p Policy) Validate() error {
	if p.Attempts < 0 {
		return fmt.Errorf("retry.attempts %d is negative", p.Attempts)
	}
	for i, c := range p.Codes {
		if c < 400 || c > 599 {
			return fmt.Errorf("retry.codes[%d]: %d is not an HTTP error status (400..599)", i, c)
		}
	}
	for i, c := range p.GRPCCodes {
		if c < 1 || c > 16 {
			return fmt.Errorf("grpc codes[%d]: %d is not a gRPC error code (1..16)", i, c)
		}
	}
	if p.Backoff < 0 || p.MaxBodyBytes < 0 {
		return fmt.Errorf("retry: backoff %v and body bound %d must not be negative", p.Backoff, p.MaxBodyBytes)
	}
	return nil
}

// BodyBound is the largest body a retry of this policy replays.
func (p Policy) BodyBound() int64 {
	if p.MaxBodyBytes > 0 {
		return p.MaxBodyBytes
	}
	return DefaultMaxBodyBytes
}

// Outcome is what an attempt came to, as far as retrying goes.
type Outcome struct {
	// ConnectFailed: the attempt failed before any byte of the request was
	// sent (refused, reset while connecting, no endpoint reachable).
	ConnectFailed bool
	// Status is the HTTP status of the answer; 0 when there was none.
	Status int
	// GRPCCode is the grpc-status of the answer, when it is gRPC; 0 (OK)
	// otherwise.
	GRPCCode int
}

// Retryable says whether attempt n (1 for the first retry) may follow an
// attempt of a request with this method that came to o. It does not
// consult the budget, the deadline or the body (the caller does).
func (p Policy) Retryable(method string, n int, o Outcome) bool {
	if n > p.Attempts {
		return false
	}
	if o.ConnectFailed {
		return true
	}
	if !p.NonIdempotent && !idempotent(method) {
		return false
	}
	for _, c := range p.Codes {
		if o.Status == c {
			return true
		}
	}
	if o.GRPCCode != 0 {
		for _, c := range p.GRPCCodes {
			if o.GRPCCode == c {
				return true
			}
		}
	}
	return false
}

// idempotent is RFC 9110's list (section 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}
