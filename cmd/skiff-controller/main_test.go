package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/control"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

const waitFor = 10 * time.Second

// logRecords runs run's JSON log through a channel of records; the pipe is
// drained until it closes, so logging never blocks the controller.
func logRecords(t *testing.T) (io.Writer, <-chan map[string]any) {
	pr, pw := io.Pipe()
	ch := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			select {
			case ch <- rec:
			default: // nobody waits for it
			}
		}
	}()
	t.Cleanup(func() { pw.Close() })
	return pw, ch
}

// waitLog returns the first record with message msg.
func waitLog(t *testing.T, ch <-chan map[string]any, msg string) map[string]any {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case rec := <-ch:
			if rec["msg"] == msg {
				return rec
			}
			if rec["level"] == "ERROR" {
				t.Logf("controller: %v", rec)
			}
		case <-timeout:
			t.Fatalf("no %q log record within %v", msg, waitFor)
		}
	}
}

func writeAtomic(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAll(t *testing.T) {
	dir := t.TempDir()
	regFile := filepath.Join(dir, "endpoints.txt")
	anchorsFile := filepath.Join(dir, "anchors.pem")
	keyFile := filepath.Join(dir, "token.key")
	const auth = "web.shop.svc.cluster.local:8080"
	const webID = "spiffe://cluster.local/ns/shop/sa/web"
	writeAtomic(t, regFile, auth+" 127.0.0.2:8080;meshed;id="+webID+";label=version=v1\n")
	key, err := ca.NewHMACKey()
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, keyFile, hex.EncodeToString(key)+"\n")

	out, logs := logRecords(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"all",
			"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--registry-file", regFile, "--registry-poll", "10ms",
			"--identity-dev", "--trust-anchors-out", anchorsFile, "--token-key-file", keyFile,
			"--log-format", "json",
		}, out)
	}()
	rec := waitLog(t, logs, "listening")
	grpcAddr, adminAddr := rec["grpc_addr"].(string), rec["admin_addr"].(string)
	if rec["services"] != "destination,identity,policy" {
		t.Errorf("services = %v", rec["services"])
	}
	waitLog(t, logs, "ready")
	if code, _ := httpGet(t, "http://"+adminAddr+"/ready"); code != http.StatusOK {
		t.Errorf("/ready = %d, want 200", code)
	}
	if code, _ := httpGet(t, "http://"+adminAddr+"/live"); code != http.StatusOK {
		t.Errorf("/live = %d, want 200", code)
	}

	if rec["tls"] != true {
		t.Errorf("listening: tls = %v, want true (all runs the identity service)", rec["tls"])
	}
	// The controller serves TLS with its default identity, verified
	// against the anchors it wrote.
	trust, err := os.ReadFile(anchorsFile)
	if err != nil {
		t.Fatal(err)
	}
	// A proxy's first connection presents no certificate: Identity
	// answers it (the token authenticates the request), Destination and
	// Policy do not.
	anon, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(controllerCreds(t, trust, defaultControllerID, nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if err := watchOnce(ctx, anon, auth); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "needs a verified mesh client certificate") {
		t.Errorf("Destination without a client certificate: %v, want Unauthenticated", err)
	}

	// Identity: a real CSR with a token signed with the key file's key,
	// verified against the anchors the controller wrote.
	id := spiffe.MustParse(webID)
	tokens, err := ca.NewHMACTokens(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, leafKey)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := identityv1.NewIdentityClient(anon).Certify(ctx, &identityv1.CertifyRequest{Identity: webID, Token: []byte(tok), Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	pemAnchors, err := os.ReadFile(anchorsFile)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := spiffe.ParseBundlePEM("cluster.local", pemAnchors)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetTrustAnchors()) != 1 || !bytes.Equal(resp.GetTrustAnchors()[0], bundle.Anchors()[0].Raw) {
		t.Error("the response's trust anchors are not those written to --trust-anchors-out")
	}
	var chain []*x509.Certificate
	for _, der := range append([][]byte{resp.GetLeafCertificate()}, resp.GetIntermediateCertificates()...) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if got, err := bundle.Verify(chain, time.Now(), x509.ExtKeyUsageClientAuth); err != nil || got != id {
		t.Fatalf("verify the issued chain: %v %v", got, err)
	}
	_, err = identityv1.NewIdentityClient(anon).Certify(ctx, &identityv1.CertifyRequest{Identity: webID, Token: []byte("forged"), Csr: csr})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("forged token: %v, want Unauthenticated", err)
	}

	// With the certificate just issued, on a new connection: Destination
	// serves the registry file's endpoint, then a change to the file.
	issued := &tls.Certificate{Certificate: append([][]byte{resp.GetLeafCertificate()}, resp.GetIntermediateCertificates()...), PrivateKey: leafKey, Leaf: chain[0]}
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(controllerCreds(t, trust, defaultControllerID, issued, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ws, err := destinationv1.NewDestinationClient(cc).Watch(ctx, &destinationv1.WatchRequest{Authority: auth})
	if err != nil {
		t.Fatal(err)
	}
	u, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	eps := u.GetSnapshot().GetEndpoints()
	if len(eps) != 1 || eps[0].GetAddress() != "127.0.0.2:8080" || eps[0].GetIdentity() != webID || !eps[0].GetMeshed() || eps[0].GetLabels()["version"] != "v1" {
		t.Fatalf("first update = %v", u)
	}
	writeAtomic(t, regFile, auth+" 127.0.0.2:8080;meshed;id="+webID+";label=version=v1 127.0.0.3:8080;meshed;id="+webID+"\n")
	if u, err = ws.Recv(); err != nil || len(u.GetAdd().GetEndpoints()) != 1 || u.GetAdd().GetEndpoints()[0].GetAddress() != "127.0.0.3:8080" {
		t.Fatalf("after the file changed: %v %v, want Add of 127.0.0.3:8080", u, err)
	}

	// Policy: the default outbound policy arrives.
	ps, err := policyv1.NewPolicyClient(cc).WatchOutbound(ctx, &policyv1.WatchOutboundRequest{Authority: auth})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ps.Recv(); err != nil || p.GetAuthority() != auth || len(p.GetRoutes()) != 1 {
		t.Fatalf("policy: %v %v", p, err)
	}

	code, metrics := httpGet(t, "http://"+adminAddr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		"skiff_destination_watchers 1",
		"skiff_destination_subscriptions 1",
		`skiff_destination_updates_sent_total{kind="snapshot"} 1`,
		`skiff_destination_updates_sent_total{kind="add"} 1`,
		"skiff_destination_propagation_seconds_count 2",
		`skiff_identity_certify_total{code="OK"} 1`,
		`skiff_identity_certify_total{code="Unauthenticated"} 1`,
		"skiff_identity_issuer_expiry_timestamp_seconds",
		`skiff_controller_unauthenticated_total{method="/skiff.destination.v1.Destination/Watch"} 1`,
		"skiff_controller_watches 2",
		"skiff_controller_watch_identities 1",
		`skiff_controller_watches_refused_total{limit="connection"} 0`,
		"skiff_identity_certify_rate_limited_total 0",
		"go_goroutines",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// SIGTERM: the streams end with UNAVAILABLE and run returns nil.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("run did not return after its context ended")
	}
	if _, err := ws.Recv(); status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
		t.Errorf("watch after shutdown: %v, want Unavailable", err)
	}
}

func TestShutdownBeforeReady(t *testing.T) {
	dir := t.TempDir()
	regFile := filepath.Join(dir, "endpoints.txt")
	writeAtomic(t, regFile, "")
	ctx, cancel := context.WithCancel(t.Context())
	out, logs := logRecords(t)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"destination", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--registry-file", regFile, "--plaintext", "--log-format", "json"}, out)
	}()
	waitLog(t, logs, "listening")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("run did not return")
	}
}

