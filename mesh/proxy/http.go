package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/balance"
	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/telemetry"
)

// OrigProtoHeader carries an HTTP/1.1 request's protocol across the
// multiplexed HTTP/2 connection between two Skiff proxies, so the inbound
// side turns it back into HTTP/1.1 for the application.
const OrigProtoHeader = "Skiff-Orig-Proto"

// ErrorHeader names why the proxy itself answered a request.
const ErrorHeader = "Skiff-Error"

// ClientIDHeader carries the verified SPIFFE ID of an inbound request's
// client to the application, with Config.ForwardClientID. The inbound side
// always removes one a request brings.
const ClientIDHeader = "Skiff-Client-Id"

// maxConnectAttempts bounds the endpoints tried after connection failures.
const maxConnectAttempts = 3

// Errors the proxy answers with, each mapped to a status once, in
// writeError.
var (
	errUnknownAuthority = errors.New("no service is known for this authority")
	errNoEndpoints      = errors.New("the service has no ready endpoint")
	errInFlight         = errors.New("in-flight request limit reached")
	errConnShare        = errors.New("this connection holds its share of the in-flight requests")
	errClientShare      = errors.New("this client holds its share of the in-flight requests")
	errNoTarget         = errors.New("no destination for this connection")
	errDiscovery        = errors.New("timed out waiting for service discovery")
	errAllEjected       = errors.New("every endpoint of the service is ejected by its circuit breaker or asked for backpressure")
	errPlanted          = errors.New("planted defect fail-some: this test build fails one request in twenty")
)

// connectError is a failure to connect to an endpoint: nothing was sent, so
// another endpoint may be tried.
type connectError struct {
	addr string
	err  error
}

func (e *connectError) Error() string { return "connect " + e.addr + ": " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

func isConnectError(err error) bool {
	var ce *connectError
	if errors.As(err, &ce) {
		return true
	}
	// A connection the peer reset before answering anything.
	return errors.Is(err, syscall.ECONNREFUSED)
}

// bufferPool lends the copy buffers of httputil.ReverseProxy: a stock proxy
// allocates 32 KiB per request, which is what makes it grow under load.
// 8 KiB is enough for the bodies a sidecar copies: larger ones stream
// through it in chunks.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 8 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.p.Put(&buf)
}

// recorder observes the status and the time of the response headers. It
// unwraps for http.ResponseController, so flushing and hijacking (upgrades)
// reach the real writer.
type recorder struct {
	http.ResponseWriter
	status  int
	headers time.Time
	tls     string // the outbound endpoint's tls label, set once routed
	// body is the request's body, told when the response begins. It is
	// not pooled with the recorder: a transport may still read it after
	// the request is done.
	body *timedBody
}

type recorderKey struct{}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		r.status = code
		r.headers = time.Now()
		if r.body != nil {
			r.body.respond()
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
		r.headers = time.Now()
		if r.body != nil {
			r.body.respond()
		}
	}
	return r.ResponseWriter.Write(p)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func isGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// maxHeaderListSize is the edge's limit on a request's header list.
const maxHeaderListSize = DefaultMaxHeaderBytes

// hopHeaderRoom is what the proxies' own servers accept beyond
// maxHeaderListSize: room for what an outbound proxy adds to a request it
// accepted (pseudo-header fields, Skiff-Orig-Proto, Content-Length).
// Without it a header list just under the limit passed the outbound edge
// and failed on the hop with a 502.
const hopHeaderRoom = 1 << 10

var errHeaderListSize = &requestError{http.StatusRequestHeaderFieldsTooLarge,
	"request header fields too large: the header list exceeds " + strconv.Itoa(maxHeaderListSize>>10) + " KiB, counting 32 bytes per field as HTTP/2 does"}

// headerListSize is r's header list size as HTTP/2 counts it (RFC 9113
// §6.5.2), pseudo-header fields included.
func headerListSize(r *http.Request) int {
	const perField = 32
	n := len(":method") + len(r.Method) + len(":path") + len(r.RequestURI) +
		len(":authority") + len(r.Host) + len(":scheme") + len("https") + 4*perField
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + perField
		}
	}
	return n
}

