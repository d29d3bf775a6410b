package loadgen_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/loadgen"
)

func run(t *testing.T, o loadgen.Options) *loadgen.Result {
	t.Helper()
	res, err := loadgen.Run(t.Context(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func seriesCounts(res *loadgen.Result) []int64 {
	var out []int64
	for _, s := range res.Series {
		out = append(out, s.Requests)
	}
	return out
}

func TestConstantRateSendsExpectedCount(t *testing.T) {
	leakcheck.Check(t)
	var served atomic.Int64
	srv := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		okHandler(w, r)
	})
	res := run(t, loadgen.Options{
		Target:   loadgen.Target{URL: srv.URL},
		Pacer:    loadgen.Constant(200),
		Duration: 1500 * time.Millisecond,
	})
	// Hits are due at 5 ms, 10 ms, … up to but excluding 1.5 s.
	if res.Requests != 299 || served.Load() != 299 {
		t.Errorf("requests = %d, served = %d, want 299", res.Requests, served.Load())
	}
	if res.Success != res.Requests || res.SuccessRate != 1 || res.StatusCodes["200"] != res.Requests {
		t.Errorf("success = %d (%v), codes %v", res.Success, res.SuccessRate, res.StatusCodes)
	}
	if res.Latency.Count != res.Requests || len(res.Errors) != 0 {
		t.Errorf("latency count = %d, errors = %v", res.Latency.Count, res.Errors)
	}
	if got := seriesCounts(res); len(got) != 2 || !near(got[0], 199, 2) || !near(got[1], 100, 2) {
		t.Errorf("per-second counts = %v, want about [199 100]", got)
	}
	// The achieved rate depends on how late a busy machine sends, so only
	// its bound is certain: never above the schedule.
	if res.AchievedRate <= 0 || res.AchievedRate > res.ScheduledRate+1e-9 || math.Abs(res.ScheduledRate-299/1.5) > 1e-9 {
		t.Errorf("achieved rate = %v, scheduled %v; want 0 < achieved <= scheduled = 299/1.5", res.AchievedRate, res.ScheduledRate)
	}
	l := res.Latency
	if !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("percentiles out of order: %+v", l)
	}
}

func TestRampChangesRate(t *testing.T) {
	leakcheck.Check(t)
	srv := newHTTPServer(t, false, okHandler)
	res := run(t, loadgen.Options{
		Target:   loadgen.Target{URL: srv.URL},
		Rate:     loadgen.Rate{Shape: loadgen.ShapeRamp, From: 100, To: 300},
		Duration: 2 * time.Second,
	})
	// 100 req/s rising to 300 req/s: 150 due in the first second, 250 in the second.
	got := seriesCounts(res)
	if len(got) != 2 || !near(got[0], 150, 5) || !near(got[1], 250, 5) {
		t.Errorf("per-second counts = %v, want about [150 250]", got)
	}
	if res.Success != res.Requests {
		t.Errorf("success %d of %d: %v", res.Success, res.Requests, res.Errors)
	}
}

func TestStepsChangeRate(t *testing.T) {
	leakcheck.Check(t)
	srv := newHTTPServer(t, false, okHandler)
	res := run(t, loadgen.Options{
		Target: loadgen.Target{URL: srv.URL},
		Rate: loadgen.Rate{Shape: loadgen.ShapeSteps, Steps: loadgen.Steps{
			{Rate: 100, For: time.Second},
			{Rate: 300, For: time.Second},
		}},
	})
	if res.DurationS != 2 {
		t.Errorf("duration = %vs, want the steps' total 2s", res.DurationS)
	}
	// The 100th hit is due at exactly 1 s, so it falls in second 1; the
	// 400th, due at 2 s, is past the end.
	got := seriesCounts(res)
	if len(got) != 2 || !near(got[0], 99, 2) || !near(got[1], 300, 3) {
		t.Errorf("per-second counts = %v, want about [99 300]", got)
	}
}