func TestBadArguments(t *testing.T) {
	dir := t.TempDir()
	regFile := filepath.Join(dir, "endpoints.txt")
	writeAtomic(t, regFile, "")
	shortKey := filepath.Join(dir, "short.key")
	writeAtomic(t, shortKey, "abcd")
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no subcommand"},
		{[]string{"inject"}, "inject needs --tls-cert-file and --tls-key-file"},
		{[]string{"tap"}, `unknown subcommand "tap": want destination, identity, policy, all or inject`},
		{[]string{"destination", "extra"}, "unexpected arguments"},
		{[]string{"destination"}, "--registry-file"},
		{[]string{"destination", "--discovery", "consul"}, `--discovery "consul"`},
		{[]string{"destination", "--registry-file", filepath.Join(dir, "missing")}, "--registry-file"},
		{[]string{"destination", "--registry-file", regFile, "--log-level", "loud"}, "--log-level"},
		{[]string{"destination", "--discovery", "kube", "--kubeconfig", filepath.Join(dir, "missing")}, "--discovery kube"},
		{[]string{"identity", "--token-key-file", shortKey}, "--identity-issuer-cert"},
		{[]string{"identity", "--identity-dev"}, "--token-key-file"},
		{[]string{"identity", "--identity-dev", "--token-key-file", shortKey}, "at least 32"},
		{[]string{"identity", "--identity-dev", "--trust-anchors", regFile}, "--identity-dev generates"},
		{[]string{"policy", "--plaintext", "--grpc-addr", "256.0.0.1:1"}, "--grpc-addr"},
		{[]string{"policy", "--registry-file", "x"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		err := run(t.Context(), tt.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
	var help bytes.Buffer
	if err := run(t.Context(), []string{"all", "-h"}, &help); err != nil || !strings.Contains(help.String(), "--identity-dev") && !strings.Contains(help.String(), "-identity-dev") {
		t.Errorf("all -h: %v\n%s", err, help.String())
	}
}

// TestNotInProxy keeps the control plane out of the sidecar's binary
// (ARCHITECTURE.md, contract 1; cmd/skiff-proxy's own test forbids
// k8s.io).
func TestNotInProxy(t *testing.T) {
	// No skip: `go test` puts its own go tool first on PATH, so a failure
	// here is a broken environment or build, which must fail the test.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("listing the dependencies needs the go tool on PATH: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "../skiff-proxy").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/skiff-mesh/skiff/cmd/skiff-controller") ||
			strings.HasPrefix(p, "github.com/skiff-mesh/skiff/mesh/control/") && p != "github.com/skiff-mesh/skiff/mesh/control/identity/ca" ||
			strings.HasPrefix(p, "github.com/skiff-mesh/skiff/mesh/discovery/kube") {
			t.Errorf("skiff-proxy links %s, a control-plane package", p)
		}
	}
}

func TestTokenVerifierFlags(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "token.key")
	key, err := ca.NewHMACKey()
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, keyFile, hex.EncodeToString(key))
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"identity", "--identity-dev"}, []string{"--token-verifier", "kube", "hmac", "--token-key-file"}},
		{[]string{"identity", "--identity-dev", "--token-verifier", "jwt"}, []string{`--token-verifier "jwt": want kube or hmac`}},
		{[]string{"identity", "--identity-dev", "--token-verifier", "hmac"}, []string{"--token-verifier hmac needs --token-key-file"}},
		{[]string{"identity", "--identity-dev", "--token-verifier", "kube", "--token-key-file", keyFile}, []string{"--token-key-file is for --token-verifier hmac"}},
		{[]string{"identity", "--identity-dev", "--token-verifier", "kube", "--token-audience", ""}, []string{"--token-audience is empty"}},
		{[]string{"identity", "--identity-dev", "--token-verifier", "kube", "--kubeconfig", missing}, []string{"--token-verifier kube", "set --kubeconfig"}},
		{[]string{"destination", "--token-verifier", "kube"}, []string{"flag provided but not defined: -token-verifier"}},
		{[]string{"policy", "--kubeconfig", missing}, []string{"flag provided but not defined: -kubeconfig"}},
		// `all` registers --kubeconfig once, for both of its users.
		{[]string{"all", "--discovery", "kube", "--kubeconfig", missing}, []string{"--discovery kube", "set --kubeconfig"}},
	}
	for _, tt := range tests {
		err := run(t.Context(), tt.args, io.Discard)
		for _, want := range tt.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, want)
			}
		}
	}
}

