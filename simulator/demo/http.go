package demo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-mesh/skiff/faultinject/httpfault"
)

// ReplicaHeader carries Config.Name on every HTTP response; gRPC responses
// carry it as the header metadata ReplicaMetadata.
const ReplicaHeader = "Skiff-Demo-Replica"

// EchoHeaderPrefix marks request headers that are copied to the response.
const EchoHeaderPrefix = "X-Echo-"

// TrailerName is the trailer that /trailers announces and sets to "done".
const TrailerName = "Skiff-Trailer"

// maxAdminBody bounds the body of admin requests.
const maxAdminBody = 64 << 10

// routes builds the HTTP mux. Workload endpoints go through s.workload;
// control endpoints (/healthz, /_demo/*) are never faulted or counted.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/{$}", s.workload(s.handleRoot))
	mux.Handle("/echo", s.workload(s.handleEcho))
	mux.Handle("/ws", s.workload(s.handleUpgrade))
	mux.Handle("/trailers", s.workload(s.handleTrailers))
	mux.Handle("/stream", s.workload(s.handleStream))
	mux.Handle("/digest", s.workload(s.handleDigest))
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /_demo/behaviour", s.getBehaviour)
	mux.HandleFunc("PUT /_demo/behaviour", s.putBehaviour)
	mux.HandleFunc("PATCH /_demo/behaviour", s.patchBehaviour)
	mux.HandleFunc("DELETE /_demo/behaviour", s.deleteBehaviour)
	mux.HandleFunc("GET /_demo/stats", s.getStats)
	mux.HandleFunc("DELETE /_demo/stats", s.deleteStats)
	return mux
}

// recorder remembers the status a handler wrote, for the counters.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush, Hijack and full duplex.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// workloadHandler serves one workload endpoint once the faults have passed.
type workloadHandler func(w *recorder, r *http.Request, f *Faults)

// workload applies identification, header echo, per-request faults and the
// server-wide behaviour, in this order: a slot (MaxConcurrent), delay,
// close, status; then h, still holding the slot.
func (s *Server) workload(h workloadHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.stats.requests.Add(1)
		s.stats.inFlight.Add(1)
		defer s.stats.inFlight.Add(-1)

		hdr := w.Header()
		hdr.Set(ReplicaHeader, s.cfg.Name)
		for k, vs := range r.Header {
			if strings.HasPrefix(k, EchoHeaderPrefix) {
				hdr[k] = vs
			}
		}

		q, err := url.ParseQuery(r.URL.RawQuery)
		var f Faults
		if err == nil {
			f, err = ParseFaults(q)
		} else {
			err = &ParamError{Param: "query", Value: r.URL.RawQuery, Reason: err.Error()}
		}
		if err != nil {
			s.stats.httpStatus(http.StatusBadRequest)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}

		if !s.gate.enter(r.Context(), s.behaviour.Load().MaxConcurrent) {
			s.stats.cancelled.Add(1)
			return
		}
		defer func() { s.gate.leave(s.behaviour.Load().MaxConcurrent) }()
		b := s.behaviour.Load()
		rnd := s.rng.derive()
		if d := b.PickLatency(rnd) + f.Delay.Pick(rnd); d > 0 {
			s.stats.delayed.Add(1)
			if !sleep(r.Context(), d) {
				s.stats.cancelled.Add(1)
				return
			}
		}
		if (b.ResetRate > 0 && rnd.Float64() < b.ResetRate) || httpfault.Hit(rnd, f.ClosePercent) {
			s.stats.resets.Add(1)
			// net/http closes an HTTP/1.1 connection and resets an HTTP/2
			// stream when a handler panics with ErrAbortHandler, and does
			// not log it.
			panic(http.ErrAbortHandler)
		}
		code, ok := httpfault.PickStatus(f.Status, rnd)
		if !ok && b.ErrorRate > 0 && rnd.Float64() < b.ErrorRate {
			code, ok = b.StatusOrDefault(), true
		}
		if ok {
			s.stats.injected.Add(1)
			s.stats.httpStatus(code)
			hdr.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, "skiff-demo %s: injected status %d\n", s.cfg.Name, code)
			return
		}

		rec := &recorder{ResponseWriter: w}
		h(rec, r, &f)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		s.stats.httpStatus(rec.code)
	})
}

