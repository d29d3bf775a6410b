// Package api holds Skiff's proxy <-> control-plane contract: the .proto
// files under proto/ and the Go code generated from them, one package per
// service, each versioned so that it never needs an import alias:
//
//   - [github.com/skiff-mesh/skiff/mesh/api/destination/v1] (destinationv1):
//     Destination.Watch streams the endpoints of an authority.
//   - [github.com/skiff-mesh/skiff/mesh/api/identity/v1] (identityv1):
//     Identity.Certify turns a CSR and a workload token into a certificate
//     chain.
//   - [github.com/skiff-mesh/skiff/mesh/api/policy/v1] (policyv1):
//     Policy.WatchOutbound and Policy.WatchInbound stream routes, retries,
//     timeouts, breakers, faults and authorization.
//   - [github.com/skiff-mesh/skiff/mesh/api/tap/v1] (tapv1): Tap.Observe
//     streams live request events.
//
// The comments in the .proto files are the contract's documentation.
// The generated code is checked in; `make generate` (go generate ./mesh/api)
// regenerates it with the generators pinned in tools/go.mod, and this
// package's test fails when the checked-in code is stale.
package api

//go:generate bash ./generate.sh
