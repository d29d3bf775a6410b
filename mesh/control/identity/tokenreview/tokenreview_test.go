package tokenreview_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/control/identity/tokenreview"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// token stands for a projected ServiceAccount token: the fake API server
// does not parse it, and no error message may contain it.
const token = "eyJhbGciOiJSUzI1NiJ9.projected-token-of-web.c2lnbmF0dXJl"

var tokenReviews = schema.GroupResource{Group: "authentication.k8s.io", Resource: "tokenreviews"}

// api is a fake clientset whose TokenReviews answer with a fixed status or
// error, recording every review it is asked for.
type api struct {
	*fake.Clientset
	mu      sync.Mutex
	reviews []*authenticationv1.TokenReview
}

func newAPI(status authenticationv1.TokenReviewStatus, err error) *api {
	a := &api{Clientset: fake.NewClientset()}
	a.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		a.mu.Lock()
		a.reviews = append(a.reviews, review)
		a.mu.Unlock()
		if err != nil {
			return true, nil, err
		}
		answer := review.DeepCopy()
		answer.Status = status
		return true, answer, nil
	})
	return a
}

func (a *api) calls() []*authenticationv1.TokenReview {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reviews)
}

// serviceAccount is the status the API server gives a valid bound token
// of ns/sa, projected with the default audience into pod.
func serviceAccount(ns, sa, pod string) authenticationv1.TokenReviewStatus {
	return authenticationv1.TokenReviewStatus{
		Authenticated: true,
		User: authenticationv1.UserInfo{
			Username: "system:serviceaccount:" + ns + ":" + sa,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			Extra:    map[string]authenticationv1.ExtraValue{"authentication.kubernetes.io/pod-name": {pod}},
		},
		Audiences: []string{tokenreview.DefaultAudience},
	}
}

