package gatewayapi

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayxv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"

	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// The checks here are the ones the CRDs' OpenAPI schema and CEL rules make
// (the kubebuilder markers of the gateway-api v1.6.3 types) on the fields
// Skiff reads, plus the few bounds Skiff's proxy adds, so that a stream
// Parse takes is one `kubectl apply` takes too and Routes can convert
// without surprises. Fields Skiff ignores are left to the API server.

// The kinds Parse reads, and their API versions.
const (
	kindHTTPRoute     = "HTTPRoute"
	kindGRPCRoute     = "GRPCRoute"
	kindBackendPolicy = "XBackendTrafficPolicy"
	gatewayGroup      = "gateway.networking.k8s.io"
)

// objectRef names an object in messages: "HTTPRoute default/echo".
type objectRef struct{ kind, namespace, name string }

func (o objectRef) String() string {
	if o.name == "" {
		return o.kind
	}
	return o.kind + " " + o.namespace + "/" + o.name
}

func refOf(kind string, m *metav1.ObjectMeta) objectRef {
	return objectRef{kind: kind, namespace: namespaceOf(m), name: m.Name}
}

// namespaceOf is an object's namespace; "default" when it names none, as
// kubectl apply does without --namespace.
func namespaceOf(m *metav1.ObjectMeta) string {
	if m.Namespace == "" {
		return "default"
	}
	return m.Namespace
}

func validateMeta(m *metav1.ObjectMeta) []fieldError {
	var errs []fieldError
	if m.Name == "" {
		errs = append(errs, fieldErr("metadata.name", "required: every object needs a name"))
	} else if msgs := validation.IsDNS1123Subdomain(m.Name); len(msgs) > 0 {
		errs = append(errs, fieldErr("metadata.name", "%q: %s", truncate(m.Name), strings.Join(msgs, "; ")))
	}
	if m.Namespace != "" {
		if msgs := validation.IsDNS1123Label(m.Namespace); len(msgs) > 0 {
			errs = append(errs, fieldErr("metadata.namespace", "%q: %s", truncate(m.Namespace), strings.Join(msgs, "; ")))
		}
	}
	return errs
}

// Skiff's annotations. A Gateway API route has no field for these yet; the
// package doc says what each does.
const (
	// AnnotationNonIdempotent, "true" or "false", lets a route's retries
	// repeat methods RFC 9110 does not call idempotent (POST, PATCH; every
	// gRPC call) on a status: retry.Policy.NonIdempotent.
	AnnotationNonIdempotent = "retry.skiff.dev/non-idempotent"
	// AnnotationMaxBodyBytes, a positive integer, bounds the request body
	// a retry may replay: retry.Policy.MaxBodyBytes.
	AnnotationMaxBodyBytes = "retry.skiff.dev/max-body-bytes"
	// AnnotationAttempts, on a GRPCRoute, is the most retries of one call
	// (1 or more): the GRPCRoute of gateway-api v1.6.3 has no retry.
	AnnotationAttempts = "retry.skiff.dev/attempts"
	// AnnotationGRPCCodes, on a GRPCRoute, lists the gRPC status codes
	// that are retried, comma-separated numbers from 1 to 16 ("14,4").
	AnnotationGRPCCodes = "retry.skiff.dev/grpc-codes"
	// AnnotationBackoff, on a GRPCRoute, is the least wait before a
	// retry, a Gateway API duration ("25ms").
	AnnotationBackoff = "retry.skiff.dev/backoff"
	// AnnotationRequestTimeout, on a GRPCRoute, bounds a whole call,
	// retries included (HTTPRoute's timeouts.request), a Gateway API
	// duration.
	AnnotationRequestTimeout = "retry.skiff.dev/request-timeout"
	// AnnotationBackendRequestTimeout, on a GRPCRoute, bounds each attempt
	// until its response headers (HTTPRoute's timeouts.backendRequest): a
	// call stuck on a stalled replica is retried, as DEADLINE_EXCEEDED (4),
	// when the retry codes hold 4.
	AnnotationBackendRequestTimeout = "retry.skiff.dev/backend-request-timeout"

	annotationPrefix = "retry.skiff.dev/"
)

