// Package telemetry is the proxy's lean metrics registry. It writes the
// Prometheus text exposition format with Linkerd-compatible names and labels
// (request_total, response_total, response_latency_ms, tcp_*), without
// linking client_golang into the sidecar: every linked package costs
// resident code pages, and the proxy must stay under 10 MB RSS.
//
// Recording is lock-free for existing series (a read lock and atomic adds);
// a new label set takes the write lock once. The number of series is capped:
// past MaxSeries, new authorities are folded into authority="overflow", so a
// client that sends random Host headers cannot grow the proxy's memory.
package telemetry

import (
	"bufio"
	"io"

	"github.com/skiff-mesh/skiff/internal/procfs"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MaxSeries bounds the number of distinct label sets per metric family.
const MaxSeries = 2000

// overflowAuthority replaces the authority label once MaxSeries is reached.
const overflowAuthority = "overflow"

// latencyBucketsMs are Linkerd's response_latency_ms bucket bounds.
var latencyBucketsMs = [...]float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000}

// HTTPLabels identify the traffic a request belongs to.
type HTTPLabels struct {
	Direction string // "inbound" or "outbound"
	Authority string
	TLS       string // "true", or why not: "disabled", "not_meshed", "no_identity"
	ClientID  string // inbound over mTLS: the client's SPIFFE ID; else empty
}

// Response describes a finished request.
type Response struct {
	StatusCode     int
	GRPCStatus     int // -1 when the response carried none
	Classification string
}

type respKey struct {
	HTTPLabels
	status int
	grpc   int
	class  string
}

type respSeries struct {
	count   atomic.Uint64
	sumUs   atomic.Uint64
	buckets [len(latencyBucketsMs) + 1]atomic.Uint64 // last is +Inf
}

// TCPLabels identify a connection.
type TCPLabels struct {
	Direction string
	Peer      string // "src" (the client side) or "dst" (the upstream side)
	Authority string
	TLS       string
}

type tcpSeries struct {
	open, closedOK, closedErr, current atomic.Int64
	read, written                      atomic.Uint64
}

type counterKey struct {
	name   string
	labels string // pre-rendered, e.g. `direction="inbound",reason="timeout"`
}

// Registry holds the proxy's metrics. The zero value is not usable: use New.
type Registry struct {
	start time.Time

	mu       sync.RWMutex
	requests map[HTTPLabels]*atomic.Uint64
	resps    map[respKey]*respSeries
	tcp      map[TCPLabels]*tcpSeries
	counters map[counterKey]*atomic.Uint64
	gauges   map[string]func() float64
	families map[string]func(emit func(labels string, v float64))
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		start:    time.Now(),
		requests: make(map[HTTPLabels]*atomic.Uint64),
		resps:    make(map[respKey]*respSeries),
		tcp:      make(map[TCPLabels]*tcpSeries),
		counters: make(map[counterKey]*atomic.Uint64),
		gauges:   make(map[string]func() float64),
		families: make(map[string]func(emit func(labels string, v float64))),
	}
}

// Request counts a request that has been received.
func (r *Registry) Request(l HTTPLabels) {
	r.mu.RLock()
	c := r.requests[l]
	r.mu.RUnlock()
	if c == nil {
		r.mu.Lock()
		if len(r.requests) >= MaxSeries {
			l.Authority = overflowAuthority
		}
		if c = r.requests[l]; c == nil {
			c = new(atomic.Uint64)
			r.requests[l] = c
		}
		r.mu.Unlock()
	}
	c.Add(1)
}

// Response records a finished request and its latency to the response
// headers (Linkerd's response_latency_ms is time to first byte as well).
func (r *Registry) Response(l HTTPLabels, resp Response, latency time.Duration) {
	k := respKey{HTTPLabels: l, status: resp.StatusCode, grpc: resp.GRPCStatus, class: resp.Classification}
	r.mu.RLock()
	s := r.resps[k]
	r.mu.RUnlock()
	if s == nil {
		r.mu.Lock()
		if len(r.resps) >= MaxSeries {
			k.Authority = overflowAuthority
		}
		if s = r.resps[k]; s == nil {
			s = new(respSeries)
			r.resps[k] = s
		}
		r.mu.Unlock()
	}
	s.count.Add(1)
	us := uint64(latency / time.Microsecond)
	s.sumUs.Add(us)
	ms := float64(latency) / float64(time.Millisecond)
	i := sort.SearchFloat64s(latencyBucketsMs[:], ms) // first bound >= ms
	s.buckets[i].Add(1)
}