// checkRequest refuses what the proxy does not forward: a header list
// over the limit, and HTTP/1 requests with folded header lines or framing
// the connection's scanner could not follow.
func checkRequest(r *http.Request, c *conn, dir string) error {
	limit := maxHeaderListSize
	if dir == dirInbound {
		limit += hopHeaderRoom // what the client's proxy added
	}
	if c != nil && c.h1 != nil && r.ProtoMajor == 1 {
		if err := c.h1.claim(r); err != nil {
			return err
		}
	}
	if headerListSize(r) > limit {
		return errHeaderListSize
	}
	return nil
}

// ServeHTTP proxies one request: it counts it, enforces the in-flight
// bound, forwards it through the listener's ReverseProxy and records the
// response.
func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p := l.p
	c, _ := r.Context().Value(connKey{}).(*conn)
	if c != nil {
		n := c.active.Add(1)
		total := p.active.Add(1)
		defer func() { c.active.Add(-1); p.active.Add(-1) }()
		if total > p.maxActive && n > activeShare {
			// Flooded: this connection is among those holding the
			// most requests; closing it frees all of them, at once.
			if !c.closed.Load() {
				p.floodClosed.Add(1)
				p.log.Warn("too many requests being handled: closing a connection that holds many of them",
					"direction", l.dir, "remote", c.RemoteAddr().String(), "requests", n, "total", total)
				c.Close()
			}
			return
		}
	}
	labels := telemetry.HTTPLabels{Direction: l.dir, Authority: r.Host, TLS: tlsDisabled}
	rec := recorders.Get().(*recorder)
	rec.ResponseWriter, rec.status, rec.headers, rec.tls, rec.body = w, 0, time.Time{}, "", nil
	if p.cfg.Identity != nil {
		if l.dir == dirInbound {
			labels.TLS = tlsNotMeshed
			if c, _ := r.Context().Value(connKey{}).(*conn); c != nil && c.tls {
				labels.TLS, labels.ClientID = tlsTrue, c.peerID
			}
		} else {
			// The endpoint decides; the transport reports it here.
			labels.TLS = tlsNoIdentity
			r = r.WithContext(context.WithValue(r.Context(), recorderKey{}, rec))
		}
	}
	m := p.metrics
	var cancel context.CancelFunc
	err := checkRequest(r, c, l.dir)
	if err == nil {
		r, cancel, err = l.bound(r, start)
	}
	if cancel != nil {
		defer cancel()
	}
	if err != nil {
		writeError(rec, r, err)
	} else if share, err := l.admit(c); err != nil {
		writeError(rec, r, err)
	} else if plant.On(plant.FailSome) && l.planted.Add(1)%20 == 0 {
		l.done(c, share)
		writeError(rec, r, errPlanted)
	} else {
		if plant.On(plant.SlowHop) {
			time.Sleep(time.Millisecond)
		}
		if r.Body != nil && r.Body != http.NoBody {
			ctl := http.NewResponseController(w)
			if r.ProtoMajor == 1 {
				// An upstream may answer while the body still streams;
				// without full duplex the HTTP/1.1 server would discard
				// the rest of the body as soon as the response headers
				// go out.
				ctl.EnableFullDuplex()
			}
			rec.body = &timedBody{rc: r.Body, ctl: ctl, wait: p.cfg.BodyTimeout, streaming: p.cfg.StreamIdleTimeout}
			r.Body = rec.body
		}
		l.rp.ServeHTTP(rec, r)
		l.done(c, share)
		if c != nil && c.h1 != nil && rec.status != http.StatusSwitchingProtocols && (r.Method == http.MethodConnect || r.Header.Get("Upgrade") != "") {
			c.h1.resume() // still HTTP: check what follows
		}
	}
	if rec.tls != "" {
		labels.TLS = rec.tls
	}
	m.Request(labels)
	resp := telemetry.Response{StatusCode: rec.status, GRPCStatus: -1}
	if isGRPC(r) {
		resp.GRPCStatus = grpcStatus(w.Header())
	}
	resp.Classification = classify(resp)
	end := rec.headers
	if end.IsZero() {
		end = time.Now()
	}
	m.Response(labels, resp, end.Sub(start))
	rec.ResponseWriter, rec.body = nil, nil
	recorders.Put(rec)
}

