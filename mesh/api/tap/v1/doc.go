// Package tapv1 is the Go code generated from skiff/tap/v1/tap.proto
// (mesh/api/proto): the Tap service, whose Observe streams live events of
// the requests a proxy handles: [RequestInit], [ResponseInit] and
// [ResponseEnd], tied together by [TapEvent.RequestId].
//
// Only the *.pb.go files are generated (make generate); this file and the
// examples are not.
package tapv1
