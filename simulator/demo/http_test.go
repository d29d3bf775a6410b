package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
)

func TestRoot(t *testing.T) {
	matrix(t, Config{Name: "echo-7"}, func(t *testing.T, c *client) {
		resp, body := c.get(t, "/", "X-Echo-Trace", "abc", "X-Other", "no")
		wantStatus(t, resp, body, http.StatusOK)
		if !strings.Contains(body, "echo-7") || !strings.Contains(body, resp.Proto) {
			t.Errorf("body %q does not name the replica and %s", body, resp.Proto)
		}
		if got := resp.Header.Get(ReplicaHeader); got != "echo-7" {
			t.Errorf("%s = %q, want echo-7", ReplicaHeader, got)
		}
		if got := resp.Header.Get("X-Echo-Trace"); got != "abc" {
			t.Errorf("X-Echo-Trace = %q, want abc", got)
		}
		if got := resp.Header.Get("X-Other"); got != "" {
			t.Errorf("X-Other echoed: %q", got)
		}
		resp, body = c.get(t, "/?size=10")
		wantStatus(t, resp, body, http.StatusOK)
		if len(body) != 10 {
			t.Errorf("size=10 gave %d bytes", len(body))
		}
		resp, body = c.get(t, "/nope")
		wantStatus(t, resp, body, http.StatusNotFound)
	})
}

func TestEcho(t *testing.T) {
	matrix(t, Config{}, func(t *testing.T, c *client) {
		resp, body := c.do(t, http.MethodPost, "/echo", strings.NewReader("hello"), "Content-Type", "text/x-demo")
		wantStatus(t, resp, body, http.StatusOK)
		if body != "hello" || resp.Header.Get("Content-Type") != "text/x-demo" {
			t.Errorf("echo: %q %q", body, resp.Header.Get("Content-Type"))
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
		resp, body = c.do(t, http.MethodPost, "/echo", bytes.NewReader(big))
		wantStatus(t, resp, body, http.StatusOK)
		if body != string(big) {
			t.Errorf("1 MiB echo came back as %d different bytes", len(body))
		}
		resp, body = c.get(t, "/echo?size=100000")
		wantStatus(t, resp, body, http.StatusOK)
		if len(body) != 100000 || !strings.HasPrefix(body, payloadPattern) {
			t.Errorf("size=100000 gave %d bytes starting %.20q", len(body), body)
		}
		resp, body = c.get(t, "/echo?size=0")
		wantStatus(t, resp, body, http.StatusOK)
		if body != "" {
			t.Errorf("size=0 gave %q", body)
		}
	})
}

// TestEchoFullDuplex reads each echoed chunk before sending the next, which
// only works if /echo streams.
func TestEchoFullDuplex(t *testing.T) {
	matrix(t, Config{}, func(t *testing.T, c *client) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, c.base+"/echo", pr)
		done := make(chan struct{})
		var resp *http.Response
		var err error
		go func() { resp, err = c.Do(req); close(done) }()
		if _, err := pw.Write([]byte("ping-0\n")); err != nil {
			t.Fatal(err)
		}
		<-done
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		for i := range 3 {
			line, err := br.ReadString('\n')
			if err != nil || line != fmt.Sprintf("ping-%d\n", i) {
				t.Fatalf("chunk %d: %q, %v", i, line, err)
			}
			if i < 2 {
				fmt.Fprintf(pw, "ping-%d\n", i+1)
			}
		}
		pw.Close()
		if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
			t.Fatalf("after close: %q, %v", rest, err)
		}
	})
}

func TestTrailers(t *testing.T) {
	matrix(t, Config{}, func(t *testing.T, c *client) {
		resp, body := c.get(t, "/trailers")
		wantStatus(t, resp, body, http.StatusOK)
		if body != "trailers follow\n" {
			t.Errorf("body %q", body)
		}
		if got := resp.Trailer.Get(TrailerName); got != "done" {
			t.Errorf("trailer %s = %q, want done (all trailers %v)", TrailerName, got, resp.Trailer)
		}
	})
}

