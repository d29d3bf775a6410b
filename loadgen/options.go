package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Protocols understood by Target.Protocol.
const (
	// ProtocolHTTP1 is HTTP/1.1 with keep-alive over Options.Connections
	// connections (http:// or https:// URLs).
	ProtocolHTTP1 = "http1"
	// ProtocolH2C is HTTP/2 over cleartext with prior knowledge (no upgrade),
	// one connection per Options.Connections, requests multiplexed on each.
	ProtocolH2C = "h2c"
	// ProtocolGRPC is gRPC unary calls over cleartext HTTP/2, one connection
	// per Options.Connections.
	ProtocolGRPC = "grpc"
	// ProtocolGRPCStream is gRPC server-streaming calls over cleartext
	// HTTP/2, one connection per Options.Connections. Each request is one
	// call: one message sent, then every message received until the
	// status in the trailers, which decides its outcome; its latency is
	// the whole call.
	ProtocolGRPCStream = "grpc-stream"
	// ProtocolTCP is opaque TCP: each request opens a connection of its
	// own, writes the payload, closes its side (half-close) and reads the
	// echo to the end, which must be the payload again followed by the
	// server's close (skiff-demo's TCP echo). Its latency is the whole
	// exchange, the connection's setup included.
	ProtocolTCP = "tcp"
	// ProtocolTLS is ProtocolTCP's exchange over the client's own TLS:
	// each request is a fresh connection with a full handshake (no
	// resumption), then the echo, ended by close_notify both ways
	// (skiff-demo's TLS echo). The server's certificate is not verified
	// against a CA; with Target.TLSCommonName it must be for that name.
	ProtocolTLS = "tls"
	// ProtocolBanner is a server-speaks-first dialogue shaped as SMTP's:
	// each request opens a connection, sends nothing until the server's
	// greeting (a 220 reply), then says QUIT and wants a 221 reply and
	// the server's close (skiff-demo's banner). A proxy cannot classify
	// such a client from its first bytes: it must wait, then pass the
	// connection through as opaque TCP.
	ProtocolBanner = "banner"
)

// Methods of the skiff-demo echo service, the defaults of the gRPC
// protocols. Their request and response messages are
// google.protobuf.BytesValue.
const (
	// EchoMethod is the unary echo, ProtocolGRPC's default.
	EchoMethod = "/skiff.demo.v1.Echo/Echo"
	// StreamEchoMethod is the server-streaming echo, ProtocolGRPCStream's
	// default: it answers with MessagesMetadata copies of the request.
	StreamEchoMethod = "/skiff.demo.v1.Echo/StreamEcho"
)

// DigestHeader carries the hex SHA-256 of a request's body
// (Target.Digest); skiff-demo's /digest checks it.
const DigestHeader = "Skiff-Body-Sha256"

// MessagesMetadata is the metadata key by which a ProtocolGRPCStream call
// asks for Target.Messages messages (skiff-demo's StreamEcho reads it).
const MessagesMetadata = "count"

// Mix bounds: a mixed run has at most MaxMixShares kinds of request, each
// of weight at most MaxMixWeight.
const (
	MaxMixShares = 7 // every protocol once
	MaxMixWeight = 100
)

// Defaults applied by Options.Normalize to zero fields.
const (
	DefaultDuration      = 10 * time.Second
	DefaultTimeout       = 10 * time.Second
	DefaultConnections   = 10 // HTTP/1.1; h2c and gRPC default to 1
	DefaultMaxInFlight   = 256
	DefaultMaxErrorKinds = 50
	// DefaultMessages is the messages of a ProtocolGRPCStream call when
	// Target.Messages is zero: skiff-demo's StreamEcho default.
	DefaultMessages = 3
	// MaxMessages bounds Target.Messages (skiff-demo's bound).
	MaxMessages = 100000
)