// errBodyTimeout is a request whose body stopped arriving.
var errBodyTimeout = &requestError{http.StatusRequestTimeout, "the request body stopped arriving: no bytes within the body timeout"}

// timedBody is a request body that fails when it stops arriving: after
// wait without a byte while no response has begun (a client that
// announces a body and stalls holds a request slot only that long), and
// after streaming once the response has begun (a gRPC client stream may
// well be quiet for a while).
type timedBody struct {
	rc              io.ReadCloser
	ctl             *http.ResponseController
	wait, streaming time.Duration
	started         atomic.Bool // the response has begun
	done            atomic.Bool // the body was read to its end
	timedOut        atomic.Bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	d := b.wait
	if b.started.Load() {
		d = b.streaming
	}
	b.ctl.SetReadDeadline(time.Now().Add(d))
	n, err := b.rc.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		// No deadline may outlive the body: HTTP/1.1's server reads
		// on in the background to notice a client going away.
		b.done.Store(true)
		b.ctl.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.timedOut.Store(true)
		err = errBodyTimeout
	}
	return n, err
}

func (b *timedBody) Close() error { return b.rc.Close() }

// respond tells b the response has begun: a read waiting already gets
// the streaming deadline too.
func (b *timedBody) respond() {
	if !b.started.Swap(true) && !b.done.Load() {
		b.ctl.SetReadDeadline(time.Now().Add(b.streaming))
	}
}

// grpcStatus finds grpc-status among headers or (announced or not)
// trailers; -1 when absent.
func grpcStatus(h http.Header) int {
	v := h.Get("Grpc-Status")
	if v == "" {
		v = h.Get(http.TrailerPrefix + "Grpc-Status")
	}
	if v == "" {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 2 // UNKNOWN
	}
	return n
}

func classify(r telemetry.Response) string {
	if r.StatusCode >= 500 || r.StatusCode == 0 || r.GRPCStatus > 0 {
		return "failure"
	}
	return "success"
}

// writeError answers a request the proxy could not forward. gRPC clients
// get a trailers-only response with a gRPC status; others an HTTP status
// and the reason in the Skiff-Error header and body.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := errorStatus(err)
	if status == 0 {
		return // the client went away: nothing to answer
	}
	msg := err.Error()
	h := w.Header()
	h.Set(ErrorHeader, msg)
	if isGRPC(r) {
		// Trailers-only: one HEADERS frame, sent when the handler
		// returns (a flush would split it).
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(code))
		h.Set("Grpc-Message", msg)
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	var re *requestError
	if errors.As(err, &re) {
		// The client's request was at fault: what follows it on the
		// connection cannot be trusted to be framed right. An upstream's
		// failure leaves the client's connection as good as it was, and
		// closing it would cost the client a new one for every 502, 503
		// and 504.
		h.Set("Connection", "close")
	}
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
	if r.ProtoMajor == 2 {
		// Send it now, while ServeHTTP counts the request as being
		// handled: net/http would otherwise flush it after the handler
		// returned, uncounted, and a client that floods streams without
		// reading their answers would pile those flushes up unseen.
		http.NewResponseController(w).Flush()
	}
}

