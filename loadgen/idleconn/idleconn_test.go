package idleconn

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/proxyproc"
	"github.com/skiff-mesh/skiff/results"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// proxyBin is the skiff-proxy binary measured, built once by TestMain as
// the Makefile builds it (static, trimmed): its memory is the point.
var proxyBin string

func TestMain(m *testing.M) {
	flag.Parse()
	// SKIFF_IDLECONN_PROXY: another build (an older commit's, say) to compare with.
	// A broken build fails the suite; it never skips it.
	bin, remove, err := proxyproc.Build(os.Getenv("SKIFF_IDLECONN_PROXY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleconn:", err)
		os.Exit(1)
	}
	proxyBin = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

// TestIdleHTTP1 is issue 12's claim, asserted on memory (not time): idle
// plaintext keep-alive connections cost the real proxy binary at most 12
// KiB each. 2,000 connections: the proxy parks a connection 100 ms after
// its last request, and the memory of those still held by net/http at the
// reading (up to about 8 MB when the connections are opened fast) is
// spread over enough of them to leave the figure meaningful.
func TestIdleHTTP1(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the skiff-proxy binary and holds 2,000 connections; run without -short")
	}
	leakcheck.Check(t)
	rep, err := Run(t.Context(), Config{ProxyBin: proxyBin, Conns: []int{2000}, Kinds: []Kind{KindHTTP1}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.WriteText(&b)
	t.Logf("\n%s", b.String())
	r := rep.Results[0]
	checkValid(t, r)
	if r.RSSKiBPerConn > rep.TargetKiB {
		t.Errorf("an idle %s connection costs %.2f KiB (VmRSS), over the target of %g KiB", r.Kind, r.RSSKiBPerConn, rep.TargetKiB)
	}
}

// TestIdleH2MTLS runs the peer-sidecar kind end to end, small: every
// connection completes mutual TLS and its HTTP/2 request and is kept.
// Its memory is logged, not asserted: at this size the fixed costs blur
// it, and it is far over the target (about 46 KiB at 1,000 and 10,000
// connections; where it goes: docs/proxy.md, "Idle connections").
func TestIdleH2MTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the skiff-proxy binary; run without -short")
	}
	leakcheck.Check(t)
	rep, err := Run(t.Context(), Config{ProxyBin: proxyBin, Conns: []int{100}, Kinds: []Kind{KindH2MTLS}, WarmUp: 4})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.WriteText(&b)
	t.Logf("\n%s", b.String())
	checkValid(t, rep.Results[0])
}

// checkValid fails t unless the proxy kept every connection.
func checkValid(t *testing.T, r Result) {
	t.Helper()
	if r.Evicted != 0 || r.Rejected != 0 || r.Shed != 0 {
		t.Errorf("the proxy evicted %d, rejected %d and shed %d connections: the limits the measurement raises did not hold", r.Evicted, r.Rejected, r.Shed)
	}
	if r.Opened != r.Conns || r.ProxyOpen != r.Conns {
		t.Errorf("%d connections asked for, %d opened, %d open at the proxy", r.Conns, r.Opened, r.ProxyOpen)
	}
	if r.Verdict == results.Error {
		t.Errorf("measurement not valid: %s", r.Why)
	}
}

func TestSettle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seq := func(vals ...float64) func() (float64, error) {
			i := 0
			return func() (float64, error) {
				v := vals[min(i, len(vals)-1)]
				i++
				return v, nil
			}
		}
		start := time.Now()
		ok, err := settle(t.Context(), seq(10, 20, 30, 30.2), time.Second, 0.01, 15*time.Second)
		if err != nil || !ok {
			t.Fatalf("settle = %v, %v; want settled", ok, err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("settled after %v, want 3s (the third reading after the first)", d)
		}
		start = time.Now()
		grow := 1.0
		ok, err = settle(t.Context(), func() (float64, error) { grow *= 1.5; return grow, nil }, time.Second, 0.01, 15*time.Second)
		if err != nil || ok {
			t.Fatalf("settle of an ever-growing reading = %v, %v; want not settled", ok, err)
		}
		if d := time.Since(start); d != 15*time.Second {
			t.Errorf("gave up after %v, want the 15s bound", d)
		}
		_, err = settle(t.Context(), func() (float64, error) { return 0, errors.New("no such process") }, time.Second, 0.01, 15*time.Second)
		if err == nil {
			t.Error("settle hid a reading's error")
		}
	})
}

