package spiffe_test

import (
	"bytes"
	"encoding/pem"
	"regexp"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// pemSeeds are valid and nearly valid PEM inputs: an anchor, an issuer
// chain, a leaf (not a CA), a key pasted by mistake, a truncated or
// corrupted block, CRLF line ends, junk around the blocks.
func pemSeeds(f *testing.F) [][]byte {
	f.Helper()
	pki := catest.New(f, "cluster.local", catest.Options{})
	other := catest.New(f, "cluster.local", catest.Options{})
	leaf := pki.TLSCertificate(f, spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"})
	anchor := spiffe.EncodeCertificatesPEM(pki.Anchor.Cert)
	chain := spiffe.EncodeCertificatesPEM(pki.Issuer.Cert, pki.Anchor.Cert)
	both := append(bytes.Clone(anchor), spiffe.EncodeCertificatesPEM(other.Anchor.Cert)...)
	_, keyPEM, err := pki.Anchor.MarshalPEM()
	if err != nil {
		f.Fatal(err)
	}
	corrupt := bytes.Clone(anchor)
	corrupt[len(corrupt)/2] ^= 0x20
	return [][]byte{
		anchor,
		chain,
		both,
		append(bytes.Clone(anchor), anchor...),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}),
		keyPEM,
		append(bytes.Clone(anchor), keyPEM...),
		anchor[:len(anchor)/2],
		corrupt,
		bytes.ReplaceAll(chain, []byte("\n"), []byte("\r\n")),
		append([]byte("subject=CN = Skiff trust anchor\n"), anchor...),
		append(bytes.Clone(anchor), "trailing junk\n"...),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{0x30, 0}}),
		[]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
		{},
		[]byte("\n \t\n"),
	}
}

// parseError is what ParseCertificatesPEM's errors look like: each says
// which block, or what is missing.
var parseError = regexp.MustCompile(`^(PEM block [0-9]+( is "|: )|[0-9]+ bytes after PEM block [0-9]+ are not PEM$|no PEM CERTIFICATE block found$)`)

// FuzzParseCertificatesPEM feeds arbitrary bytes as a PEM file of
// certificates (trust anchor files, the issuer's chain). Errors say which
// block is wrong or what is missing. A success is at least one
// certificate, no more than the file has BEGIN lines, each the DER of a
// CERTIFICATE block of the input, and encoding them again gives the same
// certificates.
func FuzzParseCertificatesPEM(f *testing.F) {
	for _, s := range pemSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := spiffe.ParseCertificatesPEM(data)
		if err != nil {
			if !parseError.MatchString(err.Error()) {
				t.Fatalf("error %q says neither which block nor what is missing", err)
			}
			return
		}
		if len(certs) == 0 || len(certs) > bytes.Count(data, []byte("-----BEGIN ")) {
			t.Fatalf("%d certificates from %d BEGIN lines", len(certs), bytes.Count(data, []byte("-----BEGIN ")))
		}
		blocks := certificateBlocks(data)
		for i, c := range certs {
			if c == nil || !containsDER(blocks, c.Raw) {
				t.Fatalf("certificate %d is not the DER of a CERTIFICATE block of the input", i)
			}
		}
		again, err := spiffe.ParseCertificatesPEM(spiffe.EncodeCertificatesPEM(certs...))
		if err != nil {
			t.Fatalf("encoded certificates do not parse: %v", err)
		}
		if len(again) != len(certs) {
			t.Fatalf("%d certificates became %d", len(certs), len(again))
		}
		for i := range certs {
			if !certs[i].Equal(again[i]) {
				t.Fatalf("certificate %d changed through encoding", i)
			}
		}
	})
}

// FuzzParseBundlePEM feeds arbitrary bytes as a trust-anchor file (the
// proxy's --trust-anchors, re-read when it changes; the controller's
// bundle). It succeeds exactly when the certificates parse and are all CA
// certificates; the bundle then serves the trust domain asked for, holds
// each distinct anchor once, and survives MarshalPEM and a parse again.
// Errors say they are about the trust bundle.
func FuzzParseBundlePEM(f *testing.F) {
	for _, s := range pemSeeds(f) {
		f.Add(s)
	}
	const td = "cluster.local"
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := spiffe.ParseBundlePEM(td, data)
		certs, certErr := spiffe.ParseCertificatesPEM(data)
		allCA := certErr == nil
		for _, c := range certs {
			allCA = allCA && c.IsCA && c.BasicConstraintsValid
		}
		if (err == nil) != allCA {
			t.Fatalf("ParseBundlePEM: %v; the certificates: %v, all CA %v", err, certErr, allCA)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "trust bundle: ") {
				t.Fatalf("error %q does not say it is about the trust bundle", err)
			}
			return
		}
		if b.TrustDomain() != td {
			t.Fatalf("trust domain %q", b.TrustDomain())
		}
		anchors := b.Anchors()
		if len(anchors) == 0 || len(anchors) > len(certs) {
			t.Fatalf("%d anchors from %d certificates", len(anchors), len(certs))
		}
		for i, a := range anchors {
			for _, o := range anchors[:i] {
				if a.Equal(o) {
					t.Fatalf("anchor %d is held twice", i)
				}
			}
		}
		for _, c := range certs {
			if !b.Contains(c) {
				t.Fatalf("certificate %q was dropped", c.Subject)
			}
		}
		again, err := spiffe.ParseBundlePEM(td, b.MarshalPEM())
		if err != nil || !again.Equal(b) {
			t.Fatalf("MarshalPEM then ParseBundlePEM: %v, equal %v", err, err == nil && again.Equal(b))
		}
	})
}

// certificateBlocks returns the bytes of every CERTIFICATE block pem.Decode
// finds in data.
func certificateBlocks(data []byte) [][]byte {
	var out [][]byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type == "CERTIFICATE" {
			out = append(out, block.Bytes)
		}
	}
}

func containsDER(blocks [][]byte, der []byte) bool {
	for _, b := range blocks {
		if bytes.Equal(b, der) {
			return true
		}
	}
	return false
}