// TCP returns the connection series for l, creating it on first use.
func (r *Registry) TCP(l TCPLabels) *TCPConn {
	r.mu.RLock()
	s := r.tcp[l]
	r.mu.RUnlock()
	if s == nil {
		r.mu.Lock()
		if len(r.tcp) >= MaxSeries {
			l.Authority = overflowAuthority
		}
		if s = r.tcp[l]; s == nil {
			s = new(tcpSeries)
			r.tcp[l] = s
		}
		r.mu.Unlock()
	}
	return (*TCPConn)(s)
}

// TCPConn records the life of connections of one label set.
type TCPConn tcpSeries

// Open counts an opened connection.
func (c *TCPConn) Open() {
	c.open.Add(1)
	c.current.Add(1)
}

// Close counts a closed connection with the bytes it carried; failed says
// it ended in an error rather than a clean close.
func (c *TCPConn) Close(read, written uint64, failed bool) {
	c.current.Add(-1)
	c.read.Add(read)
	c.written.Add(written)
	if failed {
		c.closedErr.Add(1)
	} else {
		c.closedOK.Add(1)
	}
}

// Counter returns a monotonic counter. labels is the pre-rendered label
// list (`a="x",b="y"`); callers keep label values to a small fixed set.
func (r *Registry) Counter(name, labels string) *atomic.Uint64 {
	k := counterKey{name, labels}
	r.mu.RLock()
	c := r.counters[k]
	r.mu.RUnlock()
	if c == nil {
		r.mu.Lock()
		if c = r.counters[k]; c == nil {
			c = new(atomic.Uint64)
			r.counters[k] = c
		}
		r.mu.Unlock()
	}
	return c
}

// Gauge registers a gauge whose value is read at exposition time. It
// panics if name is registered twice: that is a programming error.
func (r *Registry) Gauge(name string, fn func() float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.gauges[name]; dup {
		panic("telemetry: gauge " + name + " registered twice")
	}
	r.gauges[name] = fn
}

// GaugeFamily registers a gauge with labels whose series are read at
// exposition time: fn emits one sample per series, its labels
// pre-rendered (`a="x",b="y"`, values escaped). It panics if name is
// registered twice.
func (r *Registry) GaugeFamily(name string, fn func(emit func(labels string, v float64))) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.families[name]; dup {
		panic("telemetry: gauge " + name + " registered twice")
	}
	r.families[name] = fn
}

// WriteTo writes every metric in the Prometheus text format (version 0.0.4).
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 16<<10)
	cw := &countWriter{w: bw}
	r.mu.RLock()
	r.writeHTTP(cw)
	r.writeTCP(cw)
	r.writeCounters(cw)
	gauges := make([]string, 0, len(r.gauges))
	for name := range r.gauges {
		gauges = append(gauges, name)
	}
	fns := r.gauges
	families := make([]string, 0, len(r.families))
	for name := range r.families {
		families = append(families, name)
	}
	ffns := r.families
	r.mu.RUnlock()
	sort.Strings(gauges)
	for _, name := range gauges {
		cw.line("# TYPE " + name + " gauge")
		cw.sample(name, "", fns[name]())
	}
	sort.Strings(families)
	for _, name := range families {
		cw.line("# TYPE " + name + " gauge")
		ffns[name](func(labels string, v float64) { cw.sample(name, labels, v) })
	}
	rss, _ := ResidentBytes()
	cw.line("# TYPE process_resident_memory_bytes gauge")
	cw.sample("process_resident_memory_bytes", "", float64(rss))
	cw.line("# TYPE process_start_time_seconds gauge")
	cw.sample("process_start_time_seconds", "", float64(r.start.UnixNano())/1e9)
	// Named as Prometheus' Go collector names it. Read here, at scrape
	// time: nothing on the request path counts goroutines.
	cw.line("# TYPE go_goroutines gauge")
	cw.sample("go_goroutines", "", float64(runtime.NumGoroutine()))
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, cw.err
}

func httpLabels(l HTTPLabels) string {
	s := `direction="` + l.Direction + `",authority="` + escape(l.Authority) + `",tls="` + l.TLS + `"`
	if l.ClientID != "" {
		s += `,client_id="` + escape(l.ClientID) + `"`
	}
	return s
}

