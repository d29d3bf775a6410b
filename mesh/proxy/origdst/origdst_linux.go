// Package origdst reads the original destination of a connection that
// iptables REDIRECTed to the proxy (SO_ORIGINAL_DST), the basis of the
// transparent mode.
package origdst

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// soOriginalDst is SO_ORIGINAL_DST from linux/netfilter_ipv4.h; the IPv6
// option (IP6T_SO_ORIGINAL_DST) has the same number.
const soOriginalDst = 80

// ErrNotRedirected says the connection carries no NAT record: it reached
// the proxy directly rather than through a redirect.
var ErrNotRedirected = errors.New("origdst: connection was not redirected")

// Get returns the address the client originally dialled. For a connection
// that was not redirected it returns the local address and
// ErrNotRedirected when the kernel says so.
func Get(c *net.TCPConn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: %w", err)
	}
	local, _ := c.LocalAddr().(*net.TCPAddr)
	v6 := local != nil && local.IP.To4() == nil
	var ap netip.AddrPort
	var serr error
	cerr := raw.Control(func(fd uintptr) {
		if v6 {
			// sockaddr_in6 is 28 bytes; IPv6MTUInfo starts with one.
			mi, err := syscall.GetsockoptIPv6MTUInfo(int(fd), syscall.IPPROTO_IPV6, soOriginalDst)
			if err != nil {
				serr = err
				return
			}
			sa := mi.Addr
			port := sa.Port>>8 | sa.Port<<8 // network byte order
			ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
			return
		}
		// sockaddr_in is 16 bytes; IPv6Mreq is a 16-byte buffer.
		mr, err := syscall.GetsockoptIPv6Mreq(int(fd), syscall.IPPROTO_IP, soOriginalDst)
		if err != nil {
			serr = err
			return
		}
		b := (*[16]byte)(unsafe.Pointer(&mr.Multiaddr))
		port := uint16(b[2])<<8 | uint16(b[3])
		ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), port)
	})
	if cerr != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: %w", cerr)
	}
	if serr != nil {
		if errors.Is(serr, syscall.ENOENT) || errors.Is(serr, syscall.ENOPROTOOPT) {
			return netip.AddrPort{}, ErrNotRedirected
		}
		return netip.AddrPort{}, fmt.Errorf("origdst: getsockopt SO_ORIGINAL_DST: %w", serr)
	}
	return ap, nil
}
