//go:build !linux

package proxy

// parkSupported says idle HTTP/1 connections can be parked (park_linux.go:
// an epoll set); elsewhere net/http keeps them.
const parkSupported = false

// parker does nothing without epoll.
type parker struct{}

func (*parker) park(*conn, *queueListener) bool { return false }
func (*parker) unpark(*conn)                    {}
func (*parker) close()                          {}
