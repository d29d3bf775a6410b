// Package memtrim gives back the resident pages of a process's own
// executable that only its start-up used.
//
// A Go binary's code and read-only data are mapped from the executable
// file. Every page start-up touches (flag parsing, configuration, TLS
// set-up, package initialisers), and its neighbours within the kernel's
// fault-around window (64 KiB), stay in the process's page tables and
// count in its RSS for the rest of its life, although the serving path
// never runs that code again. In the sidecar that is about 1 MB of its
// 10 MB budget (docs/proxy.md).
//
// [ReleaseExecutablePages] drops those mappings (madvise MADV_DONTNEED on
// the executable's read-only mappings). Nothing is lost: the pages stay in
// the page cache, shared with every other process of the same binary, and
// the next access maps them again with a minor fault. Writable mappings
// are never touched.
package memtrim
