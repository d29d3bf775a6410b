package gatewayapi

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayxv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"

	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// DefaultAttempts is the retries of a retry stanza that does not say how
// many: the Gateway API leaves it to the implementation.
const DefaultAttempts = 1

// Warning is something Routes accepted but ignored: a field Skiff does not
// implement yet, or a reference that leads nowhere. The routes returned
// with it are what Skiff does; the warning says where that differs from
// what the object asks.
type Warning struct {
	// Object is "Kind namespace/name".
	Object string
	// Field is the path of the field ignored, such as spec.rules[1];
	// empty for the object as a whole.
	Field string
	// Message says what is ignored and why.
	Message string
}

func (w Warning) String() string {
	if w.Field == "" {
		return w.Object + ": " + w.Message
	}
	return w.Object + ": " + w.Field + ": " + w.Message
}

// Routes converts the resources to the proxy's routes: one route for each
// Service port that an HTTPRoute or GRPCRoute names as its parent, at the
// authority that authority returns for the Service's namespace, name and
// port (false when the Service or port is unknown: that parentRef is then
// skipped with a warning). The routes' retry budgets come from the
// XBackendTrafficPolicies and their breakers from the CircuitBreakers
// that target the Service.
//
// The routes are sorted by authority and each passes route.Route.Validate.
// The warnings list what was accepted but ignored. An error, made of
// *Error values joined, is returned for objects that fail validation, for
// two routes of one authority or two policies of one kind for one Service
// (the Gateway API keeps the older; Skiff refuses unless both carry a
// creationTimestamp), and for a route the proxy would refuse. A nil r
// holds no objects.
func (res *Resources) Routes(authority func(namespace, name string, port int32) (string, bool)) ([]route.Route, []Warning, error) {
	if authority == nil {
		return nil, nil, errors.New("gatewayapi: Routes needs an authority function")
	}
	if res == nil {
		res = &Resources{}
	}
	c := &converter{res: res, authority: authority, byAuthority: map[string]int{}, byService: map[serviceKey][]int{}, warned: map[Warning]bool{}}
	c.validate()
	if len(c.errs) > 0 {
		return nil, c.warnings, join(c.errs)
	}
	for i := range res.HTTPRoutes {
		c.httpRoute(&res.HTTPRoutes[i])
	}
	for i := range res.GRPCRoutes {
		c.grpcRoute(&res.GRPCRoutes[i])
	}
	c.backendPolicies()
	c.circuitBreakers()
	routes := c.finish()
	if len(c.errs) > 0 {
		return nil, c.warnings, join(c.errs)
	}
	return routes, c.warnings, nil
}

type serviceKey struct{ namespace, name string }

func (s serviceKey) String() string { return s.namespace + "/" + s.name }

// candidate is a route for one Service port, and what made it.
type candidate struct {
	route   route.Route
	owner   objectRef
	created metav1.Time
	field   string // the owner's parentRef
	service serviceKey
	port    int32
}

type converter struct {
	res       *Resources
	authority func(namespace, name string, port int32) (string, bool)

	candidates  []candidate
	byAuthority map[string]int       // lower-case authority → candidate
	byService   map[serviceKey][]int // → candidates
	warnings    []Warning
	warned      map[Warning]bool
	errs        []error
}

func (c *converter) warn(o objectRef, field, format string, args ...any) {
	w := Warning{Object: o.String(), Field: field, Message: fmt.Sprintf(format, args...)}
	if !c.warned[w] {
		c.warned[w] = true
		c.warnings = append(c.warnings, w)
	}
}

// fail records an error about object o, placed in its stream when it came
// from Parse.
func (c *converter) fail(o objectRef, field, format string, args ...any) {
	e := &Error{Object: o.String(), Field: field, Message: fmt.Sprintf(format, args...)}
	if at, ok := c.res.origins[o]; ok {
		e.Source, e.Document, e.Line = c.res.source, at.document, at.lineOf(field)
	}
	c.errs = append(c.errs, e)
}

