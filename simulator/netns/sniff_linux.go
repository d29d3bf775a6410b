package netns

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Sniffer watches every frame crossing the run's switch for a marker: the
// wire between the pods, seen from outside every process, as tcpdump on a
// node would see it. It counts the frames that carry the marker.
type Sniffer struct {
	fd      int
	marker  []byte
	hits    atomic.Uint64
	frames  atomic.Uint64
	done    chan struct{}
	once    sync.Once
	stopped atomic.Bool
}

// snapLen bounds the bytes read of one frame: an Ethernet frame of the
// pods' links (MTU 1500) and its header fit.
const snapLen = 2048

// Sniff starts watching the switch for marker (1 to 256 bytes). Each frame
// is counted once, where it enters the switch (the copy leaving it on the
// destination's port is not counted again). A marker split across two
// TCP segments is not seen; a marker that stands for a request body is in
// one segment. Close stops it.
func (n *Net) Sniff(marker []byte) (*Sniffer, error) {
	if len(marker) == 0 || len(marker) > 256 {
		return nil, fmt.Errorf("netns: sniff: a marker of 1 to 256 bytes, got %d", len(marker))
	}
	s := &Sniffer{marker: bytes.Clone(marker), done: make(chan struct{}), fd: -1}
	err := enterNetns(netnsPath(n.sw), func() error {
		// ETH_P_ALL, in network byte order: every protocol.
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, int(htons(syscall.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns: sniff the switch: %w", err)
	}
	// A receive timeout lets the reader notice Close.
	tv := syscall.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(s.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(s.fd)
		return nil, fmt.Errorf("netns: sniff: receive timeout: %w", err)
	}
	go s.read()
	return s, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// read counts marker hits until Close.
func (s *Sniffer) read() {
	defer close(s.done)
	buf := make([]byte, snapLen)
	for {
		select {
		case <-s.stop():
			return
		default:
		}
		nr, from, err := syscall.Recvfrom(s.fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			return // closed
		}
		if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
			continue // the same frame leaving the switch on another port
		}
		s.frames.Add(1)
		if bytes.Contains(buf[:nr], s.marker) {
			s.hits.Add(1)
		}
	}
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// stopping is closed by Close.
func (s *Sniffer) stop() <-chan struct{} {
	if s.stopped.Load() {
		return closedCh
	}
	return nil
}

// Hits is the number of frames that carried the marker so far.
func (s *Sniffer) Hits() uint64 { return s.hits.Load() }

// Frames is the number of frames seen so far: a sniffer that saw none was
// not watching the pods' traffic.
func (s *Sniffer) Frames() uint64 { return s.frames.Load() }

// Close stops the sniffer and waits for its reader.
func (s *Sniffer) Close() error {
	s.once.Do(func() {
		s.stopped.Store(true)
		<-s.done
		syscall.Close(s.fd)
	})
	return nil
}
