package certs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

const td = "cluster.local"

var (
	web = spiffe.MustNew(td, "shop", "web")
	app = spiffe.MustNew(td, "shop", "app")
	db  = spiffe.MustNew(td, "shop", "db")
)

// env is a control plane: an anchor, an issuer, a token issuer and a CA.
type env struct {
	now    func() time.Time
	anchor *ca.KeyPair
	bundle *spiffe.Bundle
	tokens *ca.HMACTokens
	ca     *ca.CA
}

// newEnv builds a control plane reading the clock now (nil: time.Now).
func newEnv(t testing.TB, now func() time.Time) *env {
	t.Helper()
	if now == nil {
		now = time.Now
	}
	p := catest.New(t, td, catest.Options{Now: now})
	return &env{now: now, anchor: p.Anchor, bundle: p.Bundle, tokens: p.Tokens, ca: p.CA}
}

// certifier is the CA as a Certifier, as the gRPC client will present it.
func (e *env) certifier() certs.Certifier {
	return certs.CertifierFunc(func(ctx context.Context, csr []byte, id, token string) ([][]byte, time.Time, error) {
		c, err := e.ca.Certify(ctx, csr, id, token)
		if err != nil {
			return nil, time.Time{}, err
		}
		return c.Chain, c.NotAfter, nil
	})
}

// config returns a manager configuration for id whose token the simulator
// issues fresh for every request.
func (e *env) config(id spiffe.ID) certs.Config {
	return certs.Config{
		ID:        id,
		Certifier: e.certifier(),
		Bundle:    e.bundle,
		Token:     func(context.Context) (string, error) { return e.tokens.Issue(id, time.Hour) },
		Now:       e.now,
	}
}

// manager returns a manager for id holding its first certificate.
func (e *env) manager(t testing.TB, id spiffe.ID) *certs.Manager {
	t.Helper()
	return newManager(t, e.config(id), true)
}