// Target says where requests go and what they carry.
type Target struct {
	// Protocol is ProtocolHTTP1 (the default when empty), ProtocolH2C,
	// ProtocolGRPC, ProtocolGRPCStream, ProtocolTCP, ProtocolTLS or
	// ProtocolBanner. It must be empty when Options.Mix is set.
	Protocol string `json:"protocol,omitempty"`
	// URL is the request URL for HTTP ("http://127.0.0.1:8080/echo"). For
	// the other protocols it is the server address "host:port"; a
	// "grpc://" or "http://" prefix is accepted and dropped (with the
	// path of an http:// URL).
	URL string `json:"url"`
	// Method is the HTTP method (default GET, or POST when PayloadBytes > 0),
	// or for gRPC the full method name (default EchoMethod, and
	// StreamEchoMethod for ProtocolGRPCStream). A gRPC method must take and
	// return google.protobuf.BytesValue. It must be empty when Options.Mix
	// is set: each share names its own.
	Method string `json:"method,omitempty"`
	// Header is sent with every request; for gRPC it becomes outgoing
	// metadata (keys lower-cased). A "Host" entry sets the HTTP Host. Nil
	// means no extra header. It is only read.
	// For gRPC, a Host header sets the :authority; the others are sent
	// as metadata.
	Header http.Header `json:"header,omitempty"`
	// PayloadBytes is the size of the request body (the BytesValue value
	// for gRPC, what tcp and tls send to be echoed). The same bytes are
	// reused for every request. Zero sends an empty body, and
	// DefaultEchoBytes with tcp and tls.
	PayloadBytes int `json:"payload_bytes,omitempty"`
	// Payload, when set, is the request body as given (a marker a test
	// looks for on the wire, say); PayloadBytes is then ignored.
	Payload []byte `json:"payload,omitempty"`
	// Digest adds DigestHeader with the payload's SHA-256 to every HTTP
	// request, so that the backend (skiff-demo's /digest) can check the
	// body arrived intact, however often a proxy replayed it.
	Digest bool `json:"digest,omitempty"`
	// Chunked sends every other HTTP request's payload without a length
	// (chunked transfer coding on HTTP/1.1), the others with one: a proxy
	// that replays bodies must get both right.
	Chunked bool `json:"chunked,omitempty"`
	// Messages is, for ProtocolGRPCStream, the number of messages each
	// call asks for (metadata MessagesMetadata) and must receive: a call
	// whose trailers say OK after any other number fails all the same.
	// Zero means DefaultMessages; 1..MaxMessages otherwise. Only read for
	// streaming calls.
	Messages int `json:"messages,omitempty"`
	// TLSCommonName, for ProtocolTLS, is the subject common name the
	// server's certificate must have: a request that meets another
	// certificate (a proxy's that terminated the TLS) fails. Empty means
	// any certificate.
	TLSCommonName string `json:"tls_common_name,omitempty"`
}

// Share is one kind of request of a mixed run (Options.Mix).
type Share struct {
	// Protocol is the share's protocol, any of Target.Protocol's.
	Protocol string `json:"protocol"`
	// Method is the full gRPC method of a gRPC share; empty means the
	// protocol's default (EchoMethod, StreamEchoMethod). HTTP shares send
	// GET (POST with a payload); other shares leave it empty.
	Method string `json:"method,omitempty"`
	// URL is where the share's requests go, in the form Target.URL takes
	// for its protocol; empty means Target.URL (for a share that is not
	// HTTP, its host and port).
	URL string `json:"url,omitempty"`
	// Weight is the share's part of the requests, 1..MaxMixWeight; zero
	// means 1.
	Weight int `json:"weight,omitempty"`
}