// retryAnnotations are a route's Skiff annotations, read.
type retryAnnotations struct {
	nonIdempotent *bool
	maxBodyBytes  int64 // 0: not set
	attempts      *int
	grpcCodes     []int
	backoff       *time.Duration
	timeouts      timeout.Route // GRPCRoute's; zero fields: not set
}

// readAnnotations reads the retry.skiff.dev/ annotations of an object of
// the given kind; other annotations are not Skiff's and are left alone.
func readAnnotations(kind string, ann map[string]string) (retryAnnotations, []fieldError) {
	var r retryAnnotations
	var errs []fieldError
	allowed := map[string][]string{
		kindHTTPRoute: {AnnotationNonIdempotent, AnnotationMaxBodyBytes},
		kindGRPCRoute: {AnnotationAttempts, AnnotationGRPCCodes, AnnotationBackoff, AnnotationNonIdempotent, AnnotationMaxBodyBytes,
			AnnotationRequestTimeout, AnnotationBackendRequestTimeout},
	}[kind]
	for _, k := range sortedKeys(ann) {
		if !strings.HasPrefix(k, annotationPrefix) {
			continue
		}
		v := ann[k]
		p := key("metadata.annotations", k)
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				errs = append(errs, fieldErr(p, "Skiff's retry annotations apply to HTTPRoute and GRPCRoute only"))
			} else {
				errs = append(errs, fieldErr(p, "Skiff does not read this annotation on kind %s; there it reads %s", kind, strings.Join(allowed, ", ")))
			}
			continue
		}
		switch k {
		case AnnotationNonIdempotent:
			switch v {
			case "true", "false":
				b := v == "true"
				r.nonIdempotent = &b
			default:
				errs = append(errs, fieldErr(p, "%q: want \"true\" or \"false\"", truncate(v)))
			}
		case AnnotationMaxBodyBytes:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				errs = append(errs, fieldErr(p, "%q: want a positive number of bytes, such as \"65536\"", truncate(v)))
				continue
			}
			r.maxBodyBytes = n
		case AnnotationAttempts:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				errs = append(errs, fieldErr(p, "%q: want a number of retries, 1 or more", truncate(v)))
				continue
			}
			r.attempts = &n
		case AnnotationGRPCCodes:
			codes, err := parseGRPCCodes(v)
			if err != nil {
				errs = append(errs, fieldErr(p, "%v", err))
				continue
			}
			r.grpcCodes = codes
		case AnnotationBackoff:
			d, err := parseDuration(gatewayv1.Duration(v))
			if err != nil {
				errs = append(errs, fieldErr(p, "%v", err))
				continue
			}
			r.backoff = &d
		case AnnotationRequestTimeout, AnnotationBackendRequestTimeout:
			d, err := parseDuration(gatewayv1.Duration(v))
			if err == nil && d <= 0 {
				err = fmt.Errorf("%q: a timeout must be longer than 0s", v)
			}
			if err != nil {
				errs = append(errs, fieldErr(p, "%v", err))
				continue
			}
			if k == AnnotationRequestTimeout {
				r.timeouts.Request = d
			} else {
				r.timeouts.BackendRequest = d
			}
		}
	}
	if err := r.timeouts.Validate(); err != nil {
		errs = append(errs, fieldErr(key("metadata.annotations", AnnotationBackendRequestTimeout), "%v", err))
	}
	return r, errs
}

// parseGRPCCodes reads "14,4": gRPC status codes from 1 to 16, each once.
func parseGRPCCodes(v string) ([]int, error) {
	var codes []int
	for i, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		c, err := strconv.Atoi(f)
		if err != nil || c < 1 || c > 16 {
			return nil, fmt.Errorf("code %d, %q: want comma-separated gRPC status codes from 1 to 16, such as \"14,4\" (UNAVAILABLE, DEADLINE_EXCEEDED)", i+1, truncate(f))
		}
		if slices.Contains(codes, c) {
			return nil, fmt.Errorf("code %d is listed twice", c)
		}
		codes = append(codes, c)
	}
	return codes, nil
}

