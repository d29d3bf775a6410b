package ca

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// TokenVerifier proves a workload's identity from the token it sends with
// its CSR. Verify returns the SPIFFE ID the token proves. Errors should
// wrap [ErrExpiredToken] for an expired token, [ErrVerifierUnavailable] for
// a transient backend failure, and the context's error when ctx ends; any
// other error is reported as [ErrInvalidToken].
//
// Implementations: [*HMACTokens] (the simulator's per-pod tokens) and,
// in Kubernetes, the TokenReview verifier of projected ServiceAccount
// tokens, package mesh/control/identity/tokenreview (outside this package,
// which uses only the standard library).
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (spiffeID string, err error)
}

var _ TokenVerifier = (*HMACTokens)(nil)

// MinHMACKeySize is the shortest key [NewHMACTokens] accepts, in bytes.
const MinHMACKeySize = 32

// maxTokenSize bounds the work spent on a token before its MAC is checked.
const maxTokenSize = 4096

const tokenPrefix = "skiff1."

// HMACTokens issues and verifies workload tokens signed with a shared
// secret: the local environment's stand-in for projected ServiceAccount
// tokens. The simulator calls [HMACTokens.Issue] for each pod it starts and
// hands the token to the pod's proxy; the CA, holding the same key, verifies
// it. A token is
//
//	skiff1.<base64url(JSON {"sub": spiffeID, "exp": unixSeconds})>.<base64url(HMAC-SHA256)>
//
// where the MAC covers everything before the last dot. Safe for concurrent
// use.
type HMACTokens struct {
	key []byte
	now func() time.Time
}

// NewHMACTokens returns an issuer/verifier using key, which must be at least
// [MinHMACKeySize] bytes of secret randomness ([NewHMACKey] makes one). Nil
// now means time.Now.
func NewHMACTokens(key []byte, now func() time.Time) (*HMACTokens, error) {
	if len(key) < MinHMACKeySize {
		return nil, fmt.Errorf("HMAC token key is %d bytes, want at least %d", len(key), MinHMACKeySize)
	}
	if now == nil {
		now = time.Now
	}
	return &HMACTokens{key: append([]byte(nil), key...), now: now}, nil
}

// NewHMACKey returns a fresh random key for [NewHMACTokens].
func NewHMACKey() ([]byte, error) {
	key := make([]byte, MinHMACKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, nil
}

type tokenClaims struct {
	Sub string `json:"sub"`
	Exp int64  `json:"exp"`
}

// Issue returns a token proving id, valid for ttl from now.
func (h *HMACTokens) Issue(id spiffe.ID, ttl time.Duration) (string, error) {
	if err := id.Validate(); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", fmt.Errorf("token lifetime %s: must be positive", ttl)
	}
	payload, err := json.Marshal(tokenClaims{Sub: id.String(), Exp: h.now().Add(ttl).Unix()})
	if err != nil {
		return "", err
	}
	signed := tokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(h.mac(signed)), nil
}

// Verify checks the token's MAC and expiry and returns the SPIFFE ID it
// proves. Failures wrap [ErrInvalidToken] or [ErrExpiredToken].
func (h *HMACTokens) Verify(ctx context.Context, token string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if token == "" {
		return "", fmt.Errorf("%w: no token; the proxy must send the token its pod was given", ErrInvalidToken)
	}
	if len(token) > maxTokenSize {
		return "", fmt.Errorf("%w: token is %d bytes, the limit is %d", ErrInvalidToken, len(token), maxTokenSize)
	}
	if !strings.HasPrefix(token, tokenPrefix) {
		return "", fmt.Errorf("%w: not a Skiff local token (want prefix %q)", ErrInvalidToken, tokenPrefix)
	}
	i := strings.LastIndexByte(token, '.')
	if i < len(tokenPrefix) {
		return "", fmt.Errorf("%w: no signature part", ErrInvalidToken)
	}
	signed, sig := token[:i], token[i+1:]
	// The signature is compared as written, with the one spelling Issue
	// writes, not decoded: a decoder skips line breaks and, unless
	// strict, the two unused bits of the last character, so one token
	// could be written many ways (and dodge anything keyed by the token,
	// such as a rate limit).
	want := base64.RawURLEncoding.EncodeToString(h.mac(signed))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", fmt.Errorf("%w: bad signature (forged, corrupted, or signed with another key)", ErrInvalidToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(signed[len(tokenPrefix):])
	if err != nil {
		return "", fmt.Errorf("%w: payload: %w", ErrInvalidToken, err)
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", fmt.Errorf("%w: payload: %w", ErrInvalidToken, err)
	}
	if exp := time.Unix(c.Exp, 0); !h.now().Before(exp) {
		return "", fmt.Errorf("%w: token for %s expired at %s; the pod needs a fresh token", ErrExpiredToken, c.Sub, exp.UTC().Format(time.RFC3339))
	}
	if _, err := spiffe.Parse(c.Sub); err != nil {
		return "", fmt.Errorf("%w: subject: %w", ErrInvalidToken, err)
	}
	return c.Sub, nil
}

func (h *HMACTokens) mac(signed string) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}