// where says where o is in its stream, for a message about another
// object; empty when o did not come from Parse.
func (c *converter) where(o objectRef) string {
	if at, ok := c.res.origins[o]; ok {
		return fmt.Sprintf(" (document %d, line %d)", at.document, at.line)
	}
	return ""
}

// validate checks every object again: Parse has, but a caller may have
// filled the Resources itself.
func (c *converter) validate() {
	check := func(o objectRef, fes []fieldError) {
		for _, fe := range fes {
			c.fail(o, fe.path, "%s", fe.msg)
		}
	}
	for i := range c.res.HTTPRoutes {
		x := &c.res.HTTPRoutes[i]
		check(refOf(kindHTTPRoute, &x.ObjectMeta), validateHTTPRoute(x))
	}
	for i := range c.res.GRPCRoutes {
		x := &c.res.GRPCRoutes[i]
		check(refOf(kindGRPCRoute, &x.ObjectMeta), validateGRPCRoute(x))
	}
	for i := range c.res.BackendTrafficPolicies {
		x := &c.res.BackendTrafficPolicies[i]
		check(refOf(kindBackendPolicy, &x.ObjectMeta), validateBackendPolicy(x))
	}
	for i := range c.res.CircuitBreakers {
		x := &c.res.CircuitBreakers[i]
		check(refOf(CircuitBreakerKind, &x.ObjectMeta), validateCircuitBreaker(x))
	}
}

// rulePolicy is what a route's one rule asks of every request.
type rulePolicy struct {
	index       int // the rule's index; -1 when no rule takes every request
	timeouts    timeout.Route
	retry       retry.Policy
	backendRefs []gatewayv1.BackendRef
	backendFilt []bool // backendRefs[i] has filters of its own
}

func (c *converter) httpRoute(x *gatewayv1.HTTPRoute) {
	o := refOf(kindHTTPRoute, &x.ObjectMeta)
	rp := rulePolicy{index: -1}
	for i := range x.Spec.Rules {
		rule := &x.Spec.Rules[i]
		p := index("spec.rules", i)
		if !c.takeRule(o, p, i, &rp, httpCatchAll(rule.Matches)) {
			continue
		}
		if len(rule.Filters) > 0 {
			c.warn(o, child(p, "filters"), "filters are not yet supported: ignored")
		}
		if rule.SessionPersistence != nil {
			c.warn(o, child(p, "sessionPersistence"), "session persistence is not yet supported: ignored")
		}
		if t := rule.Timeouts; t != nil {
			if t.Request != nil {
				rp.timeouts.Request, _ = parseDuration(*t.Request) // validated
			}
			if t.BackendRequest != nil {
				rp.timeouts.BackendRequest, _ = parseDuration(*t.BackendRequest)
			}
		}
		if rt := rule.Retry; rt != nil {
			rp.retry.Attempts = DefaultAttempts
			if rt.Attempts != nil {
				rp.retry.Attempts = *rt.Attempts
			}
			for _, code := range rt.Codes {
				rp.retry.Codes = append(rp.retry.Codes, int(code))
			}
			if rt.Backoff != nil {
				rp.retry.Backoff, _ = parseDuration(*rt.Backoff)
			}
		}
		for j := range rule.BackendRefs {
			rp.backendRefs = append(rp.backendRefs, rule.BackendRefs[j].BackendRef)
			rp.backendFilt = append(rp.backendFilt, len(rule.BackendRefs[j].Filters) > 0)
		}
	}
	ann, _ := readAnnotations(kindHTTPRoute, x.Annotations) // validated
	c.annotate(o, &rp, ann)
	c.attach(o, &x.ObjectMeta, x.Spec.ParentRefs, len(x.Spec.Hostnames), rp)
}

