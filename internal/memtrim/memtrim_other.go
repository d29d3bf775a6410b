//go:build !linux

package memtrim

// ReleaseExecutablePages does nothing outside Linux.
func ReleaseExecutablePages() (int64, error) { return 0, nil }