func validateHTTPRoute(r *gatewayv1.HTTPRoute) []fieldError {
	errs := validateMeta(&r.ObjectMeta)
	_, aerrs := readAnnotations(kindHTTPRoute, r.Annotations)
	errs = append(errs, aerrs...)
	errs = append(errs, validateParentRefs(r.Spec.ParentRefs)...)
	errs = append(errs, maxItems("spec.hostnames", len(r.Spec.Hostnames), 16)...)
	errs = append(errs, maxItems("spec.rules", len(r.Spec.Rules), 16)...)
	matches := 0
	for i := range r.Spec.Rules {
		rule := &r.Spec.Rules[i]
		p := index("spec.rules", i)
		matches += len(rule.Matches)
		errs = append(errs, maxItems(child(p, "matches"), len(rule.Matches), 64)...)
		errs = append(errs, maxItems(child(p, "filters"), len(rule.Filters), 16)...)
		errs = append(errs, maxItems(child(p, "backendRefs"), len(rule.BackendRefs), 16)...)
		for j := range rule.BackendRefs {
			errs = append(errs, validateBackendRef(&rule.BackendRefs[j].BackendRef, index(child(p, "backendRefs"), j))...)
		}
		if t := rule.Timeouts; t != nil {
			errs = append(errs, validateTimeouts(t, child(p, "timeouts"))...)
		}
		if rt := rule.Retry; rt != nil {
			errs = append(errs, validateRetry(rt, child(p, "retry"))...)
		}
	}
	if matches > 128 {
		errs = append(errs, fieldErr("spec.rules", "%d matches in all: the rules of a route may hold at most 128", matches))
	}
	return errs
}

func validateGRPCRoute(r *gatewayv1.GRPCRoute) []fieldError {
	errs := validateMeta(&r.ObjectMeta)
	_, aerrs := readAnnotations(kindGRPCRoute, r.Annotations)
	errs = append(errs, aerrs...)
	errs = append(errs, validateParentRefs(r.Spec.ParentRefs)...)
	errs = append(errs, maxItems("spec.hostnames", len(r.Spec.Hostnames), 16)...)
	errs = append(errs, maxItems("spec.rules", len(r.Spec.Rules), 16)...)
	matches := 0
	for i := range r.Spec.Rules {
		rule := &r.Spec.Rules[i]
		p := index("spec.rules", i)
		matches += len(rule.Matches)
		errs = append(errs, maxItems(child(p, "matches"), len(rule.Matches), 64)...)
		errs = append(errs, maxItems(child(p, "filters"), len(rule.Filters), 16)...)
		errs = append(errs, maxItems(child(p, "backendRefs"), len(rule.BackendRefs), 16)...)
		for j := range rule.BackendRefs {
			errs = append(errs, validateBackendRef(&rule.BackendRefs[j].BackendRef, index(child(p, "backendRefs"), j))...)
		}
	}
	if matches > 128 {
		errs = append(errs, fieldErr("spec.rules", "%d matches in all: the rules of a route may hold at most 128", matches))
	}
	return errs
}

func maxItems(p string, n, limit int) []fieldError {
	if n > limit {
		return []fieldError{fieldErr(p, "%d items: at most %d are allowed", n, limit)}
	}
	return nil
}

func validateTimeouts(t *gatewayv1.HTTPRouteTimeouts, p string) []fieldError {
	var errs []fieldError
	var request, backend time.Duration
	var requestOK, backendOK bool
	if t.Request != nil {
		d, err := parseDuration(*t.Request)
		if err != nil {
			errs = append(errs, fieldErr(child(p, "request"), "%v", err))
		}
		request, requestOK = d, err == nil
	}
	if t.BackendRequest != nil {
		d, err := parseDuration(*t.BackendRequest)
		if err != nil {
			errs = append(errs, fieldErr(child(p, "backendRequest"), "%v", err))
		}
		backend, backendOK = d, err == nil
	}
	// The CRD's rule: "0s" turns the request timeout off, and then any
	// backendRequest is allowed.
	if requestOK && backendOK && request != 0 && backend > request {
		errs = append(errs, fieldErr(child(p, "backendRequest"), "%s is longer than the request timeout %s: one attempt cannot outlast the whole request", *t.BackendRequest, *t.Request))
	}
	return errs
}

