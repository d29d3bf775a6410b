package identity

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestCertifyRateLimitPerToken: before the limit, one token could make
// any number of Certify calls (1,000 in a row were all answered); now a
// token gets its burst, then its rate, and ResourceExhausted beyond; other
// tokens are not affected.
func TestCertifyRateLimitPerToken(t *testing.T) {
	p := catest.New(t, "cluster.local", catest.Options{})
	clock := &fakeClock{now: time.Now()}
	reg := prometheus.NewRegistry()
	srv, err := NewServer(Config{CA: p.CA, Registerer: reg, CertifyRate: 0.5, CertifyBurst: 3, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	web := spiffe.MustNew("cluster.local", "shop", "web")
	tokenOf := func(id spiffe.ID, ttl time.Duration) []byte {
		tok, err := p.Tokens.Issue(id, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(tok)
	}
	tok := tokenOf(web, time.Hour)
	other := tokenOf(web, 2*time.Hour) // the same identity, another pod's token
	call := func(tok []byte) error {
		_, err := srv.Certify(t.Context(), &identityv1.CertifyRequest{Identity: web.String(), Token: tok, Csr: catest.CSR(t, web)})
		return err
	}
	for i := range 3 {
		if err := call(tok); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	err = call(tok)
	if status.Code(err) != codes.ResourceExhausted ||
		!strings.Contains(err.Error(), "too many certificate requests with this token") || !strings.Contains(err.Error(), "--certify-rate-per-token") {
		t.Fatalf("call beyond the burst: %v, want ResourceExhausted naming the limit", err)
	}
	respelled := append(append(append([]byte(nil), tok[:len(tok)-8]...), '\r', '\n'), tok[len(tok)-8:]...)
	if err := call(respelled); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("the token with a line break inserted: %v, want ResourceExhausted (the same bucket)", err)
	}
	if err := call(other); err != nil {
		t.Errorf("another token of the same identity: %v", err)
	}
	clock.Add(time.Second) // half a request
	if err := call(tok); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("half a request refilled: %v, want ResourceExhausted", err)
	}
	clock.Add(time.Second) // one whole request since the refusal
	if err := call(tok); err != nil {
		t.Errorf("after the refill: %v", err)
	}
	// A refused request is refused before the token is verified: a forged
	// token in a flood costs no verification once its bucket is empty.
	forged := []byte("skiff-local.forged")
	for range 3 {
		if err := call(forged); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("forged token within its burst: %v, want Unauthenticated", err)
		}
	}
	if err := call(forged); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("forged token beyond its burst: %v, want ResourceExhausted", err)
	}
	if got := testutil.ToFloat64(srv.rateLimited); got != 4 {
		t.Errorf("skiff_identity_certify_rate_limited_total = %v, want 4", got)
	}
	if got := testutil.ToFloat64(srv.requests.WithLabelValues("ResourceExhausted")); got != 4 {
		t.Errorf(`skiff_identity_certify_total{code="ResourceExhausted"} = %v, want 4`, got)
	}
	if n, err := testutil.GatherAndCount(reg, "skiff_identity_certify_rate_limit_tokens"); err != nil || n != 1 {
		t.Errorf("tracked-tokens gauge: %d series, %v", n, err)
	}
}

// TestRateLimiterBounded: an attacker sending random tokens cannot grow
// the table past its bound, and cannot lock out a legitimate token: a
// dropped bucket starts afresh. Tokens are not kept, only salted hashes.
func TestRateLimiterBounded(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	l := newTokenLimiter(1, 2, 100, clock.Now)
	legit := []byte("legitimate-token")
	for range 2 {
		if !l.allow(legit) {
			t.Fatal("legitimate token refused within its burst")
		}
	}
	if l.allow(legit) {
		t.Fatal("legitimate token allowed beyond its burst")
	}
	for i := range 50_000 {
		l.allow(fmt.Appendf(nil, "random-%d", i))
		if n := l.tracked(); n > 100 {
			t.Fatalf("%d buckets after %d random tokens, the bound is 100", n, i+1)
		}
		if i%1000 == 0 {
			clock.Add(time.Millisecond)
		}
	}
	// Either the legitimate bucket survived (then it has refilled by now)
	// or it was dropped (then it starts afresh): allowed either way.
	clock.Add(time.Second)
	if !l.allow(legit) {
		t.Error("legitimate token refused after the flood")
	}
	// Refilled buckets are swept when room is needed.
	for i := 0; l.tracked() < 100; i++ {
		l.allow(fmt.Appendf(nil, "filler-%d", i))
	}
	clock.Add(time.Hour)
	l.allow([]byte("newcomer"))
	if n := l.tracked(); n != 1 {
		t.Errorf("%d buckets after a sweep of refilled ones, want 1 (the newcomer)", n)
	}
	// Spellings with white space inserted (base64 decoders skip line
	// breaks) share the token's bucket.
	if l.key([]byte("abc\r\ndef ")) != l.key([]byte("abcdef")) || l.key([]byte("abc")) == l.key([]byte("abd")) {
		t.Error("the key is not the token without its white space")
	}
	sum := sha256.Sum256(legit)
	k := l.key(legit)
	if bytes.Equal(k[:], sum[:16]) || bytes.Contains(k[:], legit[:8]) {
		t.Error("the key is the token's plain hash or holds the token")
	}
}

func TestNewServerRateLimitConfig(t *testing.T) {
	p := catest.New(t, "cluster.local", catest.Options{})
	for _, cfg := range []Config{{CA: p.CA, CertifyRate: -1}, {CA: p.CA, CertifyBurst: -1}, {CA: p.CA, MaxTrackedTokens: -1}} {
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("NewServer(%+v): no error", cfg)
		}
	}
}