// errorStatus maps an error to an HTTP status and a gRPC code.
func errorStatus(err error) (status, grpcCode int) {
	const (
		unavailable       = 14
		resourceExhausted = 8
		deadlineExceeded  = 4
		internal          = 13
	)
	var ne net.Error
	var re *requestError
	switch {
	case errors.As(err, &re):
		switch re.status {
		case http.StatusRequestHeaderFieldsTooLarge:
			return re.status, resourceExhausted
		case http.StatusRequestTimeout:
			return re.status, deadlineExceeded
		}
		return re.status, internal
	case errors.Is(err, context.Canceled):
		return 0, 1
	case errors.Is(err, errInFlight), errors.Is(err, errConnShare), errors.Is(err, errClientShare):
		return http.StatusServiceUnavailable, resourceExhausted
	case errors.Is(err, errNoEndpoints), errors.Is(err, errDiscovery), errors.Is(err, errAllEjected):
		return http.StatusServiceUnavailable, unavailable
	case errors.Is(err, errUnknownAuthority):
		return http.StatusBadGateway, unavailable
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, deadlineExceeded
	case isConnectError(err), connectionLost(err):
		return http.StatusBadGateway, unavailable
	default:
		return http.StatusBadGateway, internal
	}
}

// grpcDeadlineExceeded is the gRPC code of a timed-out call.
const grpcDeadlineExceeded = 4

// connectionLost reports an upstream connection that failed after the
// request went out and before an answer: reset, closed or gone. gRPC
// calls it UNAVAILABLE (the call may be retried), not INTERNAL.
func connectionLost(err error) bool {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	// The HTTP/2 transport reports a lost connection in words only.
	msg := err.Error()
	return strings.Contains(msg, "connection lost") || strings.Contains(msg, "connection reset") ||
		strings.Contains(msg, "server sent GOAWAY")
}

// retryBody guards a request body across connection-failure retries: the
// transport closes a body when a dial fails, and nothing was read from it
// yet, so the close is held back until the last attempt.
type retryBody struct {
	rc         io.ReadCloser
	started    atomic.Bool
	final      atomic.Bool
	closeAsked atomic.Bool
	once       sync.Once
}

func (b *retryBody) Read(p []byte) (int, error) {
	b.started.Store(true)
	return b.rc.Read(p)
}

func (b *retryBody) Close() error {
	if b.final.Load() {
		var err error
		b.once.Do(func() { err = b.rc.Close() })
		return err
	}
	b.closeAsked.Store(true)
	return nil
}

func (b *retryBody) finish() {
	b.final.Store(true)
	if b.closeAsked.Load() {
		b.once.Do(func() { b.rc.Close() })
	}
}

// outboundTransport resolves the request's authority, balances over its
// endpoints and retries connection failures on another endpoint.
type outboundTransport struct{ l *listener }

func (t outboundTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.l.p
	c, _ := req.Context().Value(connKey{}).(*conn)
	rd, _ := req.Context().Value(routedKey{}).(*routed)
	var d *destination
	if rd != nil && rd.dst != nil {
		d = rd.dst // resolved with the request's route
	} else {
		var err error
		if d, err = p.destinations.get(req.Context(), req.Host); err != nil {
			return nil, t.expired(req, rd, err)
		}
	}
	if d == nil {
		// Unknown to discovery: a redirected connection goes where the
		// application meant it to; an explicit one has nowhere to go.
		if c != nil && c.redirect {
			req.URL.Host = c.origDst.String()
			resp, err := p.out.pick(req, false).RoundTrip(req)
			return resp, t.expired(req, rd, err)
		}
		return nil, errUnknownAuthority
	}
	if rd != nil && rd.rt != nil && (rd.rt.Retries() || rd.rt.Timeouts.BackendRequest > 0) {
		return t.retrying(req, d, rd)
	}
	var rt *route.Compiled
	if rd != nil {
		rt = rd.rt
	}
	resp, _, err := t.forward(req, d, nil, rt)
	return resp, t.expired(req, rd, err)
}

// expired names the deadline of a request that failed because it passed,
// and counts it against the request's route.
func (t outboundTransport) expired(req *http.Request, rd *routed, err error) error {
	err = rd.expired(req.Context(), err)
	var te *TimeoutError
	if errors.As(err, &te) && rd.rt != nil {
		t.l.p.routeStats(rd.rt.Name).requestTimeouts.Add(1)
	}
	return err
}