// handleRoot answers "skiff-demo NAME PROTO", or ?size= bytes.
func (s *Server) handleRoot(w *recorder, r *http.Request, f *Faults) {
	if f.SizeSet {
		writePayload(w, f.Size)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprintf(w, "skiff-demo %s %s\n", s.cfg.Name, r.Proto)
}

// handleEcho streams the request body back, or answers ?size= bytes.
func (s *Server) handleEcho(w *recorder, r *http.Request, f *Faults) {
	if f.SizeSet {
		writePayload(w, f.Size)
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	if r.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	rc := http.NewResponseController(w)
	// HTTP/1.1 stops reading the body once the response starts unless
	// full duplex is on; HTTP/2 is always full duplex and says so.
	_ = rc.EnableFullDuplex()
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// DigestHeader carries the hex SHA-256 of a request's body: /digest checks
// the body that arrived against it, so a proxy that replays a body on a
// retry and truncates, duplicates or reorders it is caught.
const DigestHeader = "Skiff-Body-Sha256"

// maxDigestBody bounds the body /digest reads.
const maxDigestBody = 16 << 20

// handleDigest reads the whole body and compares its SHA-256 with
// DigestHeader: 200 "ok N bytes" when they match, 422 naming both digests
// and the length when they do not, 400 without the header.
func (s *Server) handleDigest(w *recorder, r *http.Request, _ *Faults) {
	want := strings.ToLower(strings.TrimSpace(r.Header.Get(DigestHeader)))
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r.Body, maxDigestBody+1))
	got := hex.EncodeToString(h.Sum(nil))
	switch {
	case err != nil:
		http.Error(w, fmt.Sprintf("reading the body failed after %d bytes: %v", n, err), http.StatusBadRequest)
	case n > maxDigestBody:
		http.Error(w, fmt.Sprintf("body over %d bytes", maxDigestBody), http.StatusRequestEntityTooLarge)
	case want == "":
		http.Error(w, "no "+DigestHeader+" header: /digest needs the body's SHA-256 to check it", http.StatusBadRequest)
	case want != got:
		http.Error(w, fmt.Sprintf("the body arrived changed: %d bytes with SHA-256 %s, the sender's %s says %s", n, got, DigestHeader, want), http.StatusUnprocessableEntity)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintf(w, "ok %d bytes\n", n)
	}
}

// handleUpgrade implements a minimal HTTP/1.1 Upgrade to a raw byte echo.
// It accepts "Upgrade: skiff-echo" or "Upgrade: websocket" with
// "Connection: Upgrade", answers 101 and then echoes bytes verbatim. It
// does not speak WebSocket framing (no Sec-WebSocket-Accept, no frames), so
// a real WebSocket client will not work: it exists to test a proxy's
// Upgrade and hijack path. Other requests, and any HTTP/2 request, get 426.
func (s *Server) handleUpgrade(w *recorder, r *http.Request, f *Faults) {
	proto := upgradeProto(r)
	if r.ProtoMajor != 1 || proto == "" {
		if r.ProtoMajor == 1 {
			w.Header().Set("Upgrade", "skiff-echo")
			w.Header().Set("Connection", "Upgrade")
		}
		http.Error(w, "/ws needs an HTTP/1.1 request with Connection: Upgrade and Upgrade: skiff-echo (or websocket)", http.StatusUpgradeRequired)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.code = http.StatusSwitchingProtocols
	if !s.trackRaw(conn) {
		_ = conn.Close()
		return
	}
	defer s.untrackRaw(conn)
	hdr := w.Header().Clone()
	hdr.Set("Upgrade", proto)
	hdr.Set("Connection", "Upgrade")
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	_ = hdr.Write(brw)
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		_ = conn.Close()
		return
	}
	s.echo(conn, brw.Reader, s.rng.derive())
}

// upgradeProto returns the accepted Upgrade token, or "".
func upgradeProto(r *http.Request) string {
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return ""
	}
	for _, v := range r.Header.Values("Upgrade") {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			if strings.EqualFold(p, "skiff-echo") || strings.EqualFold(p, "websocket") {
				return p
			}
		}
	}
	return ""
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// RequestTrailerPrefix starts the response headers in which /trailers
// echoes the trailers of the request: X-Request-Trailer-Name: value.
const RequestTrailerPrefix = "X-Request-Trailer-"

