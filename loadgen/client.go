package loadgen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// CodeNone is the status code of a request that got no response: a transport
// error, a timeout before the response head, or a request dropped at the
// in-flight cap. gRPC transport errors have their own gRPC codes instead.
const CodeNone = "0"

// userAgent is sent unless Target.Header sets one.
const userAgent = "skiff-loadgen"

// outcome is what one request produced. err is set when the request failed
// without a status (code CodeNone) or failed after it (reading the body);
// detail is the gRPC status message.
type outcome struct {
	code   string
	detail string
	err    error
}

// client sends one request to the target. call is safe for concurrent use.
type client interface {
	call(ctx context.Context) outcome
	// close releases the connections; call must not be running.
	close()
}

var (
	_ client = (*httpClient)(nil)
	_ client = (*grpcClient)(nil)
)

func newClient(o *Options) (client, error) {
	if o.mixed() {
		return newMixClient(o)
	}
	payload := o.Target.Payload
	if payload == nil {
		payload = bytes.Repeat([]byte{'x'}, o.Target.PayloadBytes)
	}
	switch {
	case o.isGRPC():
		return newGRPCClient(o, payload)
	case isRaw(o.Target.Protocol):
		return newRawClient(o, payload), nil
	}
	return newHTTPClient(o, payload)
}

// httpClient sends HTTP/1.1 or h2c requests straight through transports
// (no http.Client: no redirects, no cookies). HTTP/1.1 uses one transport
// whose pool is capped at Connections; h2c uses one transport per connection,
// because an HTTP/2 transport multiplexes everything onto one connection per
// host.
type httpClient struct {
	tmpl       *http.Request // shallow-copied per request; URL and Header only read
	payload    []byte
	chunked    bool          // every other body without a length
	sent       atomic.Uint64 // requests with a body, for chunked
	transports []*http.Transport
	next       atomic.Uint64
	// closeEvery is Options.RequestsPerConnection: one request in
	// closeEvery asks to close its connection; calls counts them.
	closeEvery uint64
	calls      atomic.Uint64
}

func newHTTPClient(o *Options, payload []byte) (*httpClient, error) {
	t := o.Target
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, err
	}
	tmpl := &http.Request{
		Method:     t.Method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, len(t.Header)+1),
		Host:       u.Host,
	}
	for k, vs := range t.Header {
		if http.CanonicalHeaderKey(k) == "Host" && len(vs) > 0 {
			tmpl.Host = vs[0]
			continue
		}
		tmpl.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	if tmpl.Header.Get("User-Agent") == "" {
		tmpl.Header.Set("User-Agent", userAgent)
	}

	if t.Digest && len(payload) > 0 {
		sum := sha256.Sum256(payload)
		tmpl.Header.Set(DigestHeader, hex.EncodeToString(sum[:]))
	}
	c := &httpClient{tmpl: tmpl, payload: payload, chunked: t.Chunked, closeEvery: uint64(o.RequestsPerConnection)}
	var protocols http.Protocols
	n := 1
	if t.Protocol == ProtocolH2C {
		protocols.SetUnencryptedHTTP2(true)
		n = o.Connections
	} else {
		protocols.SetHTTP1(true)
	}
	dial := o.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext
	}
	for range n {
		tr := &http.Transport{
			Proxy:               nil, // measure the target, not an environment proxy
			DialContext:         dial,
			MaxIdleConns:        o.Connections,
			MaxIdleConnsPerHost: o.Connections,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			Protocols:           &protocols,
		}
		if t.Protocol == ProtocolHTTP1 {
			tr.MaxConnsPerHost = o.Connections
		}
		c.transports = append(c.transports, tr)
	}
	return c, nil
}

