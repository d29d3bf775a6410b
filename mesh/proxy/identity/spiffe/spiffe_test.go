package spiffe_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

func TestParse(t *testing.T) {
	valid := []struct {
		in   string
		want spiffe.ID
	}{
		{"spiffe://cluster.local/ns/default/sa/web", spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "web"}},
		{"spiffe://root_td-1/ns/a/sa/b.c-d", spiffe.ID{TrustDomain: "root_td-1", Namespace: "a", ServiceAccount: "b.c-d"}},
		{"spiffe://x/ns/" + strings.Repeat("n", 63) + "/sa/0", spiffe.ID{TrustDomain: "x", Namespace: strings.Repeat("n", 63), ServiceAccount: "0"}},
	}
	for _, tc := range valid {
		got, err := spiffe.Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
		if got.URL().String() != tc.in {
			t.Errorf("URL() = %q, want %q", got.URL(), tc.in)
		}
	}

	invalid := []struct{ in, reason string }{
		{"", "empty"},
		{"http://cluster.local/ns/a/sa/b", "scheme"},
		{"SPIFFE://cluster.local/ns/a/sa/b", "scheme"},
		{"spiffe://cluster.local", "no path"},
		{"spiffe:///ns/a/sa/b", "trust domain is empty"},
		{"spiffe://Cluster.local/ns/a/sa/b", "lowercase"},
		{"spiffe://cluster.local:8080/ns/a/sa/b", "no port"},
		{"spiffe://user@cluster.local/ns/a/sa/b", "no user info"},
		{"spiffe://cluster.local/ns/a/sa/b/", "path must be"},
		{"spiffe://cluster.local/ns/a/sa/b?x=1", "service account"},
		{"spiffe://cluster.local/ns/a/sa/b#f", "service account"},
		{"spiffe://cluster.local/ns//sa/b", "namespace"},
		{"spiffe://cluster.local/ns/a/sa/", "service account"},
		{"spiffe://cluster.local/ns/-a/sa/b", "start and end"},
		{"spiffe://cluster.local/ns/a.b/sa/b", "namespace"},
		{"spiffe://cluster.local/ns/a/sa/B", "service account"},
		{"spiffe://cluster.local/ns/a%2Fb/sa/b", "namespace"},
		{"spiffe://cluster.local/sa/b/ns/a", "path must be"},
		{"spiffe://cluster.local/ns/a/sa/b/extra", "path must be"},
		{"spiffe://cluster.local/ns/" + strings.Repeat("n", 64) + "/sa/b", "limit is 63"},
		{"spiffe://cluster.local/ns/a/sa/b..c", "label \"\""},
	}
	for _, tc := range invalid {
		_, err := spiffe.Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want error about %q", tc.in, tc.reason)
			continue
		}
		if !errors.Is(err, spiffe.ErrInvalidID) {
			t.Errorf("Parse(%q) error %v does not match ErrInvalidID", tc.in, err)
		}
		var idErr *spiffe.IDError
		if !errors.As(err, &idErr) || idErr.Input != tc.in {
			t.Errorf("Parse(%q) error %v is not an *IDError for the input", tc.in, err)
		}
		if !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("Parse(%q) error %q does not mention %q", tc.in, err, tc.reason)
		}
	}
}

func TestNew(t *testing.T) {
	id, err := spiffe.New("cluster.local", "shop", "cart")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.String(), "spiffe://cluster.local/ns/shop/sa/cart"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if _, err := spiffe.New("cluster.local", "Shop", "cart"); !errors.Is(err, spiffe.ErrInvalidID) {
		t.Errorf("New with an uppercase namespace: err = %v, want ErrInvalidID", err)
	}
	if !(spiffe.ID{}).IsZero() || id.IsZero() {
		t.Error("IsZero is wrong")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("spiffe://cluster.local/ns/default/sa/web")
	f.Add("spiffe://a/ns/b/sa/c.d")
	f.Add("spiffe://a:1/ns/b/sa/c")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffe.Parse(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, id.String())
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted an ID Validate rejects: %v", s, err)
		}
		u, err := url.Parse(s)
		if err != nil || u.String() != s {
			t.Fatalf("accepted %q does not round-trip through net/url: %v %q", s, err, u)
		}
	})
}

// certs builds a root, an intermediate and a leaf for the bundle tests.
type testPKI struct {
	root, inter, leaf *x509.Certificate
}

