package chaos

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Stream is the direction of a connection a toxic acts on, in Toxiproxy's
// words: Upstream carries the client's bytes to the upstream server,
// Downstream the server's bytes back to the client. The zero value is
// Downstream, Toxiproxy's default.
type Stream string

// Streams.
const (
	Downstream Stream = "downstream"
	Upstream   Stream = "upstream"
)

func (s Stream) normal() Stream {
	if s == "" {
		return Downstream
	}
	return s
}

// Toxic is one named fault on a Link. Toxics of one stream compose: a chunk
// of bytes is held by reset_peer, dropped by timeout, cut by limit_data,
// delayed by the sum of the latencies, then written in slices (slicer) paced
// by the slowest bandwidth; slow_close delays the half-close that follows
// the stream's end.
//
// A toxic acts on connections already open when it is added and on new
// ones; removing it restores normal forwarding for the bytes that follow
// (bytes a blackhole dropped stay lost).
type Toxic struct {
	// Name identifies the toxic on its Link; it must be non-empty and
	// unique there.
	Name string
	// Stream is the direction acted on; the zero value is Downstream.
	Stream Stream
	// Toxicity is the probability, in [0, 1], that the toxic affects a
	// connection. The draw is made per connection, not per request (as
	// Toxiproxy's toxicity: with keep-alive, a few long connections
	// decide everything), from the Link's Seed, the toxic's Name and the
	// connection's accept order, so a run with the same seed and the same
	// sequence of connections is affected the same way. Nil means 1 (every
	// connection); new(0.0) means none, exactly.
	Toxicity *float64
	// Kind is what the toxic does, one of Latency, Bandwidth, ResetPeer,
	// Timeout, Slicer, LimitData, SlowClose. It is required.
	Kind Kind
}

// Kind is the behaviour of a toxic. The set is closed: the types of this
// package implement it.
type Kind interface {
	// Type is Toxiproxy's name of the toxic type ("latency", "bandwidth",
	// "reset_peer", "timeout", "slicer", "limit_data", "slow_close").
	Type() string
	validate() error
}

// Latency delays every chunk by Latency plus a uniform draw in
// [-Jitter, +Jitter] (never below zero), counted from when the chunk was
// read, so a steady stream is delayed, not slowed.
type Latency struct {
	Latency time.Duration
	Jitter  time.Duration
}

// Bandwidth limits the stream to Rate kilobytes per second (1 KB = 1000
// bytes, as Toxiproxy), in pieces of at most 100 ms worth of bytes.
type Bandwidth struct {
	Rate int64
}

// ResetPeer resets the connection (TCP RST, "connection reset by peer") to
// the side the stream writes to, Timeout after the first bytes the stream
// carries once the toxic applies; those bytes are never delivered (as
// Toxiproxy's reset_peer). The other side is closed. Zero Timeout resets at
// the first bytes.
type ResetPeer struct {
	Timeout time.Duration
}

// Timeout blackholes the stream: bytes are read and dropped. With a
// positive Timeout the whole connection is closed that long after the toxic
// started to apply to it, whether or not bytes flowed; zero keeps dropping
// until the toxic is removed.
type Timeout struct {
	Timeout time.Duration
}

// Slicer writes every chunk as slices of AverageSize ± SizeVariation bytes
// (uniform, at least 1) with Delay between slices, which exercises a peer's
// handling of partial reads.
type Slicer struct {
	AverageSize   int
	SizeVariation int
	Delay         time.Duration
}

// LimitData closes the connection once the stream has carried Bytes bytes
// since the toxic started to apply: the bytes up to the limit are
// delivered, then the destination sees end of stream and the connection is
// closed.
type LimitData struct {
	Bytes int64
}

// SlowClose delays the half-close that ends the stream by Delay.
type SlowClose struct {
	Delay time.Duration
}