func TestProtocols(t *testing.T) {
	for _, tc := range []struct {
		protocol    string
		connections int
		wantMajor   int
	}{
		{loadgen.ProtocolHTTP1, 3, 1},
		{loadgen.ProtocolH2C, 2, 2},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			leakcheck.Check(t)
			var (
				mu     sync.Mutex
				majors = map[int]int{}
				conns  = map[string]bool{}
				bad    atomic.Int64
			)
			srv := newHTTPServer(t, true, func(w http.ResponseWriter, r *http.Request) {
				n, _ := io.Copy(io.Discard, r.Body)
				if n != 512 || r.Method != http.MethodPost || r.Header.Get("X-Skiff") != "yes" {
					bad.Add(1)
				}
				mu.Lock()
				majors[r.ProtoMajor]++
				conns[r.RemoteAddr] = true
				mu.Unlock()
			})
			res := run(t, loadgen.Options{
				Target: loadgen.Target{
					Protocol:     tc.protocol,
					URL:          srv.URL + "/echo",
					Header:       http.Header{"X-Skiff": {"yes"}},
					PayloadBytes: 512,
				},
				Pacer:       loadgen.Constant(200),
				Duration:    500 * time.Millisecond,
				Connections: tc.connections,
			})
			mu.Lock()
			defer mu.Unlock()
			if res.Success != 99 || majors[tc.wantMajor] != 99 {
				t.Errorf("success = %d, server saw protocol versions %v, want 99 of HTTP/%d", res.Success, majors, tc.wantMajor)
			}
			if bad.Load() != 0 {
				t.Errorf("%d requests without the 512-byte POST body or the header", bad.Load())
			}
			if len(conns) == 0 || len(conns) > tc.connections {
				t.Errorf("server saw %d connections, want 1..%d", len(conns), tc.connections)
			}
		})
	}
}

func TestGRPCStatuses(t *testing.T) {
	leakcheck.Check(t)
	var n, noMD atomic.Int64
	addr := newGRPCServer(t, func(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("x-skiff")) != 1 || len(in.GetValue()) != 64 {
			noMD.Add(1)
		}
		if n.Add(1)%4 == 0 {
			return nil, status.Error(codes.Unavailable, "try again")
		}
		return in, nil
	})
	res := run(t, loadgen.Options{
		Target: loadgen.Target{
			Protocol:     loadgen.ProtocolGRPC,
			URL:          addr,
			Header:       http.Header{"X-Skiff": {"yes"}},
			PayloadBytes: 64,
		},
		Pacer:       loadgen.Constant(200),
		Duration:    time.Second,
		Connections: 2,
	})
	ok, unavailable := res.StatusCodes["grpc:OK"], res.StatusCodes["grpc:Unavailable"]
	if res.Requests != 199 || ok+unavailable != res.Requests || unavailable != 199/4 {
		t.Errorf("requests = %d, codes = %v, want 199 with 49 grpc:Unavailable", res.Requests, res.StatusCodes)
	}
	if res.Success != ok || res.Errors["grpc:Unavailable: try again"] != unavailable || len(res.Errors) != 1 {
		t.Errorf("success = %d, errors = %v", res.Success, res.Errors)
	}
	if noMD.Load() != 0 {
		t.Errorf("%d calls without the metadata or the 64-byte payload", noMD.Load())
	}
	var fromSeries int64
	for _, s := range res.Series {
		fromSeries += s.Errors
		if s.Errors != s.Requests-s.Success {
			t.Errorf("second %d: errors %d != requests %d - success %d", s.Second, s.Errors, s.Requests, s.Success)
		}
	}
	if fromSeries != unavailable {
		t.Errorf("series errors = %d, want %d", fromSeries, unavailable)
	}
}

func TestSuccessPredicateOverride(t *testing.T) {
	leakcheck.Check(t)
	srv := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	res := run(t, loadgen.Options{
		Target:   loadgen.Target{URL: srv.URL},
		Pacer:    loadgen.Constant(100),
		Duration: 300 * time.Millisecond,
	})
	if res.Success != 0 || res.Errors["503 Service Unavailable"] != res.Requests || res.StatusCodes["503"] != res.Requests {
		t.Errorf("default predicate: success %d, errors %v, codes %v", res.Success, res.Errors, res.StatusCodes)
	}
	res = run(t, loadgen.Options{
		Target:   loadgen.Target{URL: srv.URL},
		Pacer:    loadgen.Constant(100),
		Duration: 300 * time.Millisecond,
		Success:  func(code string) bool { return code == "503" },
	})
	if res.Success != res.Requests || len(res.Errors) != 0 {
		t.Errorf("503 as success: success %d of %d, errors %v", res.Success, res.Requests, res.Errors)
	}
}

