//go:build !linux

package proxy

import "syscall"

// markControl: SO_MARK exists only on Linux; elsewhere the mark is ignored.
func markControl(uint32) func(network, address string, c syscall.RawConn) error { return nil }
