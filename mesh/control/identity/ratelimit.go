package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// Defaults of the per-token rate limit of Certify ([Config]).
const (
	// DefaultCertifyRate is the sustained rate of Certify calls one token
	// may make, per second. A proxy renews at 60-80 % of its leaf's
	// lifetime: once in ~17 h with the default 24 h leaves, every 3-4 s
	// with the 5 s leaves of the mtls-rotation scenario.
	DefaultCertifyRate = 1.0
	// DefaultCertifyBurst is how many calls a token may make at once
	// (start-up retries, a renewal after an anchor change).
	DefaultCertifyBurst = 20
	// DefaultMaxTrackedTokens bounds the tokens whose buckets are kept
	// (each ~100 bytes).
	DefaultMaxTrackedTokens = 10000
)

// tokenKey identifies a token without keeping it: the first 16 bytes of
// SHA-256 over a per-process random salt and the token without its white
// space. A memory dump of the controller yields no token, nor a hash that
// can be checked against a guessed one elsewhere.
//
// White space is left out because Go's base64 decoders skip CR and LF even
// in strict mode, so a token (an HMAC token, a JWT checked by the API
// server) with line breaks inserted may still verify: keyed as sent, each
// spelling would get a bucket of its own. No token format Skiff accepts
// carries white space.
type tokenKey [16]byte

// tokenLimiter is a token bucket per workload token, refilled at rate per
// second up to burst. The table is bounded by max: a bucket that has
// refilled to burst is indistinguishable from a new one and is swept out
// when the table is full; if the table is still full, an arbitrary bucket
// is dropped, which only ever forgives its token (it starts afresh), so
// an attacker sending random tokens can neither grow the table nor lock
// out another token. Safe for concurrent use.
type tokenLimiter struct {
	rate  float64
	burst float64
	max   int
	now   func() time.Time
	salt  [32]byte

	mu      sync.Mutex
	buckets map[tokenKey]bucket
	swept   time.Time // last full sweep
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

func newTokenLimiter(rate float64, burst, max int, now func() time.Time) *tokenLimiter {
	l := &tokenLimiter{rate: rate, burst: float64(burst), max: max, now: now, buckets: make(map[tokenKey]bucket)}
	rand.Read(l.salt[:]) // never fails (crypto/rand panics rather)
	return l
}

func (l *tokenLimiter) key(token []byte) tokenKey {
	h := sha256.New()
	h.Write(l.salt[:])
	for len(token) > 0 {
		i := bytes.IndexAny(token, " \t\r\n\v\f")
		if i < 0 {
			h.Write(token)
			break
		}
		h.Write(token[:i])
		token = token[i+1:]
	}
	var k tokenKey
	copy(k[:], h.Sum(nil))
	return k
}

// allow takes one request from token's bucket and reports whether there
// was one to take.
func (l *tokenLimiter) allow(token []byte) bool {
	k := l.key(token)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[k]
	if ok {
		b = l.refill(b, now)
	} else {
		if len(l.buckets) >= l.max {
			l.makeRoom(now)
		}
		b = bucket{tokens: l.burst, at: now}
	}
	if b.tokens < 1 {
		l.buckets[k] = b
		return false
	}
	b.tokens--
	l.buckets[k] = b
	return true
}

func (l *tokenLimiter) refill(b bucket, now time.Time) bucket {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.at = now
	}
	return b
}

// makeRoom frees at least one slot; l.mu is held. A full sweep of the
// buckets that have refilled runs at most once per refill time of one
// request (so a flood of new tokens costs O(1) each in between); when it
// frees nothing, an arbitrary bucket goes.
func (l *tokenLimiter) makeRoom(now time.Time) {
	if now.Sub(l.swept) >= time.Duration(float64(time.Second)/l.rate) {
		l.swept = now
		for k, b := range l.buckets {
			if l.refill(b, now).tokens >= l.burst {
				delete(l.buckets, k)
			}
		}
		if len(l.buckets) < l.max/4 {
			// Go maps keep their buckets after deletes: copy what is left
			// into a map of its size.
			fresh := make(map[tokenKey]bucket, len(l.buckets))
			for k, b := range l.buckets {
				fresh[k] = b
			}
			l.buckets = fresh
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max {
			return
		}
		delete(l.buckets, k)
	}
}

// tracked returns the number of buckets kept.
func (l *tokenLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
