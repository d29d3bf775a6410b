//go:build !linux

package netns

// Sniffer watches the switch for a marker (Linux only).
type Sniffer struct{}

// Sniff needs Linux.
func (n *Net) Sniff(marker []byte) (*Sniffer, error) { return nil, errNotLinux }

// Hits is always zero here.
func (s *Sniffer) Hits() uint64 { return 0 }

// Frames is always zero here.
func (s *Sniffer) Frames() uint64 { return 0 }

// Close does nothing here.
func (s *Sniffer) Close() error { return nil }
