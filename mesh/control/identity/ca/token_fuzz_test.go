package ca_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// signToken makes a token over any payload with key, as HMACTokens does,
// so that seeds reach the checks after the signature.
func signToken(key []byte, payload string) string {
	signed := "skiff1." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// FuzzHMACTokensVerify feeds arbitrary tokens to the verifier the CA uses
// in the local environment: what a client sends with its CSR. Every error
// wraps exactly one of ErrInvalidToken and ErrExpiredToken, and an error
// about a token whose signature does not verify is short (the token is
// not echoed into logs). A token is accepted only in its one canonical
// form, the one Issue writes: signature and all (a per-token rate limit
// must not be dodged by spelling one token several ways); and then it
// names a valid SPIFFE ID, the one its payload holds, not yet expired.
func FuzzHMACTokensVerify(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	key := []byte(strings.Repeat("k", ca.MinHMACKeySize))
	h, err := ca.NewHMACTokens(key, func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	earlier, err := ca.NewHMACTokens(key, func() time.Time { return now.Add(-2 * time.Hour) })
	if err != nil {
		f.Fatal(err)
	}
	other, err := ca.NewHMACTokens([]byte(strings.Repeat("o", ca.MinHMACKeySize)), func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	issue := func(h *ca.HMACTokens, id spiffe.ID) string {
		tok, err := h.Issue(id, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	good := issue(h, web)
	exp := now.Add(time.Hour).Unix()
	for _, s := range []string{
		good,
		issue(h, db),
		issue(earlier, web), // expired
		issue(other, web),   // another key
		good[:len(good)-1],
		good + "A",
		strings.Replace(good, "skiff1.", "skiff2.", 1),
		signToken(key, `{"sub":"spiffe://cluster.local/ns/shop/sa/web"}`), // no exp: expired in 1970
		signToken(key, `{"sub":"spiffe://cluster.local/ns/shop/../sa/web","exp":`+itoa(exp)+`}`),
		signToken(key, `{"sub":"spiffe://cluster.local/ns/shop/sa/web","exp":`+itoa(exp)+`,"extra":1}`),
		signToken(key, `{"SUB":"spiffe://cluster.local/ns/shop/sa/web","exp":`+itoa(exp)+`}`),
		signToken(key, `not json`),
		signToken(key, ``),
		"", "skiff1.", "skiff1..", "skiff1.e30", strings.Repeat("a", 5000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := h.Verify(context.Background(), token)
		signed := token[:max(strings.LastIndex(token, "."), 0)]
		canonical := resign(key, signed)
		macOK := strings.HasPrefix(token, "skiff1.") && token == canonical
		if err != nil {
			invalid, expired := errors.Is(err, ca.ErrInvalidToken), errors.Is(err, ca.ErrExpiredToken)
			if invalid == expired {
				t.Fatalf("Verify(%.60q): %v: want exactly one of ErrInvalidToken, ErrExpiredToken", token, err)
			}
			if !macOK && len(err.Error()) > 200 {
				t.Fatalf("Verify(%.60q): an error of %d bytes for a token with a bad signature: %.200s", token, len(err.Error()), err)
			}
			return
		}
		if !macOK {
			t.Fatalf("accepted %q, which is not the canonical token %q", token, canonical)
		}
		if _, err := spiffe.Parse(id); err != nil {
			t.Fatalf("accepted %q naming %q: %v", token, id, err)
		}
		payload, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(signed, "skiff1."))
		var c struct {
			Sub string `json:"sub"`
			Exp int64  `json:"exp"`
		}
		if err := json.Unmarshal(payload, &c); err != nil || c.Sub != id || c.Exp <= now.Unix() {
			t.Fatalf("accepted %q naming %q; its payload %q: %+v, %v", token, id, payload, c, err)
		}
	})
}

// resign is the token HMACTokens would write for the signed part (prefix
// and payload, as written).
func resign(key []byte, signed string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