// slowCount counts the recorded latencies of at least min microseconds.
func slowCount(t *testing.T, l loadgen.Latency, min int64) int64 {
	t.Helper()
	h, err := l.Histogram()
	if err != nil || h == nil {
		t.Fatalf("histogram: %v", err)
	}
	var n int64
	for _, b := range h.Distribution() {
		if b.From >= min {
			n += b.Count
		}
	}
	return n
}

// TestCoordinatedOmissionCorrected stalls the first request for 200 ms. With
// one request allowed in flight, the requests due during the stall wait for
// it, and that wait must show in their latency; with room to spare, only the
// stalled request is slow. The two runs go side by side so that a busy
// machine slows both alike.
func TestCoordinatedOmissionCorrected(t *testing.T) {
	leakcheck.Check(t)
	measure := func(maxInFlight int) func() (*loadgen.Result, error) {
		var first atomic.Bool
		srv := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
			if first.CompareAndSwap(false, true) {
				time.Sleep(200 * time.Millisecond) // the stall under test
			}
		})
		return func() (*loadgen.Result, error) {
			return loadgen.Run(t.Context(), loadgen.Options{
				Target:      loadgen.Target{URL: srv.URL},
				Pacer:       loadgen.Constant(50),
				Duration:    600 * time.Millisecond,
				MaxInFlight: maxInFlight,
			})
		}
	}
	runQueued, runFree := measure(1), measure(64)
	var (
		wg                 sync.WaitGroup
		queued, free       *loadgen.Result
		errQueued, errFree error
	)
	wg.Go(func() { queued, errQueued = runQueued() })
	wg.Go(func() { free, errFree = runFree() })
	wg.Wait()
	if errQueued != nil || errFree != nil {
		t.Fatalf("Run: %v, %v", errQueued, errFree)
	}
	if queued.Requests != 29 || free.Requests != 29 || queued.Dropped != 0 {
		t.Fatalf("requests = %d and %d (dropped %d), want 29 each", queued.Requests, free.Requests, queued.Dropped)
	}
	// The requests due 20, 40, 60 and 80 ms after the stalled one cannot be
	// sent before it ends, 200 ms after it was sent: their send lag and
	// latency are at least 120 ms, whatever the machine does. Uncorrected
	// (timed from the actual send) they would look fast.
	if lagged := slowCount(t, queued.SendLag, 100_000); lagged < 4 {
		t.Errorf("send lags >= 100ms with MaxInFlight 1: %d, want >= 4", lagged)
	}
	slowQueued := slowCount(t, queued.Latency, 100_000)
	slowFree := slowCount(t, free.Latency, 100_000)
	if slowQueued < 5 || slowQueued <= slowFree {
		t.Errorf("latencies >= 100ms: %d with MaxInFlight 1, %d with 64; want >= 5 and more with 1", slowQueued, slowFree)
	}
	if queued.Latency.Mean <= free.Latency.Mean {
		t.Errorf("mean latency %vµs with MaxInFlight 1 not above %vµs with 64", queued.Latency.Mean, free.Latency.Mean)
	}
}

func TestInFlightCapDropsAtEnd(t *testing.T) {
	leakcheck.Check(t)
	release := make(chan struct{})
	srv := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	res := run(t, loadgen.Options{
		Target:      loadgen.Target{URL: srv.URL},
		Pacer:       loadgen.Constant(100),
		Duration:    500 * time.Millisecond,
		Timeout:     150 * time.Millisecond,
		MaxInFlight: 2,
	})
	sent := res.Requests - res.Dropped
	if res.Requests != 49 || res.Dropped < 30 || sent < 2 {
		t.Errorf("requests = %d, dropped = %d, want 49 with most dropped", res.Requests, res.Dropped)
	}
	if res.Errors[loadgen.ErrDropped.Error()] != res.Dropped || res.Errors["timeout"] != sent {
		t.Errorf("errors = %v, want %d dropped and %d timeouts", res.Errors, res.Dropped, sent)
	}
	if res.StatusCodes[loadgen.CodeNone] != res.Requests || res.Success != 0 || res.Latency.Count != sent {
		t.Errorf("codes = %v, success = %d, latency count = %d", res.StatusCodes, res.Success, res.Latency.Count)
	}
	var dropped int64
	for _, s := range res.Series {
		dropped += s.Dropped
	}
	if dropped != res.Dropped {
		t.Errorf("series dropped = %d, want %d", dropped, res.Dropped)
	}
}