// Options configures Run. The zero value, with Target.URL set, is a valid
// run: HTTP/1.1 GET at DefaultRate requests per second for DefaultDuration.
type Options struct {
	// Target is where requests go. Target.URL is required.
	Target Target
	// Mix, when set, makes the run a mix of kinds of request to Target:
	// the schedule's requests go to the shares in proportion to their
	// weights, in a fixed interleaved cycle (weights 1 and 1 alternate; 3
	// and 1 send three of the first for each of the second, spread out),
	// so every second of the run carries the same mix and no seed is
	// needed. Each share is sent with Target's header, payload and
	// Messages, to its own URL or Target's, and recorded in the same
	// histograms and counts (a failed streaming call's message says
	// "stream", a failed tcp, tls or banner exchange's starts with its
	// protocol); Target.Protocol and Target.Method must be empty. A mix of
	// gRPC calls to Target's address shares the same Connections; in any
	// other mix each HTTP or gRPC share has Connections of its own, and
	// tcp, tls and banner a connection per request. At most MaxMixShares
	// shares, each protocol once. Nil means every request is of
	// Target.Protocol.
	Mix []Share
	// Pacer schedules the requests. Nil means Rate.Pacer(Duration). Run
	// reads the schedule with its own clock (see the package doc), so the
	// pacer must be a pure function of its arguments, as vegeta's are, and
	// must have a finite rate: a vegeta ConstantPacer or LinearPacer with a
	// zero start rate (vegeta's "as fast as possible") is rejected.
	Pacer vegeta.Pacer
	// Rate is the declarative schedule used when Pacer is nil. The zero
	// value is a constant DefaultRate requests per second.
	Rate Rate
	// Duration is the length of the schedule, warm-up included: requests
	// due at or after Duration are not sent. The schedule also ends when
	// the pacer says stop (Steps does after its last step). Zero means the
	// total of the steps for a Steps schedule and DefaultDuration otherwise.
	Duration time.Duration
	// WarmUp is the first part of Duration whose requests are sent but not
	// recorded. Zero means none. It must be shorter than Duration.
	WarmUp time.Duration
	// Timeout bounds each request from the moment it is sent. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Connections is the number of connections to the target: the HTTP/1.1
	// pool size, or the number of HTTP/2 (h2c, gRPC) connections requests
	// are spread over round-robin. Zero means DefaultConnections for
	// HTTP/1.1 and 1 for h2c and gRPC.
	Connections int
	// RequestsPerConnection, for HTTP/1.1, makes connections open and
	// close through the run: one request in RequestsPerConnection is
	// sent with "Connection: close", so the connection it goes over
	// closes after its answer and the pool dials a new one. Connections
	// then carry that many requests on average. Zero keeps each
	// connection open for the run (keep-alive); other protocols must
	// leave it zero.
	RequestsPerConnection int
	// Dial, when set, opens every connection to the target instead of the
	// harness's own network stack: for example from inside a pod's network
	// namespace, where its sidecar's interception rules apply. Nil means a
	// net.Dialer with Timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxInFlight caps the requests in flight, and so the generator's
	// goroutines and memory when the target stalls. A request due while the
	// cap is reached waits for a free slot, and the wait counts in its
	// latency; once Duration has elapsed, requests still waiting are not sent
	// and are recorded as ErrDropped. Zero means DefaultMaxInFlight.
	MaxInFlight int
	// Success tells whether a status code (see Result.StatusCodes) is a
	// success. It must be safe for concurrent use. A request that failed
	// with a transport error is never a success. Nil means DefaultSuccess.
	Success func(code string) bool
	// MaxErrorKinds caps the distinct messages in Result.Errors; further
	// messages are counted under OtherErrors. Zero means
	// DefaultMaxErrorKinds.
	MaxErrorKinds int
	// Progress, if set, is called about once a second, from its own
	// goroutine, with the second that just ended (by intended send time):
	// a live view for progress displays. Every request due in that second
	// is in it: those with an outcome in Requests, Success and Errors, the
	// others (sent and not answered yet, or waiting for a slot) in
	// Outstanding. Warm-up seconds are not reported.
	Progress func(Second)
}

// DefaultSuccess reports HTTP 2xx and 3xx, gRPC OK and a complete tcp,
// tls or banner exchange (CodeTCPOK, CodeTLSOK, CodeBannerOK) as
// successes.
func DefaultSuccess(code string) bool {
	switch code {
	case "grpc:OK", CodeTCPOK, CodeTLSOK, CodeBannerOK:
		return true
	}
	n, err := strconv.Atoi(code)
	return err == nil && n >= 200 && n < 400
}