func newVerifier(t *testing.T, client kubernetes.Interface) *tokenreview.Verifier {
	t.Helper()
	v, err := tokenreview.New(tokenreview.Config{Client: client, TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	leakcheck.Check(t)
	a := newAPI(serviceAccount("shop", "web", "web-7d9f8-x2x4k"), nil)
	got, err := newVerifier(t, a).Verify(t.Context(), token)
	if err != nil || got != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Fatalf("Verify = %q, %v; want spiffe://cluster.local/ns/shop/sa/web", got, err)
	}
	calls := a.calls()
	if len(calls) != 1 {
		t.Fatalf("%d TokenReviews, want 1", len(calls))
	}
	if spec := calls[0].Spec; spec.Token != token || !slices.Equal(spec.Audiences, []string{tokenreview.DefaultAudience}) {
		t.Errorf("the review asked for %+v, want the token and audience %q", spec, tokenreview.DefaultAudience)
	}
}

func TestVerifyAudiences(t *testing.T) {
	leakcheck.Check(t)
	// Two accepted audiences (a migration): the API server confirms the
	// one the token has, and that is enough.
	st := serviceAccount("shop", "web", "web-0")
	st.Audiences = []string{"old.example"}
	a := newAPI(st, nil)
	v, err := tokenreview.New(tokenreview.Config{Client: a, TrustDomain: "prod.example", Audiences: []string{"new.example", "old.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Verify(t.Context(), token); err != nil || got != "spiffe://prod.example/ns/shop/sa/web" {
		t.Fatalf("Verify = %q, %v", got, err)
	}
	if got := a.calls()[0].Spec.Audiences; !slices.Equal(got, []string{"new.example", "old.example"}) {
		t.Errorf("the review asked for audiences %q", got)
	}
}

func TestVerifyRejects(t *testing.T) {
	leakcheck.Check(t)
	// with is web's valid answer, changed.
	with := func(change func(*authenticationv1.TokenReviewStatus)) authenticationv1.TokenReviewStatus {
		st := serviceAccount("shop", "web", "web-0")
		change(&st)
		return st
	}
	tests := []struct {
		name   string
		status authenticationv1.TokenReviewStatus
		want   error
		msg    []string
	}{
		{"expired", authenticationv1.TokenReviewStatus{Error: "[invalid bearer token, service account token has expired]"},
			ca.ErrInvalidToken, []string{"did not authenticate", "service account token has expired", "re-reads its token file"}},
		{"forged", authenticationv1.TokenReviewStatus{Error: "[invalid bearer token, square/go-jose: error in cryptographic primitive]"},
			ca.ErrInvalidToken, []string{"did not authenticate", "cryptographic primitive"}},
		{"unauthenticated without a reason", authenticationv1.TokenReviewStatus{},
			ca.ErrInvalidToken, []string{"did not authenticate the token"}},
		{"audience not echoed", with(func(st *authenticationv1.TokenReviewStatus) { st.Audiences = nil }),
			ca.ErrInvalidToken, []string{"not confirmed for audience " + tokenreview.DefaultAudience, "pod web-0", "system:serviceaccount:shop:web"}},
		{"another audience echoed", with(func(st *authenticationv1.TokenReviewStatus) {
			st.Audiences = []string{"https://kubernetes.default.svc"}
		}),
			ca.ErrInvalidToken, []string{"not confirmed for audience", "https://kubernetes.default.svc", "not its API server token"}},
		{"a node", with(func(st *authenticationv1.TokenReviewStatus) {
			st.User = authenticationv1.UserInfo{Username: "system:node:worker-1"}
		}),
			ca.ErrInvalidToken, []string{`node "worker-1"`, "not a ServiceAccount"}},
		{"a person", with(func(st *authenticationv1.TokenReviewStatus) {
			st.User = authenticationv1.UserInfo{Username: "alice@example.com"}
		}),
			ca.ErrInvalidToken, []string{`user "alice@example.com"`, "not a ServiceAccount"}},
		{"no namespace", with(func(st *authenticationv1.TokenReviewStatus) { st.User.Username = "system:serviceaccount:web" }),
			ca.ErrInvalidToken, []string{`"system:serviceaccount:web" is not system:serviceaccount:<namespace>:<name>`}},
		{"too many parts", with(func(st *authenticationv1.TokenReviewStatus) { st.User.Username = "system:serviceaccount:shop:web:x" }),
			ca.ErrInvalidToken, []string{"is not system:serviceaccount:<namespace>:<name>"}},
		{"namespace not a DNS label", with(func(st *authenticationv1.TokenReviewStatus) { st.User.Username = "system:serviceaccount:Shop:web" }),
			ca.ErrInvalidToken, []string{`namespace "Shop"`, "pod web-0"}},
		{"service account not a DNS subdomain", with(func(st *authenticationv1.TokenReviewStatus) { st.User.Username = "system:serviceaccount:shop:web_1" }),
			ca.ErrInvalidToken, []string{`service account "web_1"`}},
		{"authenticated with an error", with(func(st *authenticationv1.TokenReviewStatus) { st.Error = "webhook: timeout" }),
			ca.ErrVerifierUnavailable, []string{"authenticated but reports an error: webhook: timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newVerifier(t, newAPI(tt.status, nil)).Verify(t.Context(), token)
			if got != "" || !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %q, %v; want an error matching %v", got, err, tt.want)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestVerifyAPIErrors(t *testing.T) {
	leakcheck.Check(t)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name  string
		err   error
		class ca.Class
		msg   []string
	}{
		{"service unavailable", apierrors.NewServiceUnavailable("etcd is down"), ca.ClassUnavailable, []string{"retry later", "etcd is down"}},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), ca.ClassUnavailable, []string{"retry later"}},
		{"server timeout", apierrors.NewServerTimeout(tokenReviews, "create", 1), ca.ClassUnavailable, []string{"retry later"}},
		{"timeout", apierrors.NewTimeoutError("the webhook did not answer", 1), ca.ClassUnavailable, []string{"retry later"}},
		{"internal error", apierrors.NewInternalError(errors.New("boom")), ca.ClassUnavailable, []string{"retry later", "boom"}},
		{"connection refused", refused, ca.ClassUnavailable, []string{"retry later", "connection refused"}},
		{"forbidden", apierrors.NewForbidden(tokenReviews, "", errors.New(`User "system:serviceaccount:skiff:controller" cannot create resource "tokenreviews"`)),
			ca.ClassUnavailable, []string{"may not create TokenReviews", `apiGroups: ["authentication.k8s.io"], resources: ["tokenreviews"], verbs: ["create"]`}},
		{"unauthorized", apierrors.NewUnauthorized("token expired"), ca.ClassUnavailable, []string{"controller's own credentials"}},
		{"bad request", apierrors.NewBadRequest("token is required"), ca.ClassUnauthenticated, []string{"refused to review the token"}},
		{"unexpected", errors.New("something else"), ca.ClassUnavailable, []string{"TokenReview failed: something else"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newVerifier(t, newAPI(authenticationv1.TokenReviewStatus{}, tt.err)).Verify(t.Context(), token)
			if got != "" || err == nil {
				t.Fatalf("Verify = %q, %v; want an error", got, err)
			}
			if c := ca.ClassOf(err); c != tt.class {
				t.Errorf("class of %q = %v, want %v", err, c, tt.class)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("error %q does not wrap the API's error", err)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
		})
	}
}

func TestVerifyBounds(t *testing.T) {
	leakcheck.Check(t)
	a := newAPI(serviceAccount("shop", "web", "web-0"), nil)
	v := newVerifier(t, a)
	for _, tok := range []string{"", strings.Repeat("x", tokenreview.MaxTokenSize+1)} {
		if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ca.ErrInvalidToken) {
			t.Errorf("token of %d bytes: %v, want ErrInvalidToken", len(tok), err)
		}
	}
	if n := len(a.calls()); n != 0 {
		t.Errorf("%d TokenReviews for tokens refused up front, want none", n)
	}
	if _, err := v.Verify(t.Context(), strings.Repeat("x", tokenreview.MaxTokenSize)); err != nil {
		t.Errorf("token of MaxTokenSize bytes: %v", err)
	}
}

func TestVerifyContext(t *testing.T) {
	leakcheck.Check(t)
	a := newAPI(serviceAccount("shop", "web", "web-0"), nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := newVerifier(t, a).Verify(ctx, token); !errors.Is(err, context.Canceled) || errors.Is(err, ca.ErrVerifierUnavailable) {
		t.Errorf("Verify after cancel = %v, want context.Canceled", err)
	}
	if n := len(a.calls()); n != 0 {
		t.Errorf("%d TokenReviews after the context ended, want none", n)
	}

	// Cancelled while the call is in flight: client-go returns a wrapped
	// transport error; Verify reports the caller's context error.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		cancel()
		return true, nil, &url.Error{Op: "Post", URL: "https://10.96.0.1/apis/authentication.k8s.io/v1/tokenreviews", Err: context.Canceled}
	})
	if _, err := newVerifier(t, c).Verify(ctx, token); !errors.Is(err, context.Canceled) || errors.Is(err, ca.ErrVerifierUnavailable) {
		t.Errorf("Verify cancelled in flight = %v, want context.Canceled", err)
	}
}

// silentAPI is a transport to an API server that never answers: each
// request waits for its context to end.
type silentAPI struct {
	requests chan *authenticationv1.TokenReview
}

func (s silentAPI) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	var review authenticationv1.TokenReview
	if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, &review); err != nil {
		return nil, err
	}
	s.requests <- &review
	<-r.Context().Done()
	return nil, r.Context().Err()
}

