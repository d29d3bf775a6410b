// Package certs is the proxy's certificate manager: it holds the workload's
// SPIFFE identity as a short-lived certificate and makes every meshed
// connection mutually authenticated TLS 1.3.
//
// A [Manager] generates an ECDSA P-256 key in memory, sends a CSR for its
// SPIFFE ID with the workload's token through a [Certifier] (the control
// plane's Identity.Certify), checks what comes back, and installs it in an
// atomic pointer that the TLS callbacks read per handshake. [Manager.Run]
// renews at 70 % of the lifetime ± 10 % jitter (60-80 %), retries failures
// with capped exponential backoff, and never drops the current certificate
// before a verified new one is in hand; rotation affects only handshakes
// that start afterwards, so it never drops a request.
//
// [Manager.ServerTLSConfig] (inbound) requires and verifies a client
// certificate; [PeerID] then gives the client's verified identity.
// [Manager.ClientTLSConfig] (outbound) verifies the server and checks that
// it proves the identity service discovery expects for that connection.
// Both verify against the current trust [spiffe.Bundle], which
// [Manager.SetBundle] replaces during an anchor rotation.
// [ControlPlaneTLSConfig] is the proxy's side of its connections to the
// control plane: the controller must prove its own SPIFFE ID with a chain
// to the same bundle, and the proxy presents its certificate only while
// it is valid (the Identity service authenticates by token).
//
// Metrics hooks: [Manager.Expiry], [Manager.Refreshes] and
// [Manager.Failures] (identity_cert_expiration_timestamp_seconds,
// identity_cert_refresh_count, and failures).
//
// The package uses only the standard library, so it keeps the sidecar's
// dependency closure small.
package certs
