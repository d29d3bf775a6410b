package control

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// What the proxy reads of skiff.policy.v1.OutboundPolicy, decoded by hand
// with protowire as in wire.go (field numbers of
// mesh/api/proto/skiff/policy/v1/policy.proto; the tests check the decoder
// against the generated types). The decoder keeps protobuf's semantics: a
// message field that appears more than once merges, a scalar's last
// occurrence wins, repeated scalars may come packed or not, and unknown
// fields (and known ones with an unexpected wire type) are skipped. It
// reads only what the mapping to route.Route needs: parts the proxy
// ignores (top-level backends, the balancer's settings) or refuses whole
// (filters, faults, header matches) are counted or noted, not parsed.
//
// Every repeated field it keeps is capped at maxPolicyRepeated entries, so
// the work and memory per message stay bounded beyond the Conn's message
// size limit. Every error is a *fieldError naming where it is.

// methodWatchOutbound is Policy.WatchOutbound.
const methodWatchOutbound = "/skiff.policy.v1.Policy/WatchOutbound"

// maxPolicyRepeated bounds each repeated field the decoder keeps.
const maxPolicyRepeated = 64

// Field numbers of skiff.policy.v1 (and google.protobuf.Duration).
const (
	// OutboundPolicy
	fPolicyRoutes   = 2
	fPolicyBreaker  = 4
	fPolicyBalancer = 5
	// Route
	fRouteMetadata = 1
	fRouteRules    = 2
	// Metadata
	fMetadataKind      = 2
	fMetadataNamespace = 3
	fMetadataName      = 4
	// RouteRule
	fRuleMatches  = 2
	fRuleFilters  = 3
	fRuleBackends = 4
	fRuleRetry    = 5
	fRuleTimeouts = 6
	fRuleFault    = 7
	// RouteMatch
	fMatchPath        = 1
	fMatchHeaders     = 2
	fMatchQueryParams = 3
	fMatchMethod      = 4
	// PathMatch (oneof kind)
	fPathExact  = 1
	fPathPrefix = 2
	fPathRegex  = 3
	// Backend
	fBackendAuthority = 1
	fBackendFilters   = 3
	fBackendFailover  = 4
	// Retry
	fRetryConditions    = 1
	fRetryHTTPStatuses  = 2
	fRetryGRPCCodes     = 3
	fRetryLimit         = 4
	fRetryBackoff       = 5
	fRetryBudget        = 6
	fRetryNonIdempotent = 7
	fRetryMaxBodyBytes  = 8
	// HttpStatusRange
	fRangeMin = 1
	fRangeMax = 2
	// Backoff
	fBackoffBase = 1
	fBackoffMax  = 2
	// RetryBudget
	fBudgetRatio        = 1
	fBudgetMinPerSecond = 2
	fBudgetTTL          = 3
	fBudgetPercent      = 4
	fBudgetMinRetries   = 5
	fBudgetMinInterval  = 6
	// Timeouts
	fTimeoutsRequest        = 1
	fTimeoutsBackendRequest = 2
	fTimeoutsIdle           = 3
	// Breaker
	fBreakerConsecutive = 1
	fBreakerSuccessRate = 2
	fBreakerMinPenalty  = 3
	fBreakerMaxPenalty  = 4
	// ConsecutiveFailures
	fConsecutiveMax = 1
	// SuccessRate
	fSuccessWindow      = 1
	fSuccessMinRate     = 2
	fSuccessMinRequests = 3
	// google.protobuf.Duration
	fDurationSeconds = 1
	fDurationNanos   = 2
)

// appendWatchOutboundRequest encodes skiff.policy.v1.WatchOutboundRequest,
// whose fields (authority 1, proxy 2) and ProxyContext are numbered as
// Destination's WatchRequest: the same bytes.
func appendWatchOutboundRequest(b []byte, authority string, p ProxyContext) []byte {
	return appendWatchRequest(b, authority, p)
}

// outboundPolicy is skiff.policy.v1.OutboundPolicy as far as the proxy
// reads it. Top-level backends are not kept: the proxy ignores them.
type outboundPolicy struct {
	routes   []policyRoute
	breaker  *policyBreaker // nil: absent
	balancer bool           // present (its settings are ignored)
}