// reviewRequest is what the fake API server saw of a TokenReview: the
// controller's credential and the audiences asked for.
type reviewRequest struct {
	credential string
	audiences  []string
}

// fakeTokenReviewAPI is an API server that answers TokenReviews only: it
// authenticates token "web-token" as ServiceAccount shop/web for the
// audience it is asked for, and sends on the channel each review it gets.
func fakeTokenReviewAPI(t *testing.T) (*httptest.Server, <-chan reviewRequest) {
	t.Helper()
	requests := make(chan reviewRequest, 10)
	// TLS: client-go sends a kubeconfig's credentials only over https.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
			http.Error(w, "only TokenReviews here", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		review := &authenticationv1.TokenReview{}
		if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		requests <- reviewRequest{credential: r.Header.Get("Authorization"), audiences: review.Spec.Audiences}
		review.TypeMeta = metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"}
		if review.Spec.Token == "web-token" {
			review.Status = authenticationv1.TokenReviewStatus{
				Authenticated: true,
				User:          authenticationv1.UserInfo{Username: "system:serviceaccount:shop:web"},
				Audiences:     review.Spec.Audiences,
			}
		} else {
			review.Status.Error = "[invalid bearer token, service account token has expired]"
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(srv.Close)
	return srv, requests
}

// TestIdentityTokenReview runs the identity service with --token-verifier
// kube against a fake API server found through --kubeconfig.
func TestIdentityTokenReview(t *testing.T) {
	leakcheck.Check(t)
	api, requests := fakeTokenReviewAPI(t)
	caData := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}))
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeAtomic(t, kubeconfig, `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "`+api.URL+`", certificate-authority-data: "`+caData+`"}}]
users: [{name: controller, user: {token: controller-credential}}]
contexts: [{name: test, context: {cluster: test, user: controller}}]
current-context: test
`)
	out, logs := logRecords(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"identity", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--identity-dev", "--token-verifier", "kube", "--kubeconfig", kubeconfig, "--token-audience", "mesh.example",
			"--plaintext", "--log-format", "json"}, out)
	}()
	rec := waitLog(t, logs, "listening")
	cc, err := grpc.NewClient(rec["grpc_addr"].(string), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := identityv1.NewIdentityClient(cc)

	const webID = "spiffe://cluster.local/ns/shop/sa/web"
	csr := catest.CSR(t, spiffe.MustParse(webID))
	resp, err := client.Certify(ctx, &identityv1.CertifyRequest{Identity: webID, Token: []byte("web-token"), Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil || len(leaf.URIs) != 1 || leaf.URIs[0].String() != webID {
		t.Fatalf("leaf: %v, %v; want one URI SAN %s", leaf, err, webID)
	}
	if got := <-requests; got.credential != "Bearer controller-credential" || len(got.audiences) != 1 || got.audiences[0] != "mesh.example" {
		t.Errorf("the TokenReview came with Authorization %q and audiences %q, want the kubeconfig's credential and --token-audience", got.credential, got.audiences)
	}

	_, err = client.Certify(ctx, &identityv1.CertifyRequest{Identity: webID, Token: []byte("old-token"), Csr: csr})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "service account token has expired") {
		t.Errorf("expired token: %v, want Unauthenticated with the API server's reason", err)
	}
	<-requests

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("run did not return after its context ended")
	}
}

