//go:build !linux

package proxy

// peekOpen cannot look at the socket here: a connection the server closed
// is found when it is used, and the request retried if it may be.
func peekOpen(uintptr) bool { return true }