func (c *converter) grpcRoute(x *gatewayv1.GRPCRoute) {
	o := refOf(kindGRPCRoute, &x.ObjectMeta)
	rp := rulePolicy{index: -1}
	for i := range x.Spec.Rules {
		rule := &x.Spec.Rules[i]
		p := index("spec.rules", i)
		if !c.takeRule(o, p, i, &rp, grpcCatchAll(rule.Matches)) {
			continue
		}
		if len(rule.Filters) > 0 {
			c.warn(o, child(p, "filters"), "filters are not yet supported: ignored")
		}
		if rule.SessionPersistence != nil {
			c.warn(o, child(p, "sessionPersistence"), "session persistence is not yet supported: ignored")
		}
		for j := range rule.BackendRefs {
			rp.backendRefs = append(rp.backendRefs, rule.BackendRefs[j].BackendRef)
			rp.backendFilt = append(rp.backendFilt, len(rule.BackendRefs[j].Filters) > 0)
		}
	}
	// The GRPCRoute of gateway-api v1.6.3 has neither timeouts nor retry:
	// Skiff's annotations carry both.
	ann, _ := readAnnotations(kindGRPCRoute, x.Annotations) // validated
	rp.timeouts = ann.timeouts
	if ann.attempts != nil || ann.grpcCodes != nil {
		rp.retry.Attempts = DefaultAttempts
		if ann.attempts != nil {
			rp.retry.Attempts = *ann.attempts
		}
		rp.retry.GRPCCodes = ann.grpcCodes
		if ann.backoff != nil {
			rp.retry.Backoff = *ann.backoff
		}
		if len(ann.grpcCodes) > 0 && (ann.nonIdempotent == nil || !*ann.nonIdempotent) {
			c.warn(o, key("metadata.annotations", AnnotationGRPCCodes),
				"a gRPC call is a POST, which Skiff retries on a status only with %s: \"true\"; without it only calls that failed to connect are retried", AnnotationNonIdempotent)
		}
	} else if ann.backoff != nil {
		c.warn(o, key("metadata.annotations", AnnotationBackoff), "has no effect without %s or %s", AnnotationAttempts, AnnotationGRPCCodes)
	}
	c.annotate(o, &rp, ann)
	c.attach(o, &x.ObjectMeta, x.Spec.ParentRefs, len(x.Spec.Hostnames), rp)
}

// takeRule decides whether rule i (at path p) is the route's one rule: the
// first that takes every request. The proxy has one rule per authority
// until request matching arrives; the others are ignored with a warning.
func (c *converter) takeRule(o objectRef, p string, i int, rp *rulePolicy, catchAll bool) bool {
	switch {
	case !catchAll:
		c.warn(o, p, "rules with matches are not yet supported: rule %d ignored", i)
		return false
	case rp.index >= 0:
		c.warn(o, p, "rule %d ignored: rule %d already takes every request", i, rp.index)
		return false
	}
	rp.index = i
	return true
}

// httpCatchAll: a rule takes every request when it has no match (the
// Gateway API's default is a path prefix "/") or one of its matches is
// that default and nothing else.
func httpCatchAll(ms []gatewayv1.HTTPRouteMatch) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		if len(m.Headers) > 0 || len(m.QueryParams) > 0 || m.Method != nil {
			continue
		}
		if pm := m.Path; pm == nil ||
			(pm.Type == nil || *pm.Type == gatewayv1.PathMatchPathPrefix) && (pm.Value == nil || *pm.Value == "/") {
			return true
		}
	}
	return false
}

// grpcCatchAll: a rule takes every call when it has no match or one of its
// matches names no method and no header.
func grpcCatchAll(ms []gatewayv1.GRPCRouteMatch) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		if len(m.Headers) == 0 && (m.Method == nil || m.Method.Service == nil && m.Method.Method == nil) {
			return true
		}
	}
	return false
}

// annotate applies the annotations both route kinds take.
func (c *converter) annotate(o objectRef, rp *rulePolicy, ann retryAnnotations) {
	for _, a := range []struct {
		key string
		set bool
	}{{AnnotationNonIdempotent, ann.nonIdempotent != nil}, {AnnotationMaxBodyBytes, ann.maxBodyBytes > 0}} {
		if a.set && rp.retry.Attempts == 0 {
			c.warn(o, key("metadata.annotations", a.key), "has no effect: the route does not retry")
		}
	}
	if rp.retry.Attempts == 0 {
		return
	}
	if ann.nonIdempotent != nil {
		rp.retry.NonIdempotent = *ann.nonIdempotent
	}
	rp.retry.MaxBodyBytes = ann.maxBodyBytes
}

