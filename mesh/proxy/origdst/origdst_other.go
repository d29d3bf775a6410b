//go:build !linux

// Package origdst reads the original destination of a redirected
// connection; only Linux has SO_ORIGINAL_DST.
package origdst

import (
	"errors"
	"net"
	"net/netip"
)

// ErrNotRedirected says the connection carries no NAT record.
var ErrNotRedirected = errors.New("origdst: connection was not redirected")

// Get is unsupported off Linux: it always returns ErrNotRedirected.
func Get(c *net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, ErrNotRedirected }
