//go:build !linux

package nfqueue

import (
	"errors"
	"time"
)

var errNotLinux = errors.New("nfqueue: nfnetlink_queue is a Linux interface")

// Conn is a netlink socket bound to one queue; on this system there is
// none, and every method fails.
type Conn struct{}

// Open fails: nfnetlink_queue is Linux only.
func Open(queue uint16, cfg Config) (*Conn, error) { return nil, errNotLinux }

// SetReadDeadline fails: there is no socket.
func (c *Conn) SetReadDeadline(t time.Time) error { return errNotLinux }

// Receive fails: there is no socket.
func (c *Conn) Receive(fn func(Packet)) (int, error) { return 0, errNotLinux }

// SetVerdicts fails: there is no socket.
func (c *Conn) SetVerdicts(vs []Verdict) error { return errNotLinux }

// Errors is 0.
func (c *Conn) Errors() uint64 { return 0 }

// Close does nothing.
func (c *Conn) Close() error { return nil }