// attach makes a candidate route of rp for every Service parent.
func (c *converter) attach(o objectRef, meta *metav1.ObjectMeta, parents []gatewayv1.ParentReference, hostnames int, rp rulePolicy) {
	ns := namespaceOf(meta)
	if hostnames > 0 {
		c.warn(o, "spec.hostnames", "hostnames do not apply to a route whose parent is a Service: ignored")
	}
	if len(parents) == 0 {
		c.warn(o, "spec.parentRefs", "no parentRefs: the route applies to nothing")
	}
	for i := range parents {
		pr := &parents[i]
		p := index("spec.parentRefs", i)
		switch k, _, kind := classifyParent(pr); k {
		case parentGateway:
			c.warn(o, p, "a %s parent is not supported by a mesh sidecar: this parentRef is ignored", kind)
			continue
		case parentOther:
			continue // validate refused it
		}
		svc := serviceKey{namespace: ns, name: string(pr.Name)}
		if pr.Namespace != nil {
			svc.namespace = string(*pr.Namespace)
		}
		if pr.Port == nil {
			c.warn(o, p, "no port: Skiff needs the Service port to know the authority the route applies to (it does not read sectionName): this parentRef is ignored")
			continue
		}
		port := *pr.Port
		if svc.namespace != ns {
			c.warn(o, p, "a consumer route (the Service is in namespace %s, the route in %s) applies to every client of the Service, not only to those in %s", svc.namespace, ns, ns)
		}
		auth, ok := c.authority(svc.namespace, svc.name, port)
		if !ok || auth == "" {
			c.warn(o, p, "Service %s port %d is not known: this parentRef is ignored", svc, port)
			continue
		}
		for j, b := range rp.backendRefs {
			bp := index(child(index("spec.rules", rp.index), "backendRefs"), j)
			if !sameService(&b, ns, svc, port) {
				c.warn(o, bp, "%s is not the parent Service %s port %d: traffic splitting is not yet supported, so requests keep going to the parent", describeBackend(&b, ns), svc, port)
			}
			if rp.backendFilt[j] {
				c.warn(o, child(bp, "filters"), "backendRef filters are not yet supported: ignored")
			}
		}
		rt := route.Route{
			Authority: auth,
			Name:      o.namespace + "/" + o.name,
			Timeouts:  rp.timeouts,
			Retry:     rp.retry,
		}
		rt.Retry.Codes = slices.Clone(rp.retry.Codes)
		rt.Retry.GRPCCodes = slices.Clone(rp.retry.GRPCCodes)
		c.add(candidate{route: rt, owner: o, created: meta.CreationTimestamp, field: p, service: svc, port: port})
	}
}

func sameService(b *gatewayv1.BackendRef, routeNS string, svc serviceKey, port int32) bool {
	ns := routeNS
	if b.Namespace != nil {
		ns = string(*b.Namespace)
	}
	return isServiceBackend(b) && ns == svc.namespace && string(b.Name) == svc.name && (b.Port == nil || *b.Port == port)
}

func describeBackend(b *gatewayv1.BackendRef, routeNS string) string {
	ns := routeNS
	if b.Namespace != nil {
		ns = string(*b.Namespace)
	}
	if isServiceBackend(b) {
		if b.Port != nil {
			return fmt.Sprintf("backendRef Service %s/%s port %d", ns, b.Name, *b.Port)
		}
		return fmt.Sprintf("backendRef Service %s/%s", ns, b.Name)
	}
	kind := "Service"
	if b.Kind != nil {
		kind = string(*b.Kind)
	}
	if b.Group != nil && !coreGroup(string(*b.Group)) {
		kind = string(*b.Group) + "/" + kind
	}
	return fmt.Sprintf("backendRef %s %s/%s", kind, ns, b.Name)
}