func (c *httpClient) call(ctx context.Context) outcome {
	req := c.tmpl.WithContext(ctx)
	if len(c.payload) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(c.payload))
		req.GetBody = c.getBody
		req.ContentLength = int64(len(c.payload))
		if c.chunked && c.sent.Add(1)%2 == 0 {
			req.ContentLength = -1 // unknown: chunked on HTTP/1.1
		}
	}
	if c.closeEvery > 0 && c.calls.Add(1)%c.closeEvery == 0 {
		req.Close = true // the transport closes the connection after the answer
	}
	tr := c.transports[0]
	if len(c.transports) > 1 {
		tr = c.transports[c.next.Add(1)%uint64(len(c.transports))]
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return outcome{code: CodeNone, err: err}
	}
	// Read the whole body so the latency covers the response and the
	// connection can be reused.
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return outcome{code: httpCode(resp.StatusCode), err: err}
}

func (c *httpClient) getBody() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(c.payload)), nil
}

func (c *httpClient) close() {
	for _, tr := range c.transports {
		tr.CloseIdleConnections()
	}
}

// httpCodes holds the strings of the usual status codes, so recording a
// status does not allocate. It is filled once and only read.
var httpCodes = func() (t [600]string) {
	for i := 100; i < len(t); i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func httpCode(n int) string {
	if n >= 0 && n < len(httpCodes) && httpCodes[n] != "" {
		return httpCodes[n]
	}
	return strconv.Itoa(n)
}

// grpcClient makes gRPC calls of BytesValue methods over Connections
// client connections, round-robin: unary calls (ProtocolGRPC), server
// streams (ProtocolGRPCStream) or, for Options.Mix, both in turn.
type grpcClient struct {
	cycle    []grpcCall             // the kinds of call in order; one for an unmixed run
	req      *wrapperspb.BytesValue // only read: marshalling is safe concurrently
	md       metadata.MD            // Target.Header; nil when there is none
	streamMD metadata.MD            // md and MessagesMetadata, for streaming calls
	messages int
	conns    []*grpc.ClientConn
	next     atomic.Uint64
}

// grpcCall is one kind of call of a gRPC run.
type grpcCall struct {
	method string
	stream *grpc.StreamDesc // nil for a unary call
}

func newGRPCClient(o *Options, payload []byte) (*grpcClient, error) {
	c := &grpcClient{
		cycle:    grpcCycle(o),
		req:      wrapperspb.Bytes(payload),
		messages: o.Target.Messages,
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(userAgent),
	}
	for k, vs := range o.Target.Header {
		// Host names the :authority, as for HTTP: a proxy routes by it.
		if http.CanonicalHeaderKey(k) == "Host" && len(vs) > 0 {
			opts = append(opts, grpc.WithAuthority(vs[0]))
			continue
		}
		if c.md == nil {
			c.md = metadata.MD{}
		}
		c.md.Append(k, vs...)
	}
	if o.Dial != nil {
		dial := o.Dial
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		}))
	}
	c.streamMD = metadata.Join(c.md, metadata.Pairs(MessagesMetadata, strconv.Itoa(c.messages)))
	for range o.Connections {
		cc, err := grpc.NewClient(o.Target.URL, opts...)
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

// grpcCycle lists the calls of one turn of the mix, each share as often as
// its weight, interleaved by smooth weighted round robin (nginx's): 3 and 1
// give a a b a, never a a a b.
func grpcCycle(o *Options) []grpcCall {
	shares := o.Mix
	if len(shares) == 0 {
		shares = []Share{{Protocol: o.Target.Protocol, Method: o.Target.Method, Weight: 1}}
	}
	calls := make([]grpcCall, len(shares))
	for i, sh := range shares {
		calls[i].method = sh.Method
		if sh.Protocol == ProtocolGRPCStream {
			calls[i].stream = &grpc.StreamDesc{StreamName: sh.Method[strings.LastIndexByte(sh.Method, '/')+1:], ServerStreams: true}
		}
	}
	order := weightedCycle(shares)
	cycle := make([]grpcCall, len(order))
	for i, k := range order {
		cycle[i] = calls[k]
	}
	return cycle
}

// weightedCycle lists the shares of one turn of a mix by index, each as
// often as its weight, interleaved by smooth weighted round robin
// (nginx's): weights 3 and 1 give 0 0 1 0, never 0 0 0 1.
func weightedCycle(shares []Share) []int {
	total := 0
	for _, sh := range shares {
		total += sh.Weight
	}
	cycle := make([]int, 0, total)
	current := make([]int, len(shares))
	for range total {
		best := 0
		for i, sh := range shares {
			current[i] += sh.Weight
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		cycle = append(cycle, best)
	}
	return cycle
}

func (c *grpcClient) call(ctx context.Context) outcome {
	// Call n is the cycle's n-th kind, on a connection that changes with
	// each turn of the cycle, so that every connection carries every
	// kind (taking both round robin from n would pin each kind to some of
	// the connections whenever the counts share a factor).
	n := c.next.Add(1) - 1
	l := uint64(len(c.cycle))
	k := c.cycle[n%l]
	cc := c.conns[(n/l)%uint64(len(c.conns))]
	if k.stream != nil {
		return c.serverStream(ctx, cc, k)
	}
	if c.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, c.md)
	}
	var resp wrapperspb.BytesValue
	err := cc.Invoke(ctx, k.method, c.req, &resp)
	s := status.Convert(err)
	return outcome{code: grpcCode(s.Code()), detail: s.Message()}
}

