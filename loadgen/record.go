package loadgen

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// ErrDropped is the error of a request that was due while MaxInFlight
// requests were in flight and was still waiting for a slot when the run's
// duration ended. Result.Errors counts it under its message.
var ErrDropped = errors.New("dropped: in-flight limit")

// OtherErrors is the Result.Errors key counting the messages past
// Options.MaxErrorKinds distinct ones.
const OtherErrors = "(other)"

// Histogram geometry: microseconds, 3 significant figures, from 1 µs to at
// least minHighestUS (raised to cover Duration+Timeout, the longest latency
// a run can measure).
const (
	sigFigs      = 3
	minHighestUS = int64(60 * time.Second / time.Microsecond)
	maxErrorLen  = 160
)

// sample is one finished (or dropped) request, with offsets from the run's
// start.
type sample struct {
	intended time.Duration // when the schedule said to send it
	sent     time.Duration // when a worker sent it (unused when dropped)
	done     time.Duration // when it completed (or was dropped)
	out      outcome
	dropped  bool
}

// second accumulates the requests due within one second of the run.
type second struct {
	// due counts the requests whose intended time has come (the scheduler
	// reached them), recorded or not; requests counts those recorded
	// (answered, failed or dropped).
	due                                int64
	requests, success, errors, dropped int64
	hist                               *hdrhistogram.PackedHistogram // sparse: one per second adds up
}

// recorder aggregates samples. It is safe for concurrent use.
type recorder struct {
	warmUp   time.Duration
	success  func(string) bool
	maxKinds int
	highest  int64 // µs

	mu         sync.Mutex
	latency    *hdrhistogram.Histogram
	lag        *hdrhistogram.Histogram
	seconds    []second
	firstSec   int
	codes      map[string]int64
	errs       map[string]int64
	requests   int64
	ok         int64
	dropped    int64
	lastSentAt time.Duration
}

func newRecorder(o *Options) *recorder {
	highest := max(minHighestUS, int64((o.Duration+o.Timeout)/time.Microsecond)+1_000_000)
	first := int(o.WarmUp / time.Second)
	last := int((o.Duration - 1) / time.Second)
	return &recorder{
		warmUp:   o.WarmUp,
		success:  o.Success,
		maxKinds: o.MaxErrorKinds,
		highest:  highest,
		latency:  hdrhistogram.New(1, highest, sigFigs),
		lag:      hdrhistogram.New(1, highest, sigFigs),
		seconds:  make([]second, last-first+1),
		firstSec: first,
		codes:    make(map[string]int64),
		errs:     make(map[string]int64),
	}
}

// secondOf is the index in r.seconds of the second a request is due in,
// or false for the warm-up.
func (r *recorder) secondOf(intended time.Duration) (int, bool) {
	if intended < r.warmUp {
		return 0, false
	}
	i := int(intended/time.Second) - r.firstSec
	if i >= len(r.seconds) { // cannot happen: the schedule stops at Duration
		i = len(r.seconds) - 1
	}
	return i, true
}

// due counts a request whose intended send time has come, before it is
// sent: until it is recorded it is outstanding in its second.
func (r *recorder) due(intended time.Duration) {
	i, ok := r.secondOf(intended)
	if !ok {
		return
	}
	r.mu.Lock()
	r.seconds[i].due++
	r.mu.Unlock()
}

func (r *recorder) record(s sample) {
	if s.intended < r.warmUp {
		return
	}
	ok := !s.dropped && s.out.err == nil && r.success(s.out.code)
	var msg string
	if !ok {
		msg = errorMessage(s) // string work outside the lock
	}
	lat := r.clamp(s.done - s.intended)
	lag := r.clamp(s.sent - s.intended)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.codes[s.out.code]++
	i, _ := r.secondOf(s.intended)
	sec := &r.seconds[i]
	sec.requests++
	if ok {
		r.ok++
		sec.success++
	} else {
		sec.errors++
		if _, seen := r.errs[msg]; !seen && len(r.errs) >= r.maxKinds {
			msg = OtherErrors
		}
		r.errs[msg]++
	}
	if s.dropped {
		r.dropped++
		sec.dropped++
		return
	}
	// Values are clamped into range, so recording cannot fail.
	_ = r.latency.RecordValue(lat)
	_ = r.lag.RecordValue(lag)
	if sec.hist == nil {
		sec.hist = hdrhistogram.NewPacked(1, r.highest, sigFigs)
	}
	_ = sec.hist.RecordValue(lat)
	r.lastSentAt = max(r.lastSentAt, s.sent)
}

// second summarizes second n of the run (from its start, warm-up
// included) as recorded so far, with the requests due in it but not yet
// recorded as Outstanding; false during the warm-up or past the end.
func (r *recorder) second(n int) (Second, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := n - r.firstSec
	if i < 0 || i >= len(r.seconds) {
		return Second{}, false
	}
	sec := &r.seconds[i]
	s := Second{Second: n, Requests: sec.requests, Success: sec.success, Errors: sec.errors, Dropped: sec.dropped,
		Outstanding: max(0, sec.due-sec.requests)}
	if sec.hist != nil {
		s.P50US = sec.hist.ValueAtPercentile(50)
		s.P99US = sec.hist.ValueAtPercentile(99)
		s.MaxUS = sec.hist.Max()
	}
	return s, true
}

func (r *recorder) clamp(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	return min(max(us, 0), r.highest)
}

// addrPattern matches IPv4 and bracketed IPv6 addresses with a port, which
// make every error of a kind unique (ephemeral ports) and so would exhaust
// Options.MaxErrorKinds.
var addrPattern = regexp.MustCompile(`(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.%\w]*\]):\d+`)

// errorMessage returns the bounded-cardinality message of a failed request.
func errorMessage(s sample) string {
	switch {
	case s.dropped:
		return ErrDropped.Error()
	case s.out.err != nil:
		return scrub(transportError(s.out.err))
	case strings.HasPrefix(s.out.code, "grpc:"):
		if s.out.detail == "" {
			return s.out.code
		}
		return scrub(s.out.code + ": " + s.out.detail)
	default:
		if text := http.StatusText(atoiOrZero(s.out.code)); text != "" {
			return s.out.code + " " + text
		}
		return "status " + s.out.code
	}
}

// transportError names a transport error without the per-request parts
// (URL, local and remote addresses).
func transportError(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	var op *net.OpError
	if errors.As(err, &op) {
		inner := op.Err
		var se *os.SyscallError
		if errors.As(inner, &se) {
			return op.Op + " " + op.Net + ": " + se.Syscall + ": " + se.Err.Error()
		}
		return op.Op + " " + op.Net + ": " + inner.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func scrub(msg string) string {
	msg = addrPattern.ReplaceAllString(msg, "<addr>")
	if len(msg) > maxErrorLen {
		msg = strings.ToValidUTF8(msg[:maxErrorLen], "") + "…"
	}
	return msg
}

func atoiOrZero(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
		if n > 1000 {
			return 0
		}
	}
	return n
}