// add takes a candidate route, settling a conflict over its authority as
// the Gateway API does when it can: the older route wins.
func (c *converter) add(n candidate) {
	a := strings.ToLower(n.route.Authority)
	i, dup := c.byAuthority[a]
	if !dup {
		c.byAuthority[a] = len(c.candidates)
		c.byService[n.service] = append(c.byService[n.service], len(c.candidates))
		c.candidates = append(c.candidates, n)
		return
	}
	old := &c.candidates[i]
	if old.owner == n.owner {
		return // validate refuses a repeated parentRef; two ways to one port are one route
	}
	switch older(old.created, n.created) {
	case 1: // the route already there is older
		c.warn(n.owner, n.field, "authority %s is also routed by %s, which is older: this parentRef is ignored", n.route.Authority, old.owner)
	case 2:
		c.warn(old.owner, old.field, "authority %s is also routed by %s, which is older: this parentRef is ignored", n.route.Authority, n.owner)
		c.candidates[i] = n
		c.byService[n.service] = append(c.byService[n.service], i)
	default:
		c.fail(n.owner, n.field, "authority %s (Service %s port %d) is already routed by %s%s: the Gateway API keeps the older route, and without creationTimestamps Skiff cannot tell which; keep one",
			n.route.Authority, n.service, n.port, old.owner, c.where(old.owner))
	}
}

// older says which of two creation times is older: 1 for a, 2 for b, 0
// when either is missing or they are equal.
func older(a, b metav1.Time) int {
	switch {
	case a.IsZero() || b.IsZero() || a.Equal(&b):
		return 0
	case a.Before(&b):
		return 1
	}
	return 2
}

// policy is a policy's claim on a Service, for settling conflicts.
type policy struct {
	owner   objectRef
	created metav1.Time
	field   string
	index   int
}

// claim records that the policy p targets svc, keeping the older when two
// policies of one kind do; order lists the Services claimed, in order.
func (c *converter) claim(claims map[serviceKey]policy, order *[]serviceKey, svc serviceKey, p policy) {
	old, dup := claims[svc]
	if !dup {
		claims[svc] = p
		*order = append(*order, svc)
		return
	}
	if old.owner == p.owner {
		return
	}
	switch older(old.created, p.created) {
	case 1:
		c.warn(p.owner, p.field, "Service %s is also targeted by %s, which is older: this targetRef is ignored", svc, old.owner)
	case 2:
		c.warn(old.owner, old.field, "Service %s is also targeted by %s, which is older: this targetRef is ignored", svc, p.owner)
		claims[svc] = p
	default:
		c.fail(p.owner, p.field, "Service %s is already targeted by %s%s: the Gateway API keeps the older policy, and without creationTimestamps Skiff cannot tell which; keep one",
			svc, old.owner, c.where(old.owner))
	}
}

// routesOf are the live candidates of a Service.
func (c *converter) routesOf(svc serviceKey) []int {
	var out []int
	for _, i := range c.byService[svc] {
		if a := strings.ToLower(c.candidates[i].route.Authority); c.byAuthority[a] == i && c.candidates[i].service == svc {
			out = append(out, i)
		}
	}
	return out
}

func (c *converter) backendPolicies() {
	claims := map[serviceKey]policy{}
	var order []serviceKey
	for i := range c.res.BackendTrafficPolicies {
		x := &c.res.BackendTrafficPolicies[i]
		o := refOf(kindBackendPolicy, &x.ObjectMeta)
		if x.Spec.SessionPersistence != nil {
			c.warn(o, "spec.sessionPersistence", "session persistence is not yet supported: ignored")
		}
		if x.Spec.RetryConstraint == nil {
			c.warn(o, "spec", "no retryConstraint: the policy sets nothing Skiff applies")
			continue
		}
		for j, t := range x.Spec.TargetRefs {
			p := index("spec.targetRefs", j)
			if !coreGroup(string(t.Group)) || t.Kind != "Service" {
				c.warn(o, p, "group %q kind %q is not a Service: Skiff applies backend policies to Services only, this targetRef is ignored", t.Group, t.Kind)
				continue
			}
			c.claim(claims, &order, serviceKey{namespace: namespaceOf(&x.ObjectMeta), name: string(t.Name)}, policy{owner: o, created: x.CreationTimestamp, field: p, index: i})
		}
	}
	for _, svc := range order {
		pol := claims[svc]
		routes := c.routesOf(svc)
		if len(routes) == 0 {
			c.warn(pol.owner, pol.field, "retryConstraint applies only to Services with a route: Service %s has none, so this targetRef is ignored", svc)
			continue
		}
		rc := c.res.BackendTrafficPolicies[pol.index].Spec.RetryConstraint
		for _, i := range routes {
			c.candidates[i].route.Budget = budgetOf(rc)
		}
	}
}

