package demo

import (
	"sync/atomic"

	"google.golang.org/grpc/codes"
)

// Stats is a snapshot of the request counters of one Server, served as JSON
// at GET /_demo/stats. Control endpoints (/_demo/*, /healthz, gRPC health)
// are not counted, so reading the stats does not change them.
type Stats struct {
	// Name is the replica name (Config.Name).
	Name string `json:"name"`
	// Requests counts HTTP and gRPC workload requests, whatever their outcome.
	Requests int64 `json:"requests"`
	// InFlight is the number of workload requests being served now,
	// those waiting for a slot (Waiting) included.
	InFlight int64 `json:"in_flight"`
	// Waiting is the number of workload requests waiting for a slot under
	// Behaviour.MaxConcurrent now.
	Waiting int64 `json:"waiting"`
	// HTTP counts answered HTTP requests by status code (101 for upgrades).
	HTTP map[int]int64 `json:"http"`
	// GRPC counts finished gRPC calls by code name ("OK", "Unavailable").
	GRPC map[string]int64 `json:"grpc"`
	// Delayed counts requests that got an injected delay.
	Delayed int64 `json:"delayed"`
	// Injected counts requests answered with an injected error status.
	Injected int64 `json:"injected"`
	// Resets counts requests and TCP connections closed by fault injection.
	Resets int64 `json:"resets"`
	// Cancelled counts requests whose caller went away during a delay or
	// while waiting for a slot.
	Cancelled int64 `json:"cancelled"`
	// TCPConnections counts accepted TCP echo connections.
	TCPConnections int64 `json:"tcp_connections"`
	// TLSConnections counts accepted TLS echo connections, whether or not
	// their handshake succeeded.
	TLSConnections int64 `json:"tls_connections"`
	// BannerConnections counts accepted banner connections.
	BannerConnections int64 `json:"banner_connections"`
	// EchoedBytes counts bytes echoed on TCP and upgraded connections.
	EchoedBytes int64 `json:"echoed_bytes"`
}

// counters are the live, lock-free counters behind Stats.
type counters struct {
	requests, inFlight, delayed, injected, resets, cancelled atomic.Int64
	tcpConns, tlsConns, bannerConns, echoedBytes             atomic.Int64
	http                                                     [600]atomic.Int64
	grpc                                                     [17]atomic.Int64
}

func (c *counters) httpStatus(code int) {
	if code >= 0 && code < len(c.http) {
		c.http[code].Add(1)
	}
}

func (c *counters) grpcCode(code codes.Code) {
	if int(code) < len(c.grpc) {
		c.grpc[code].Add(1)
	}
}

func (c *counters) snapshot(name string) Stats {
	s := Stats{
		Name:              name,
		Requests:          c.requests.Load(),
		InFlight:          c.inFlight.Load(),
		HTTP:              map[int]int64{},
		GRPC:              map[string]int64{},
		Delayed:           c.delayed.Load(),
		Injected:          c.injected.Load(),
		Resets:            c.resets.Load(),
		Cancelled:         c.cancelled.Load(),
		TCPConnections:    c.tcpConns.Load(),
		TLSConnections:    c.tlsConns.Load(),
		BannerConnections: c.bannerConns.Load(),
		EchoedBytes:       c.echoedBytes.Load(),
	}
	for i := range c.http {
		if n := c.http[i].Load(); n != 0 {
			s.HTTP[i] = n
		}
	}
	for i := range c.grpc {
		if n := c.grpc[i].Load(); n != 0 {
			s.GRPC[codes.Code(i).String()] = n
		}
	}
	return s
}

// reset zeroes every counter except the in-flight gauge. Counters are reset
// one by one, so a request finishing meanwhile may be half counted.
func (c *counters) reset() {
	for _, a := range []*atomic.Int64{&c.requests, &c.delayed, &c.injected, &c.resets,
		&c.cancelled, &c.tcpConns, &c.tlsConns, &c.bannerConns, &c.echoedBytes} {
		a.Store(0)
	}
	for i := range c.http {
		c.http[i].Store(0)
	}
	for i := range c.grpc {
		c.grpc[i].Store(0)
	}
}
