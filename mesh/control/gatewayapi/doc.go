// Package gatewayapi reads reliability configuration written as standard
// Kubernetes objects and turns it into the sidecar proxy's routes
// ([route.Route]). Scenarios carry these objects as YAML files today, a
// cluster's API server tomorrow; the controller and the scenario harness
// import this package, the sidecar never does (it stays free of k8s.io
// and of the Gateway API's module).
//
// [Parse] decodes a stream of YAML documents into the Gateway API's own Go
// types (sigs.k8s.io/gateway-api v1.6.3), strictly, and checks them as the
// CRDs would; [Resources.Routes] converts them:
//
//   - HTTPRoute and GRPCRoute (gateway.networking.k8s.io/v1) whose
//     parentRef is a Service and a port (the mesh's GAMMA profile) become
//     one route for that Service port's authority. A Gateway parentRef is
//     ignored with a [Warning].
//   - The proxy has one rule per authority until request matching
//     arrives: the route takes the first rule that matches every request
//     (no matches, or a path prefix "/"); the others are ignored with a
//     warning. Of that rule Skiff reads timeouts.request,
//     timeouts.backendRequest, retry.attempts (retries after the first
//     attempt; [DefaultAttempts] when left out), retry.codes and
//     retry.backoff. Traffic splitting (backendRefs other than the parent
//     Service), filters, hostnames and session persistence are ignored
//     with a warning.
//   - XBackendTrafficPolicy (gateway.networking.x-k8s.io/v1alpha1)
//     targeting a Service gives the retry budget of every route of that
//     Service: retryConstraint.budget.percent and .interval,
//     retryConstraint.minRetryRate.count and .interval.
//   - CircuitBreaker (policy.skiff.dev/v1alpha1, defined here, its CRD
//     rendered by [CircuitBreakerCRD]) targeting a Service gives the
//     breaker of every route of that Service.
//
// # Skiff's annotations
//
// The Gateway API has no field yet for a few things the proxy does; these
// annotations on the route carry them. A retry.skiff.dev/ annotation
// Skiff does not read on that kind, or a value it cannot read, is an
// error that names the annotation.
//
//	annotation                       kinds                 value
//	retry.skiff.dev/non-idempotent   HTTPRoute, GRPCRoute  "true" retries POST, PATCH and every gRPC call on a status too
//	retry.skiff.dev/max-body-bytes   HTTPRoute, GRPCRoute  the largest request body a retry replays, e.g. "65536"
//	retry.skiff.dev/attempts         GRPCRoute             retries after the first attempt, 1 or more
//	retry.skiff.dev/grpc-codes       GRPCRoute             gRPC codes retried, 1 to 16, e.g. "14,4"
//	retry.skiff.dev/backoff          GRPCRoute             least wait before a retry, e.g. "25ms"
//	retry.skiff.dev/request-timeout  GRPCRoute             bound of a whole call, retries included (timeouts.request)
//	retry.skiff.dev/backend-request-timeout  GRPCRoute     bound of each attempt (timeouts.backendRequest); one that
//	                                                       expires is DEADLINE_EXCEEDED, retried when grpc-codes has 4
//
// The GRPCRoute of gateway-api v1.6.3 has no retry stanza and no
// timeouts, hence its retry and timeout annotations.
// Since every gRPC call is a POST, a GRPCRoute that retries on grpc-codes
// also wants retry.skiff.dev/non-idempotent: "true" (Routes warns when it
// is missing): without it only calls that failed to connect are retried.
//
// # Limits and conflicts
//
// A stream holds at most [MaxStreamBytes] and [MaxDocuments] documents.
// Two routes for one authority, or two policies of one kind for one
// Service, are settled as the Gateway API settles them, the older object
// winning, when both carry a creationTimestamp; otherwise Routes refuses
// them with an error naming both.
package gatewayapi