// Normalize fills zero fields with their defaults and reports the first
// invalid field. Run calls it on its own copy; calling it first is only useful
// to validate a configuration early or to see the defaults.
func (o *Options) Normalize() error {
	t := &o.Target
	if len(o.Mix) > 0 {
		if err := o.normalizeMix(); err != nil {
			return err
		}
	} else {
		switch t.Protocol {
		case "":
			t.Protocol = ProtocolHTTP1
		case ProtocolHTTP1, ProtocolH2C, ProtocolGRPC, ProtocolGRPCStream, ProtocolTCP, ProtocolTLS, ProtocolBanner:
		default:
			return fmt.Errorf("loadgen: unknown protocol %q: use one of %q", t.Protocol, protocols)
		}
	}
	if t.URL == "" {
		return errors.New("loadgen: target URL is empty: give the target's URL (host:port for gRPC)")
	}
	if t.PayloadBytes < 0 {
		return fmt.Errorf("loadgen: payload is %d bytes: give a size >= 0", t.PayloadBytes)
	}
	switch {
	case o.mixed():
		// Each share's URL is checked with its options (Normalize's end).
	case o.isGRPC() || isRaw(t.Protocol):
		addr := hostPort(t.URL)
		if strings.ContainsAny(addr, "/?#") || !strings.Contains(addr, ":") {
			return fmt.Errorf("loadgen: %s target %q is not host:port", t.Protocol, t.URL)
		}
		t.URL = addr
	}
	switch {
	case o.isGRPC():
		if len(o.Mix) == 0 {
			t.Method = grpcMethod(t.Protocol, t.Method)
			if err := checkGRPCMethod(t.Method); err != nil {
				return err
			}
		}
		if o.streams() {
			if t.Messages == 0 {
				t.Messages = DefaultMessages
			}
			if t.Messages < 0 || t.Messages > MaxMessages {
				return fmt.Errorf("loadgen: %d messages per streaming call: give 1..%d", t.Messages, MaxMessages)
			}
		}
	case o.mixed():
		// Each share is checked with its own options (below).
	case isRaw(t.Protocol):
		if t.Method != "" {
			return fmt.Errorf("loadgen: a %s target takes no method (%q)", t.Protocol, t.Method)
		}
	default:
		u, err := url.Parse(t.URL)
		if err != nil {
			return fmt.Errorf("loadgen: target URL: %w", err)
		}
		switch {
		case u.Host == "":
			return fmt.Errorf("loadgen: target URL %q has no host", t.URL)
		case t.Protocol == ProtocolH2C && u.Scheme != "http":
			return fmt.Errorf("loadgen: h2c target URL %q must use http://", t.URL)
		case u.Scheme != "http" && u.Scheme != "https":
			return fmt.Errorf("loadgen: target URL %q must use http:// or https://", t.URL)
		}
		if t.Method == "" {
			t.Method = http.MethodGet
			if t.PayloadBytes > 0 || len(t.Payload) > 0 {
				t.Method = http.MethodPost
			}
		}
	}

	if o.Duration < 0 || o.WarmUp < 0 || o.Timeout < 0 || o.Connections < 0 || o.MaxInFlight < 0 || o.MaxErrorKinds < 0 || o.RequestsPerConnection < 0 {
		return errors.New("loadgen: durations and counts in Options must not be negative")
	}
	if o.RequestsPerConnection > 0 && (len(o.Mix) > 0 || t.Protocol != ProtocolHTTP1) {
		return errors.New("loadgen: RequestsPerConnection closes HTTP/1.1 connections (Connection: close), and this run is not HTTP/1.1: leave it zero")
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
		if o.Pacer == nil && o.Rate.Shape == ShapeSteps {
			o.Duration = o.Rate.Steps.Total()
		}
		if s, ok := o.Pacer.(Steps); ok {
			o.Duration = s.Total()
		}
	}
	if o.Pacer == nil {
		p, err := o.Rate.Pacer(o.Duration)
		if err != nil {
			return err
		}
		o.Pacer = p
	}
	if err := checkPacer(o.Pacer); err != nil {
		return err
	}
	if o.WarmUp >= o.Duration {
		return fmt.Errorf("loadgen: warm-up %s is not shorter than the run's duration %s", o.WarmUp, o.Duration)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Connections == 0 {
		o.Connections = 1
		if t.Protocol == ProtocolHTTP1 {
			o.Connections = DefaultConnections
		}
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Success == nil {
		o.Success = DefaultSuccess
	}
	if o.MaxErrorKinds == 0 {
		o.MaxErrorKinds = DefaultMaxErrorKinds
	}
	if o.mixed() {
		for i := range o.Mix {
			so := o.shareOptions(i)
			if err := so.Normalize(); err != nil {
				return fmt.Errorf("loadgen: mix share %d (%s): %w", i, o.Mix[i].Protocol, err)
			}
		}
	}
	return nil
}

// protocols are every protocol Target.Protocol and Share.Protocol take.
var protocols = []string{ProtocolHTTP1, ProtocolH2C, ProtocolGRPC, ProtocolGRPCStream, ProtocolTCP, ProtocolTLS, ProtocolBanner}

// isRaw reports whether each request of protocol p is a connection of its
// own (raw.go).
func isRaw(p string) bool {
	return p == ProtocolTCP || p == ProtocolTLS || p == ProtocolBanner
}

// hostPort is the host:port of a server address given as host:port, as a
// grpc:// address or as an http:// URL (whose path is dropped).
func hostPort(u string) string {
	if rest, ok := strings.CutPrefix(u, "grpc://"); ok {
		return rest
	}
	if rest, ok := strings.CutPrefix(u, "http://"); ok {
		host, _, _ := strings.Cut(rest, "/")
		return host
	}
	return u
}

// mixed reports whether o is a mix that is not only gRPC calls to
// Target's address: each share then has a client of its own (mixClient).
func (o *Options) mixed() bool {
	return len(o.Mix) > 0 && slices.ContainsFunc(o.Mix, func(s Share) bool {
		return (s.Protocol != ProtocolGRPC && s.Protocol != ProtocolGRPCStream) || s.URL != ""
	})
}

// shareOptions are the options of share i of a mixed run: o's, for
// requests of the share's protocol, method and URL alone.
func (o *Options) shareOptions(i int) Options {
	sh := o.Mix[i]
	so := *o
	so.Mix = nil
	so.Target.Protocol, so.Target.Method = sh.Protocol, sh.Method
	so.Target.URL = cmp.Or(sh.URL, o.Target.URL)
	switch {
	case sh.Protocol == ProtocolHTTP1 || sh.Protocol == ProtocolH2C:
		if !strings.Contains(so.Target.URL, "://") {
			so.Target.URL = "http://" + so.Target.URL + "/"
		}
	default:
		so.Target.URL = hostPort(so.Target.URL)
	}
	return so
}

// normalizeMix checks the shares of a mixed run and fills their defaults.
func (o *Options) normalizeMix() error {
	t := &o.Target
	if t.Protocol != "" || t.Method != "" {
		return fmt.Errorf("loadgen: a mixed run takes its protocols and methods from Mix: leave Target.Protocol (%q) and Target.Method (%q) empty", t.Protocol, t.Method)
	}
	if len(o.Mix) > MaxMixShares {
		return fmt.Errorf("loadgen: %d shares in the mix: at most %d, each protocol once", len(o.Mix), MaxMixShares)
	}
	o.Mix = slices.Clone(o.Mix) // the caller's slice stays as it was
	for i := range o.Mix {
		sh := &o.Mix[i]
		if !slices.Contains(protocols, sh.Protocol) {
			return fmt.Errorf("loadgen: mix share %d: unknown protocol %q: use one of %q", i, sh.Protocol, protocols)
		}
		for _, prev := range o.Mix[:i] {
			if prev.Protocol == sh.Protocol {
				return fmt.Errorf("loadgen: mix share %d: protocol %q appears twice: give it one share with the summed weight", i, sh.Protocol)
			}
		}
		if sh.Weight == 0 {
			sh.Weight = 1
		}
		if sh.Weight < 0 || sh.Weight > MaxMixWeight {
			return fmt.Errorf("loadgen: mix share %d: weight %d is outside 1..%d", i, sh.Weight, MaxMixWeight)
		}
		if sh.Protocol != ProtocolGRPC && sh.Protocol != ProtocolGRPCStream {
			if sh.Method != "" {
				return fmt.Errorf("loadgen: mix share %d: a %s share takes no method (%q)", i, sh.Protocol, sh.Method)
			}
			continue
		}
		sh.Method = grpcMethod(sh.Protocol, sh.Method)
		if err := checkGRPCMethod(sh.Method); err != nil {
			return err
		}
	}
	return nil
}

// isGRPC reports whether the run's requests are gRPC calls over the same
// connections (one client, grpcClient).
func (o *Options) isGRPC() bool {
	if len(o.Mix) > 0 {
		return !o.mixed()
	}
	return o.Target.Protocol == ProtocolGRPC || o.Target.Protocol == ProtocolGRPCStream
}

// streams reports whether some of the run's requests are streaming calls.
func (o *Options) streams() bool {
	if o.Target.Protocol == ProtocolGRPCStream {
		return true
	}
	return slices.ContainsFunc(o.Mix, func(s Share) bool { return s.Protocol == ProtocolGRPCStream })
}

// grpcMethod is method, or the default of the protocol when it is empty.
func grpcMethod(protocol, method string) string {
	switch {
	case method != "":
		return method
	case protocol == ProtocolGRPCStream:
		return StreamEchoMethod
	}
	return EchoMethod
}

func checkGRPCMethod(m string) error {
	if !strings.HasPrefix(m, "/") || strings.Count(m, "/") != 2 {
		return fmt.Errorf("loadgen: gRPC method %q is not a full method name like %q", m, EchoMethod)
	}
	return nil
}

// checkPacer rejects the vegeta pacers whose zero rate means "unlimited",
// which an open model cannot schedule.
func checkPacer(p vegeta.Pacer) error {
	switch p := p.(type) {
	case vegeta.ConstantPacer:
		if p.Freq <= 0 || p.Per <= 0 {
			return fmt.Errorf("loadgen: constant pacer %d per %s: give a positive rate (vegeta reads zero as unlimited)", p.Freq, p.Per)
		}
	case vegeta.LinearPacer:
		if p.StartAt.Freq <= 0 || p.StartAt.Per <= 0 {
			return errors.New("loadgen: linear pacer starts at a zero rate, which vegeta reads as unlimited: give a positive start rate")
		}
	case Steps:
		return p.Validate()
	}
	if r := p.Rate(0); math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
		return fmt.Errorf("loadgen: pacer %v has rate %v at the start: give a finite rate", p, r)
	}
	return nil
}