// TestVerifyTimeout runs the real client-go request path against an API
// server that never answers: the call ends at DefaultTimeout, as
// Unavailable, not as the caller's deadline.
func TestVerifyTimeout(t *testing.T) {
	leakcheck.Check(t)
	synctest.Test(t, func(t *testing.T) {
		api := silentAPI{requests: make(chan *authenticationv1.TokenReview, 1)}
		client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://api.cluster.test", Transport: api})
		if err != nil {
			t.Fatal(err)
		}
		v := newVerifier(t, client)
		start := time.Now()
		_, err = v.Verify(t.Context(), token)
		if !errors.Is(err, ca.ErrVerifierUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Verify against a silent API = %v, want ErrVerifierUnavailable only", err)
		}
		if !strings.Contains(err.Error(), "did not answer the TokenReview within 5s") {
			t.Errorf("error %q does not say how long it waited", err)
		}
		if waited := time.Since(start); waited != tokenreview.DefaultTimeout {
			t.Errorf("Verify waited %s, want DefaultTimeout (%s)", waited, tokenreview.DefaultTimeout)
		}
		if review := <-api.requests; review.Spec.Token != token || !slices.Equal(review.Spec.Audiences, []string{tokenreview.DefaultAudience}) {
			t.Errorf("the API server received %+v", review.Spec)
		}

		// A caller's deadline shorter than the timeout is the caller's.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := v.Verify(ctx, token); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ca.ErrVerifierUnavailable) {
			t.Errorf("Verify past the caller's deadline = %v, want context.DeadlineExceeded", err)
		}
		<-api.requests
	})
}