func validateRetry(r *gatewayv1.HTTPRouteRetry, p string) []fieldError {
	var errs []fieldError
	if r.Attempts != nil && *r.Attempts < 1 {
		// gateway-api v1.6.3 puts Minimum=1 on attempts: to retry
		// nothing, leave the retry stanza out.
		errs = append(errs, fieldErr(child(p, "attempts"), "%d: the Gateway API wants 1 or more (leave retry out to turn retries off)", *r.Attempts))
	}
	seen := map[gatewayv1.HTTPRouteRetryStatusCode]int{}
	for i, c := range r.Codes {
		cp := index(child(p, "codes"), i)
		if c < 400 || c > 599 {
			errs = append(errs, fieldErr(cp, "%d is not an HTTP error status: retry codes are 400 to 599", c))
		}
		if j, dup := seen[c]; dup {
			errs = append(errs, fieldErr(cp, "%d repeats codes[%d]", c, j))
		}
		seen[c] = i
	}
	if r.Backoff != nil {
		if _, err := parseDuration(*r.Backoff); err != nil {
			errs = append(errs, fieldErr(child(p, "backoff"), "%v", err))
		}
	}
	return errs
}

// parentKind sorts a parentRef: a Service (the mesh's parent, GAMMA), a
// kind of the Gateway API group (a Gateway: not a mesh sidecar's
// business), or neither. The Gateway API defaults a parentRef's group to
// gateway.networking.k8s.io and its kind to Gateway.
type parentKind int

const (
	parentService parentKind = iota
	parentGateway
	parentOther
)

func classifyParent(p *gatewayv1.ParentReference) (parentKind, string, string) {
	group, kind := gatewayGroup, "Gateway"
	if p.Group != nil {
		group = string(*p.Group)
	}
	if p.Kind != nil {
		kind = string(*p.Kind)
	}
	switch {
	case coreGroup(group) && kind == "Service":
		return parentService, group, kind
	case group == gatewayGroup && kind != "Service":
		return parentGateway, group, kind
	}
	return parentOther, group, kind
}

// coreGroup: "" is Kubernetes' core API group; the Gateway API's
// references also accept "core".
func coreGroup(g string) bool { return g == "" || g == "core" }

func validateParentRefs(refs []gatewayv1.ParentReference) []fieldError {
	errs := maxItems("spec.parentRefs", len(refs), 32)
	seen := map[string]int{}
	for i := range refs {
		ref := &refs[i]
		p := index("spec.parentRefs", i)
		errs = append(errs, validateName(child(p, "name"), string(ref.Name))...)
		if ref.Namespace != nil {
			errs = append(errs, validateNamespace(child(p, "namespace"), string(*ref.Namespace))...)
		}
		if ref.Port != nil && (*ref.Port < 1 || *ref.Port > 65535) {
			errs = append(errs, fieldErr(child(p, "port"), "%d is not a port (1 to 65535)", *ref.Port))
		}
		switch k, group, kind := classifyParent(ref); {
		case k == parentOther && kind == "Service" && ref.Group == nil:
			errs = append(errs, fieldErr(p, "a Service parentRef needs group: \"\"; without it the Gateway API reads the group as %s", gatewayGroup))
		case k == parentOther:
			errs = append(errs, fieldErr(p, "group %q kind %q: a mesh route's parent is a Service (group \"\", kind Service); a Gateway parent is ignored with a warning", group, kind))
		}
		id := fmt.Sprintf("%v|%v|%v|%s|%v|%v", deref0(ref.Group), deref0(ref.Kind), deref0(ref.Namespace), ref.Name, deref0(ref.SectionName), deref0(ref.Port))
		if j, dup := seen[id]; dup {
			errs = append(errs, fieldErr(p, "repeats spec.parentRefs[%d]: parentRefs must be distinct", j))
		}
		seen[id] = i
	}
	return errs
}

