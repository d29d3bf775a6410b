//go:build !linux

package memtrim

import "errors"

// ReleaseExecutablePages does nothing outside Linux.
func ReleaseExecutablePages() (int64, error) { return 0, nil }

// ErrFaultAroundStays: see the Linux version.
var ErrFaultAroundStays = errors.New("memtrim: page-by-page mapping of the executable needs Linux")

// MapExecutablePageByPage does nothing outside Linux.
func MapExecutablePageByPage() error { return ErrFaultAroundStays }