func TestStream(t *testing.T) {
	matrix(t, Config{Name: "s"}, func(t *testing.T, c *client) {
		resp, body := c.get(t, "/stream?n=3&interval=0s")
		wantStatus(t, resp, body, http.StatusOK)
		if want := "chunk 1/3 from s\nchunk 2/3 from s\nchunk 3/3 from s\n"; body != want {
			t.Errorf("body %q, want %q", body, want)
		}

		// The first chunk must arrive while the second is an hour away,
		// which proves the flush; then the cancelled request must end.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/stream?n=2&interval=1h", nil)
		r2, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(r2.Body).ReadString('\n')
		if err != nil || line != "chunk 1/2 from s\n" {
			t.Fatalf("first chunk: %q, %v", line, err)
		}
		cancel()
		r2.Body.Close()
		testwait.For(t, "the stream handler to end", func() (bool, error) { return c.s.Stats().InFlight == 0, nil })
	})
}

func TestHealthz(t *testing.T) {
	matrix(t, Config{}, func(t *testing.T, c *client) {
		resp, body := c.get(t, "/healthz?status=503")
		wantStatus(t, resp, body, http.StatusOK) // control endpoints are never faulted
		if st := c.s.Stats(); st.Requests != 0 {
			t.Errorf("healthz counted as a workload request: %+v", st)
		}
		c.s.ready.Store(false)
		resp, body = c.get(t, "/healthz")
		wantStatus(t, resp, body, http.StatusServiceUnavailable)
	})
}

func TestBadParameters(t *testing.T) {
	cases := []struct{ query, param, value string }{
		{"status=abc", "status", "abc"},
		{"status=503:ten", "status", "503:ten"},
		{"status=503:60,429:50", "status", "503:60,429:50"},
		{"status=99", "status", "99"},
		{"delay=5xs", "delay", "5xs"},
		{"delay=-1ms", "delay", "-1ms"},
		{"delay=1ms:101", "delay", "1ms:101"},
		{"size=-1", "size", "-1"},
		{"size=lots", "size", "lots"},
		{"close=1e3", "close", "1e3"},
		{"close=maybe", "close", "maybe"},
		{"status=%zz", "query", "%zz"},
	}
	matrix(t, Config{}, func(t *testing.T, c *client) {
		for _, tc := range cases {
			resp, body := c.get(t, "/echo?"+tc.query)
			wantStatus(t, resp, body, http.StatusBadRequest)
			if !strings.Contains(body, tc.param) || !strings.Contains(body, tc.value) {
				t.Errorf("?%s: body %q does not name %s and %q", tc.query, body, tc.param, tc.value)
			}
		}
		for _, q := range []string{"n=-1", "n=x", "interval=fast"} {
			resp, body := c.get(t, "/stream?"+q)
			wantStatus(t, resp, body, http.StatusBadRequest)
			if name, _, _ := strings.Cut(q, "="); !strings.Contains(body, name) {
				t.Errorf("/stream?%s: body %q does not name %s", q, body, name)
			}
		}
		if got := c.s.Stats().HTTP[400]; got != int64(len(cases))+3 {
			t.Errorf("stats count %d 400s, want %d", got, len(cases)+3)
		}
	})
}

func TestUpgradeNeedsHTTP1(t *testing.T) {
	matrix(t, Config{}, func(t *testing.T, c *client) {
		resp, body := c.get(t, "/ws")
		wantStatus(t, resp, body, http.StatusUpgradeRequired)
		if !c.p.h2 && resp.Header.Get("Upgrade") != "skiff-echo" {
			t.Errorf("426 without Upgrade header: %v", resp.Header)
		}
	})
}