// policyRoute is skiff.policy.v1.Route with its Metadata.
type policyRoute struct {
	kind, namespace, name string
	rules                 []policyRule
}

// policyRule is skiff.policy.v1.RouteRule.
type policyRule struct {
	matches  []policyMatch
	filters  int // how many; the proxy implements none
	backends []policyBackend
	retry    *policyRetry    // nil: absent
	timeouts *policyTimeouts // nil: absent
	fault    bool            // present
}

// pathKind is which member of PathMatch's oneof is set.
type pathKind uint8

const (
	pathAny pathKind = iota // path unset, or no member set
	pathExact
	pathPrefix
	pathRegex
)

// policyMatch is skiff.policy.v1.RouteMatch.
type policyMatch struct {
	pathKind    pathKind
	path        string
	headers     int // how many header matches
	queryParams int // how many query parameter matches
	method      string
}

// policyBackend is skiff.policy.v1.Backend; its weight is not read.
type policyBackend struct {
	authority string
	filters   int // how many
	failover  int // how many
}

// policyRetry is skiff.policy.v1.Retry.
type policyRetry struct {
	conditions    []int32 // RetryCondition values
	statuses      []statusRange
	grpcCodes     []uint32
	limit         uint32
	backoff       *policyBackoff // nil: absent
	budget        *policyBudget  // nil: absent
	nonIdempotent bool
	maxBodyBytes  uint32
}

// statusRange is skiff.policy.v1.HttpStatusRange.
type statusRange struct{ min, max uint32 }

// policyBackoff is skiff.policy.v1.Backoff; its jitter is not read.
type policyBackoff struct{ base, max duration }

// policyBudget is skiff.policy.v1.RetryBudget.
type policyBudget struct {
	ratio         float64
	minPerSecond  uint32
	ttl           duration
	percent       uint32
	hasPercent    bool // field 4 on the wire, even as 0
	minRetries    uint32
	hasMinRetries bool // field 5 on the wire, even as 0
	minInterval   duration
}

// policyTimeouts is skiff.policy.v1.Timeouts.
type policyTimeouts struct{ request, backendRequest, idle duration }

// policyBreaker is skiff.policy.v1.Breaker; its jitter is not read.
type policyBreaker struct {
	consecutive            *policyConsecutive // nil: absent
	successRate            *policySuccessRate // nil: absent
	minPenalty, maxPenalty duration
}

// policyConsecutive is skiff.policy.v1.ConsecutiveFailures.
type policyConsecutive struct{ maxFailures uint32 }

// policySuccessRate is skiff.policy.v1.SuccessRate.
type policySuccessRate struct {
	window         duration
	minSuccessRate float64
	minRequests    uint32
}

// duration is google.protobuf.Duration as it came; [duration.value]
// checks it.
type duration struct {
	set  bool
	sec  int64
	nsec int32
}

// fieldError is an error in a policy, at path: the fields from
// OutboundPolicy down, as "routes[0].rules[0].retry.http_statuses[1]";
// empty for OutboundPolicy itself.
type fieldError struct {
	path string
	err  error
}

func (e *fieldError) Error() string {
	if e.path == "" {
		return "OutboundPolicy: " + e.err.Error()
	}
	return e.path + ": " + e.err.Error()
}

func (e *fieldError) Unwrap() error { return e.err }

// errTooMany is the cause of an error for a repeated field beyond its cap.
var errTooMany = errors.New("too many entries")

// fieldErrorf returns a *fieldError at path.
func fieldErrorf(path, format string, args ...any) *fieldError {
	return &fieldError{path: path, err: fmt.Errorf(format, args...)}
}

// within puts err, from a message at field name (index: its position in
// a repeated field, or -1), under that field: its path gets the prefix.
// It runs only on errors, so paths cost nothing on the way in.
func within(err error, name string, index int) error {
	var fe *fieldError
	if !errors.As(err, &fe) {
		fe = &fieldError{err: err}
	}
	elem := name
	if index >= 0 {
		elem += "[" + strconv.Itoa(index) + "]"
	}
	if fe.path != "" {
		elem += "." + fe.path
	}
	fe.path = elem
	return fe
}

