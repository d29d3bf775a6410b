// Package destinationv1 is the Go code generated from
// skiff/destination/v1/destination.proto (mesh/api/proto): the Destination
// service, whose Watch streams the endpoints of an authority to a proxy.
//
// Every stream starts with a [Snapshot] that replaces the client's state;
// [Add], [Remove] and [NoEndpoints] follow as deltas, and a new Snapshot may
// come at any time. Endpoints are keyed by [Endpoint.Address].
//
// Only the *.pb.go files are generated (make generate); this file and the
// examples are not.
package destinationv1