var (
	_ Kind = Latency{}
	_ Kind = Bandwidth{}
	_ Kind = ResetPeer{}
	_ Kind = Timeout{}
	_ Kind = Slicer{}
	_ Kind = LimitData{}
	_ Kind = SlowClose{}
)

// Type implements Kind.
func (Latency) Type() string { return "latency" }

// Type implements Kind.
func (Bandwidth) Type() string { return "bandwidth" }

// Type implements Kind.
func (ResetPeer) Type() string { return "reset_peer" }

// Type implements Kind.
func (Timeout) Type() string { return "timeout" }

// Type implements Kind.
func (Slicer) Type() string { return "slicer" }

// Type implements Kind.
func (LimitData) Type() string { return "limit_data" }

// Type implements Kind.
func (SlowClose) Type() string { return "slow_close" }

func (k Latency) validate() error {
	if k.Latency < 0 || k.Jitter < 0 {
		return fmt.Errorf("latency %s and jitter %s must not be negative", k.Latency, k.Jitter)
	}
	return nil
}

func (k Bandwidth) validate() error {
	if k.Rate <= 0 {
		return fmt.Errorf("bandwidth rate %d KB/s must be positive; remove the toxic for no limit", k.Rate)
	}
	return nil
}

func (k ResetPeer) validate() error {
	if k.Timeout < 0 {
		return fmt.Errorf("reset_peer timeout %s must not be negative", k.Timeout)
	}
	return nil
}

func (k Timeout) validate() error {
	if k.Timeout < 0 {
		return fmt.Errorf("timeout %s must not be negative (zero drops until the toxic is removed)", k.Timeout)
	}
	return nil
}

func (k Slicer) validate() error {
	if k.AverageSize <= 0 || k.SizeVariation < 0 || k.SizeVariation >= k.AverageSize || k.Delay < 0 {
		return fmt.Errorf("slicer average_size %d, size_variation %d, delay %s: want average_size > 0, 0 <= size_variation < average_size, delay >= 0",
			k.AverageSize, k.SizeVariation, k.Delay)
	}
	return nil
}

func (k LimitData) validate() error {
	if k.Bytes < 0 {
		return fmt.Errorf("limit_data bytes %d must not be negative", k.Bytes)
	}
	return nil
}

func (k SlowClose) validate() error {
	if k.Delay < 0 {
		return fmt.Errorf("slow_close delay %s must not be negative", k.Delay)
	}
	return nil
}

// validate reports the first problem of t, naming the toxic.
func (t Toxic) validate() error {
	if t.Name == "" {
		return errors.New("toxic has no name; every toxic needs one, unique on its link")
	}
	switch t.Stream {
	case "", Upstream, Downstream:
	default:
		return fmt.Errorf("toxic %q: stream %q is neither %q nor %q", t.Name, t.Stream, Upstream, Downstream)
	}
	if p := t.Toxicity; p != nil && (math.IsNaN(*p) || *p < 0 || *p > 1) {
		return fmt.Errorf("toxic %q: toxicity %v is outside [0, 1]", t.Name, *p)
	}
	if t.Kind == nil {
		return fmt.Errorf("toxic %q has no Kind; set one of Latency, Bandwidth, ResetPeer, Timeout, Slicer, LimitData, SlowClose", t.Name)
	}
	if err := t.Kind.validate(); err != nil {
		return fmt.Errorf("toxic %q: %w", t.Name, err)
	}
	return nil
}

// toxicity returns the probability with its default applied.
func (t Toxic) toxicity() float64 {
	if t.Toxicity == nil {
		return 1
	}
	return *t.Toxicity
}

// String describes the toxic for logs.
func (t Toxic) String() string {
	kind := "<nil>"
	if t.Kind != nil {
		kind = fmt.Sprintf("%s%+v", t.Kind.Type(), t.Kind)
	}
	return fmt.Sprintf("%s(%s %s toxicity=%g)", t.Name, kind, t.Stream.normal(), t.toxicity())
}