// malformed is the error of bytes that are not protobuf.
func malformed(err error) error {
	return &fieldError{err: fmt.Errorf("malformed protobuf: %w", err)}
}

// tooMany is the error of a repeated field beyond maxPolicyRepeated.
func tooMany(name string) error {
	return &fieldError{path: name, err: fmt.Errorf("%w: more than %d, the most the proxy accepts", errTooMany, maxPolicyRepeated)}
}

// fields calls fn with each field of b, stopping at the first error.
func fields(b []byte, fn func(f field) error) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return malformed(err)
		}
		b = rest
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func (f field) is(num protowire.Number, typ protowire.Type) bool { return f.num == num && f.typ == typ }

// appendVarints appends the values of a repeated varint field, packed
// (one length-delimited field) or not, converted by conv, up to
// maxPolicyRepeated of them in all.
func appendVarints[T any](dst []T, f field, name string, conv func(uint64) T) ([]T, error) {
	if f.typ == protowire.VarintType {
		if len(dst) == maxPolicyRepeated {
			return nil, tooMany(name)
		}
		return append(dst, conv(f.v)), nil
	}
	for b := f.b; len(b) > 0; {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return nil, within(malformed(protowire.ParseError(n)), name, -1)
		}
		b = b[n:]
		if len(dst) == maxPolicyRepeated {
			return nil, tooMany(name)
		}
		dst = append(dst, conv(v))
	}
	return dst, nil
}

// decodeOutboundPolicy decodes skiff.policy.v1.OutboundPolicy.
func decodeOutboundPolicy(b []byte) (outboundPolicy, error) {
	var p outboundPolicy
	err := fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fPolicyRoutes:
			if len(p.routes) == maxPolicyRepeated {
				return tooMany("routes")
			}
			var r policyRoute
			if err := r.decode(f.b); err != nil {
				return within(err, "routes", len(p.routes))
			}
			p.routes = append(p.routes, r)
		case fPolicyBreaker:
			if p.breaker == nil {
				p.breaker = new(policyBreaker)
			}
			if err := p.breaker.decode(f.b); err != nil {
				return within(err, "breaker", -1)
			}
		case fPolicyBalancer:
			p.balancer = true
		}
		return nil
	})
	if err != nil {
		return outboundPolicy{}, err
	}
	return p, nil
}

func (r *policyRoute) decode(b []byte) error {
	return fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fRouteMetadata:
			if err := r.decodeMetadata(f.b); err != nil {
				return within(err, "metadata", -1)
			}
		case fRouteRules:
			if len(r.rules) == maxPolicyRepeated {
				return tooMany("rules")
			}
			var rule policyRule
			if err := rule.decode(f.b); err != nil {
				return within(err, "rules", len(r.rules))
			}
			r.rules = append(r.rules, rule)
		}
		return nil
	})
}

func (r *policyRoute) decodeMetadata(b []byte) error {
	return fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fMetadataKind:
			r.kind = string(f.b)
		case fMetadataNamespace:
			r.namespace = string(f.b)
		case fMetadataName:
			r.name = string(f.b)
		}
		return nil
	})
}

func (r *policyRule) decode(b []byte) error {
	return fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fRuleMatches:
			if len(r.matches) == maxPolicyRepeated {
				return tooMany("matches")
			}
			var m policyMatch
			if err := m.decode(f.b); err != nil {
				return within(err, "matches", len(r.matches))
			}
			r.matches = append(r.matches, m)
		case fRuleFilters:
			r.filters++
		case fRuleBackends:
			if len(r.backends) == maxPolicyRepeated {
				return tooMany("backends")
			}
			var be policyBackend
			if err := be.decode(f.b); err != nil {
				return within(err, "backends", len(r.backends))
			}
			r.backends = append(r.backends, be)
		case fRuleRetry:
			if r.retry == nil {
				r.retry = new(policyRetry)
			}
			if err := r.retry.decode(f.b); err != nil {
				return within(err, "retry", -1)
			}
		case fRuleTimeouts:
			if r.timeouts == nil {
				r.timeouts = new(policyTimeouts)
			}
			if err := r.timeouts.decode(f.b); err != nil {
				return within(err, "timeouts", -1)
			}
		case fRuleFault:
			r.fault = true
		}
		return nil
	})
}

