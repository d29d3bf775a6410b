// Package discovery is the one interface through which the control plane
// learns where traffic may go: for an authority (a Service port), the
// full set of ready endpoints, each with its address, weight, SPIFFE
// identity, protocol hint, zone, pod and labels.
//
// Two sources implement Source (ARCHITECTURE.md, contract 3), and the
// control plane's services never know which one they read:
//
//   - mesh/discovery/kube: client-go informers on Services,
//     EndpointSlices and Pods;
//   - mesh/discovery/registry: an in-memory registry the simulator (or a
//     test, or the proxy's endpoints file) fills.
//
// A Source delivers full snapshots, not deltas: a consumer that needs
// add/remove events (the Destination service) diffs consecutive
// snapshots. Each Watch runs on its own goroutine and coalesces changes,
// so a slow consumer costs only itself.
//
// This package imports nothing from Kubernetes, so that the proxy's side
// could share its types without linking k8s.io (contract 1).
package discovery
