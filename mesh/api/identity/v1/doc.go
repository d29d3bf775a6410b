// Package identityv1 is the Go code generated from
// skiff/identity/v1/identity.proto (mesh/api/proto): the Identity service,
// whose Certify turns a proxy's CSR and workload token into a short-lived
// certificate chain plus the current trust anchors.
//
// Certificates travel as DER bytes, never PEM; [CertifyResponse.ValidUntil]
// is the leaf's NotAfter.
//
// Only the *.pb.go files are generated (make generate); this file and the
// examples are not.
package identityv1