func newManager(t testing.TB, cfg certs.Config, refresh bool) *certs.Manager {
	t.Helper()
	m, err := certs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if refresh {
		if err := m.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// loopback returns both ends of a TCP connection on 127.0.0.1. Kernel
// buffers let a failing side write its alert without the peer reading,
// which net.Pipe does not.
func loopback(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// result is one side of a handshake.
type result struct {
	id   spiffe.ID
	err  error
	conn *tls.Conn
}

// handshake runs both sides concurrently over conns and, when both
// succeed, checks one round trip of application data.
func handshake(t testing.TB, cc, sc net.Conn, clientCfg, serverCfg *tls.Config) (client, server result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client.conn, server.conn = tls.Client(cc, clientCfg), tls.Server(sc, serverCfg)
	var wg sync.WaitGroup
	wg.Go(func() {
		server.id, server.err = certs.Handshake(ctx, server.conn)
		if server.err != nil {
			return
		}
		// Echo one line: the client learns here of a rejection the
		// server made after the client's handshake had completed.
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server.conn, buf); err == nil {
			server.conn.Write(buf)
		}
	})
	client.id, client.err = certs.Handshake(ctx, client.conn)
	if client.err == nil {
		client.err = roundTrip(client.conn, "ping\n")
	}
	if client.err != nil {
		cc.Close() // unblock a server waiting for data
	}
	wg.Wait()
	return client, server
}

// dial performs a handshake between a client manager expecting expected
// and a server manager, over loopback.
func dial(t testing.TB, client *certs.Manager, expected spiffe.ID, server *certs.Manager) (result, result) {
	t.Helper()
	cc, sc := loopback(t)
	return handshake(t, cc, sc, client.ClientTLSConfig(expected), server.ServerTLSConfig())
}

func TestMTLS(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	server, client := e.manager(t, web), e.manager(t, app)
	c, s := dial(t, client, web, server)
	if c.err != nil || s.err != nil {
		t.Fatalf("client err %v, server err %v", c.err, s.err)
	}
	if c.id != web {
		t.Errorf("client sees server %s, want %s", c.id, web)
	}
	if s.id != app {
		t.Errorf("server sees client %s, want %s", s.id, app)
	}
	if id, err := certs.PeerID(s.conn.ConnectionState()); err != nil || id != app {
		t.Errorf("PeerID = %s, %v", id, err)
	}
	st := c.conn.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", st.Version)
	}
	if st.DidResume {
		t.Error("resumed a session")
	}
}

func TestWrongExpectedIdentity(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	server, client := e.manager(t, web), e.manager(t, app)
	c, s := dial(t, client, db, server)
	if !errors.Is(c.err, certs.ErrIdentityMismatch) {
		t.Fatalf("client err = %v, want ErrIdentityMismatch", c.err)
	}
	var mm *certs.MismatchError
	if !errors.As(c.err, &mm) || mm.Want != db || mm.Got != web {
		t.Errorf("client err = %#v, want MismatchError{db, web}", c.err)
	}
	if s.err == nil {
		t.Error("server completed a handshake the client rejected")
	}
	t.Logf("client: %v\nserver: %v", c.err, s.err)

	if c, _ := dial(t, client, spiffe.ID{}, server); !errors.Is(c.err, certs.ErrNoExpectedIdentity) {
		t.Errorf("zero expected identity: err = %v", c.err)
	}
}

func TestOtherRootRejected(t *testing.T) {
	leakcheck.Check(t)
	a, b := newEnv(t, nil), newEnv(t, nil)
	server := a.manager(t, web)

	// A client of another mesh rejects the server.
	foreign := b.manager(t, app)
	c, _ := dial(t, foreign, web, server)
	if !errors.Is(c.err, spiffe.ErrUntrusted) {
		t.Errorf("client from another root: err = %v, want ErrUntrusted", c.err)
	}
	t.Logf("client: %v", c.err)

	// A client with a certificate from another root that trusts the server
	// is rejected by the server.
	both, err := b.bundle.With(a.anchor.Cert)
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.config(app)
	cfg.Bundle = both
	intruder := newManager(t, cfg, true)
	c, s := dial(t, intruder, web, server)
	if !errors.Is(s.err, spiffe.ErrUntrusted) {
		t.Errorf("server: err = %v, want ErrUntrusted", s.err)
	}
	if c.err == nil {
		t.Error("client exchanged data with a server that rejected it")
	}
	t.Logf("server: %v\nclient: %v", s.err, c.err)
}

// offsetClock is time.Now plus an adjustable offset.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *offsetClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

func TestExpiredRejected(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	var serverClock offsetClock
	cfg := e.config(web)
	cfg.Now = serverClock.Now
	server := newManager(t, cfg, true)
	client := e.manager(t, app)

	// Accepted now (and remembered as verified)...
	if c, s := dial(t, client, web, server); c.err != nil || s.err != nil {
		t.Fatalf("fresh certificates: %v / %v", c.err, s.err)
	}
	// ...but 25 hours later by the server's clock the client's certificate
	// (and, by the same clock, the server's own) has expired.
	serverClock.Advance(25 * time.Hour)
	c, s := dial(t, client, web, server)
	if !errors.Is(s.err, spiffe.ErrExpired) {
		t.Errorf("server: err = %v, want ErrExpired", s.err)
	}
	if c.err == nil {
		t.Error("client exchanged data with a server that rejected it")
	}
	t.Logf("server: %v", s.err)

	// The client, 25 hours ahead, rejects the server's expired certificate.
	var clientClock offsetClock
	ccfg := e.config(db)
	ccfg.Now = clientClock.Now
	late := newManager(t, ccfg, true)
	clientClock.Advance(25 * time.Hour)
	serverClock.Advance(-25 * time.Hour)
	c, _ = dial(t, late, web, server)
	if !errors.Is(c.err, spiffe.ErrExpired) {
		t.Errorf("client: err = %v, want ErrExpired", c.err)
	}
}

func TestPlaintextPeersRejected(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	server, client := e.manager(t, web), e.manager(t, app)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A plaintext client.
	cc, sc := loopback(t)
	go func(cc net.Conn) { cc.Write([]byte("GET / HTTP/1.1\r\nHost: web\r\n\r\n")) }(cc)
	_, err := certs.Handshake(ctx, tls.Server(sc, server.ServerTLSConfig()))
	if !errors.Is(err, certs.ErrNotTLS) {
		t.Errorf("plaintext client: err = %v, want ErrNotTLS", err)
	}
	t.Logf("plaintext client: %v", err)

	// A TLS client without a certificate.
	cc, sc = loopback(t)
	go func(cc net.Conn) {
		conn := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if conn.HandshakeContext(ctx) == nil {
			conn.Read(make([]byte, 1)) // receives the server's alert
		}
		cc.Close()
	}(cc)
	_, err = certs.Handshake(ctx, tls.Server(sc, server.ServerTLSConfig()))
	if !errors.Is(err, spiffe.ErrNoCertificate) {
		t.Errorf("client without certificate: err = %v, want ErrNoCertificate", err)
	}
	t.Logf("client without certificate: %v", err)

	// A plaintext server.
	cc, sc = loopback(t)
	go func(sc net.Conn) {
		sc.Read(make([]byte, 1024))
		sc.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
	}(sc)
	_, err = certs.Handshake(ctx, tls.Client(cc, client.ClientTLSConfig(web)))
	if !errors.Is(err, certs.ErrNotTLS) {
		t.Errorf("plaintext server: err = %v, want ErrNotTLS", err)
	}

	// A TLS 1.2-only client.
	cc, sc = loopback(t)
	old := client.ClientTLSConfig(web)
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	c, s := handshake(t, cc, sc, old, server.ServerTLSConfig())
	if c.err == nil || s.err == nil {
		t.Errorf("TLS 1.2: client err %v, server err %v; want both to fail", c.err, s.err)
	}
}

func TestNotReady(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	server := newManager(t, e.config(web), false)
	client := e.manager(t, app)
	if server.Certificate() != nil || !server.Expiry().IsZero() {
		t.Fatal("a certificate before the first refresh")
	}
	_, s := dial(t, client, web, server)
	if !errors.Is(s.err, certs.ErrNotReady) {
		t.Errorf("server err = %v, want ErrNotReady", s.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := server.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady = %v", err)
	}
	// After a failed attempt, giving up says why the attempt failed.
	cfg := e.config(db)
	cfg.Token = func(context.Context) (string, error) { return "", errors.New("token file missing") }
	failing := newManager(t, cfg, false)
	if err := failing.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh without a token succeeded")
	}
	err := failing.WaitReady(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "the last attempt failed") || !strings.Contains(err.Error(), "token file missing") {
		t.Errorf("WaitReady after a failure = %v, want the deadline and the failure's reason", err)
	}
	if failing.LastError() == nil {
		t.Error("LastError is nil after a failed attempt")
	}
	if err := server.Refresh(context.Background()); err != nil || server.LastError() != nil {
		t.Errorf("after a success: Refresh %v, LastError %v", err, server.LastError())
	}
}

// TestRenewalWindow checks the renewal point: 70 % of the lifetime, ±10 %
// of it by jitter.
func TestRenewalWindow(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	e := newEnv(t, clock)
	for _, tc := range []struct{ u, want float64 }{{0, 0.6}, {0.5, 0.7}, {0.75, 0.75}, {0.999999, 0.8}} {
		cfg := e.config(web)
		cfg.Float64 = func() float64 { return tc.u }
		m := newManager(t, cfg, true)
		lifetime := m.Expiry().Sub(now)
		if lifetime != 24*time.Hour {
			t.Fatalf("lifetime %s, want 24h", lifetime)
		}
		got := float64(m.NextRenewal().Sub(now)) / float64(lifetime)
		if got < tc.want-1e-4 || got > tc.want+1e-4 {
			t.Errorf("u=%v: renewal at %.4f of the lifetime, want %.2f", tc.u, got, tc.want)
		}
	}
	cfg := e.config(web)
	cfg.RenewAt, cfg.Jitter = 0.95, 0.1
	if _, err := certs.New(cfg); err == nil {
		t.Error("a renewal window past the lifetime was accepted")
	}
}

func TestRejectsBadCertificates(t *testing.T) {
	e, other := newEnv(t, nil), newEnv(t, nil)
	cases := map[string]certs.CertifierFunc{
		"for another key": func(ctx context.Context, csr []byte, id, token string) ([][]byte, time.Time, error) {
			// The certificate of another workload, with its key.
			m := newManager(t, e.config(db), true)
			return m.Certificate().Certificate, m.Expiry(), nil
		},
		"naming another identity": func(ctx context.Context, csrDER []byte, id, token string) ([][]byte, time.Time, error) {
			// A rogue signer: our key, the real issuer, another identity.
			csr, err := x509.ParseCertificateRequest(csrDER)
			if err != nil {
				return nil, time.Time{}, err
			}
			iss := e.ca.Issuer()
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
				URIs: []*url.URL{db.URL()}, KeyUsage: x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, csr.PublicKey, iss.Key)
			return [][]byte{der, iss.Cert.Raw}, tmpl.NotAfter, err
		},
		"from another root": func(ctx context.Context, csr []byte, id, token string) ([][]byte, time.Time, error) {
			tok, _ := other.tokens.Issue(web, time.Hour)
			c, err := other.ca.Certify(ctx, csr, id, tok)
			if err != nil {
				return nil, time.Time{}, err
			}
			return c.Chain, c.NotAfter, nil
		},
		"garbage": func(context.Context, []byte, string, string) ([][]byte, time.Time, error) {
			return [][]byte{[]byte("junk")}, time.Now().Add(time.Hour), nil
		},
		"empty": func(context.Context, []byte, string, string) ([][]byte, time.Time, error) {
			return nil, time.Now().Add(time.Hour), nil
		},
	}
	for name, f := range cases {
		cfg := e.config(web)
		cfg.Certifier = f
		m := newManager(t, cfg, false)
		err := m.Refresh(context.Background())
		if err == nil {
			t.Errorf("%s: installed", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if m.Certificate() != nil || m.Failures() != 1 || m.Refreshes() != 0 {
			t.Errorf("%s: certificate %v, failures %d, refreshes %d", name, m.Certificate() != nil, m.Failures(), m.Refreshes())
		}
	}
}

// TestAnchorRotation walks the anchor rotation with real handshakes: leaves
// from the old and the new anchor interoperate under a bundle holding both,
// and a leaf from the old anchor is rejected once that anchor leaves the
// bundle.
func TestAnchorRotation(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	a2, err := ca.NewAnchor(td, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	i2, err := ca.NewIssuer(a2, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	both, err := e.bundle.With(a2.Cert)
	if err != nil {
		t.Fatal(err)
	}
	onlyA2, err := both.Without(e.anchor.Cert)
	if err != nil {
		t.Fatal(err)
	}

	// Step 1: the bundle with both anchors reaches the CA and the proxies.
	if err := e.ca.SetBundle(both); err != nil {
		t.Fatal(err)
	}
	oldServer := e.manager(t, web) // leaf from A1
	if err := oldServer.SetBundle(both); err != nil {
		t.Fatal(err)
	}
	// Step 2: the CA switches to the issuer under A2.
	if err := e.ca.SetIssuer(i2); err != nil {
		t.Fatal(err)
	}
	cfg := e.config(app)
	cfg.Bundle = both
	newClient := newManager(t, cfg, true) // leaf from A2
	c, s := dial(t, newClient, web, oldServer)
	if c.err != nil || s.err != nil {
		t.Fatalf("A2 client to A1 server under both anchors: %v / %v", c.err, s.err)
	}

	// Step 4 on the client only: the A1 server is now rejected.
	if err := newClient.SetBundle(onlyA2); err != nil {
		t.Fatal(err)
	}
	c, _ = dial(t, newClient, web, oldServer)
	if !errors.Is(c.err, spiffe.ErrUntrusted) {
		t.Errorf("A1 server after A1 left the bundle: err = %v, want ErrUntrusted", c.err)
	}
	// The server renews (under A2) and is trusted again.
	if err := oldServer.SetBundle(onlyA2); err != nil {
		t.Fatal(err)
	}
	if err := oldServer.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, s := dial(t, newClient, web, oldServer); c.err != nil || s.err != nil {
		t.Errorf("after renewal under A2: %v / %v", c.err, s.err)
	}
	if err := oldServer.SetBundle(e.bundle); err != nil {
		t.Fatal(err) // a bundle without the current anchor is accepted; renewal is then requested
	}
	wrongTD, _ := spiffe.NewBundle("other.domain", a2.Cert)
	if err := oldServer.SetBundle(wrongTD); err == nil {
		t.Error("a bundle of another trust domain was accepted")
	}
}

func TestNewValidation(t *testing.T) {
	e := newEnv(t, nil)
	base := e.config(web)
	for name, mutate := range map[string]func(*certs.Config){
		"zero ID":         func(c *certs.Config) { c.ID = spiffe.ID{} },
		"no certifier":    func(c *certs.Config) { c.Certifier = nil },
		"no bundle":       func(c *certs.Config) { c.Bundle = nil },
		"bundle mismatch": func(c *certs.Config) { c.ID = spiffe.MustNew("other.domain", "a", "b") },
	} {
		cfg := base
		mutate(&cfg)
		if _, err := certs.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// echo serves one connection: it copies everything back until EOF.
func echo(conn net.Conn) {
	io.Copy(conn, conn)
	conn.Close()
}

// roundTrip writes msg on conn and reads it back.
func roundTrip(conn net.Conn, msg string) error {
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, []byte(msg)) {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}
