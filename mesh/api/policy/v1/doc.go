// Package policyv1 is the Go code generated from
// skiff/policy/v1/policy.proto (mesh/api/proto): the Policy service, whose
// WatchOutbound streams the routes, backends, retries, timeouts, faults,
// breaker and balancer of an authority, and whose WatchInbound streams the
// protocol and authorization of a port.
//
// Each stream message is a complete policy that replaces the previous one.
// Unset messages and zero scalars mean the default documented on each
// field.
//
// Only the *.pb.go files are generated (make generate); this file and the
// examples are not.
package policyv1
