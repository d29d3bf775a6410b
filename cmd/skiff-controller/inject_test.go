package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
)

// writeServingCert writes a self-signed certificate for 127.0.0.1, as the
// webhook's Secret would hold one, and returns a pool trusting it.
func writeServingCert(t *testing.T, certFile, keyFile string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"skiff-injector.skiff.svc"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeAtomic(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestInjectWebhook runs `skiff-controller inject` over TLS, without a
// cluster (--no-namespaces), and posts a pod that opts in.
func TestInjectWebhook(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	pool := writeServingCert(t, certFile, keyFile)

	out, logs := logRecords(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"inject", "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--no-namespaces",
			"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--version", "v0.9.0", "--log-format", "json"}, out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(waitFor):
			t.Error("run did not return after its context ended")
		}
	})
	rec := waitLog(t, logs, "listening")
	if rec["proxy_image"] != "ghcr.io/skiff-mesh/skiff-proxy:v0.9.0" {
		t.Errorf("proxy_image %v", rec["proxy_image"])
	}
	addr, adminAddr := rec["addr"].(string), rec["admin_addr"].(string)
	testwait.For(t, "/ready", func() (bool, error) {
		resp, err := http.Get("http://" + adminAddr + "/ready")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",
		"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
		"namespace":"shop","operation":"CREATE",
		"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop","annotations":{"skiff.dev/inject":"enabled"}},
		"spec":{"serviceAccountName":"web","containers":[{"name":"web","image":"example/web:1"}]}}}}`
	resp, err := client.Post("https://"+addr+"/inject?timeout=10s", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		t.Fatal(err)
	}
	if r := review.Response; r == nil || r.UID != "u1" || !r.Allowed || !strings.Contains(string(r.Patch), "skiff-proxy:v0.9.0") {
		t.Fatalf("response %+v", review.Response)
	}

	// Anything else on the port is not found.
	resp2, err := client.Post("https://"+addr+"/mutate", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotFound {
		t.Errorf("/mutate: %d", resp2.StatusCode)
	}
	metrics, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Body.Close()
	text, err := io.ReadAll(metrics.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), `skiff_injector_admissions_total{result="injected"} 1`) {
		t.Errorf("metrics lack one injection:\n%s", text)
	}
}

func TestInjectFlags(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeServingCert(t, certFile, keyFile)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inject"}, "inject needs --tls-cert-file and --tls-key-file"},
		{[]string{"inject", "--tls-cert-file", missing, "--tls-key-file", missing}, "--tls-cert-file/--tls-key-file"},
		{[]string{"inject", "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--no-namespaces", "--version", "a:b"}, `version "a:b" is not an image tag`},
		{[]string{"inject", "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--no-namespaces", "--addr", "256.0.0.1:1"}, "--addr"},
		{[]string{"inject", "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--no-namespaces", "--trust-anchors", certFile}, "not with --no-namespaces"},
		{[]string{"inject", "extra"}, "unexpected arguments"},
	} {
		err := run(t.Context(), tc.args, os.Stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want it to say %q", tc.args, err, tc.want)
		}
	}
}