// defaultControllerID is the identity the controller serves with and the
// proxies expect, unless told otherwise.
var defaultControllerID = spiffe.ControlPlaneID("cluster.local")

// watchOnce opens a Destination watch of authority on cc and returns the
// error of its first message.
func watchOnce(ctx context.Context, cc *grpc.ClientConn, authority string) error {
	ws, err := destinationv1.NewDestinationClient(cc).Watch(ctx, &destinationv1.WatchRequest{Authority: authority})
	if err != nil {
		return err
	}
	_, err = ws.Recv()
	return err
}

// controllerCreds are a grpc-go client's credentials for the controller:
// TLS, the server verified against anchorsPEM and required to be id, as
// the proxies verify it, presenting cert (nil: none). seen, when not nil,
// receives the server's leaf of each handshake that passed.
func controllerCreds(t *testing.T, anchorsPEM []byte, id spiffe.ID, cert *tls.Certificate, seen chan<- *x509.Certificate) credentials.TransportCredentials {
	t.Helper()
	bundle, err := spiffe.ParseBundlePEM("cluster.local", anchorsPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := certs.ControlPlaneTLSConfig(id, func() *spiffe.Bundle { return bundle }, func() *tls.Certificate { return cert })
	if seen != nil {
		verify := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verify(cs); err != nil {
				return err
			}
			select {
			case seen <- cs.PeerCertificates[0]:
			default:
			}
			return nil
		}
	}
	return credentials.NewTLS(cfg)
}