// TestFaultPercentages checks the injected shares over 2000 sequential
// requests per protocol against binomial bounds.
func TestFaultPercentages(t *testing.T) {
	const n = 2000
	matrix(t, Config{Seed: 7}, func(t *testing.T, c *client) {
		count := map[int]int{}
		for range n {
			count[c.statusOnly(t.Context(), http.MethodGet, "/echo?status=503:10,429:5&delay=0s:50,1us:30")]++
		}
		within(t, "503", count[503], n, 0.10)
		within(t, "429", count[429], n, 0.05)
		if count[200]+count[503]+count[429] != n {
			t.Errorf("unexpected outcomes: %v", count)
		}
		st := c.s.Stats()
		within(t, "delayed", int(st.Delayed), n, 0.30)
		if st.HTTP[503] != int64(count[503]) || st.HTTP[429] != int64(count[429]) || st.Requests != n {
			t.Errorf("stats %+v disagree with client counts %v", st, count)
		}
	})
}

// TestClosePercent uses POST so that the client does not retry.
func TestClosePercent(t *testing.T) {
	const n = 500
	matrix(t, Config{Seed: 3}, func(t *testing.T, c *client) {
		failed := 0
		for range n {
			switch c.statusOnly(t.Context(), http.MethodPost, "/echo?close=20.5") {
			case -1:
				failed++
			case 200:
			default:
				t.Fatal("unexpected status")
			}
		}
		within(t, "closed", failed, n, 0.205)
		if st := c.s.Stats(); st.Resets != int64(failed) {
			t.Errorf("server counted %d resets, client saw %d failures", st.Resets, failed)
		}
		resp, body := c.get(t, "/")
		wantStatus(t, resp, body, http.StatusOK)
	})
}

// TestDelayCancel cancels requests held by an hour-long delay, from the
// query and from the behaviour, and checks nothing is left running.
func TestDelayCancel(t *testing.T) {
	matrix(t, Config{}, func(t *testing.T, c *client) {
		for _, setup := range []struct {
			name, path string
			b          Behaviour
		}{
			{"query", "/echo?delay=1h", Behaviour{}},
			{"behaviour", "/echo", Behaviour{Latency: Delays{{Delay: MaxDelay, Percent: 100}}}},
		} {
			if err := c.s.SetBehaviour(setup.b); err != nil {
				t.Fatal(err)
			}
			before := c.s.Stats().Cancelled
			ctx, cancel := context.WithCancel(t.Context())
			errc := make(chan int, 1)
			go func() { errc <- c.statusOnly(ctx, http.MethodGet, setup.path) }()
			testwait.For(t, setup.name+" request in flight", func() (bool, error) { return c.s.Stats().InFlight == 1, nil })
			cancel()
			if got := <-errc; got != -1 {
				t.Errorf("%s: cancelled request got status %d", setup.name, got)
			}
			testwait.For(t, setup.name+" handler to return", func() (bool, error) { return c.s.Stats().InFlight == 0, nil })
			if got := c.s.Stats().Cancelled - before; got != 1 {
				t.Errorf("%s: %d cancellations counted, want 1", setup.name, got)
			}
		}
	})
}