// forward sends req to an endpoint of d, avoiding those in avoid while
// others are left; when none of d's endpoints can take it, it goes to the
// authority's failover list in order. node is the endpoint that answered
// or failed last. rt is the request's route, nil for none.
func (t outboundTransport) forward(req *http.Request, d *destination, avoid []*balance.Node, rt *route.Compiled) (*http.Response, *balance.Node, error) {
	p := t.l.p
	var rb *retryBody
	if req.Body != nil && req.Body != http.NoBody {
		rb = &retryBody{rc: req.Body}
		req.Body = rb
		defer rb.finish()
	}
	resp, node, next, err := t.try(req, d, rb, avoid, rt)
	for _, fb := range p.cfg.Failover[req.Host] {
		if !next {
			break
		}
		fd, ferr := p.destinations.get(req.Context(), fb)
		if ferr != nil || fd == nil {
			continue
		}
		p.failovers.Add(1)
		resp, node, next, err = t.try(req, fd, rb, nil, rt)
	}
	return resp, node, err
}

// try sends req to an endpoint of d, moving to another endpoint when a
// connection fails. It prefers endpoints not in avoid (those a retry
// already failed on) and takes one of them when no other is left; it
// passes over endpoints whose breaker is open or that asked for
// backpressure, and fails fast when no other is left. next reports that no
// endpoint received the request (none was ready, or all refused), so a
// fallback may take it.
func (t outboundTransport) try(req *http.Request, d *destination, rb *retryBody, avoid []*balance.Node, rc *route.Compiled) (resp *http.Response, node *balance.Node, next bool, err error) {
	p := t.l.p
	var brc *breaker.Config
	if rc != nil {
		brc = rc.Breaker
	}
	var triedBuf [maxConnectAttempts + 4]*balance.Node
	tried := append(triedBuf[:0], avoid...)
	var lastErr error
	connects, passed := 0, 0
	for {
		n, ok := d.bal.Pick(tried)
		if !ok && len(avoid) > 0 && len(tried) == len(avoid) {
			// Every endpoint failed an earlier attempt: take one anyway.
			tried, avoid = tried[:0], nil
			n, ok = d.bal.Pick(nil)
		}
		if !ok {
			switch {
			case lastErr != nil:
				return nil, nil, true, lastErr
			case passed > 0:
				return nil, nil, true, errAllEjected
			}
			return nil, nil, true, errNoEndpoints
		}
		h, allowed := d.gate(n, brc)
		if !allowed {
			tried = append(tried, n)
			passed++
			continue
		}
		ep := n.Endpoint()
		req.URL.Host = ep.Addr
		rt := p.out.pick(req, ep.Meshed)
		if p.cfg.Identity != nil {
			if p.mtlsTo(ep) {
				req.URL.Scheme = "https" // the TLS pool dials only for https
				rt = p.tlsOut.pick(req, true)
			} else {
				req.URL.Scheme = "http"
			}
			if rec, _ := req.Context().Value(recorderKey{}).(*recorder); rec != nil {
				rec.tls = p.tlsLabel(ep)
			}
		}
		start := n.Start()
		resp, err := rt.RoundTrip(req)
		connFailed := err != nil && isConnectError(err)
		failed := connFailed || failedResponse(resp) || err != nil && !clientLeft(req.Context())
		n.Finish(start, failed)
		if h != nil || resp != nil && resp.StatusCode == http.StatusTooManyRequests || resp != nil && resp.Header.Get("Grpc-Status") == "8" {
			if d.report(n, h, resp, failed, time.Now()) {
				p.routeStats(rc.Name).ejections.Add(1)
			}
		}
		unsent := connFailed && (rb == nil || !rb.started.Load())
		if unsent && connects+1 < maxConnectAttempts {
			tried = append(tried, n)
			connects++
			lastErr = err
			p.connectRetries.Add(1)
			continue
		}
		return resp, n, unsent, err
	}
}

