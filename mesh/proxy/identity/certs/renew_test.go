package certs_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// pipeHandshake runs an mTLS handshake over net.Pipe (usable inside a
// synctest bubble, unlike sockets) and returns both ends; it fails the test
// on error. Only for handshakes expected to succeed: net.Pipe has no buffer
// for a rejecting side's alert.
func pipeHandshake(t *testing.T, client *certs.Manager, expected spiffe.ID, server *certs.Manager) (cc, sc *tls.Conn) {
	t.Helper()
	c, s := net.Pipe()
	cc, sc = tls.Client(c, client.ClientTLSConfig(expected)), tls.Server(s, server.ServerTLSConfig())
	var serverErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, serverErr = certs.Handshake(context.Background(), sc) })
	_, clientErr := certs.Handshake(context.Background(), cc)
	wg.Wait()
	if clientErr != nil || serverErr != nil {
		t.Fatalf("handshake: client %v, server %v", clientErr, serverErr)
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	return cc, sc
}

// TestRenewal runs a manager for more than two certificate lifetimes in
// virtual time: it renews at 70 % ± jitter, counts refreshes, serves the new
// certificate to new handshakes, and a connection established before the
// renewal keeps working after it.
//
// Its time.Sleep calls, like TestRetryKeepsCurrent's, are the time under
// test passing on the bubble's clock, not waits for an event: each is
// followed by synctest.Wait, after which every goroutine of the bubble is
// blocked and what the manager did at that instant is settled.
func TestRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil) // time.Now is the bubble's clock
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		// u = 0.75 puts the renewal at 0.7 + 0.1·(2·0.75-1) = 75 %.
		cfg := e.config(web)
		cfg.Float64 = func() float64 { return 0.75 }
		server, err := certs.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		client := e.manager(t, app)
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { server.Run(ctx) })

		if err := server.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		first := server.Certificate()
		if got, want := server.NextRenewal(), start.Add(18*time.Hour); !got.Equal(want) {
			t.Fatalf("NextRenewal = %s, want %s (75%% of 24h)", got, want)
		}
		if got, want := server.Expiry(), start.Add(24*time.Hour); !got.Equal(want) {
			t.Errorf("Expiry = %s, want %s", got, want)
		}

		// A connection established now, with an echo server behind it.
		cc, sc := pipeHandshake(t, client, web, server)
		wg.Go(func() { echo(sc) })
		if err := roundTrip(cc, "before"); err != nil {
			t.Fatal(err)
		}

		// A second before the renewal point: still the first certificate.
		time.Sleep(18*time.Hour - time.Second)
		synctest.Wait()
		if n := server.Refreshes(); n != 1 {
			t.Fatalf("refreshes before the renewal point = %d, want 1", n)
		}
		// Two seconds later: renewed.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := server.Refreshes(); n != 2 {
			t.Fatalf("refreshes after the renewal point = %d, want 2", n)
		}
		second := server.Certificate()
		if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
			t.Fatal("the certificate did not change")
		}
		if got, want := server.Expiry(), start.Add(18*time.Hour+24*time.Hour); got.Before(want) || got.After(want.Add(time.Second)) {
			t.Errorf("Expiry after renewal = %s, want about %s", got, want)
		}
		if server.Failures() != 0 {
			t.Errorf("failures = %d", server.Failures())
		}

		// The established connection is untouched by the rotation.
		if err := roundTrip(cc, "after"); err != nil {
			t.Errorf("established connection after renewal: %v", err)
		}
		// A new handshake presents the new certificate.
		if err := client.Refresh(ctx); err != nil { // the client's own first certificate ages too
			t.Fatal(err)
		}
		cc2, _ := pipeHandshake(t, client, web, server)
		if got := cc2.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(second.Leaf.SerialNumber) != 0 {
			t.Errorf("new handshake saw serial %x, want the renewed %x", got, second.Leaf.SerialNumber)
		}

		// The renewals continue: one more lifetime later, at least one more.
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		if n := server.Refreshes(); n != 3 {
			t.Errorf("refreshes after another day = %d, want 3", n)
		}
		cc.Close()
		cancel()
	})
}

// TestRetryKeepsCurrent makes the control plane fail: the manager retries
// with doubling, capped backoff, keeps presenting its current certificate
// past the renewal point, and recovers when the control plane returns.
func TestRetryKeepsCurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		var down atomic.Bool
		var mu sync.Mutex
		var calls []time.Time
		cfg := e.config(web)
		inner := cfg.Certifier
		cfg.Certifier = certs.CertifierFunc(func(ctx context.Context, csr []byte, id, token string) ([][]byte, time.Time, error) {
			mu.Lock()
			calls = append(calls, time.Now())
			mu.Unlock()
			if down.Load() {
				return nil, time.Time{}, errors.New("identity service unavailable")
			}
			return inner.Certify(ctx, csr, id, token)
		})
		cfg.Float64 = func() float64 { return 0 } // renew at 60 %, waits of d/2
		cfg.MinBackoff, cfg.MaxBackoff = 2*time.Second, 16*time.Second
		server, err := certs.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		client := e.manager(t, app)

		// Down from the start: no certificate, failures accumulate.
		down.Store(true)
		start := time.Now()
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { server.Run(ctx) })
		synctest.Wait()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		mu.Lock()
		var offsets []time.Duration
		for _, c := range calls {
			offsets = append(offsets, c.Sub(start))
		}
		mu.Unlock()
		// Backoff d = 2s, 4s, 8s, ... drawn at d/2: attempts at 0, 1, 3, 7 s.
		want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second}
		if len(offsets) != len(want) {
			t.Fatalf("attempts at %v, want %v", offsets, want)
		}
		for i := range want {
			if offsets[i] != want[i] {
				t.Fatalf("attempts at %v, want %v", offsets, want)
			}
		}
		if server.Certificate() != nil || server.Failures() != 4 {
			t.Fatalf("certificate %v, failures %d", server.Certificate() != nil, server.Failures())
		}

		// Back up: the next retry (at 15 s) obtains a certificate.
		down.Store(false)
		if err := server.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		first := server.Certificate()
		if d := time.Since(start); d != 15*time.Second {
			t.Errorf("recovered after %s, want 15s", d)
		}

		// Down again at the renewal point: the manager keeps the current
		// certificate and keeps serving it.
		down.Store(true)
		time.Sleep(time.Until(server.NextRenewal()) + time.Minute)
		synctest.Wait()
		if server.Failures() <= 4 {
			t.Fatalf("failures = %d, want more after the renewal point", server.Failures())
		}
		if server.Certificate() != first {
			t.Fatal("the current certificate was dropped while renewal failed")
		}
		pipeHandshake(t, client, web, server)

		// The retries are capped at MaxBackoff: 16 s, drawn at 8 s.
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		time.Sleep(80 * time.Second)
		synctest.Wait()
		mu.Lock()
		if got := len(calls) - n; got != 10 {
			t.Errorf("%d attempts in 80 s at the backoff cap, want 10", got)
		}
		mu.Unlock()

		// Recovery installs a new certificate.
		down.Store(false)
		time.Sleep(8 * time.Second)
		synctest.Wait()
		if server.Certificate() == first {
			t.Error("no new certificate after the control plane returned")
		}

		// RenewNow renews at once.
		refreshes := server.Refreshes()
		server.RenewNow()
		synctest.Wait()
		if server.Refreshes() != refreshes+1 {
			t.Errorf("RenewNow: refreshes %d, want %d", server.Refreshes(), refreshes+1)
		}
		cancel()
	})
}