func TestBehaviourAdmin(t *testing.T) {
	start := Behaviour{Latency: Delays{{Delay: time.Microsecond, Percent: 50}}, ErrorStatus: 500}
	matrix(t, Config{Behaviour: start}, func(t *testing.T, c *client) {
		resp, body := c.get(t, "/_demo/behaviour")
		wantStatus(t, resp, body, http.StatusOK)
		got := decodeJSON[map[string]any](t, body)
		want := map[string]any{"latency": "1µs:50", "latency_jitter": "0s", "error_rate": 0.0, "error_status": 500.0, "reset_rate": 0.0, "max_concurrent": 0.0}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("GET = %v, want %v", got, want)
		}

		put := `{"latency":"0s","latency_jitter":"1us","error_rate":1,"error_status":429,"reset_rate":0}`
		resp, body = c.do(t, http.MethodPut, "/_demo/behaviour", strings.NewReader(put))
		wantStatus(t, resp, body, http.StatusOK)
		for range 20 {
			resp, body = c.get(t, "/echo")
			wantStatus(t, resp, body, http.StatusTooManyRequests)
		}
		if b := c.s.Behaviour(); b.ErrorRate != 1 || b.ErrorStatus != 429 || b.LatencyJitter != 1000 {
			t.Errorf("after PUT: %+v", b)
		}

		resp, body = c.do(t, http.MethodPatch, "/_demo/behaviour", strings.NewReader(`{"error_rate":0.3}`))
		wantStatus(t, resp, body, http.StatusOK)
		if b := c.s.Behaviour(); b.ErrorRate != 0.3 || b.ErrorStatus != 429 {
			t.Errorf("after PATCH: %+v", b)
		}
		const n = 1000
		errs := 0
		for range n {
			if c.statusOnly(t.Context(), http.MethodGet, "/") == 429 {
				errs++
			}
		}
		within(t, "error_rate 0.3", errs, n, 0.3)

		// The admin endpoints themselves are never faulted.
		resp, body = c.get(t, "/_demo/stats")
		wantStatus(t, resp, body, http.StatusOK)

		for _, bad := range []string{
			`{"error_rate":2}`, `{"latency":"slow"}`, `{"latency":"1ms:60,2ms:60"}`,
			`{"error_status":42}`, `{"surprise":1}`, `{"latency":10}`, `[]`, ``, `{} {}`,
		} {
			resp, body = c.do(t, http.MethodPut, "/_demo/behaviour", strings.NewReader(bad))
			wantStatus(t, resp, body, http.StatusBadRequest)
		}
		if b := c.s.Behaviour(); b.ErrorRate != 0.3 {
			t.Errorf("a rejected PUT changed the behaviour: %+v", b)
		}

		resp, body = c.do(t, http.MethodDelete, "/_demo/behaviour", nil)
		wantStatus(t, resp, body, http.StatusOK)
		if b := c.s.Behaviour(); fmt.Sprint(b) != fmt.Sprint(start) {
			t.Errorf("after DELETE: %+v, want %+v", b, start)
		}
		resp, body = c.get(t, "/echo")
		wantStatus(t, resp, body, http.StatusOK)

		resp, body = c.do(t, http.MethodPost, "/_demo/behaviour", nil)
		wantStatus(t, resp, body, http.StatusMethodNotAllowed)
	})
}

func TestBehaviourReset(t *testing.T) {
	matrix(t, Config{Behaviour: Behaviour{ResetRate: 1}}, func(t *testing.T, c *client) {
		if got := c.statusOnly(t.Context(), http.MethodPost, "/echo"); got != -1 {
			t.Errorf("reset_rate 1: got status %d, want a transport error", got)
		}
		if st := c.s.Stats(); st.Resets != 1 || len(st.HTTP) != 0 {
			t.Errorf("stats %+v, want one reset and no status", st)
		}
		resp, body := c.get(t, "/healthz") // not faulted
		wantStatus(t, resp, body, http.StatusOK)
	})
}

func TestStats(t *testing.T) {
	matrix(t, Config{Name: "echo-3"}, func(t *testing.T, c *client) {
		for range 3 {
			c.get(t, "/")
		}
		c.get(t, "/echo?status=503")
		resp, body := c.get(t, "/_demo/stats")
		wantStatus(t, resp, body, http.StatusOK)
		st := decodeJSON[Stats](t, body)
		if st.Name != "echo-3" || st.Requests != 4 || st.HTTP[200] != 3 || st.HTTP[503] != 1 || st.Injected != 1 {
			t.Errorf("stats %+v", st)
		}
		if !strings.Contains(body, `"200": 3`) {
			t.Errorf("status keys are not plain codes: %s", body)
		}
		resp, body = c.do(t, http.MethodDelete, "/_demo/stats", nil)
		wantStatus(t, resp, body, http.StatusOK)
		if st := c.s.Stats(); st.Requests != 0 || len(st.HTTP) != 0 {
			t.Errorf("after DELETE: %+v", st)
		}
	})
}

