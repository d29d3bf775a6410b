package proxy

import "syscall"

// peekOpen reports whether the socket fd has nothing to read and is open:
// a peek that would block. End of stream, an error or unasked bytes say
// the connection is not fit for another request.
func peekOpen(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EINTR {
			continue
		}
		return err == syscall.EAGAIN
	}
}