// startController runs the controller with args (plus ephemeral addresses
// and JSON logs) until the test ends, and returns its "listening" record
// and the rest of its log.
func startController(t *testing.T, args ...string) (map[string]any, <-chan map[string]any) {
	t.Helper()
	out, logs := logRecords(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	args = append(args, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-format", "json")
	go func() { done <- run(ctx, args, out) }()
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
	return waitLog(t, logs, "listening"), logs
}

// callPolicy opens a new connection to addr with creds and makes one
// Policy call on it.
func callPolicy(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	s, err := policyv1.NewPolicyClient(cc).WatchOutbound(ctx, &policyv1.WatchOutboundRequest{Authority: "web.shop.svc.cluster.local:8080"})
	if err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

// TestControllerTLS runs `all` with issuer files: it serves TLS with a
// certificate for its default identity from its own CA, refuses plaintext
// clients, fails clients expecting another identity, serves proxies with
// and without a certificate, and after an issuer rotation serves new
// connections with a certificate of the new issuer.
func TestControllerTLS(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	issuerCert, issuerKey := filepath.Join(dir, "issuer.crt"), filepath.Join(dir, "issuer.key")
	anchorsFile, keyFile, regFile := filepath.Join(dir, "anchors.pem"), filepath.Join(dir, "token.key"), filepath.Join(dir, "endpoints.txt")
	// The controller builds its own CA from these files; the test keeps
	// the hierarchy to check what it serves.
	pki := catest.New(t, "cluster.local", catest.Options{})
	if err := pki.Issuer.WriteFiles(issuerCert, issuerKey); err != nil {
		t.Fatal(err)
	}
	anchorsPEM := spiffe.EncodeCertificatesPEM(pki.Anchor.Cert)
	writeAtomic(t, anchorsFile, string(anchorsPEM))
	writeAtomic(t, keyFile, hex.EncodeToString(pki.TokenKey))
	writeAtomic(t, regFile, "")

	rec, logs := startController(t, "all", "--registry-file", regFile,
		"--identity-issuer-cert", issuerCert, "--identity-issuer-key", issuerKey, "--trust-anchors", anchorsFile,
		"--token-key-file", keyFile, "--identity-reload-interval", "20ms")
	addr := rec["grpc_addr"].(string)
	if rec["tls"] != true {
		t.Fatalf("listening: tls = %v, want true", rec["tls"])
	}

	// A client verifying the default identity against the anchors, and
	// presenting a mesh certificate.
	webCert := pki.TLSCertificate(t, spiffe.MustNew("cluster.local", "shop", "web"))
	seen := make(chan *x509.Certificate, 1)
	if err := callPolicy(t, addr, controllerCreds(t, anchorsPEM, defaultControllerID, webCert, seen)); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	leaf := <-seen
	if err := leaf.CheckSignatureFrom(pki.Issuer.Cert); err != nil {
		t.Fatalf("the serving certificate is not signed by the issuer: %v", err)
	}
	if got, err := spiffe.FromCertificate(leaf); err != nil || got != defaultControllerID {
		t.Fatalf("the serving certificate names %v (%v), want %s", got, err, defaultControllerID)
	}

	// A plaintext client fails.
	if err := callPolicy(t, addr, insecure.NewCredentials()); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext client: %v, want Unavailable", err)
	}

	// A client expecting another identity fails, naming both.
	other := spiffe.MustNew("cluster.local", "skiff", "skiff-impostor")
	err := callPolicy(t, addr, controllerCreds(t, anchorsPEM, other, webCert, nil))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), other.String()) || !strings.Contains(err.Error(), defaultControllerID.String()) {
		t.Errorf("client expecting %s: %v, want Unavailable naming both identities", other, err)
	}
	t.Logf("client expecting %s: %v", other, err)

	// A proxy's certificate manager, over the proxies' own gRPC client:
	// the first certificate without a client certificate (the token
	// proves the identity), the next one presenting the first.
	web := spiffe.MustNew("cluster.local", "shop", "web")
	tok, err := pki.Tokens.Issue(web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := spiffe.ParseBundlePEM("cluster.local", anchorsPEM)
	if err != nil {
		t.Fatal(err)
	}
	var mgr *certs.Manager
	presented := make(chan bool, 4)
	conn := control.NewConn(addr, control.ConnConfig{TLS: certs.ControlPlaneTLSConfig(defaultControllerID,
		func() *spiffe.Bundle { return bundle },
		func() *tls.Certificate {
			c := mgr.Certificate()
			presented <- c != nil
			return c
		})})
	defer conn.Close()
	mgr, err = certs.New(certs.Config{ID: web, Bundle: bundle, Certifier: &control.Certifier{Conn: conn},
		Token: func(context.Context) (string, error) { return tok, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Refresh(t.Context()); err != nil {
		t.Fatalf("first certificate over TLS: %v", err)
	}
	conn.Close() // the next call makes a new connection, presenting the certificate
	if err := mgr.Refresh(t.Context()); err != nil {
		t.Fatalf("renewal over TLS presenting the first certificate: %v", err)
	}
	if first, second := <-presented, <-presented; first || !second {
		t.Errorf("client certificate presented on the first connection: %v, on the second: %v; want false, true", first, second)
	}
	// The certificate the proxy obtained opens Destination and Policy.
	if err := callPolicy(t, addr, controllerCreds(t, anchorsPEM, defaultControllerID, mgr.Certificate(), nil)); err != nil {
		t.Errorf("Policy with the proxy's certificate: %v", err)
	}
	if err := callPolicy(t, addr, controllerCreds(t, anchorsPEM, defaultControllerID, nil, nil)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Policy without a certificate: %v, want Unauthenticated", err)
	}

	// An issuer rotation: a new connection sees a serving certificate from
	// the new issuer.
	issuer2, err := ca.NewIssuer(pki.Anchor, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := issuer2.WriteFiles(issuerCert, issuerKey); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "identity files reloaded")
	if err := callPolicy(t, addr, controllerCreds(t, anchorsPEM, defaultControllerID, webCert, seen)); err != nil {
		t.Fatalf("TLS client after the rotation: %v", err)
	}
	if err := (<-seen).CheckSignatureFrom(issuer2.Cert); err != nil {
		t.Fatalf("after the rotation the serving certificate is not from the new issuer: %v", err)
	}
}

// TestControllerTLSFiles runs `destination` with --tls-cert-file,
// --tls-key-file and --trust-anchors: it serves the certificate of the
// files, re-read when they change, serves only clients whose certificate
// chains to the anchors of the file, re-read likewise, and refuses to
// start without the files unless --plaintext.
func TestControllerTLSFiles(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	certFile, keyFile, regFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "endpoints.txt")
	anchorsFile := filepath.Join(dir, "anchors.pem")
	writeAtomic(t, regFile, "")
	pki := catest.New(t, "cluster.local", catest.Options{})
	// writeCert writes a serving certificate for the default identity, as
	// cert-manager would, and returns its leaf.
	writeCert := func() *x509.Certificate {
		c := pki.TLSCertificate(t, defaultControllerID)
		der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
		writeAtomic(t, certFile, string(spiffe.EncodeCertificatesPEM(c.Leaf, pki.Issuer.Cert)))
		return c.Leaf
	}
	first := writeCert()
	anchorsPEM := spiffe.EncodeCertificatesPEM(pki.Anchor.Cert)
	writeAtomic(t, anchorsFile, string(anchorsPEM))
	web := spiffe.MustNew("cluster.local", "shop", "web")
	webCert := pki.TLSCertificate(t, web)

	rec, _ := startController(t, "destination", "--registry-file", regFile, "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--trust-anchors", anchorsFile)
	if rec["tls"] != true {
		t.Fatalf("listening: tls = %v, want true", rec["tls"])
	}
	addr := rec["grpc_addr"].(string)
	seen := make(chan *x509.Certificate, 1)
	watch := func(cert *tls.Certificate) error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(controllerCreds(t, anchorsPEM, defaultControllerID, cert, seen)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		return watchOnce(ctx, cc, "web.shop.svc.cluster.local:8080")
	}
	if err := watch(webCert); err != nil {
		t.Fatalf("TLS client with a mesh certificate: %v", err)
	}
	if got := <-seen; !got.Equal(first) {
		t.Fatal("the server did not present the certificate of --tls-cert-file")
	}
	// Before, destination alone asked for no client certificate and
	// served this client.
	if err := watch(nil); status.Code(err) != codes.Unauthenticated {
		t.Errorf("TLS client without a certificate: %v, want Unauthenticated", err)
	}
	<-seen
	// A certificate from another root fails the handshake.
	other := catest.New(t, "cluster.local", catest.Options{})
	raw := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{*other.TLSCertificate(t, web)}})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := watchOnce(t.Context(), cc, "web.shop:8080"); status.Code(err) != codes.Unavailable {
		t.Errorf("client certificate from another root: %v, want Unavailable (handshake refused)", err)
	}
	cc.Close()

	// The files are replaced: a later connection gets the new certificate
	// (the files are checked at most once a second).
	second := writeCert()
	testwait.For(t, "the new serving certificate", func() (bool, error) {
		if err := watch(webCert); err != nil {
			return false, err
		}
		return (<-seen).Equal(second), nil
	})
	// The anchors are replaced (the other root's anchor joins): a client of
	// the other root gets in once the file is re-read.
	writeAtomic(t, anchorsFile, string(spiffe.EncodeCertificatesPEM(pki.Anchor.Cert, other.Anchor.Cert)))
	otherCert := other.TLSCertificate(t, web)
	testwait.For(t, "a client of the new anchor served", func() (bool, error) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{*otherCert}})))
		if err != nil {
			return false, err
		}
		defer cc.Close()
		err = watchOnce(t.Context(), cc, "web.shop:8080")
		return err == nil, err
	})

	// Without the files and without --plaintext: no start.
	err = run(t.Context(), []string{"destination", "--registry-file", regFile, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert-file, --tls-key-file and --trust-anchors") || !strings.Contains(err.Error(), "--plaintext") {
		t.Errorf("destination without certificate files: %v, want an error naming the flags", err)
	}
}

