// Package hostile is the proxy's hostile-client suite: it runs the real
// skiff-proxy binary, attacks it the ways a client on the network can
// (rapid resets, stalled bodies, slowloris, header floods, overload,
// authority floods), and checks, for each attack, that a well-behaved
// client on another address keeps being served and that the proxy's peak
// resident memory (VmHWM) stays within its memory budget.
//
// The tests are the package: `go test ./mesh/proxy/hostile` runs the fast
// forms (part of `make test`); `-hostile.full` runs each attack at the
// size it was found at. SKIFF_HOSTILE_PROXY=/path/to/skiff-proxy attacks
// that binary instead of building the tree's (to measure an older commit);
// SKIFF_HOSTILE_ARGS adds flags to its command line (--pprof, with a
// -tags pprof build, to look inside during an attack).
package hostile