func (r *Registry) writeHTTP(cw *countWriter) {
	reqKeys := make([]HTTPLabels, 0, len(r.requests))
	for k := range r.requests {
		reqKeys = append(reqKeys, k)
	}
	sort.Slice(reqKeys, func(i, j int) bool { return httpLabels(reqKeys[i]) < httpLabels(reqKeys[j]) })
	cw.line("# HELP request_total Total count of HTTP requests.")
	cw.line("# TYPE request_total counter")
	for _, k := range reqKeys {
		cw.sample("request_total", httpLabels(k), float64(r.requests[k].Load()))
	}

	type row struct {
		labels string
		s      *respSeries
	}
	rows := make([]row, 0, len(r.resps))
	for k, s := range r.resps {
		lb := httpLabels(k.HTTPLabels) + `,status_code="` + strconv.Itoa(k.status) + `"`
		if k.grpc >= 0 {
			lb += `,grpc_status_code="` + strconv.Itoa(k.grpc) + `"`
		}
		lb += `,classification="` + k.class + `"`
		rows = append(rows, row{lb, s})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].labels < rows[j].labels })
	cw.line("# HELP response_total Total count of HTTP responses.")
	cw.line("# TYPE response_total counter")
	for _, rw := range rows {
		cw.sample("response_total", rw.labels, float64(rw.s.count.Load()))
	}
	cw.line("# HELP response_latency_ms Elapsed times between a request's headers being received and its response's headers being sent.")
	cw.line("# TYPE response_latency_ms histogram")
	for _, rw := range rows {
		var cum uint64
		for i, le := range latencyBucketsMs {
			cum += rw.s.buckets[i].Load()
			cw.sample("response_latency_ms_bucket", rw.labels+`,le="`+strconv.FormatFloat(le, 'f', -1, 64)+`"`, float64(cum))
		}
		cum += rw.s.buckets[len(latencyBucketsMs)].Load()
		cw.sample("response_latency_ms_bucket", rw.labels+`,le="+Inf"`, float64(cum))
		cw.sample("response_latency_ms_sum", rw.labels, float64(rw.s.sumUs.Load())/1000)
		cw.sample("response_latency_ms_count", rw.labels, float64(cum))
	}
}

func (r *Registry) writeTCP(cw *countWriter) {
	type row struct {
		labels string
		s      *tcpSeries
	}
	rows := make([]row, 0, len(r.tcp))
	for k, s := range r.tcp {
		lb := `direction="` + k.Direction + `",peer="` + k.Peer + `",authority="` + escape(k.Authority) + `",tls="` + k.TLS + `"`
		rows = append(rows, row{lb, s})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].labels < rows[j].labels })
	family := func(name, typ, help string, v func(*tcpSeries) float64) {
		cw.line("# HELP " + name + " " + help)
		cw.line("# TYPE " + name + " " + typ)
		for _, rw := range rows {
			cw.sample(name, rw.labels, v(rw.s))
		}
	}
	family("tcp_open_total", "counter", "Total count of opened connections.", func(s *tcpSeries) float64 { return float64(s.open.Load()) })
	family("tcp_open_connections", "gauge", "Number of currently-open connections.", func(s *tcpSeries) float64 { return float64(s.current.Load()) })
	family("tcp_read_bytes_total", "counter", "Total count of bytes read from peers.", func(s *tcpSeries) float64 { return float64(s.read.Load()) })
	family("tcp_write_bytes_total", "counter", "Total count of bytes written to peers.", func(s *tcpSeries) float64 { return float64(s.written.Load()) })
	cw.line("# HELP tcp_close_total Total count of closed connections.")
	cw.line("# TYPE tcp_close_total counter")
	for _, rw := range rows {
		cw.sample("tcp_close_total", rw.labels+`,classification="success"`, float64(rw.s.closedOK.Load()))
		cw.sample("tcp_close_total", rw.labels+`,classification="failure"`, float64(rw.s.closedErr.Load()))
	}
}

func (r *Registry) writeCounters(cw *countWriter) {
	keys := make([]counterKey, 0, len(r.counters))
	for k := range r.counters {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].name != keys[j].name {
			return keys[i].name < keys[j].name
		}
		return keys[i].labels < keys[j].labels
	})
	last := ""
	for _, k := range keys {
		if k.name != last {
			cw.line("# TYPE " + k.name + " counter")
			last = k.name
		}
		cw.sample(k.name, k.labels, float64(r.counters[k].Load()))
	}
}

// escape quotes a label value per the text format.
func escape(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == '"' || c == '\n' {
			q := strconv.Quote(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

type countWriter struct {
	w   *bufio.Writer
	n   int64
	err error
	buf []byte
}

func (c *countWriter) line(s string) {
	if c.err != nil {
		return
	}
	n, err := c.w.WriteString(s + "\n")
	c.n += int64(n)
	c.err = err
}

func (c *countWriter) sample(name, labels string, v float64) {
	b := c.buf[:0]
	b = append(b, name...)
	if labels != "" {
		b = append(b, '{')
		b = append(b, labels...)
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	b = append(b, '\n')
	c.buf = b
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

// ResidentBytes reads this process's resident set size (VmRSS).
func ResidentBytes() (uint64, error) {
	st, err := procfs.Read("self")
	return uint64(st.VmRSSMB * (1 << 20)), err
}
