package certs_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
)

// BenchmarkHandshake measures one full mutual TLS 1.3 handshake, both sides
// on this CPU (client and server proxies each pay about half), over net.Pipe
// so that no kernel work is counted: the proxy's CPU cost per new meshed
// connection. "default" is crypto/tls's key exchange (hybrid X25519MLKEM768
// first); "x25519" pins classic X25519 for comparison.
func BenchmarkHandshake(b *testing.B) {
	e := newEnv(b, nil)
	server, client := e.manager(b, web), e.manager(b, app)
	for _, tc := range []struct {
		name   string
		curves []tls.CurveID
	}{{"default", nil}, {"x25519", []tls.CurveID{tls.X25519}}} {
		b.Run(tc.name, func(b *testing.B) {
			scfg := server.ServerTLSConfig()
			scfg.CurvePreferences = tc.curves
			b.ReportAllocs()
			for b.Loop() {
				ccfg := client.ClientTLSConfig(web) // per connection, as the outbound proxy does
				ccfg.CurvePreferences = tc.curves
				c, s := net.Pipe()
				cc, sc := tls.Client(c, ccfg), tls.Server(s, scfg)
				var wg sync.WaitGroup
				var serr error
				wg.Go(func() { _, serr = certs.Handshake(context.Background(), sc) })
				if _, err := certs.Handshake(context.Background(), cc); err != nil {
					b.Fatal(err)
				}
				wg.Wait()
				if serr != nil {
					b.Fatal(serr)
				}
				// Close the pipe, not the TLS conns: their close_notify
				// would wait (up to 5 s) for a reader that net.Pipe lacks.
				c.Close()
				s.Close()
			}
		})
	}
}