func validateBackendRef(b *gatewayv1.BackendRef, p string) []fieldError {
	errs := validateName(child(p, "name"), string(b.Name))
	if b.Namespace != nil {
		errs = append(errs, validateNamespace(child(p, "namespace"), string(*b.Namespace))...)
	}
	if b.Port != nil && (*b.Port < 1 || *b.Port > 65535) {
		errs = append(errs, fieldErr(child(p, "port"), "%d is not a port (1 to 65535)", *b.Port))
	}
	if isServiceBackend(b) && b.Port == nil {
		errs = append(errs, fieldErr(child(p, "port"), "required: a Service backendRef must name its port"))
	}
	if b.Weight != nil && (*b.Weight < 0 || *b.Weight > 1_000_000) {
		errs = append(errs, fieldErr(child(p, "weight"), "%d is outside 0 to 1000000", *b.Weight))
	}
	return errs
}

// isServiceBackend: a backendRef's group defaults to the core group and
// its kind to Service.
func isServiceBackend(b *gatewayv1.BackendRef) bool {
	return (b.Group == nil || coreGroup(string(*b.Group))) && (b.Kind == nil || *b.Kind == "Service")
}

func validateName(p, name string) []fieldError {
	switch {
	case name == "":
		return []fieldError{fieldErr(p, "required")}
	case len(name) > 253:
		return []fieldError{fieldErr(p, "%d characters: at most 253 are allowed", len(name))}
	}
	return nil
}

func validateNamespace(p, ns string) []fieldError {
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return []fieldError{fieldErr(p, "%q: %s", truncate(ns), strings.Join(msgs, "; "))}
	}
	return nil
}

func validateBackendPolicy(b *gatewayxv1alpha1.XBackendTrafficPolicy) []fieldError {
	errs := validateMeta(&b.ObjectMeta)
	_, aerrs := readAnnotations(kindBackendPolicy, b.Annotations)
	errs = append(errs, aerrs...)
	refs := b.Spec.TargetRefs
	switch {
	case len(refs) == 0:
		errs = append(errs, fieldErr("spec.targetRefs", "required: name at least one Service the policy applies to"))
	case len(refs) > 16:
		errs = append(errs, fieldErr("spec.targetRefs", "%d items: at most 16 are allowed", len(refs)))
	}
	seen := map[gatewayv1.LocalPolicyTargetReference]int{}
	for i, ref := range refs {
		p := index("spec.targetRefs", i)
		errs = append(errs, validateTargetRef(&ref, p)...)
		if j, dup := seen[ref]; dup {
			errs = append(errs, fieldErr(p, "repeats spec.targetRefs[%d]", j))
		}
		seen[ref] = i
	}
	rc := b.Spec.RetryConstraint
	if rc == nil {
		return errs
	}
	if bd := rc.Budget; bd != nil {
		if bd.Percent != nil && (*bd.Percent < 0 || *bd.Percent > 100) {
			errs = append(errs, fieldErr("spec.retryConstraint.budget.percent", "%d is outside 0 to 100", *bd.Percent))
		}
		if bd.Interval != nil {
			p := "spec.retryConstraint.budget.interval"
			if d, err := parseDuration(*bd.Interval); err != nil {
				errs = append(errs, fieldErr(p, "%v", err))
			} else if d < time.Second || d > time.Hour {
				errs = append(errs, fieldErr(p, "%s: the interval must be from 1s to 1h", *bd.Interval))
			}
		}
	}
	if m := rc.MinRetryRate; m != nil {
		if m.Count != nil && (*m.Count < 1 || *m.Count > 1_000_000) {
			errs = append(errs, fieldErr("spec.retryConstraint.minRetryRate.count", "%d is outside 1 to 1000000", *m.Count))
		}
		if m.Interval != nil {
			p := "spec.retryConstraint.minRetryRate.interval"
			if d, err := parseDuration(*m.Interval); err != nil {
				errs = append(errs, fieldErr(p, "%v", err))
			} else if d == 0 || d > time.Hour {
				errs = append(errs, fieldErr(p, "%s: the interval must be above 0s and at most 1h", *m.Interval))
			} else if d < 10*time.Millisecond {
				// Skiff's budget counts in tenths of its interval, in
				// whole milliseconds (retry.NewBudget).
				errs = append(errs, fieldErr(p, "%s: Skiff's retry budget counts over 10ms at least", *m.Interval))
			}
		}
	}
	return errs
}