// budgetOf converts a retryConstraint; its fields are validated. Each call
// returns values of its own.
func budgetOf(rc *gatewayxv1alpha1.RetryConstraint) retry.BudgetConfig {
	var b retry.BudgetConfig
	if bd := rc.Budget; bd != nil {
		if bd.Percent != nil {
			v := *bd.Percent
			b.Percent = &v
		}
		if bd.Interval != nil {
			b.Interval, _ = parseDuration(*bd.Interval)
		}
	}
	if m := rc.MinRetryRate; m != nil {
		if m.Count != nil {
			v := *m.Count
			b.MinRetries = &v
		}
		if m.Interval != nil {
			b.MinInterval, _ = parseDuration(*m.Interval)
		}
	}
	return b
}

func (c *converter) circuitBreakers() {
	claims := map[serviceKey]policy{}
	var order []serviceKey
	for i := range c.res.CircuitBreakers {
		x := &c.res.CircuitBreakers[i]
		o := refOf(CircuitBreakerKind, &x.ObjectMeta)
		svc := serviceKey{namespace: namespaceOf(&x.ObjectMeta), name: string(x.Spec.TargetRef.Name)}
		c.claim(claims, &order, svc, policy{owner: o, created: x.CreationTimestamp, field: "spec.targetRef", index: i})
	}
	for _, svc := range order {
		pol := claims[svc]
		routes := c.routesOf(svc)
		if len(routes) == 0 {
			c.warn(pol.owner, pol.field, "a CircuitBreaker applies only to Services with a route: Service %s has none, so it is ignored", svc)
			continue
		}
		spec := &c.res.CircuitBreakers[pol.index].Spec
		for _, i := range routes {
			c.candidates[i].route.Breaker = breakerOf(spec)
		}
	}
}

// breakerOf converts a CircuitBreakerSpec; its fields are validated. Each
// call returns a Config of its own.
func breakerOf(s *CircuitBreakerSpec) *breaker.Config {
	var b breaker.Config
	if v := s.ConsecutiveFailures; v != nil {
		b.ConsecutiveFailures = int(*v)
		if *v == 0 {
			b.ConsecutiveFailures = -1 // breaker.Config: negative turns it off
		}
	}
	if v := s.MinSuccessRate; v != nil {
		b.MinSuccessRate, _ = parseRate(*v)
	}
	if v := s.Window; v != nil {
		b.Window, _ = parseDuration(*v)
	}
	if v := s.MinRequests; v != nil {
		b.MinRequests = int(*v)
	}
	if v := s.BaseEjection; v != nil {
		b.BaseEjection, _ = parseDuration(*v)
	}
	if v := s.MaxEjection; v != nil {
		b.MaxEjection, _ = parseDuration(*v)
	}
	return &b
}

// finish returns the routes that won, checked as the proxy checks them
// and sorted by authority.
func (c *converter) finish() []route.Route {
	var routes []route.Route
	for i, n := range c.candidates {
		if c.byAuthority[strings.ToLower(n.route.Authority)] != i {
			continue
		}
		if err := n.route.Validate(); err != nil {
			c.fail(n.owner, n.field, "the route for %s: %v", n.route.Authority, err)
			continue
		}
		routes = append(routes, n.route)
	}
	if len(routes) > route.MaxRoutes {
		c.errs = append(c.errs, &Error{Source: c.res.source, Message: fmt.Sprintf("%d routes: the proxy takes at most %d", len(routes), route.MaxRoutes)})
	}
	slices.SortStableFunc(routes, func(a, b route.Route) int { return strings.Compare(a.Authority, b.Authority) })
	return routes
}