// TestPlaintextWarns: --plaintext serves everyone, and says so.
func TestPlaintextWarns(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	regFile := filepath.Join(dir, "endpoints.txt")
	writeAtomic(t, regFile, "")
	out, logs := logRecords(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"destination", "--registry-file", regFile, "--plaintext", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-format", "json"}, out)
	}()
	for _, msg := range []string{msgPlaintextAsked, msgUnauthenticated} {
		if rec := waitLog(t, logs, msg); rec["level"] != "WARN" {
			t.Errorf("%q logged at level %v, want WARN", msg, rec["level"])
		}
	}
	rec := waitLog(t, logs, "listening")
	if rec["tls"] != false {
		t.Errorf("listening: tls = %v, want false", rec["tls"])
	}
	cc, err := grpc.NewClient(rec["grpc_addr"].(string), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := watchOnce(ctx, cc, "web.shop:8080"); err != nil {
		t.Errorf("plaintext watch: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	regFile := filepath.Join(dir, "endpoints.txt")
	writeAtomic(t, regFile, "")
	keyFile := filepath.Join(dir, "token.key")
	key, err := ca.NewHMACKey()
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, keyFile, hex.EncodeToString(key))
	missing := filepath.Join(dir, "missing")
	dev := []string{"identity", "--identity-dev", "--token-key-file", keyFile}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"destination", "--registry-file", regFile, "--plaintext", "--tls-cert-file", missing, "--tls-key-file", missing}, "contradict"},
		{[]string{"destination", "--registry-file", regFile, "--tls-cert-file", missing}, "--tls-cert-file and --tls-key-file go together"},
		{[]string{"policy", "--tls-cert-file", missing, "--tls-key-file", missing, "--trust-anchors", missing}, "--tls-cert-file/--tls-key-file"},
		{[]string{"policy", "--tls-cert-file", regFile, "--tls-key-file", regFile, "--trust-anchors", missing}, "--tls-cert-file/--tls-key-file"},
		{[]string{"policy", "--tls-cert-file", missing, "--tls-key-file", missing}, "--tls-cert-file needs --trust-anchors"},
		{[]string{"policy"}, "no certificate to serve gRPC over TLS"},
		{[]string{"policy", "--plaintext", "--max-watches-per-connection", "0"}, "want at least 1"},
		{[]string{"destination", "--registry-file", regFile, "--plaintext", "--max-watches-per-identity", "-1"}, "want at least 1"},
		{append(dev, "--certify-rate-per-token", "0"), "--certify-rate-per-token"},
		{append(dev, "--certify-burst-per-token", "0"), "--certify-burst-per-token"},
		{[]string{"identity", "--max-watches-per-connection", "5"}, "flag provided but not defined"},
		{append(dev, "--controller-identity", "skiff-controller"), "--controller-identity"},
		{append(dev, "--controller-identity", "spiffe://example.org/ns/skiff/sa/skiff-controller"), `trust domain "example.org"`},
		{[]string{"identity", "--tls-cert-file", missing}, "flag provided but not defined: -tls-cert-file"},
		{[]string{"destination", "--controller-identity", "x"}, "flag provided but not defined: -controller-identity"},
	}
	for _, tt := range tests {
		err := run(t.Context(), tt.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}
