package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

const td = "cluster.local"

var (
	web = spiffe.MustNew(td, "shop", "web")
	db  = spiffe.MustNew(td, "shop", "db")
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

// fixture is an anchor, an issuer, a token issuer and a CA over them.
type fixture struct {
	clock  *clock
	anchor *ca.KeyPair
	issuer *ca.KeyPair
	bundle *spiffe.Bundle
	tokens *ca.HMACTokens
	ca     *ca.CA
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	opts := ca.Options{Now: f.clock.Now}
	var err error
	if f.anchor, err = ca.NewAnchor(td, opts); err != nil {
		t.Fatal(err)
	}
	if f.issuer, err = ca.NewIssuer(f.anchor, opts); err != nil {
		t.Fatal(err)
	}
	if f.bundle, err = spiffe.NewBundle(td, f.anchor.Cert); err != nil {
		t.Fatal(err)
	}
	key, err := ca.NewHMACKey()
	if err != nil {
		t.Fatal(err)
	}
	if f.tokens, err = ca.NewHMACTokens(key, f.clock.Now); err != nil {
		t.Fatal(err)
	}
	if f.ca, err = ca.New(ca.Config{Issuer: f.issuer, Bundle: f.bundle, Tokens: f.tokens, Now: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) token(t testing.TB, id spiffe.ID) string {
	t.Helper()
	tok, err := f.tokens.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// csrFor builds a CSR with the given key and SANs.
func csrFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrForID(t testing.TB, id spiffe.ID) []byte {
	return csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{id.URL()}})
}

func (f *fixture) verify(t testing.TB, c *ca.Certificate, b *spiffe.Bundle) (spiffe.ID, error) {
	t.Helper()
	chain := make([]*x509.Certificate, len(c.Chain))
	for i, der := range c.Chain {
		var err error
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	}
	return b.Verify(chain, f.clock.Now(), x509.ExtKeyUsageServerAuth)
}

func TestCertify(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	c, err := f.ca.Certify(context.Background(), csrForID(t, web), web.String(), f.token(t, web))
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != web.String() {
		t.Errorf("URI SANs = %v, want [%s]", leaf.URIs, web)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("unexpected SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if got, want := leaf.NotBefore, now.Add(-ca.DefaultClockSkew); !got.Equal(want) {
		t.Errorf("NotBefore = %s, want %s (now - 20s)", got, want)
	}
	if got, want := leaf.NotAfter, now.Add(24*time.Hour); !got.Equal(want) || !c.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s (result %s), want %s", got, c.NotAfter, want)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature only", leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v, want serverAuth, clientAuth", leaf.ExtKeyUsage)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Error("leaf must carry basicConstraints CA:false")
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("leaf key is %T", leaf.PublicKey)
	}
	if len(c.Chain) != 2 || !f.issuer.Cert.Equal(mustParse(t, c.Chain[1])) {
		t.Errorf("chain has %d certificates, want leaf + issuer", len(c.Chain))
	}
	if got, err := f.verify(t, c, f.bundle); err != nil || got != web {
		t.Errorf("verify under the bundle: %v, %v", got, err)
	}
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertifyRejects(t *testing.T) {
	f := newFixture(t)
	good := csrForID(t, web)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 0x01 // inside the signature BIT STRING
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	expired := f.token(t, web)
	other, err := ca.NewHMACTokens(make([]byte, 32), f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Issue(web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		csr       []byte
		id, token string
		advance   time.Duration // clock moves before the call
		want      error
		class     ca.Class
		mention   string
	}{
		{"bad CSR signature", tampered, web.String(), f.token(t, web), 0, ca.ErrCSRSignature, ca.ClassInvalidArgument, "signature"},
		{"token for another identity", good, web.String(), f.token(t, db), 0, ca.ErrIdentityMismatch, ca.ClassPermissionDenied, "token proves " + db.String()},
		{"CSR for another identity", csrForID(t, db), web.String(), f.token(t, web), 0, ca.ErrIdentityMismatch, ca.ClassPermissionDenied, "CSR asks for " + db.String()},
		{"expired token", good, web.String(), expired, 2 * time.Hour, ca.ErrExpiredToken, ca.ClassUnauthenticated, "expired at"},
		{"forged token", good, web.String(), forged, 0, ca.ErrInvalidToken, ca.ClassUnauthenticated, "bad signature"},
		{"no token", good, web.String(), "", 0, ca.ErrInvalidToken, ca.ClassUnauthenticated, "no token"},
		{"garbage token", good, web.String(), "skiff1.e30.AAAA", 0, ca.ErrInvalidToken, ca.ClassUnauthenticated, "signature"},
		{"RSA key", csrFor(t, rsaKey, &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}), web.String(), f.token(t, web), 0, ca.ErrUnsupportedKey, ca.ClassInvalidArgument, "RSA 2048"},
		{"P-384 key", csrFor(t, p384, &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}), web.String(), f.token(t, web), 0, ca.ErrUnsupportedKey, ca.ClassInvalidArgument, "ECDSA P-384"},
		{"Ed25519 key", csrFor(t, edKey, &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}), web.String(), f.token(t, web), 0, ca.ErrUnsupportedKey, ca.ClassInvalidArgument, "Ed25519"},
		{"malformed CSR", []byte("not a CSR"), web.String(), f.token(t, web), 0, ca.ErrMalformedCSR, ca.ClassInvalidArgument, "PKCS #10"},
		{"huge CSR", make([]byte, ca.MaxCSRSize+1), web.String(), f.token(t, web), 0, ca.ErrMalformedCSR, ca.ClassInvalidArgument, "limit"},
		{"invalid requested ID", good, "spiffe://cluster.local/web", f.token(t, web), 0, ca.ErrInvalidID, ca.ClassInvalidArgument, "path must be"},
		{"other trust domain", good, "spiffe://other.domain/ns/shop/sa/web", f.token(t, web), 0, ca.ErrInvalidID, ca.ClassInvalidArgument, "this CA issues for"},
		{"DNS SAN", csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}, DNSNames: []string{"web.shop.svc"}}), web.String(), f.token(t, web), 0, ca.ErrCSRNames, ca.ClassInvalidArgument, "SPIFFE-only"},
		{"IP SAN", csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), web.String(), f.token(t, web), 0, ca.ErrCSRNames, ca.ClassInvalidArgument, "10.0.0.1"},
		{"e-mail SAN", csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}, EmailAddresses: []string{"a@b.c"}}), web.String(), f.token(t, web), 0, ca.ErrCSRNames, ca.ClassInvalidArgument, "e-mail"},
		{"no URI SAN", csrFor(t, p256(t), &x509.CertificateRequest{}), web.String(), f.token(t, web), 0, ca.ErrCSRNames, ca.ClassInvalidArgument, "0 URI SANs"},
		{"two URI SANs", csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL(), db.URL()}}), web.String(), f.token(t, web), 0, ca.ErrCSRNames, ca.ClassInvalidArgument, "2 URI SANs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.clock.Advance(tc.advance)
			defer f.clock.Advance(-tc.advance)
			c, err := f.ca.Certify(context.Background(), tc.csr, tc.id, tc.token)
			if err == nil {
				t.Fatalf("certified %s, want %v", c.Leaf.URIs, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			var rej *ca.RejectError
			if !errors.As(err, &rej) || !errors.Is(rej.Reason, tc.want) {
				t.Errorf("err = %#v, want a *RejectError with reason %v", err, tc.want)
			}
			if got := ca.ClassOf(err); got != tc.class {
				t.Errorf("ClassOf = %v, want %v", got, tc.class)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

// opaqueVerifier fails with an error that wraps no sentinel of package ca.
type opaqueVerifier struct{}

func (opaqueVerifier) Verify(context.Context, string) (string, error) {
	return "", errors.New("TokenReview: connection refused: " + ca.ErrVerifierUnavailable.Error())
}

// downVerifier is a TokenVerifier whose backend is down.
type downVerifier struct{}

func (downVerifier) Verify(context.Context, string) (string, error) {
	return "", errors.Join(ca.ErrVerifierUnavailable, errors.New("dial kube-apiserver: connection refused"))
}

func TestCertifyVerifierErrors(t *testing.T) {
	f := newFixture(t)
	down, err := ca.New(ca.Config{Issuer: f.issuer, Bundle: f.bundle, Tokens: downVerifier{}, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = down.Certify(context.Background(), csrForID(t, web), web.String(), "tok")
	if ca.ClassOf(err) != ca.ClassUnavailable {
		t.Errorf("backend down: %v classed %v, want Unavailable", err, ca.ClassOf(err))
	}
	// A verifier error that does not wrap a known sentinel is an invalid
	// token, whatever it says.
	plain, _ := ca.New(ca.Config{Issuer: f.issuer, Bundle: f.bundle, Tokens: opaqueVerifier{}, Now: f.clock.Now})
	if _, err := plain.Certify(context.Background(), csrForID(t, web), web.String(), "tok"); !errors.Is(err, ca.ErrInvalidToken) {
		t.Errorf("unwrapped verifier error: %v, want ErrInvalidToken", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.ca.Certify(ctx, csrForID(t, web), web.String(), f.token(t, web)); ca.ClassOf(err) != ca.ClassCanceled {
		t.Errorf("canceled: %v classed %v, want Canceled", err, ca.ClassOf(err))
	}
}

func TestCertifyAllowExtraSANs(t *testing.T) {
	f := newFixture(t)
	c, err := ca.New(ca.Config{Issuer: f.issuer, Bundle: f.bundle, Tokens: f.tokens, Now: f.clock.Now, AllowExtraSANs: true})
	if err != nil {
		t.Fatal(err)
	}
	csr := csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}, DNSNames: []string{"web.shop.svc"}})
	cert, err := c.Certify(context.Background(), csr, web.String(), f.token(t, web))
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Leaf.DNSNames) != 1 || cert.Leaf.DNSNames[0] != "web.shop.svc" {
		t.Errorf("DNSNames = %v", cert.Leaf.DNSNames)
	}
}

func TestLeafLifetimeCappedByIssuer(t *testing.T) {
	f := newFixture(t)
	// Move to 2 hours before the issuer expires: the leaf ends with it.
	f.clock.t = f.issuer.Cert.NotAfter.Add(-2 * time.Hour)
	// The token is issued at the new time.
	c, err := f.ca.Certify(context.Background(), csrForID(t, web), web.String(), f.token(t, web))
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotAfter.Equal(f.issuer.Cert.NotAfter) {
		t.Errorf("leaf NotAfter = %s, want the issuer's %s", c.NotAfter, f.issuer.Cert.NotAfter)
	}
	if !f.ca.IssuerNotAfter().Equal(f.issuer.Cert.NotAfter) {
		t.Errorf("IssuerNotAfter = %s, want %s", f.ca.IssuerNotAfter(), f.issuer.Cert.NotAfter)
	}
	f.clock.t = f.issuer.Cert.NotAfter.Add(time.Second)
	_, err = f.ca.Certify(context.Background(), csrForID(t, web), web.String(), f.token(t, web))
	if !errors.Is(err, ca.ErrIssuerExpired) || ca.ClassOf(err) != ca.ClassFailedPrecondition {
		t.Errorf("expired issuer: err = %v (%v), want ErrIssuerExpired", err, ca.ClassOf(err))
	}
}

func TestHierarchy(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	a, i := f.anchor.Cert, f.issuer.Cert
	if !a.IsCA || a.MaxPathLen != 1 || !a.NotAfter.Equal(now.Add(ca.DefaultAnchorLifetime)) {
		t.Errorf("anchor: IsCA %v MaxPathLen %d NotAfter %s", a.IsCA, a.MaxPathLen, a.NotAfter)
	}
	if !i.IsCA || i.MaxPathLen != 0 || !i.MaxPathLenZero || !i.NotAfter.Equal(now.Add(ca.DefaultIssuerLifetime)) {
		t.Errorf("issuer: IsCA %v MaxPathLen %d NotAfter %s", i.IsCA, i.MaxPathLen, i.NotAfter)
	}
	if err := i.CheckSignatureFrom(a); err != nil {
		t.Errorf("issuer not signed by anchor: %v", err)
	}
	if _, ok := a.PublicKey.(*ecdsa.PublicKey); !ok || a.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Error("anchor key is not P-256")
	}
	if len(a.URIs) != 1 || a.URIs[0].String() != "spiffe://"+td {
		t.Errorf("anchor URIs = %v", a.URIs)
	}
	// An issuer never outlives its anchor.
	long, err := ca.NewIssuer(f.anchor, ca.Options{Now: f.clock.Now, Lifetime: 10 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !long.Cert.NotAfter.Equal(a.NotAfter) {
		t.Errorf("issuer NotAfter %s exceeds anchor's %s", long.Cert.NotAfter, a.NotAfter)
	}
	if _, err := ca.NewAnchor("Bad Domain", ca.Options{}); err == nil {
		t.Error("NewAnchor accepted an invalid trust domain")
	}
}

// TestIssuerRotation runs both rotations: issuer under the same anchor, and
// anchor A1 -> A2 through a bundle holding both.
func TestIssuerRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	certify := func() *ca.Certificate {
		t.Helper()
		c, err := f.ca.Certify(ctx, csrForID(t, web), web.String(), f.token(t, web))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := certify()

	// Issuer rotation under the same anchor: nothing else changes.
	i2, err := ca.NewIssuer(f.anchor, ca.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SetIssuer(i2); err != nil {
		t.Fatal(err)
	}
	sameAnchor := certify()
	if !mustParse(t, sameAnchor.Chain[1]).Equal(i2.Cert) {
		t.Error("the new leaf is not signed by the new issuer")
	}
	for _, c := range []*ca.Certificate{old, sameAnchor} {
		if _, err := f.verify(t, c, f.bundle); err != nil {
			t.Errorf("after issuer rotation: %v", err)
		}
	}

	// Anchor rotation. An issuer from an anchor not in the bundle is refused.
	a2, err := ca.NewAnchor(td, ca.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	i3, err := ca.NewIssuer(a2, ca.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SetIssuer(i3); err == nil || !strings.Contains(err.Error(), "add its anchor to the bundle first") {
		t.Fatalf("SetIssuer before the bundle holds its anchor: %v", err)
	}
	// Step 1: a bundle with both anchors.
	both, err := f.bundle.With(a2.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SetBundle(both); err != nil {
		t.Fatal(err)
	}
	// Step 2: switch to the issuer signed by A2.
	if err := f.ca.SetIssuer(i3); err != nil {
		t.Fatal(err)
	}
	fromA2 := certify()
	for name, c := range map[string]*ca.Certificate{"A1 leaf": old, "A1 leaf, 2nd issuer": sameAnchor, "A2 leaf": fromA2} {
		if _, err := f.verify(t, c, both); err != nil {
			t.Errorf("%s under a bundle with both anchors: %v", name, err)
		}
	}
	// Step 4: A1 leaves the bundle. The CA refuses it while its issuer
	// chained to A1, and accepts it now.
	onlyA2, err := both.Without(f.anchor.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SetIssuer(i2); err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SetBundle(onlyA2); err == nil {
		t.Error("SetBundle dropped the anchor of the active issuer")
	}
	if err := f.ca.SetIssuer(i3); err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SetBundle(onlyA2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verify(t, fromA2, onlyA2); err != nil {
		t.Errorf("A2 leaf after A1 removed: %v", err)
	}
	if _, err := f.verify(t, old, onlyA2); !errors.Is(err, spiffe.ErrUntrusted) {
		t.Errorf("A1 leaf after A1 removed: err = %v, want ErrUntrusted", err)
	}
	if _, err := f.ca.Certify(ctx, csrForID(t, web), web.String(), f.token(t, web)); err != nil {
		t.Errorf("certify after the rotation: %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	f := newFixture(t)
	otherAnchor, _ := ca.NewAnchor(td, ca.Options{Now: f.clock.Now})
	otherBundle, _ := spiffe.NewBundle(td, otherAnchor.Cert)
	foreign, _ := spiffe.NewBundle("other.domain", f.anchor.Cert)
	leafLike := &ca.KeyPair{Cert: f.issuer.Cert, Key: p256(t)}
	cases := map[string]ca.Config{
		"no tokens":            {Issuer: f.issuer, Bundle: f.bundle},
		"no bundle":            {Issuer: f.issuer, Tokens: f.tokens},
		"no issuer":            {Bundle: f.bundle, Tokens: f.tokens},
		"untrusted issuer":     {Issuer: f.issuer, Bundle: otherBundle, Tokens: f.tokens},
		"bundle of another td": {Issuer: f.issuer, Bundle: foreign, Tokens: f.tokens},
		"key mismatch":         {Issuer: leafLike, Bundle: f.bundle, Tokens: f.tokens},
	}
	for name, cfg := range cases {
		cfg.Now = f.clock.Now
		if _, err := ca.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	f.clock.t = f.issuer.Cert.NotAfter.Add(time.Hour)
	if _, err := ca.New(ca.Config{Issuer: f.issuer, Bundle: f.bundle, Tokens: f.tokens, Now: f.clock.Now}); !errors.Is(err, ca.ErrIssuerExpired) {
		t.Errorf("expired issuer: err = %v, want ErrIssuerExpired", err)
	}
}

func TestKeyPairPEM(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	for name, kp := range map[string]*ca.KeyPair{"anchor": f.anchor, "issuer": f.issuer} {
		certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		if err := kp.WriteFiles(certFile, keyFile); err != nil {
			t.Fatal(err)
		}
		got, err := ca.LoadKeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Cert.Equal(kp.Cert) || !got.Key.Public().(*ecdsa.PublicKey).Equal(kp.Key.Public()) {
			t.Errorf("%s: round trip changed the key pair", name)
		}
	}
	// A loaded issuer signs leaves the original anchor verifies.
	loaded, err := ca.LoadKeyPair(filepath.Join(dir, "issuer.crt"), filepath.Join(dir, "issuer.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(ca.Config{Issuer: loaded, Bundle: f.bundle, Tokens: f.tokens, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Certify(context.Background(), csrForID(t, web), web.String(), f.token(t, web)); err != nil {
		t.Fatal(err)
	}

	certPEM, _, err := f.issuer.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := f.anchor.MarshalPEM()
	if _, err := ca.ParseKeyPairPEM(certPEM, otherKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: err = %v", err)
	}
}

// An issuer below another issuer carries its parent in Chain, but the
// parent's path length (0) forbids it, so the CA refuses it rather than
// hand out leaves no proxy would accept.
func TestIssuerBelowIssuerRefused(t *testing.T) {
	f := newFixture(t)
	mid, err := ca.NewIssuer(f.anchor, ca.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	below, err := ca.NewIssuer(mid, ca.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if len(below.Chain) != 1 || !below.Chain[0].Equal(mid.Cert) {
		t.Fatalf("chain of an issuer below an intermediate = %d certs", len(below.Chain))
	}
	if err := f.ca.SetIssuer(below); err == nil {
		t.Error("SetIssuer accepted an issuer that violates its parent's path length")
	}
}

func TestHMACTokens(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	key, _ := ca.NewHMACKey()
	h, err := ca.NewHMACTokens(key, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := h.Issue(web, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := h.Verify(context.Background(), tok); err != nil || id != web.String() {
		t.Fatalf("Verify = %q, %v", id, err)
	}
	bad := []string{
		"", "x", "skiff1.", "skiff1.abc", tok + "A", tok[:len(tok)-2], strings.Replace(tok, "skiff1.", "skiff1.e", 1),
		strings.Repeat("a", 5000),
	}
	for _, b := range bad {
		if _, err := h.Verify(context.Background(), b); !errors.Is(err, ca.ErrInvalidToken) {
			t.Errorf("Verify(%.40q) = %v, want ErrInvalidToken", b, err)
		}
	}
	c.Advance(time.Minute)
	if _, err := h.Verify(context.Background(), tok); !errors.Is(err, ca.ErrExpiredToken) {
		t.Errorf("expired: %v", err)
	}
	if _, err := ca.NewHMACTokens(make([]byte, 16), nil); err == nil {
		t.Error("short key accepted")
	}
	if _, err := h.Issue(spiffe.ID{}, time.Minute); err == nil {
		t.Error("issued a token for the zero ID")
	}
}

func TestClassString(t *testing.T) {
	if ca.ClassPermissionDenied.String() != "PermissionDenied" || ca.ClassOf(nil) != ca.ClassInternal {
		t.Error("Class names")
	}
}

// TestSetPair: one reload may bring an issuer under a new anchor and a
// bundle that drops the old one. Each single step refuses half of that
// change; Set takes it whole, and refuses a pair that does not chain.
func TestSetPair(t *testing.T) {
	f := newFixture(t)
	a2, err := ca.NewAnchor(td, ca.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	i2, err := ca.NewIssuer(a2, ca.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	onlyA2, err := spiffe.NewBundle(td, a2.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SetIssuer(i2); err == nil {
		t.Fatal("SetIssuer took an issuer its bundle does not trust")
	}
	if err := f.ca.SetBundle(onlyA2); err == nil {
		t.Fatal("SetBundle dropped the anchor of the active issuer")
	}
	// A mismatched pair is refused and changes nothing.
	if err := f.ca.Set(i2, f.bundle); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("Set(issuer under A2, bundle {A1}) = %v, want a chain error", err)
	}
	if f.ca.Issuer() != f.issuer || f.ca.Bundle() != f.bundle {
		t.Fatal("a refused Set changed the CA")
	}
	if err := f.ca.Set(nil, onlyA2); err == nil {
		t.Error("Set took a nil issuer")
	}
	if err := f.ca.Set(i2, onlyA2); err != nil {
		t.Fatal(err)
	}
	c, err := f.ca.Certify(context.Background(), csrForID(t, web), web.String(), f.token(t, web))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.verify(t, c, onlyA2); err != nil {
		t.Errorf("leaf after Set: %v", err)
	}
}

func TestIssueServing(t *testing.T) {
	f := newFixture(t)
	ctl := spiffe.MustNew(td, "skiff", "skiff-controller")
	c, err := f.ca.IssueServing(p256(t).Public(), ctl)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.verify(t, c, f.bundle); err != nil || got != ctl {
		t.Fatalf("serving certificate verifies as %v, %v; want %s", got, err, ctl)
	}
	if want := f.clock.Now().Add(ca.DefaultLeafLifetime); !c.NotAfter.Equal(want) {
		t.Errorf("NotAfter %v, want the leaf lifetime %v", c.NotAfter, want)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pub  crypto.PublicKey
		id   spiffe.ID
		want string
	}{
		{"other trust domain", p256(t).Public(), spiffe.MustNew("example.org", "skiff", "skiff-controller"), `trust domain "example.org"`},
		{"zero ID", p256(t).Public(), spiffe.ID{}, "serving certificate"},
		{"RSA key", rsaKey.Public(), ctl, "ECDSA P-256 keys only"},
	} {
		if _, err := f.ca.IssueServing(tc.pub, tc.id); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