func TestParseMemStats(t *testing.T) {
	var rt Runtime
	parseMemStats("heap profile: ...\n\n# runtime.MemStats\n# HeapIdle = 4399104\n# HeapInuse = 37117952\n# HeapReleased = 1859584\n# Stack = 13008896 / 13008896\n# Sys = 69634328\n# NumGC = 54\n# PauseNs = [1 2 3]\n", &rt)
	want := Runtime{HeapInuse: 37117952, HeapIdle: 4399104, HeapReleased: 1859584, StackInuse: 13008896, Sys: 69634328, NumGC: 54}
	if rt != want {
		t.Errorf("parsed %+v, want %+v", rt, want)
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no binary", Config{}, "binary is not set"},
		{"missing binary", Config{ProxyBin: "/nonexistent/skiff-proxy"}, "no such file"},
		{"zero conns", Config{ProxyBin: proxyBin, Conns: []int{0}}, "at least 1"},
		{"bad kind", Config{ProxyBin: proxyBin, Kinds: []Kind{"h3"}}, "want http1 or h2-mtls"},
		{"not loopback", Config{ProxyBin: proxyBin, SourceAddrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}, "not a loopback"},
		{"gc without pprof", Config{ProxyBin: proxyBin, ForceGC: 2}, "needs ProfileDir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Normalize()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Normalize() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	cfg := Config{ProxyBin: proxyBin}
	if err := cfg.Normalize(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.SourceAddrs) != 31 || cfg.SourceAddrs[0].String() != "127.0.0.10" || cfg.SourceAddrs[30].String() != "127.0.0.40" {
		t.Errorf("default source addresses %v, want 127.0.0.10 to 127.0.0.40", cfg.SourceAddrs)
	}
	if cfg.TargetKiB != 12 || cfg.MaxSettle != 15*time.Second || cfg.WarmUp != DefaultWarmUp {
		t.Errorf("defaults not filled: %+v", cfg)
	}
}

// TestJudge: a figure is a figure only if the proxy kept every
// connection.
func TestJudge(t *testing.T) {
	base := Result{Conns: 1000, Opened: 1000, ProxyOpen: 1000,
		Before: Memory{VmRSSMB: 10, RssAnonMB: 4, PssMB: 9}, After: Memory{VmRSSMB: 20, RssAnonMB: 13, PssMB: 19}}
	r := base
	r.judge(12)
	if r.Verdict != results.Pass || r.RSSKiBPerConn != 10.24 || r.AnonKiBPerConn != 9.22 || r.PSSKiBPerConn != 10.24 {
		t.Errorf("judged %+v", r)
	}
	r = base
	r.judge(10)
	if r.Verdict != results.Fail {
		t.Errorf("10.24 KiB against 10: %s, want fail", r.Verdict)
	}
	r = base
	r.Evicted = 1
	r.judge(12)
	if r.Verdict != results.Error {
		t.Errorf("with an eviction: %s, want error", r.Verdict)
	}
	r = base
	r.ProxyOpen = 999
	r.judge(12)
	if r.Verdict != results.Error {
		t.Errorf("with a connection lost: %s, want error", r.Verdict)
	}
}

func TestReportText(t *testing.T) {
	rep := &Report{TargetKiB: 12, SettleInterval: "1s", SettleTolerance: 0.01, MaxSettle: "15s", MinSettle: "3s", ForceGC: 2, Verdict: results.Fail,
		Results: []Result{{
			Kind: KindHTTP1, Conns: 1000, Opened: 1000, ProxyOpen: 1000, OpenSeconds: 0.8, UpstreamBefore: 4, UpstreamAfter: 4,
			Before:        Memory{VmRSSMB: 8.6, VmHWMMB: 9.1, RssAnonMB: 2.9, RssFileMB: 5.7, PssMB: 8.6, Settled: true, SettleSeconds: 1},
			After:         Memory{VmRSSMB: 29.8, VmHWMMB: 29.8, RssAnonMB: 24.2, RssFileMB: 5.7, PssMB: 29.8, Settled: true, SettleSeconds: 1},
			RSSKiBPerConn: 21.77, AnonKiBPerConn: 21.77, PSSKiBPerConn: 21.77,
			Verdict: results.Fail, Why: "21.77 KiB per connection, over the target of 12 KiB",
		}, {
			Kind: KindH2MTLS, Conns: 100, Opened: 100, ProxyOpen: 97, Evicted: 3,
			Before:  Memory{VmRSSMB: 11.5, Runtime: &Runtime{HeapInuse: 1 << 20, StackInuse: 256 << 10, Goroutines: 16}},
			After:   Memory{VmRSSMB: 16, SettleSeconds: 15, Runtime: &Runtime{HeapInuse: 4 << 20, StackInuse: 1 << 20, Goroutines: 216, NumGC: 3}},
			Verdict: results.Error, Why: "the proxy dropped connections",
		}},
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.golden")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("report text differs from %s (go test -update to accept):\n%s", golden, b.String())
	}
}