// TestConcurrentBehaviourChanges races requests with PUT/PATCH/DELETE for
// the race detector.
func TestConcurrentBehaviourChanges(t *testing.T) {
	matrix(t, Config{}, func(t *testing.T, c *client) {
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				for j := range 25 {
					switch (i + j) % 4 {
					case 0:
						c.statusOnly(t.Context(), http.MethodGet, "/echo?status=500:50")
					case 1:
						req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, c.base+"/_demo/behaviour", strings.NewReader(`{"error_rate":0.1}`))
						if resp, err := c.Do(req); err == nil {
							resp.Body.Close()
						}
					case 2:
						c.statusOnly(t.Context(), http.MethodDelete, "/_demo/behaviour")
					case 3:
						c.statusOnly(t.Context(), http.MethodGet, "/_demo/stats")
					}
				}
			})
		}
		wg.Wait()
	})
}

// TestShutdownDrains starts a request whose body is still open, shuts the
// server down, and checks that the request may finish before Shutdown
// returns; then that a stuck request is cut off when the context ends.
func TestShutdownDrains(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			leakcheck.Check(t)
			s, err := New(Config{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, s, p)

			pr, pw := io.Pipe()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, c.base+"/echo", pr)
			respc := make(chan string, 1)
			go func() {
				resp, err := c.Do(req)
				if err != nil {
					respc <- "error: " + err.Error()
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					respc <- "error: " + err.Error()
					return
				}
				respc <- string(b)
			}()
			fmt.Fprint(pw, "first,")
			testwait.For(t, "request in flight", func() (bool, error) { return s.Stats().InFlight == 1, nil })

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			shut := make(chan error, 1)
			go func() { shut <- s.Shutdown(ctx) }()
			testwait.For(t, "readiness off", func() (bool, error) { return !s.ready.Load(), nil })
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned %v with a request in flight", err)
			default:
			}
			fmt.Fprint(pw, "last")
			pw.Close()
			if got := <-respc; got != "first,last" {
				t.Fatalf("in-flight request got %q", got)
			}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		})
	}
}

func TestShutdownDeadline(t *testing.T) {
	leakcheck.Check(t)
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s, protos[1])
	errc := make(chan int, 1)
	go func() { errc <- c.statusOnly(t.Context(), http.MethodGet, "/echo?delay=1h") }()
	testwait.For(t, "request in flight", func() (bool, error) { return s.Stats().InFlight == 1, nil })
	ctx, cancel := context.WithCancel(t.Context())
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	testwait.For(t, "readiness off", func() (bool, error) { return !s.ready.Load(), nil })
	cancel()
	if err := <-shut; err == nil {
		t.Error("Shutdown past its deadline returned nil")
	}
	if got := <-errc; got != -1 {
		t.Errorf("request cut off by shutdown got status %d", got)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

// TestDigest: /digest accepts a body that matches its SHA-256 header, sent
// with a length or chunked, and names what it got when one does not.
func TestDigest(t *testing.T) {
	matrix(t, Config{}, func(t *testing.T, c *client) {
		body := bytes.Repeat([]byte("skiff"), 1000)
		sum := sha256.Sum256(body)
		digest := hex.EncodeToString(sum[:])
		resp, got := c.do(t, http.MethodPost, "/digest", bytes.NewReader(body), DigestHeader, digest)
		wantStatus(t, resp, got, http.StatusOK)
		if got != "ok 5000 bytes\n" {
			t.Errorf("matching body: %q", got)
		}
		// Chunked: a reader of unknown length.
		resp, got = c.do(t, http.MethodPost, "/digest", io.MultiReader(bytes.NewReader(body[:10]), bytes.NewReader(body[10:])), DigestHeader, digest)
		wantStatus(t, resp, got, http.StatusOK)
		// Truncated on the way: a body one byte short.
		resp, got = c.do(t, http.MethodPost, "/digest", bytes.NewReader(body[1:]), DigestHeader, digest)
		wantStatus(t, resp, got, http.StatusUnprocessableEntity)
		if !strings.Contains(got, "4999 bytes") || !strings.Contains(got, digest) {
			t.Errorf("a changed body is not described: %q", got)
		}
		resp, got = c.do(t, http.MethodPost, "/digest", bytes.NewReader(body))
		wantStatus(t, resp, got, http.StatusBadRequest)
	})
}
