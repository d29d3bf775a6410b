package control

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
)

func TestWatchOutboundRequestDecodesWithGeneratedTypes(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		name string
		auth string
		pc   ProxyContext
		want *policyv1.WatchOutboundRequest
	}{
		{"full", testAuthority, ProxyContext{ID: "uid-1@1700000000", Pod: "web-0", Namespace: "shop"},
			&policyv1.WatchOutboundRequest{Authority: testAuthority,
				Proxy: &policyv1.ProxyContext{ProxyId: "uid-1@1700000000", Pod: "web-0", Namespace: "shop"}}},
		{"no proxy context", "web:80", ProxyContext{}, &policyv1.WatchOutboundRequest{Authority: "web:80"}},
		{"partial proxy context", "web:80", ProxyContext{Namespace: "shop"},
			&policyv1.WatchOutboundRequest{Authority: "web:80", Proxy: &policyv1.ProxyContext{Namespace: "shop"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendWatchOutboundRequest(nil, tc.auth, tc.pc)
			var got policyv1.WatchOutboundRequest
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatalf("generated code rejects our WatchOutboundRequest: %v", err)
			}
			if !proto.Equal(&got, tc.want) {
				t.Fatalf("decoded %v, want %v", &got, tc.want)
			}
			want, err := deterministic.Marshal(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("encoding differs from the generated code's:\n ours %x\n theirs %x", b, want)
			}
		})
	}
}

// fullPolicy sets every field the proxy reads, and some it ignores.
func fullPolicy() *policyv1.OutboundPolicy {
	return policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
		named(p)
		r.Name = "all"
		r.Backends[0].Failover = []string{"web.west:8080"}
		r.Timeouts = &policyv1.Timeouts{Request: dur(10 * time.Second), BackendRequest: dur(2 * time.Second), Idle: dur(time.Minute)}
		r.Retry = &policyv1.Retry{
			Conditions:    []policyv1.RetryCondition{policyv1.RetryCondition_RETRY_CONDITION_GATEWAY_ERROR, policyv1.RetryCondition_RETRY_CONDITION_RESET},
			HttpStatuses:  []*policyv1.HttpStatusRange{{Min: 500, Max: 501}, {Min: 429}},
			GrpcCodes:     []uint32{14, 8},
			Limit:         3,
			Backoff:       &policyv1.Backoff{Base: dur(25 * time.Millisecond), Max: dur(250 * time.Millisecond), Jitter: 0.5},
			Budget:        &policyv1.RetryBudget{Ratio: 0.2, MinPerSecond: 10, Ttl: dur(10 * time.Second), Percent: ptr[uint32](25), MinRetries: ptr[uint32](3), MinInterval: dur(time.Second)},
			NonIdempotent: true,
			MaxBodyBytes:  1 << 16,
		}
		p.Breaker = &policyv1.Breaker{
			ConsecutiveFailures: &policyv1.ConsecutiveFailures{MaxFailures: 5},
			SuccessRate:         &policyv1.SuccessRate{Window: dur(10 * time.Second), MinSuccessRate: 0.9, MinRequests: 20},
			MinPenalty:          dur(time.Second), MaxPenalty: dur(time.Minute), Jitter: 0.5,
		}
	})
}

// fromGeneratedPolicy is what decodeOutboundPolicy should make of the
// message the protobuf runtime decoded as m.
func fromGeneratedPolicy(m *policyv1.OutboundPolicy) outboundPolicy {
	d := func(v *durationpb.Duration) duration {
		if v == nil {
			return duration{}
		}
		return duration{set: true, sec: v.GetSeconds(), nsec: v.GetNanos()}
	}
	var p outboundPolicy
	for _, r := range m.GetRoutes() {
		md := r.GetMetadata()
		pr := policyRoute{kind: md.GetKind(), namespace: md.GetNamespace(), name: md.GetName()}
		for _, ru := range r.GetRules() {
			rule := policyRule{filters: len(ru.GetFilters()), fault: ru.Fault != nil}
			for _, mt := range ru.GetMatches() {
				pm := policyMatch{headers: len(mt.GetHeaders()), queryParams: len(mt.GetQueryParams()), method: mt.GetMethod()}
				switch k := mt.GetPath().GetKind().(type) {
				case *policyv1.PathMatch_Exact:
					pm.pathKind, pm.path = pathExact, k.Exact
				case *policyv1.PathMatch_Prefix:
					pm.pathKind, pm.path = pathPrefix, k.Prefix
				case *policyv1.PathMatch_Regex:
					pm.pathKind, pm.path = pathRegex, k.Regex
				}
				rule.matches = append(rule.matches, pm)
			}
			for _, be := range ru.GetBackends() {
				rule.backends = append(rule.backends, policyBackend{authority: be.GetAuthority(), filters: len(be.GetFilters()), failover: len(be.GetFailover())})
			}
			if rt := ru.GetRetry(); rt != nil {
				pr := &policyRetry{limit: rt.GetLimit(), nonIdempotent: rt.GetNonIdempotent(), maxBodyBytes: rt.GetMaxBodyBytes()}
				for _, c := range rt.GetConditions() {
					pr.conditions = append(pr.conditions, int32(c))
				}
				for _, s := range rt.GetHttpStatuses() {
					pr.statuses = append(pr.statuses, statusRange{s.GetMin(), s.GetMax()})
				}
				pr.grpcCodes = append(pr.grpcCodes, rt.GetGrpcCodes()...)
				if bo := rt.GetBackoff(); bo != nil {
					pr.backoff = &policyBackoff{base: d(bo.GetBase()), max: d(bo.GetMax())}
				}
				if bu := rt.GetBudget(); bu != nil {
					pr.budget = &policyBudget{ratio: bu.GetRatio(), minPerSecond: bu.GetMinPerSecond(), ttl: d(bu.GetTtl()),
						percent: bu.GetPercent(), hasPercent: bu.Percent != nil,
						minRetries: bu.GetMinRetries(), hasMinRetries: bu.MinRetries != nil, minInterval: d(bu.GetMinInterval())}
				}
				rule.retry = pr
			}
			if to := ru.GetTimeouts(); to != nil {
				rule.timeouts = &policyTimeouts{request: d(to.GetRequest()), backendRequest: d(to.GetBackendRequest()), idle: d(to.GetIdle())}
			}
			pr.rules = append(pr.rules, rule)
		}
		p.routes = append(p.routes, pr)
	}
	if b := m.GetBreaker(); b != nil {
		p.breaker = &policyBreaker{minPenalty: d(b.GetMinPenalty()), maxPenalty: d(b.GetMaxPenalty())}
		if c := b.GetConsecutiveFailures(); c != nil {
			p.breaker.consecutive = &policyConsecutive{maxFailures: c.GetMaxFailures()}
		}
		if s := b.GetSuccessRate(); s != nil {
			p.breaker.successRate = &policySuccessRate{window: d(s.GetWindow()), minSuccessRate: s.GetMinSuccessRate(), minRequests: s.GetMinRequests()}
		}
	}
	p.balancer = m.Balancer != nil
	return p
}