// handleTrailers reads the request body to its end, echoes the request's
// trailers as RequestTrailerPrefix headers, then writes a body and the
// announced trailer Skiff-Trailer: done.
func (s *Server) handleTrailers(w *recorder, r *http.Request, f *Faults) {
	// Request trailers arrive only once the body has been read.
	if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, maxAdminBody)); err != nil {
		http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	for k, vs := range r.Trailer {
		w.Header()[RequestTrailerPrefix+k] = vs
	}
	w.Header().Set("Trailer", TrailerName)
	if f.SizeSet {
		writePayload(w, f.Size)
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "trailers follow\n")
	}
	w.Header().Set(TrailerName, "done")
}

// handleStream writes ?n= chunks (default 5), flushing each, and waits
// ?interval= (default 10ms) between them.
func (s *Server) handleStream(w *recorder, r *http.Request, f *Faults) {
	q := r.URL.Query()
	n, interval := 5, 10*time.Millisecond
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 || n > 100000 {
			http.Error(w, (&ParamError{Param: "n", Value: v, Reason: "want a chunk count between 0 and 100000"}).Error(), http.StatusBadRequest)
			return
		}
	}
	if v := q.Get("interval"); v != "" {
		var err error
		if interval, err = time.ParseDuration(v); err != nil || interval < 0 || interval > MaxDelay {
			http.Error(w, (&ParamError{Param: "interval", Value: v, Reason: "want a duration between 0s and " + MaxDelay.String() + " like 10ms"}).Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for i := range n {
		if i > 0 && !sleep(r.Context(), interval) {
			return
		}
		if _, err := fmt.Fprintf(w, "chunk %d/%d from %s\n", i+1, n, s.cfg.Name); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// handleHealthz is the readiness probe: 200 while serving, 503 once
// shutdown has begun.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(ReplicaHeader, s.cfg.Name)
	if !s.ready.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

func (s *Server) getBehaviour(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Behaviour())
}

// putBehaviour replaces the behaviour; absent fields become zero.
func (s *Server) putBehaviour(w http.ResponseWriter, r *http.Request) {
	body, ok := readAdminBody(w, r)
	if !ok {
		return
	}
	var b Behaviour
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_ = s.SetBehaviour(b) // UnmarshalJSON validated it
	writeJSON(w, http.StatusOK, b)
}

// patchBehaviour changes only the fields present in the body.
func (s *Server) patchBehaviour(w http.ResponseWriter, r *http.Request) {
	body, ok := readAdminBody(w, r)
	if !ok {
		return
	}
	for {
		old := s.behaviour.Load()
		b := *old
		if err := json.Unmarshal(body, &b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if s.behaviour.CompareAndSwap(old, &b) {
			s.log.Info("behaviour changed", "behaviour", summary(b))
			writeJSON(w, http.StatusOK, b)
			return
		}
		// Lost a race with another change: apply the patch to the new value.
	}
}

// deleteBehaviour restores the behaviour given at start.
func (s *Server) deleteBehaviour(w http.ResponseWriter, r *http.Request) {
	s.ResetBehaviour()
	writeJSON(w, http.StatusOK, s.Behaviour())
}

// readAdminBody reads a bounded admin request body, answering the error
// itself when it fails.
func readAdminBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("behaviour body larger than %d bytes", maxAdminBody), http.StatusRequestEntityTooLarge)
			return nil, false
		}
		http.Error(w, "read behaviour body: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

func (s *Server) getStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) deleteStats(w http.ResponseWriter, r *http.Request) {
	s.ResetStats()
	writeJSON(w, http.StatusOK, s.Stats())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// payloadPattern fills generated payloads; readable in a packet capture.
const payloadPattern = "skiff-demo payload 0123456789 abcdefghijklmnopqrstuvwxyz\n"

// fillPayload fills b with the payload pattern.
func fillPayload(b []byte) {
	for i := 0; i < len(b); {
		i += copy(b[i:], payloadPattern)
	}
}

// writePayload answers 200 with n generated bytes.
func writePayload(w http.ResponseWriter, n int) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, min(n, 32<<10))
	fillPayload(buf)
	for n > 0 {
		k, err := w.Write(buf[:min(n, len(buf))])
		if err != nil {
			return
		}
		n -= k
	}
}