func TestNew(t *testing.T) {
	leakcheck.Check(t)
	client := fake.NewClientset()
	for _, tt := range []struct {
		cfg  tokenreview.Config
		want string
	}{
		{tokenreview.Config{}, "Client is required"},
		{tokenreview.Config{Client: client, TrustDomain: "Cluster.Local"}, "trust domain"},
		{tokenreview.Config{Client: client, Audiences: []string{""}}, "audience must not be empty"},
		{tokenreview.Config{Client: client, Timeout: -time.Second}, "must not be negative"},
	} {
		if _, err := tokenreview.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
	// Zero values: default trust domain and audience.
	a := newAPI(serviceAccount("shop", "web", "web-0"), nil)
	v, err := tokenreview.New(tokenreview.Config{Client: a})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Verify(t.Context(), token); err != nil || got != "spiffe://"+tokenreview.DefaultTrustDomain+"/ns/shop/sa/web" {
		t.Errorf("Verify = %q, %v", got, err)
	}
}

// TestCertify runs the verifier inside the CA: a proxy's CSR is certified
// with the identity its ServiceAccount token proves, and only that one.
func TestCertify(t *testing.T) {
	leakcheck.Check(t)
	// The fixture's issuer and bundle, under CAs that verify ServiceAccount
	// tokens instead of its HMAC tokens.
	pki := catest.New(t, "cluster.local", catest.Options{})
	newCA := func(client kubernetes.Interface) *ca.CA {
		t.Helper()
		authority, err := ca.New(ca.Config{TrustDomain: "cluster.local", Issuer: pki.Issuer, Bundle: pki.Bundle, Tokens: newVerifier(t, client)})
		if err != nil {
			t.Fatal(err)
		}
		return authority
	}
	web, db := spiffe.MustNew("cluster.local", "shop", "web"), spiffe.MustNew("cluster.local", "shop", "db")

	authority := newCA(newAPI(serviceAccount("shop", "web", "web-0"), nil))
	cert, err := authority.Certify(t.Context(), catest.CSR(t, web), web.String(), token)
	if err != nil {
		t.Fatal(err)
	}
	chain := make([]*x509.Certificate, len(cert.Chain))
	for i, der := range cert.Chain {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := pki.Bundle.Verify(chain, time.Now(), x509.ExtKeyUsageClientAuth); err != nil || got != web {
		t.Errorf("the certificate verifies as %v, %v; want %v", got, err, web)
	}

	// web's token does not buy db's certificate.
	if _, err := authority.Certify(t.Context(), catest.CSR(t, db), db.String(), token); !errors.Is(err, ca.ErrIdentityMismatch) {
		t.Errorf("db's CSR with web's token: %v, want ErrIdentityMismatch", err)
	}
	// The API server's verdicts keep their class through the CA.
	for _, tt := range []struct {
		client kubernetes.Interface
		want   ca.Class
	}{
		{newAPI(authenticationv1.TokenReviewStatus{Error: "service account token has expired"}, nil), ca.ClassUnauthenticated},
		{newAPI(authenticationv1.TokenReviewStatus{}, apierrors.NewServiceUnavailable("down")), ca.ClassUnavailable},
		{newAPI(authenticationv1.TokenReviewStatus{}, apierrors.NewForbidden(tokenReviews, "", errors.New("no RBAC"))), ca.ClassUnavailable},
	} {
		_, err := newCA(tt.client).Certify(t.Context(), catest.CSR(t, web), web.String(), token)
		if c := ca.ClassOf(err); c != tt.want {
			t.Errorf("Certify = %v (%v), want class %v", err, c, tt.want)
		}
	}
}