func newPKI(t *testing.T, td string, leafURIs []string, now time.Time) testPKI {
	t.Helper()
	mk := func(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, key
	}
	ca := func(cn string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	root, rootKey := mk(ca("root"), nil, nil)
	inter, interKey := mk(ca("issuer"), root, rootKey)
	var uris []*url.URL
	for _, s := range leafURIs {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		uris = append(uris, u)
	}
	leaf, _ := mk(&x509.Certificate{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour), URIs: uris,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, inter, interKey)
	return testPKI{root: root, inter: inter, leaf: leaf}
}

func TestBundleVerify(t *testing.T) {
	now := time.Now()
	const id = "spiffe://cluster.local/ns/a/sa/b"
	p := newPKI(t, "cluster.local", []string{id}, now)
	other := newPKI(t, "cluster.local", []string{id}, now)
	b, err := spiffe.NewBundle("cluster.local", p.root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Verify([]*x509.Certificate{p.leaf, p.inter}, now, x509.ExtKeyUsageServerAuth)
	if err != nil || got.String() != id {
		t.Fatalf("Verify = %v, %v; want %s", got, err, id)
	}

	cases := []struct {
		name  string
		b     *spiffe.Bundle
		chain []*x509.Certificate
		now   time.Time
		want  error
	}{
		{"no certificate", b, nil, now, spiffe.ErrNoCertificate},
		{"expired", b, []*x509.Certificate{p.leaf, p.inter}, now.Add(25 * time.Hour), spiffe.ErrExpired},
		{"not yet valid", b, []*x509.Certificate{p.leaf, p.inter}, now.Add(-time.Hour), spiffe.ErrNotYetValid},
		{"other root", b, []*x509.Certificate{other.leaf, other.inter}, now, spiffe.ErrUntrusted},
		{"missing intermediate", b, []*x509.Certificate{p.leaf}, now, spiffe.ErrUntrusted},
		{"leaf is a CA", b, []*x509.Certificate{p.inter}, now, spiffe.ErrUntrusted},
		{"nil bundle", nil, []*x509.Certificate{p.leaf, p.inter}, now, spiffe.ErrUntrusted},
	}
	for _, tc := range cases {
		_, err := tc.b.Verify(tc.chain, tc.now, x509.ExtKeyUsageClientAuth)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}

	otherTD, _ := spiffe.NewBundle("other.domain", p.root)
	if _, err := otherTD.Verify([]*x509.Certificate{p.leaf, p.inter}, now, x509.ExtKeyUsageServerAuth); !errors.Is(err, spiffe.ErrTrustDomain) {
		t.Errorf("other trust domain: err = %v, want ErrTrustDomain", err)
	}
	noID := newPKI(t, "cluster.local", nil, now)
	nb, _ := spiffe.NewBundle("cluster.local", noID.root)
	if _, err := nb.Verify([]*x509.Certificate{noID.leaf, noID.inter}, now, x509.ExtKeyUsageServerAuth); !errors.Is(err, spiffe.ErrNoID) {
		t.Errorf("leaf without URI: err = %v, want ErrNoID", err)
	}
	two := newPKI(t, "cluster.local", []string{id, "spiffe://cluster.local/ns/a/sa/c"}, now)
	tb, _ := spiffe.NewBundle("cluster.local", two.root)
	if _, err := tb.Verify([]*x509.Certificate{two.leaf, two.inter}, now, x509.ExtKeyUsageServerAuth); !errors.Is(err, spiffe.ErrNoID) {
		t.Errorf("leaf with two URIs: err = %v, want ErrNoID", err)
	}
}

func TestBundleRotationAndPEM(t *testing.T) {
	now := time.Now()
	const id = "spiffe://cluster.local/ns/a/sa/b"
	old, cur := newPKI(t, "cluster.local", []string{id}, now), newPKI(t, "cluster.local", []string{id}, now)
	b1, err := spiffe.NewBundle("cluster.local", old.root)
	if err != nil {
		t.Fatal(err)
	}
	both, err := b1.With(cur.root)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := both.With(cur.root); len(again.Anchors()) != 2 {
		t.Errorf("adding an anchor twice: %d anchors, want 2", len(again.Anchors()))
	}
	for _, p := range []testPKI{old, cur} {
		if _, err := both.Verify([]*x509.Certificate{p.leaf, p.inter}, now, x509.ExtKeyUsageServerAuth); err != nil {
			t.Errorf("bundle with both anchors: %v", err)
		}
	}
	onlyNew, err := both.Without(old.root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onlyNew.Verify([]*x509.Certificate{old.leaf, old.inter}, now, x509.ExtKeyUsageServerAuth); !errors.Is(err, spiffe.ErrUntrusted) {
		t.Errorf("old anchor removed: err = %v, want ErrUntrusted", err)
	}
	if _, err := onlyNew.Without(cur.root); err == nil {
		t.Error("removing the last anchor succeeded")
	}

	parsed, err := spiffe.ParseBundlePEM("cluster.local", both.MarshalPEM())
	if err != nil {
		t.Fatal(err)
	}
	reversed, _ := onlyNew.With(old.root)
	otherTD, _ := spiffe.NewBundle("other.domain", old.root, cur.root)
	for _, c := range []struct {
		name string
		a, b *spiffe.Bundle
		want bool
	}{
		{"same anchors, other order", both, reversed, true},
		{"an anchor fewer", both, onlyNew, false},
		{"another trust domain", both, otherTD, false},
		{"nil and a bundle", nil, both, false},
		{"nil and nil", nil, nil, true},
	} {
		if got := c.a.Equal(c.b); got != c.want {
			t.Errorf("Equal, %s: %v, want %v", c.name, got, c.want)
		}
	}

	if !parsed.Contains(old.root) || !parsed.Contains(cur.root) || len(parsed.Anchors()) != 2 {
		t.Error("PEM round trip lost anchors")
	}
	if _, err := spiffe.ParseBundlePEM("cluster.local", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")); err == nil {
		t.Error("a private key parsed as a bundle")
	}
	if _, err := spiffe.NewBundle("cluster.local", old.leaf); err == nil {
		t.Error("a leaf was accepted as an anchor")
	}
}