func (m *policyMatch) decode(b []byte) error {
	return fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fMatchPath:
			if err := m.decodePath(f.b); err != nil {
				return within(err, "path", -1)
			}
		case fMatchHeaders:
			m.headers++
		case fMatchQueryParams:
			m.queryParams++
		case fMatchMethod:
			m.method = string(f.b)
		}
		return nil
	})
}

// decodePath decodes PathMatch, merging into m: the oneof's last member
// wins.
func (m *policyMatch) decodePath(b []byte) error {
	return fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fPathExact:
			m.pathKind, m.path = pathExact, string(f.b)
		case fPathPrefix:
			m.pathKind, m.path = pathPrefix, string(f.b)
		case fPathRegex:
			m.pathKind, m.path = pathRegex, string(f.b)
		}
		return nil
	})
}

func (be *policyBackend) decode(b []byte) error {
	return fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fBackendAuthority:
			be.authority = string(f.b)
		case fBackendFilters:
			be.filters++
		case fBackendFailover:
			be.failover++
		}
		return nil
	})
}

func (r *policyRetry) decode(b []byte) error {
	return fields(b, func(f field) (err error) {
		switch {
		case f.num == fRetryConditions && (f.typ == protowire.VarintType || f.typ == protowire.BytesType):
			r.conditions, err = appendVarints(r.conditions, f, "conditions", func(v uint64) int32 { return int32(v) })
		case f.num == fRetryGRPCCodes && (f.typ == protowire.VarintType || f.typ == protowire.BytesType):
			r.grpcCodes, err = appendVarints(r.grpcCodes, f, "grpc_codes", func(v uint64) uint32 { return uint32(v) })
		case f.is(fRetryHTTPStatuses, protowire.BytesType):
			if len(r.statuses) == maxPolicyRepeated {
				return tooMany("http_statuses")
			}
			var s statusRange
			if err := s.decode(f.b); err != nil {
				return within(err, "http_statuses", len(r.statuses))
			}
			r.statuses = append(r.statuses, s)
		case f.is(fRetryLimit, protowire.VarintType):
			r.limit = uint32(f.v)
		case f.is(fRetryBackoff, protowire.BytesType):
			if r.backoff == nil {
				r.backoff = new(policyBackoff)
			}
			if err := r.backoff.decode(f.b); err != nil {
				return within(err, "backoff", -1)
			}
		case f.is(fRetryBudget, protowire.BytesType):
			if r.budget == nil {
				r.budget = new(policyBudget)
			}
			if err := r.budget.decode(f.b); err != nil {
				return within(err, "budget", -1)
			}
		case f.is(fRetryNonIdempotent, protowire.VarintType):
			r.nonIdempotent = f.v != 0
		case f.is(fRetryMaxBodyBytes, protowire.VarintType):
			r.maxBodyBytes = uint32(f.v)
		}
		return err
	})
}

func (s *statusRange) decode(b []byte) error {
	return fields(b, func(f field) error {
		switch {
		case f.is(fRangeMin, protowire.VarintType):
			s.min = uint32(f.v)
		case f.is(fRangeMax, protowire.VarintType):
			s.max = uint32(f.v)
		}
		return nil
	})
}

func (bo *policyBackoff) decode(b []byte) error {
	return fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fBackoffBase:
			return decodeDurationField(&bo.base, f.b, "base")
		case fBackoffMax:
			return decodeDurationField(&bo.max, f.b, "max")
		}
		return nil
	})
}