// TestCancelStopsPromptly cancels a run while requests are in flight: Run
// returns, interrupted, long before its hour of Duration or Timeout.
func TestCancelStopsPromptly(t *testing.T) {
	leakcheck.Check(t)
	var arrived atomic.Int64
	srv := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-r.Context().Done() // stall until the client gives up
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		res *loadgen.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := loadgen.Run(ctx, loadgen.Options{
			Target:      loadgen.Target{URL: srv.URL},
			Pacer:       loadgen.Constant(100),
			Duration:    time.Hour,
			Timeout:     time.Hour,
			MaxInFlight: 16,
		})
		done <- result{res, err}
	}()
	testwait.For(t, "5 requests in flight", func() (bool, error) {
		return arrived.Load() >= 5, fmt.Errorf("%d arrived", arrived.Load())
	})
	cancel()
	var res *loadgen.Result
	var err error
	select {
	case r := <-done:
		res, err = r.res, r.err
	case <-time.After(testwait.Timeout): // a hang, not a measurement: the run was to last an hour
		srv.CloseClientConnections() // or the server's Close waits for the stalled requests
		t.Fatalf("Run did not return within %v of the cancel", testwait.Timeout)
	}
	if !errors.Is(err, context.Canceled) || res == nil || !res.Interrupted {
		t.Fatalf("Run = %+v, %v; want an interrupted result and context.Canceled", res, err)
	}
	if res.Requests != 0 {
		t.Errorf("recorded %d requests aborted by the cancel", res.Requests)
	}
}

func TestErrorsBoundedCardinality(t *testing.T) {
	leakcheck.Check(t)
	var n atomic.Int64
	addr := newGRPCServer(t, func(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		return nil, status.Errorf(codes.Internal, "boom %d", n.Add(1))
	})
	res := run(t, loadgen.Options{
		Target:        loadgen.Target{Protocol: loadgen.ProtocolGRPC, URL: "grpc://" + addr},
		Pacer:         loadgen.Constant(200),
		Duration:      500 * time.Millisecond,
		MaxErrorKinds: 5,
	})
	var sum int64
	for _, v := range res.Errors {
		sum += v
	}
	if len(res.Errors) != 6 || res.Errors[loadgen.OtherErrors] != res.Requests-5 || sum != res.Requests {
		t.Errorf("errors = %v for %d requests, want 5 kinds and the rest under %q", res.Errors, res.Requests, loadgen.OtherErrors)
	}
}

func TestTransportErrorsWithoutAddresses(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct{ protocol, url string }{
		{loadgen.ProtocolHTTP1, "http://" + closedAddr(t) + "/"},
		{loadgen.ProtocolGRPC, closedAddr(t)},
	} {
		res := run(t, loadgen.Options{
			Target:   loadgen.Target{Protocol: tc.protocol, URL: tc.url},
			Pacer:    loadgen.Constant(100),
			Duration: 300 * time.Millisecond,
		})
		if res.Requests != 29 || res.Success != 0 || len(res.Errors) != 1 {
			t.Errorf("%s: requests %d, success %d, errors %v; want 29 failures of one kind", tc.protocol, res.Requests, res.Success, res.Errors)
		}
		for msg := range res.Errors {
			if !strings.Contains(msg, "connection refused") || strings.Contains(msg, "127.0.0.1") {
				t.Errorf("%s: error %q should say connection refused without the address", tc.protocol, msg)
			}
		}
	}
}

func TestWarmUpNotRecorded(t *testing.T) {
	leakcheck.Check(t)
	var served atomic.Int64
	srv := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) { served.Add(1) })
	res := run(t, loadgen.Options{
		Target:   loadgen.Target{URL: srv.URL},
		Pacer:    loadgen.Constant(200),
		Duration: 1200 * time.Millisecond,
		WarmUp:   500 * time.Millisecond,
	})
	// Hits 100 (due at 500 ms) to 239 are measured; 1 to 99 only sent.
	if res.Requests != 140 || served.Load() != 239 {
		t.Errorf("recorded %d, served %d; want 140 and 239", res.Requests, served.Load())
	}
	if got := seriesCounts(res); len(got) != 2 || res.Series[0].Second != 0 || got[0] != 100 || got[1] != 40 {
		t.Errorf("series = %v from second %d, want [100 40] from 0", got, res.Series[0].Second)
	}
	if math.Abs(res.ScheduledRate-200) > 1e-6 {
		t.Errorf("scheduled rate = %v, want 140 requests over 0.7 s", res.ScheduledRate)
	}
}