// serverStream makes one server-streaming call: it sends the request,
// closes its side and receives until the status. The outcome is the status
// from the trailers, and a call the status calls OK fails all the same
// when it did not carry the messages asked for. The caller's cancelling
// ctx releases the stream whichever way it ended.
func (c *grpcClient) serverStream(ctx context.Context, cc *grpc.ClientConn, k grpcCall) outcome {
	ctx = metadata.NewOutgoingContext(ctx, c.streamMD)
	st, err := cc.NewStream(ctx, k.stream, k.method)
	if err != nil {
		return c.streamOutcome(err, 0)
	}
	// io.EOF from SendMsg means the server already ended the call: its
	// status comes from RecvMsg.
	if err := st.SendMsg(c.req); err != nil && !errors.Is(err, io.EOF) {
		return c.streamOutcome(err, 0)
	}
	if err := st.CloseSend(); err != nil {
		return c.streamOutcome(err, 0)
	}
	var msg wrapperspb.BytesValue
	for n := 0; ; n++ {
		err := st.RecvMsg(&msg)
		if err == nil {
			continue
		}
		if !errors.Is(err, io.EOF) {
			return c.streamOutcome(err, n)
		}
		// io.EOF: the trailers said OK.
		out := outcome{code: grpcCode(codes.OK)}
		if n != c.messages {
			out.err = fmt.Errorf("stream ended OK after %d of %d messages", n, c.messages)
		}
		return out
	}
}

// streamOutcome is a streaming call that ended with err (a status) after n
// messages. Its message says "stream", so that a mixed run tells the
// kinds of call apart, and how far a broken stream got.
func (c *grpcClient) streamOutcome(err error, n int) outcome {
	s := status.Convert(err)
	detail := "stream"
	if n > 0 {
		detail = fmt.Sprintf("stream broke after %d of %d messages", n, c.messages)
	}
	if m := s.Message(); m != "" {
		detail += ": " + m
	}
	return outcome{code: grpcCode(s.Code()), detail: detail}
}

// grpcCodeNames holds "grpc:<name>" for the defined gRPC codes; it is filled
// once and only read.
var grpcCodeNames = func() (t [codes.Unauthenticated + 1]string) {
	for i := range t {
		t[i] = "grpc:" + codes.Code(i).String()
	}
	return t
}()

func grpcCode(c codes.Code) string {
	if int(c) < len(grpcCodeNames) {
		return grpcCodeNames[c]
	}
	return "grpc:" + c.String()
}

func (c *grpcClient) close() {
	for _, cc := range c.conns {
		_ = cc.Close() // only fails when already closed
	}
}
