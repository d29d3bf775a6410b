package proxy

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/telemetry"
)

// BenchmarkForward measures a request through the proxy over loopback
// (headers copied, hop-by-hop headers stripped, balancer pick, metrics),
// one hop and two hops. Compare with BenchmarkDirect for what the proxy adds.
func BenchmarkForward(b *testing.B) {
	for _, h := range hops {
		b.Run(h.name, func(b *testing.B) {
			m := newMesh(b, h.n)
			benchGET(b, "http://"+m.entry+"/", svcHTTP)
		})
	}
}

// BenchmarkDirect is the same request straight to the backend.
func BenchmarkDirect(b *testing.B) {
	backend := startDemo(b, "direct")
	benchGET(b, "http://"+backend.Addr()+"/", svcHTTP)
}

func benchGET(b *testing.B, url, host string) {
	c := h1Client(b)
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkMetrics is the per-request metrics cost on the hot path.
func BenchmarkMetrics(b *testing.B) {
	r := telemetry.New()
	l := telemetry.HTTPLabels{Direction: "outbound", Authority: "echo.default.svc:8080", TLS: "disabled"}
	resp := telemetry.Response{StatusCode: 200, GRPCStatus: -1, Classification: "success"}
	b.ReportAllocs()
	for b.Loop() {
		r.Request(l)
		r.Response(l, resp, 700*time.Microsecond)
	}
}
