// Package ca is Skiff's certificate authority: it turns a workload's
// certificate signing request and identity token into a short-lived X.509
// certificate whose only name is the workload's SPIFFE ID
// (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>).
//
// It uses only the standard library; the gRPC Identity service and the
// Kubernetes TokenReview verifier wrap it from outside.
//
// # Hierarchy and lifetimes
//
// Three levels, all ECDSA P-256 (randomness from crypto/rand, time from an
// injected clock):
//
//	trust anchor  self-signed root, 365 days ([DefaultAnchorLifetime]), path length 1,
//	              distributed to every proxy in a trust bundle; its key stays offline
//	issuer        intermediate signed by an anchor, 90 days ([DefaultIssuerLifetime]),
//	              path length 0, held by the CA
//	leaf          workload certificate, 24 hours ([DefaultLeafLifetime]), NotBefore
//	              backdated 20 s ([DefaultClockSkew]), key usage digitalSignature,
//	              extended key usages serverAuth and clientAuth, one URI SAN (the
//	              SPIFFE ID), no DNS or IP SANs unless [Config.AllowExtraSANs]
//
// A certificate never outlives its parent: [NewIssuer] caps the issuer at
// the anchor's NotAfter and [CA.Certify] caps a leaf at the issuer chain's.
// Proxies renew leaves at 60-80 % of their lifetime (70 % ± 10 % jitter), so
// a leaf in use is at most about 19 hours old.
//
// # Certification
//
// [CA.Certify] checks, in order: the requested ID is a SPIFFE ID of the
// CA's trust domain; the token is valid and proves that ID; the CSR parses,
// its key is ECDSA P-256, its signature verifies and it names exactly that
// ID. Each rejection is a [*RejectError] whose reason ([ErrInvalidID],
// [ErrMalformedCSR], [ErrCSRSignature], [ErrUnsupportedKey], [ErrCSRNames],
// [ErrIdentityMismatch], [ErrInvalidToken], [ErrExpiredToken],
// [ErrIssuerExpired]) [ClassOf] maps to a gRPC-code-shaped [Class]:
//
//	InvalidArgument     ErrInvalidID ErrMalformedCSR ErrCSRSignature ErrUnsupportedKey ErrCSRNames
//	PermissionDenied    ErrIdentityMismatch
//	Unauthenticated     ErrInvalidToken ErrExpiredToken
//	Unavailable         ErrVerifierUnavailable (from the TokenVerifier)
//	FailedPrecondition  ErrIssuerExpired
//
// # Rotation procedure
//
// Verification trusts a bundle of anchors, not a single root, and the CA
// swaps its issuer atomically, so both rotations run under load without a
// failed handshake. The CA refuses any step that would break trust: an
// issuer that does not chain to its bundle ([CA.SetIssuer]) and a bundle
// that no longer trusts the active issuer ([CA.SetBundle]).
//
// Issuer rotation (routine; every 60 days or so with the 90-day default,
// and at once if the issuer key may have leaked). Only the CA changes:
//
//  1. Make a new issuer signed by the current anchor: [NewIssuer](anchor, ...),
//     or have cert-manager renew the issuer Secret.
//  2. Give it to the CA: [CA.SetIssuer]. New leaves chain to it from the next
//     request; the leaf carries its issuer in the TLS chain, so proxies need
//     nothing new. Leaves from the old issuer stay valid (same anchor) until
//     they expire or are renewed, within 24 hours.
//  3. Destroy the old issuer's key. Watch [CA.IssuerNotAfter]: if an issuer
//     is allowed to expire, Certify fails with [ErrIssuerExpired] and leaves
//     run out within a day.
//
// Trust-anchor rotation (yearly; start when less than 60 days remain, the
// threshold `linkerd check` warns at). The proxies' bundles change, so it
// takes two propagations:
//
//  1. Make the new anchor A2 ([NewAnchor]) and a bundle holding both the
//     old anchor A1 and A2 ([spiffe.Bundle.With]). Install it everywhere: the
//     CA ([CA.SetBundle]) and every proxy's certificate manager. Wait until
//     every proxy reports the new bundle; proxies that do not yet trust A2
//     would reject peers whose leaves chain to it.
//  2. Make an issuer I2 signed by A2 ([NewIssuer](A2, ...)) and switch the CA to
//     it ([CA.SetIssuer]). Leaves chaining to A1 and to A2 now coexist and
//     both verify everywhere, because every bundle holds both anchors.
//  3. Wait until no leaf chaining to A1 is in use: one full leaf lifetime
//     (24 h) plus the clock-skew allowance, or less if every proxy has
//     renewed since step 2 (proxies can be told to renew at once).
//  4. Remove A1 from the bundle ([spiffe.Bundle.Without]) on the CA and on
//     every proxy. From then on a certificate chaining to A1 is rejected as
//     untrusted ([spiffe.ErrUntrusted]).
//  5. Destroy A1's key (it should have been offline all along).
//
// An anchor that has already expired does not block this procedure: the
// bundle is a set of certificates and adding A2 does not require A1 to be
// valid (compare Linkerd issue 4808). Traffic between proxies is broken
// from A1's expiry until every proxy holds a leaf chaining to A2, so in
// that case do step 2 at once and make every proxy renew. Never let it
// come to that: alert on the anchor's expiry and on [CA.IssuerNotAfter].
package ca
