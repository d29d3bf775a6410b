//go:build !pprof

package proxy

import "net/http"

// PprofAvailable says this binary can serve /debug/pprof. The default build
// leaves the profiler out; build with -tags pprof to include it.
const PprofAvailable = false

func registerPprof(*http.ServeMux) {}
