// Package tokenreview verifies workload tokens in Kubernetes: a
// [ca.TokenVerifier] that asks the API server, through the TokenReview
// API (authentication.k8s.io/v1), whether a pod's projected ServiceAccount
// token is valid, and returns the SPIFFE ID of the ServiceAccount it
// proves:
//
//	system:serviceaccount:<namespace>:<name>  →  spiffe://<trust-domain>/ns/<namespace>/sa/<name>
//
// Only the controller imports this package: the proxy's dependency
// closure holds no k8s.io package (ARCHITECTURE.md, contract 1). The proxy
// re-reads its token file (cmd/skiff-proxy's --identity-token-file) before
// every certificate request, so the kubelet's rotation of the token
// reaches the CA without a restart.
//
// # A dedicated audience
//
// The verifier sends the audiences it requires ([DefaultAudience] unless
// configured) in the review and accepts a token only if the API server
// echoes one of them in status.audiences. So the workload's token for the
// CA is a separate projected token whose audience is the CA's: a token
// meant for the API server (the default ServiceAccount token, or one
// stolen from a pod that never joined the mesh) cannot buy a mesh
// certificate, and the token the proxy sends to the CA is not a credential
// the API server accepts (its audience is not the API server's). An API
// server that does not honour audiences echoes none, and every token is
// refused.
//
// # Errors
//
// Errors match the [ca] sentinels with errors.Is, so the identity service
// maps them to gRPC codes:
//
//	ErrInvalidToken         empty or oversize token ([MaxTokenSize]); authenticated false (with
//	                        the API server's reason: expired, bad signature, bound pod deleted,
//	                        wrong audience); a required audience not echoed; a user that is not
//	                        a ServiceAccount (a person, a node); the API refused the review as
//	                        malformed (400, 422, 413)
//	ErrVerifierUnavailable  the API did not answer within the timeout, or failed (5xx, 429,
//	                        connection errors); the controller may not create TokenReviews
//	                        (403: the message names the missing RBAC rule) or its own
//	                        credentials were refused (401); status.error set on an
//	                        authenticated review; any other failure of the call
//	ctx.Err()               the caller's context ended
//
// Every failure of the API call is Unavailable, not the workload's fault:
// the token was never judged, and the proxy retries with backoff. The API
// server reports an expired token as authenticated false with a reason in
// status.error ("service account token has expired"), the same shape as
// any other rejection, so it is [ca.ErrInvalidToken] with that reason in
// the message rather than [ca.ErrExpiredToken]; both are Unauthenticated.
//
// # No cache
//
// Each Verify is one TokenReview. A proxy asks for a certificate at start
// and then about every 17 hours (70 % ± 10 % of a 24-hour leaf), so the
// API server sees a few reviews per pod per day; a cache would save
// little and would keep accepting the bound token of a pod that has just
// been deleted. The API server has a cache of its own: it remembers a
// successful review for 10 s (its token success cache), so a deleted
// pod's token still passed for about 10 s against kube-apiserver v1.37.2
// (TestAPIServerTokenReview waits for the refusal).
package tokenreview