// clientLeft reports whether ctx ended because the client went away, which
// says nothing about the endpoint; a deadline that passed (the route's, the
// client's grpc-timeout or the attempt's) says it was too slow.
func clientLeft(ctx context.Context) bool {
	err := ctx.Err()
	return errors.Is(err, context.Canceled) && !errors.Is(context.Cause(ctx), errAttemptTimeout)
}

// failedResponse is an answer the balancer counts against its endpoint: a
// server error or a trailers-only gRPC UNAVAILABLE. A 429 or
// RESOURCE_EXHAUSTED is backpressure, not failure.
func failedResponse(resp *http.Response) bool {
	if resp == nil {
		return false
	}
	if resp.StatusCode >= 500 {
		return true
	}
	return resp.Header.Get("Grpc-Status") == "14"
}

// pick chooses the connection pool for a request: upgrades always travel
// as HTTP/1.1; to a meshed endpoint everything else shares one multiplexed
// HTTP/2 connection (HTTP/1.1 marked for the inbound side); otherwise the
// client's own protocol is kept.
func (ps pools) pick(req *http.Request, meshed bool) http.RoundTripper {
	if req.Header.Get("Upgrade") != "" {
		return ps.h1
	}
	if meshed {
		if req.ProtoMajor == 1 {
			req.Header.Set(OrigProtoHeader, "HTTP/1.1")
		}
		return ps.h2
	}
	if req.ProtoMajor == 2 {
		return ps.h2
	}
	return ps.http1()
}

// inboundTransport forwards to the local application, turning requests
// that were HTTP/1.1 at the origin back into HTTP/1.1.
type inboundTransport struct{ l *listener }

func (t inboundTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.l.p
	target := p.cfg.InboundForward
	if c, _ := req.Context().Value(connKey{}).(*conn); c != nil && c.redirect {
		target = c.origDst.String()
	}
	if target == "" {
		return nil, errNoTarget
	}
	req.URL.Host = target
	rt := p.in.http1()
	if req.Header.Get(OrigProtoHeader) != "" {
		req.Header.Del(OrigProtoHeader)
	} else if req.ProtoMajor == 2 && req.Header.Get("Upgrade") == "" {
		rt = p.in.h2
	}
	return rt.RoundTrip(req)
}

type connKey struct{}

// forwardedHeaders are the fields ReverseProxy's Rewrite mode removes.
var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// newReverseProxy builds the forwarding engine of a listener.
func (l *listener) newReverseProxy(rt http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = pr.In.Host
			// ReverseProxy clones the request, and Request.Clone copies
			// the Trailer map as it is when the headers arrive: declared
			// names, no values. The server fills the values into the
			// incoming request's map at the body's end, and the transport
			// sends the outgoing map's after the body, so the two must be
			// one map or the backend gets every trailer empty.
			pr.Out.Trailer = pr.In.Trailer
			// Rewrite mode strips X-Forwarded-For, -Host and -Proto, to
			// stop a client forging them at an edge proxy. A sidecar is no
			// edge: what an ingress set must reach the application as it
			// was, so they pass through untouched.
			for _, k := range forwardedHeaders {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
			// A peer-supplied marker is only trusted on the inbound side.
			if l.dir == dirOutbound {
				pr.Out.Header.Del(OrigProtoHeader)
				return
			}
			// The client's identity comes from the handshake, never from
			// the request.
			pr.Out.Header.Del(ClientIDHeader)
			if l.p.cfg.ForwardClientID {
				if c, _ := pr.In.Context().Value(connKey{}).(*conn); c != nil && c.peerID != "" {
					pr.Out.Header.Set(ClientIDHeader, c.peerID)
				}
			}
		},
		Transport:  rt,
		BufferPool: l.p.buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if rec, ok := w.(*recorder); ok && rec.body != nil && rec.body.timedOut.Load() {
				err = errBodyTimeout // however the transport reported it
			}
			l.p.log.Debug("request failed", "direction", l.dir, "authority", r.Host, "err", err)
			writeError(w, r, err)
		},
		ErrorLog: l.p.errLog,
	}
}
