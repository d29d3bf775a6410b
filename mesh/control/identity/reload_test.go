package identity

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// reloadEnv is a CA loaded from files in a temporary directory, and its
// reloader.
type reloadEnv struct {
	dir               string
	anchor            *ca.KeyPair
	authority         *ca.CA
	r                 *Reloader
	metrics           *prometheus.Registry
	certFile, keyFile string
	anchorsFile       string
}

func newReloadEnv(t *testing.T) *reloadEnv {
	t.Helper()
	e := &reloadEnv{dir: t.TempDir(), metrics: prometheus.NewRegistry()}
	e.certFile, e.keyFile, e.anchorsFile = filepath.Join(e.dir, "issuer.crt"), filepath.Join(e.dir, "issuer.key"), filepath.Join(e.dir, "anchors.pem")
	p := catest.New(t, "cluster.local", catest.Options{})
	e.anchor, e.authority = p.Anchor, p.CA
	if err := p.Issuer.WriteFiles(e.certFile, e.keyFile); err != nil {
		t.Fatal(err)
	}
	e.writeAnchors(t, e.anchor)
	var err error
	e.r, err = NewReloader(ReloaderConfig{
		CA: e.authority, IssuerCert: e.certFile, IssuerKey: e.keyFile, TrustAnchors: e.anchorsFile,
		Interval: 10 * time.Millisecond, Registerer: e.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *reloadEnv) writeAnchors(t *testing.T, anchors ...*ca.KeyPair) {
	t.Helper()
	var pem []byte
	for _, a := range anchors {
		pem = append(pem, spiffe.EncodeCertificatesPEM(a.Cert)...)
	}
	if err := os.WriteFile(e.anchorsFile, pem, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *reloadEnv) counts() (ok, refused float64) {
	return testutil.ToFloat64(e.r.reloads.WithLabelValues("ok")), testutil.ToFloat64(e.r.reloads.WithLabelValues("error"))
}

func (e *reloadEnv) check(t *testing.T, wantChanged bool, wantErr string) {
	t.Helper()
	changed, err := e.r.Check()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("Check: %v", err)
	case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
		t.Fatalf("Check error = %v, want one containing %q", err, wantErr)
	case changed != wantChanged:
		t.Fatalf("Check changed = %v, want %v", changed, wantChanged)
	}
}

// TestReloadRotation walks the rotation procedure of package ca through
// the files alone, as cert-manager or an operator would.
func TestReloadRotation(t *testing.T) {
	leakcheck.Check(t)
	e := newReloadEnv(t)
	e.check(t, false, "") // the files the CA was loaded from: no change

	// Issuer rotation, the certificate file first: for one read the pair
	// does not match, which is refused but not reported.
	i2, err := ca.NewIssuer(e.anchor, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := i2.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	e.check(t, false, "issuer.key")
	if err := os.WriteFile(e.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	e.check(t, true, "")
	if !e.authority.Issuer().Cert.Equal(i2.Cert) {
		t.Fatal("the CA does not sign with the new issuer")
	}
	if ok, refused := e.counts(); ok != 1 || refused != 0 {
		t.Fatalf("reloads ok=%v error=%v, want 1 and 0: a half-written pair is not an error", ok, refused)
	}

	// Anchor rotation step 1: a bundle with both anchors.
	a2, err := ca.NewAnchor("cluster.local", ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.writeAnchors(t, e.anchor, a2)
	e.check(t, true, "")
	if n := testutil.ToFloat64(e.r.anchors); n != 2 {
		t.Fatalf("skiff_identity_trust_anchors = %v, want 2", n)
	}
	// Steps 2 and 4 in one go: an issuer under A2, and A1 leaves the
	// bundle. Each alone would be refused in one of the two orders.
	i3, err := ca.NewIssuer(a2, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := i3.WriteFiles(e.certFile, e.keyFile); err != nil {
		t.Fatal(err)
	}
	e.writeAnchors(t, a2)
	e.check(t, true, "")
	if !e.authority.Issuer().Cert.Equal(i3.Cert) || len(e.authority.Bundle().Anchors()) != 1 || !e.authority.Bundle().Contains(a2.Cert) {
		t.Fatal("the CA did not take the issuer under A2 and the bundle {A2}")
	}
	e.check(t, false, "")
	if ok, refused := e.counts(); ok != 3 || refused != 0 {
		t.Fatalf("reloads ok=%v error=%v, want 3 and 0", ok, refused)
	}
}

// TestReloadRefusals: a state the CA cannot take is refused with the
// reason, reported once it persists, and changes nothing.
func TestReloadRefusals(t *testing.T) {
	leakcheck.Check(t)
	e := newReloadEnv(t)
	before := e.authority.Issuer()

	// A bundle that drops the active issuer's anchor.
	other, err := ca.NewAnchor("cluster.local", ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.writeAnchors(t, other)
	e.check(t, false, "does not chain")
	e.check(t, false, "does not chain") // still so a read later: reported
	e.check(t, false, "does not chain") // and only once
	if _, refused := e.counts(); refused != 1 {
		t.Fatalf("reloads error = %v, want 1", refused)
	}
	if e.authority.Issuer() != before || !e.authority.Bundle().Contains(e.anchor.Cert) {
		t.Fatal("a refused reload changed the CA")
	}

	// Garbage in the anchors file names the file.
	if err := os.WriteFile(e.anchorsFile, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.check(t, false, e.anchorsFile)
	// A missing key file names it.
	if err := os.Remove(e.keyFile); err != nil {
		t.Fatal(err)
	}
	e.check(t, false, e.keyFile)

	// Repaired: the original files again are no change, and no error.
	e.writeAnchors(t, e.anchor)
	_, keyPEM, err := before.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	e.check(t, false, "")
	e.check(t, false, "")
}

// TestReloaderRun: Run follows the files until its context ends.
func TestReloaderRun(t *testing.T) {
	leakcheck.Check(t)
	e := newReloadEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- e.r.Run(ctx) }()
	i2, err := ca.NewIssuer(e.anchor, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := i2.WriteFiles(e.certFile, e.keyFile); err != nil {
		t.Fatal(err)
	}
	for !e.authority.Issuer().Cert.Equal(i2.Cert) {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestNewReloaderValidation(t *testing.T) {
	if _, err := NewReloader(ReloaderConfig{}); err == nil || !strings.Contains(err.Error(), "CA is nil") {
		t.Errorf("no CA: %v", err)
	}
	e := newReloadEnv(t)
	if _, err := NewReloader(ReloaderConfig{CA: e.authority, IssuerCert: "x"}); err == nil || !strings.Contains(err.Error(), "all required") {
		t.Errorf("missing files: %v", err)
	}
}