func (bu *policyBudget) decode(b []byte) error {
	return fields(b, func(f field) error {
		switch {
		case f.is(fBudgetRatio, protowire.Fixed64Type):
			bu.ratio = math.Float64frombits(f.v)
		case f.is(fBudgetMinPerSecond, protowire.VarintType):
			bu.minPerSecond = uint32(f.v)
		case f.is(fBudgetTTL, protowire.BytesType):
			return decodeDurationField(&bu.ttl, f.b, "ttl")
		case f.is(fBudgetPercent, protowire.VarintType):
			bu.percent, bu.hasPercent = uint32(f.v), true
		case f.is(fBudgetMinRetries, protowire.VarintType):
			bu.minRetries, bu.hasMinRetries = uint32(f.v), true
		case f.is(fBudgetMinInterval, protowire.BytesType):
			return decodeDurationField(&bu.minInterval, f.b, "min_interval")
		}
		return nil
	})
}

func (t *policyTimeouts) decode(b []byte) error {
	return fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fTimeoutsRequest:
			return decodeDurationField(&t.request, f.b, "request")
		case fTimeoutsBackendRequest:
			return decodeDurationField(&t.backendRequest, f.b, "backend_request")
		case fTimeoutsIdle:
			return decodeDurationField(&t.idle, f.b, "idle")
		}
		return nil
	})
}

func (br *policyBreaker) decode(b []byte) error {
	return fields(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case fBreakerConsecutive:
			if br.consecutive == nil {
				br.consecutive = new(policyConsecutive)
			}
			c := br.consecutive
			return within0(fields(f.b, func(f field) error {
				if f.is(fConsecutiveMax, protowire.VarintType) {
					c.maxFailures = uint32(f.v)
				}
				return nil
			}), "consecutive_failures")
		case fBreakerSuccessRate:
			if br.successRate == nil {
				br.successRate = new(policySuccessRate)
			}
			s := br.successRate
			return within0(fields(f.b, func(f field) error {
				switch {
				case f.is(fSuccessWindow, protowire.BytesType):
					return decodeDurationField(&s.window, f.b, "window")
				case f.is(fSuccessMinRate, protowire.Fixed64Type):
					s.minSuccessRate = math.Float64frombits(f.v)
				case f.is(fSuccessMinRequests, protowire.VarintType):
					s.minRequests = uint32(f.v)
				}
				return nil
			}), "success_rate")
		case fBreakerMinPenalty:
			return decodeDurationField(&br.minPenalty, f.b, "min_penalty")
		case fBreakerMaxPenalty:
			return decodeDurationField(&br.maxPenalty, f.b, "max_penalty")
		}
		return nil
	})
}

// within0 is within for a singular field, passing nil through.
func within0(err error, name string) error {
	if err == nil {
		return nil
	}
	return within(err, name, -1)
}

// decodeDurationField decodes google.protobuf.Duration into d, merging
// with what an earlier occurrence of the field set.
func decodeDurationField(d *duration, b []byte, name string) error {
	d.set = true
	return within0(fields(b, func(f field) error {
		switch {
		case f.is(fDurationSeconds, protowire.VarintType):
			d.sec = int64(f.v)
		case f.is(fDurationNanos, protowire.VarintType):
			d.nsec = int32(f.v)
		}
		return nil
	}), name)
}

// value checks d as google.protobuf.Duration requires (nanos within a
// second and of the seconds' sign) and as the policy does (not negative,
// which the package's conventions call invalid), and converts it. Unset
// is zero.
func (d duration) value() (time.Duration, error) {
	switch {
	case d.nsec <= -1e9 || d.nsec >= 1e9:
		return 0, fmt.Errorf("nanos %d is not within a second", d.nsec)
	case d.sec > 0 && d.nsec < 0 || d.sec < 0 && d.nsec > 0:
		return 0, fmt.Errorf("seconds %d and nanos %d have different signs", d.sec, d.nsec)
	case d.sec < 0 || d.nsec < 0:
		return 0, fmt.Errorf("%ds%dns is negative", d.sec, d.nsec)
	case d.sec > (math.MaxInt64-int64(d.nsec))/1e9:
		return 0, fmt.Errorf("%d seconds is longer than the proxy can hold (about 292 years)", d.sec)
	}
	return time.Duration(d.sec)*time.Second + time.Duration(d.nsec), nil
}
