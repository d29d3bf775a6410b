package install_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/install"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// identityFiles writes an anchor bundle and an issuer signed by it,
// generated at epoch, and returns their names.
func identityFiles(t *testing.T, dir string, issuerLifetime time.Duration) (install.IdentityFiles, *ca.KeyPair) {
	t.Helper()
	anchor, err := ca.NewAnchor(kubemeta.DefaultTrustDomain, ca.Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(anchor, ca.Options{Now: fixedNow, Lifetime: issuerLifetime})
	if err != nil {
		t.Fatal(err)
	}
	f := install.IdentityFiles{
		TrustAnchors: filepath.Join(dir, "anchors.pem"),
		IssuerCert:   filepath.Join(dir, "issuer.crt"),
		IssuerKey:    filepath.Join(dir, "issuer.key"),
	}
	write(t, f.TrustAnchors, spiffe.EncodeCertificatesPEM(anchor.Cert))
	if err := issuer.WriteFiles(f.IssuerCert, f.IssuerKey); err != nil {
		t.Fatal(err)
	}
	return f, anchor
}

func write(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Supplied files end up, unchanged, in the ConfigMap and the issuer
// Secret.
func TestSuppliedIdentity(t *testing.T) {
	files, anchor := identityFiles(t, t.TempDir(), 0)
	id, err := install.LoadIdentity(files, kubemeta.DefaultTrustDomain, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	objs := render(t, install.Config{Identity: id})
	cm := find[*corev1.ConfigMap](t, objs, kubemeta.ConfigMap)
	if got, want := cm.Data[kubemeta.TrustAnchorsKey], string(spiffe.EncodeCertificatesPEM(anchor.Cert)); got != want {
		t.Errorf("ConfigMap anchors:\n%s\nwant the supplied\n%s", got, want)
	}
	sec := find[*corev1.Secret](t, objs, kubemeta.IssuerSecret)
	certPEM, _ := os.ReadFile(files.IssuerCert)
	if !bytes.Equal(sec.Data[corev1.TLSCertKey], certPEM) {
		t.Error("the issuer Secret's tls.crt is not the supplied certificate")
	}
}

// Each bad input is refused with an error that names the flag, the file
// and what is wrong.
func TestLoadIdentityErrors(t *testing.T) {
	dir := t.TempDir()
	good, _ := identityFiles(t, dir, 0)
	other, _ := identityFiles(t, t.TempDir(), 0) // another anchor
	short, _ := identityFiles(t, t.TempDir(), time.Hour)

	notPEM := filepath.Join(dir, "not.pem")
	write(t, notPEM, []byte("hello\n"))
	big := filepath.Join(dir, "big.pem")
	write(t, big, bytes.Repeat([]byte("-----BEGIN CERTIFICATE-----\n"), install.MaxPEMFileSize/20))
	key, _ := os.ReadFile(good.IssuerKey)
	keyAsAnchors := filepath.Join(dir, "key-as-anchors.pem")
	write(t, keyAsAnchors, key)
	// A leaf, not a CA, as the issuer.
	issuer, err := ca.LoadKeyPair(good.IssuerCert, good.IssuerKey)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := spiffe.ParseBundlePEM(kubemeta.DefaultTrustDomain, mustRead(t, good.TrustAnchors))
	if err != nil {
		t.Fatal(err)
	}
	authority, err := ca.New(ca.Config{Issuer: issuer, Bundle: bundle, Tokens: noTokens{}, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ca.NewAnchor(kubemeta.DefaultTrustDomain, ca.Options{Now: fixedNow}) // only for its key
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := authority.IssueServing(leafKey.Key.Public(), spiffe.MustNew(kubemeta.DefaultTrustDomain, "default", "web"))
	if err != nil {
		t.Fatal(err)
	}
	leafCert := filepath.Join(dir, "leaf.crt")
	leafKeyFile := filepath.Join(dir, "leaf.key")
	// WriteFiles does not check that the pair is a CA; ParseKeyPairPEM does.
	if err := (&ca.KeyPair{Cert: leaf.Leaf, Key: leafKey.Key}).WriteFiles(leafCert, leafKeyFile); err != nil {
		t.Fatal(err)
	}

	later := func() time.Time { return epoch.Add(2 * time.Hour) }
	cases := []struct {
		name  string
		files install.IdentityFiles
		now   func() time.Time
		td    string
		want  []string
	}{
		{"missing flag", install.IdentityFiles{TrustAnchors: good.TrustAnchors}, nil, "", []string{"--identity-issuer-certificate-file", "--identity-issuer-key-file", "missing"}},
		{"no such file", install.IdentityFiles{TrustAnchors: filepath.Join(dir, "nope.pem"), IssuerCert: good.IssuerCert, IssuerKey: good.IssuerKey}, nil, "", []string{"--identity-trust-anchors-file", "nope.pem", "no such file"}},
		{"not PEM", install.IdentityFiles{TrustAnchors: good.TrustAnchors, IssuerCert: notPEM, IssuerKey: good.IssuerKey}, nil, "", []string{"--identity-issuer-certificate-file", "not.pem", "no PEM block"}},
		{"too large", install.IdentityFiles{TrustAnchors: big, IssuerCert: good.IssuerCert, IssuerKey: good.IssuerKey}, nil, "", []string{"--identity-trust-anchors-file", "big.pem", "larger than"}},
		{"key as anchors", install.IdentityFiles{TrustAnchors: keyAsAnchors, IssuerCert: good.IssuerCert, IssuerKey: good.IssuerKey}, nil, "", []string{"--identity-trust-anchors-file", "key-as-anchors.pem", `"PRIVATE KEY", want CERTIFICATE`}},
		{"key mismatch", install.IdentityFiles{TrustAnchors: good.TrustAnchors, IssuerCert: good.IssuerCert, IssuerKey: other.IssuerKey}, nil, "", []string{"--identity-issuer-key-file", "does not match"}},
		{"not a CA", install.IdentityFiles{TrustAnchors: good.TrustAnchors, IssuerCert: leafCert, IssuerKey: leafKeyFile}, nil, "", []string{"leaf.crt", "not a CA certificate"}},
		{"other anchor", install.IdentityFiles{TrustAnchors: other.TrustAnchors, IssuerCert: good.IssuerCert, IssuerKey: good.IssuerKey}, nil, "", []string{"--identity-issuer-certificate-file", "does not chain to any of the 1 trust anchors", other.TrustAnchors}},
		{"expired", short, later, "", []string{"--identity-issuer-certificate-file", "is not valid at 2026-12-01T02:00:00Z", "2026-12-01T01:00:00Z"}},
		{"trust domain", good, nil, "mesh.example", []string{"--identity-issuer-certificate-file", `trust domain "cluster.local"`, `"mesh.example"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := c.now
			if now == nil {
				now = fixedNow
			}
			td := c.td
			if td == "" {
				td = kubemeta.DefaultTrustDomain
			}
			_, err := install.LoadIdentity(c.files, td, now)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