func TestResultJSONRoundTrip(t *testing.T) {
	leakcheck.Check(t)
	var n atomic.Int64
	addr := newGRPCServer(t, func(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		if n.Add(1)%3 == 0 {
			return nil, status.Error(codes.ResourceExhausted, "slow down")
		}
		return in, nil
	})
	res := run(t, loadgen.Options{
		Target:   loadgen.Target{Protocol: loadgen.ProtocolGRPC, URL: addr},
		Pacer:    loadgen.Constant(200),
		Duration: 1200 * time.Millisecond,
	})

	var buf bytes.Buffer
	if err := res.EncodeJSON(&buf); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"latency_us"`, `"p99_9"`, `"success_rate"`, `"status_codes"`, `"series"`, `"p99_us"`, `"achieved_rate_per_s"`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	back, err := loadgen.DecodeResult(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res, back) {
		t.Errorf("round trip changed the result:\n got %+v\nwant %+v", back, res)
	}

	h, err := back.Latency.Histogram()
	if err != nil {
		t.Fatal(err)
	}
	if h.TotalCount() != res.Latency.Count || h.ValueAtQuantile(99) != res.Latency.P99 || h.Max() != res.Latency.Max {
		t.Errorf("decoded histogram: count %d p99 %d max %d, result %+v", h.TotalCount(), h.ValueAtQuantile(99), h.Max(), res.Latency)
	}
	var perSecond int64
	for _, s := range back.Series {
		sh, err := s.Histogram()
		if err != nil {
			t.Fatal(err)
		}
		if sh != nil {
			perSecond += sh.TotalCount()
			if sh.ValueAtQuantile(99) != s.P99US {
				t.Errorf("second %d: decoded p99 %d, series %d", s.Second, sh.ValueAtQuantile(99), s.P99US)
			}
		}
	}
	if perSecond != res.Latency.Count {
		t.Errorf("per-second histograms hold %d values, whole run %d", perSecond, res.Latency.Count)
	}

	var text bytes.Buffer
	if err := loadgen.WritePercentiles(&text, h); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "Percentile") || !strings.Contains(text.String(), fmt.Sprintf("Total count    = %12d", res.Latency.Count)) {
		t.Errorf("percentile distribution:\n%s", text.String())
	}

	var hlog bytes.Buffer
	if err := back.WriteHistogramLog(&hlog); err != nil {
		t.Fatal(err)
	}
	rd := hdrhistogram.NewHistogramLogReader(&hlog)
	var logged, intervals int64
	for {
		ih, err := rd.NextIntervalHistogram()
		if err != nil {
			t.Fatal(err)
		}
		if ih == nil {
			break
		}
		intervals++
		logged += ih.TotalCount()
	}
	if intervals != 2 || logged != res.Latency.Count {
		t.Errorf("histogram log: %d intervals, %d values; want 2 and %d", intervals, logged, res.Latency.Count)
	}
}

func TestNormalize(t *testing.T) {
	var zero loadgen.Options
	zero.Target.URL = "http://127.0.0.1:1/"
	if err := zero.Normalize(); err != nil {
		t.Fatal(err)
	}
	if zero.Target.Protocol != loadgen.ProtocolHTTP1 || zero.Target.Method != http.MethodGet ||
		zero.Duration != loadgen.DefaultDuration || zero.Timeout != loadgen.DefaultTimeout ||
		zero.Connections != loadgen.DefaultConnections || zero.MaxInFlight != loadgen.DefaultMaxInFlight ||
		zero.Pacer == nil || zero.Pacer.Rate(0) != loadgen.DefaultRate || zero.Success == nil {
		t.Errorf("defaults not applied: %+v", zero)
	}

	g := loadgen.Options{Target: loadgen.Target{Protocol: loadgen.ProtocolGRPC, URL: "grpc://127.0.0.1:9"}}
	if err := g.Normalize(); err != nil || g.Target.URL != "127.0.0.1:9" || g.Target.Method != loadgen.EchoMethod || g.Connections != 1 {
		t.Errorf("gRPC defaults: %v, %+v", err, g.Target)
	}

	for name, o := range map[string]loadgen.Options{
		"no URL":          {},
		"protocol":        {Target: loadgen.Target{Protocol: "h3", URL: "http://x:1"}},
		"h2c https":       {Target: loadgen.Target{Protocol: loadgen.ProtocolH2C, URL: "https://x:1"}},
		"grpc path":       {Target: loadgen.Target{Protocol: loadgen.ProtocolGRPC, URL: "x:1/echo"}},
		"unlimited rate":  {Target: loadgen.Target{URL: "http://x:1"}, Pacer: vegeta.Rate{}},
		"linear from 0":   {Target: loadgen.Target{URL: "http://x:1"}, Pacer: vegeta.LinearPacer{Slope: 10}},
		"warm-up too big": {Target: loadgen.Target{URL: "http://x:1"}, Duration: time.Second, WarmUp: time.Second},
		"ramp from 0":     {Target: loadgen.Target{URL: "http://x:1"}, Rate: loadgen.Rate{Shape: loadgen.ShapeRamp, To: 10}},
		"shape":           {Target: loadgen.Target{URL: "http://x:1"}, Rate: loadgen.Rate{Shape: "sine"}},
		"empty steps":     {Target: loadgen.Target{URL: "http://x:1"}, Rate: loadgen.Rate{Shape: loadgen.ShapeSteps}},
		"negative":        {Target: loadgen.Target{URL: "http://x:1"}, MaxInFlight: -1},
		"churn on h2c":    {Target: loadgen.Target{Protocol: loadgen.ProtocolH2C, URL: "http://x:1"}, RequestsPerConnection: 5},
	} {
		if err := o.Normalize(); err == nil {
			t.Errorf("%s: Normalize accepted %+v", name, o)
		}
	}
}

func TestStepsPacer(t *testing.T) {
	s := loadgen.Steps{{Rate: 10, For: time.Second}, {Rate: 0, For: time.Second}, {Rate: 20, For: time.Second}}
	// Walk the schedule the way Run does: with the schedule's own clock.
	perSecond := make([]int, 4)
	var at time.Duration
	for hits := uint64(0); ; hits++ {
		wait, stop := s.Pace(at, hits)
		if stop {
			break
		}
		at += max(wait, 0)
		perSecond[int(at/time.Second)]++
	}
	if want := []int{9, 1, 19, 1}; !reflect.DeepEqual(perSecond, want) {
		t.Errorf("hits per second = %v, want %v", perSecond, want)
	}
	if s.Rate(500*time.Millisecond) != 10 || s.Rate(1500*time.Millisecond) != 0 || s.Rate(2500*time.Millisecond) != 20 || s.Rate(time.Hour) != 0 {
		t.Errorf("Rate does not follow the steps")
	}
	if s.Total() != 3*time.Second {
		t.Errorf("Total = %s", s.Total())
	}
}

func TestProgressReportsSeconds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	var mu sync.Mutex
	var got []loadgen.Second
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		Target:   loadgen.Target{URL: srv.URL},
		Rate:     loadgen.Rate{Shape: loadgen.ShapeConstant, PerSecond: 100},
		Duration: 3 * time.Second,
		WarmUp:   time.Second,
		Progress: func(s loadgen.Second) { mu.Lock(); got = append(got, s); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 || len(got) > 2 {
		t.Fatalf("progress reported %d seconds of a 2-second measured run", len(got))
	}
	var reported int64
	for _, s := range got {
		reported += s.Requests
	}
	if reported == 0 || reported > res.Requests {
		t.Fatalf("progress saw %d requests, the result %d", reported, res.Requests)
	}
}

// TestProgressCountsOutstanding stalls two requests due in the first
// measured second until that second has been reported: the live view
// counts them in the second they were due, as outstanding, so it cannot
// show every request of the second answered.
func TestProgressCountsOutstanding(t *testing.T) {
	leakcheck.Check(t)
	var arrived atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	srv := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		// 100 requests are due in the warm-up second; the 6th and 7th
		// of the next one stall.
		if n := arrived.Add(1); n == 106 || n == 107 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	var mu sync.Mutex
	var live []loadgen.Second
	res := run(t, loadgen.Options{
		Target:   loadgen.Target{URL: srv.URL},
		Pacer:    loadgen.Constant(100),
		Duration: 3 * time.Second,
		WarmUp:   time.Second,
		Progress: func(s loadgen.Second) {
			mu.Lock()
			live = append(live, s)
			mu.Unlock()
			if s.Second == 1 {
				once.Do(func() { close(release) })
			}
		},
	})
	mu.Lock()
	defer mu.Unlock()
	if len(live) == 0 || live[0].Second != 1 {
		t.Fatalf("live seconds %+v: want second 1 first", live)
	}
	s := live[0]
	if s.Outstanding < 2 {
		t.Errorf("second 1 live: %+v, want the 2 stalled requests outstanding", s)
	}
	if s.Success+s.Errors != s.Requests || s.Success >= s.Requests+s.Outstanding {
		t.Errorf("second 1 live: %+v: success must be short of the requests due", s)
	}
	final := res.Series[0]
	if final.Second != 1 || final.Outstanding != 0 || s.Requests+s.Outstanding > final.Requests {
		t.Errorf("second 1: live %+v, final %+v: the live requests due must be among the final ones, none outstanding at the end", s, final)
	}
}

// TestDigestAndChunked: with Digest every request carries its body's
// SHA-256, and with Chunked every other body goes without a length
// (chunked on HTTP/1.1), the others with one.
func TestDigestAndChunked(t *testing.T) {
	leakcheck.Check(t)
	var (
		mu             sync.Mutex
		chunked, fixed int
		bad            atomic.Int64
	)
	srv := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		if len(body) != 300 || r.Header.Get(loadgen.DigestHeader) != hex.EncodeToString(sum[:]) {
			bad.Add(1)
		}
		mu.Lock()
		if r.ContentLength < 0 && len(r.TransferEncoding) == 1 && r.TransferEncoding[0] == "chunked" {
			chunked++
		} else if r.ContentLength == 300 {
			fixed++
		}
		mu.Unlock()
	})
	res := run(t, loadgen.Options{
		Target:      loadgen.Target{URL: srv.URL + "/digest", PayloadBytes: 300, Digest: true, Chunked: true},
		Pacer:       loadgen.Constant(200),
		Duration:    500 * time.Millisecond,
		Connections: 2,
	})
	mu.Lock()
	defer mu.Unlock()
	if res.Success != 99 || bad.Load() != 0 {
		t.Errorf("success %d, %d requests whose body or digest was wrong", res.Success, bad.Load())
	}
	if chunked+fixed != 99 || chunked < 49 || fixed < 49 {
		t.Errorf("%d chunked and %d with a length, want about half each of 99", chunked, fixed)
	}
}

// TestRequestsPerConnection: with RequestsPerConnection, one request in N
// closes its connection and the pool dials another, so the server sees
// about one connection per N requests; without it, the pool's few
// connections carry the whole run.
func TestRequestsPerConnection(t *testing.T) {
	leakcheck.Check(t)
	for _, perConn := range []int{5, 0} {
		var opened, closes atomic.Int64
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Close {
				closes.Add(1)
			}
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				opened.Add(1)
			}
		}
		srv.Start()
		res := run(t, loadgen.Options{
			Target:                loadgen.Target{URL: srv.URL},
			Pacer:                 loadgen.Constant(200),
			Duration:              500 * time.Millisecond,
			Connections:           2,
			RequestsPerConnection: perConn,
		})
		srv.Close()
		if res.Requests < 90 || res.Success != res.Requests {
			t.Fatalf("%d per connection: %d of %d requests succeeded", perConn, res.Success, res.Requests)
		}
		// Every Nth request asks to close; each such connection closes
		// after its answer, and up to 2 more are open at the end.
		var wantCloses int64
		if perConn > 0 {
			wantCloses = res.Requests / int64(perConn)
		}
		if closes.Load() != wantCloses {
			t.Errorf("%d per connection: %d requests asked to close, want %d", perConn, closes.Load(), wantCloses)
		}
		if n := opened.Load(); n < max(wantCloses, 1) || n > wantCloses+2 {
			t.Errorf("%d per connection: the server saw %d connections, want %d..%d", perConn, n, max(wantCloses, 1), wantCloses+2)
		}
	}
}
