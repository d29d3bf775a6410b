package demo

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
)

// startServer starts a Server on loopback with a fixed seed, closed (and
// checked for leaks) at cleanup.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	leakcheck.Check(t)
	if cfg.Seed == 0 {
		cfg.Seed = 42
	}
	if cfg.Name == "" {
		cfg.Name = "echo-1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// proto is one column of the HTTP protocol matrix.
type proto struct {
	name string
	h2   bool
}

var protos = []proto{{"http1", false}, {"h2c", true}}

// client talks to one Server over one protocol.
type client struct {
	*http.Client
	base string
	p    proto
	s    *Server
}

func newClient(t *testing.T, s *Server, p proto) *client {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols), DisableCompression: true}
	if p.h2 {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{Client: &http.Client{Transport: tr}, base: "http://" + s.Addr(), p: p, s: s}
}

// matrix runs f once per protocol, each with its own server.
func matrix(t *testing.T, cfg Config, f func(t *testing.T, c *client)) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			s := startServer(t, cfg)
			f(t, newClient(t, s, p))
		})
	}
}

// do sends a request and returns the response with its body read.
func (c *client) do(t *testing.T, method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, c.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if want := map[bool]int{false: 1, true: 2}[c.p.h2]; resp.ProtoMajor != want {
		t.Fatalf("%s %s: got HTTP/%d, want HTTP/%d", method, path, resp.ProtoMajor, want)
	}
	return resp, string(b)
}

func (c *client) get(t *testing.T, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return c.do(t, http.MethodGet, path, nil, hdr...)
}

// statusOnly returns the status of a GET without failing on transport
// errors, which it reports as -1.
func (c *client) statusOnly(ctx context.Context, method, path string) int {
	req, _ := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		return -1
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func wantStatus(t *testing.T, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status %d, want %d; body %q", resp.StatusCode, code, body)
	}
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// within checks that got is within k binomial standard deviations of
// n·p. With a fixed seed the outcome is repeatable; k=5 keeps the test
// meaningful without making it brittle if the draw order changes.
func within(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-mean) > 5*sd+1 {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f", what, got, n, mean, 5*sd+1)
	} else {
		t.Logf("%s: %d of %d (expected %.0f)", what, got, n, mean)
	}
}