// sameNaN replaces NaNs, which never equal themselves, by a number so that
// reflect.DeepEqual can compare decodings.
func sameNaN(p *outboundPolicy) {
	fix := func(f *float64) {
		if math.IsNaN(*f) {
			*f = -42
		}
	}
	for i := range p.routes {
		for j := range p.routes[i].rules {
			if r := p.routes[i].rules[j].retry; r != nil && r.budget != nil {
				fix(&r.budget.ratio)
			}
		}
	}
	if b := p.breaker; b != nil && b.successRate != nil {
		fix(&b.successRate.minSuccessRate)
	}
}

func TestDecodeOutboundPolicyAgreesWithGeneratedTypes(t *testing.T) {
	leakcheck.Check(t)
	for _, m := range []*policyv1.OutboundPolicy{defaultPolicy(), fullPolicy(), {}} {
		got, err := decodeOutboundPolicy(marshal(t, m))
		if err != nil {
			t.Fatal(err)
		}
		if want := fromGeneratedPolicy(m); !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded %+v\nwant %+v", got, want)
		}
	}
}

func FuzzDecodeOutboundPolicy(f *testing.F) {
	// No leakcheck: the target starts no goroutine, and under -fuzz the
	// engine's own os/signal goroutine would be reported as a leak.
	for _, m := range []*policyv1.OutboundPolicy{
		defaultPolicy(), fullPolicy(),
		policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{Min: 503}, {Min: 700}}}
			r.Matches[0].Headers = []*policyv1.HeaderMatch{{Name: "x"}}
		}),
		policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			p.Routes = append(p.Routes, p.Routes[0])
			r.Fault = &policyv1.Fault{}
		}),
	} {
		f.Add(marshal(f, m))
	}
	f.Add([]byte{0x12, 0x10, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		namesField := func(err error) {
			t.Helper()
			if fe, ok := errors.AsType[*fieldError](err); !ok || fe.err == nil || err.Error() == "" {
				t.Fatalf("error %q (%T) names no field", err, err)
			}
		}
		p, err := decodeOutboundPolicy(b)
		if err != nil {
			namesField(err)
		}
		var m policyv1.OutboundPolicy
		if perr := proto.Unmarshal(b, &m); perr == nil {
			// What the protobuf runtime accepts, we accept with the same
			// meaning, up to our caps. (We accept more: we do not check
			// UTF-8, nor parse what we ignore.)
			if err != nil && !errors.Is(err, errTooMany) {
				t.Fatalf("decodeOutboundPolicy rejects what protobuf accepts (%v): %v", &m, err)
			}
			if want := fromGeneratedPolicy(&m); err == nil {
				sameNaN(&p)
				sameNaN(&want)
				if !reflect.DeepEqual(p, want) {
					t.Fatalf("decodeOutboundPolicy = %+v, protobuf says %+v", p, want)
				}
			}
		}
		if err != nil {
			return
		}
		rt, _, err := p.route(testAuthority)
		if err != nil {
			namesField(err)
			return
		}
		if rt != nil {
			if err := rt.Validate(); err != nil {
				t.Fatalf("accepted a route that fails its own check: %v", err)
			}
		}
	})
}

func BenchmarkDecodePolicy(b *testing.B) {
	msg := marshal(b, fullPolicy())
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodePolicy(testAuthority, msg); err != nil {
			b.Fatal(err)
		}
	}
}
