//go:build linux && !amd64 && !arm64

package memtrim

// sysUserfaultfd 0: not wired up for this architecture.
const sysUserfaultfd = 0