func validateTargetRef(ref *gatewayv1.LocalPolicyTargetReference, p string) []fieldError {
	var errs []fieldError
	if ref.Kind == "" {
		errs = append(errs, fieldErr(child(p, "kind"), "required"))
	}
	return append(errs, validateName(child(p, "name"), string(ref.Name))...)
}

func validateCircuitBreaker(c *CircuitBreaker) []fieldError {
	errs := validateMeta(&c.ObjectMeta)
	_, aerrs := readAnnotations(CircuitBreakerKind, c.Annotations)
	errs = append(errs, aerrs...)
	s := &c.Spec
	errs = append(errs, validateTargetRef(&s.TargetRef, "spec.targetRef")...)
	if !coreGroup(string(s.TargetRef.Group)) || s.TargetRef.Kind != "Service" {
		errs = append(errs, fieldErr("spec.targetRef", "group %q kind %q: a CircuitBreaker's target is a Service (group \"\", kind Service)", s.TargetRef.Group, s.TargetRef.Kind))
	}
	if v := s.ConsecutiveFailures; v != nil && (*v < 0 || *v > maxConsecutiveFailures) {
		errs = append(errs, fieldErr("spec.consecutiveFailures", "%d is outside 0 to %d", *v, maxConsecutiveFailures))
	}
	if v := s.MinSuccessRate; v != nil {
		if _, err := parseRate(*v); err != nil {
			errs = append(errs, fieldErr("spec.minSuccessRate", "%v", err))
		}
	}
	if v := s.Window; v != nil {
		if d, err := parseDuration(*v); err != nil {
			errs = append(errs, fieldErr("spec.window", "%v", err))
		} else if d < 10*time.Millisecond || d > time.Hour {
			errs = append(errs, fieldErr("spec.window", "%s: the window must be from 10ms to 1h", *v))
		}
	}
	if v := s.MinRequests; v != nil && (*v < 1 || *v > maxMinRequests) {
		errs = append(errs, fieldErr("spec.minRequests", "%d is outside 1 to %d", *v, maxMinRequests))
	}
	base, baseOK := time.Second, true // breaker.DefaultBaseEjection
	if v := s.BaseEjection; v != nil {
		d, err := parseDuration(*v)
		switch {
		case err != nil:
			errs = append(errs, fieldErr("spec.baseEjection", "%v", err))
		case d == 0:
			errs = append(errs, fieldErr("spec.baseEjection", "0s: an ejection must last longer than 0s"))
		}
		base, baseOK = d, err == nil
	}
	if v := s.MaxEjection; v != nil {
		d, err := parseDuration(*v)
		switch {
		case err != nil:
			errs = append(errs, fieldErr("spec.maxEjection", "%v", err))
		case d == 0:
			errs = append(errs, fieldErr("spec.maxEjection", "0s: an ejection must last longer than 0s"))
		case baseOK && d < base:
			errs = append(errs, fieldErr("spec.maxEjection", "%s is shorter than baseEjection %v", *v, base))
		}
	}
	return errs
}

// parseRate reads a CircuitBreaker's minSuccessRate, a decimal string
// from 0 to 1.
func parseRate(s string) (float64, error) {
	if !rateFormat.MatchString(s) {
		return 0, fmt.Errorf("%q is not a rate: want a decimal from \"0\" to \"1\" with up to six places, such as \"0.9\"", truncate(s))
	}
	return strconv.ParseFloat(s, 64)
}

func deref0[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
